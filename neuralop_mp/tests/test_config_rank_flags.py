"""``--model.rank`` (``Union[int, float]``) refuses an on/off value as a number field does,
where zencfg would read ``true`` as the rank 1 and ``false`` as 0; a number keeps its type.
Run under zencfg 0.7 and 1.0 (integration_tests/test_zencfg_versions.py). Also: the config's
``model.factorization`` choices are the spectral layer's own list."""
import pytest

from neuralop_mp import cli
from neuralop_mp.configs import load_config

TFNO = {"model": "TFNOConfig", "model.factorization": "cp"}


@pytest.mark.parametrize("value", ["true", "false", "True", "FALSE"])
def test_an_on_off_rank_is_refused_naming_the_key_and_value(value):
    with pytest.raises(ValueError) as error:
        load_config("darcy", {**TFNO, "model.rank": value}, validate=False)
    message = str(error.value)
    assert "\n" not in message
    assert message == (f"Invalid model.rank={value!r}; allowed values: numbers (model.rank is a number, "
                       "not an on/off setting).")


def test_an_on_off_rank_is_refused_as_a_float_field_is():
    # the same words as for a float field (opt.learning_rate), only the key and value differ
    with pytest.raises(ValueError) as rank_error:
        load_config("darcy", {**TFNO, "model.rank": "true"}, validate=False)
    with pytest.raises(ValueError) as float_error:
        load_config("darcy", {"opt.learning_rate": "true"}, validate=False)
    assert str(rank_error.value).replace("model.rank", "KEY") == str(float_error.value).replace(
        "opt.learning_rate", "KEY")


@pytest.mark.parametrize("value, rank", [("8", 8), ("0.5", 0.5), ("1", 1), ("1.0", 1.0)])
def test_a_number_rank_keeps_its_type(value, rank):
    config = load_config("darcy", {**TFNO, "model.rank": value})
    assert config.model.rank == rank and type(config.model.rank) is type(rank)


def test_the_command_line_refuses_an_on_off_rank_in_one_line(capsys, monkeypatch):
    import neuralop_mp.train_pipeline as pipeline

    def no_run(config, **kwargs):  # pragma: no cover - the refusal comes first
        raise AssertionError("training started with an on/off rank")

    monkeypatch.setattr(pipeline, "run_training", no_run)
    assert cli.main(["train", "darcy", "--model", "TFNOConfig", "--model.rank", "true"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.rank='true'" in err and "not an on/off setting" in err, err


def test_the_config_takes_the_factorizations_the_layer_takes(monkeypatch):
    # one list: the config check reads the spectral layer's, so the two cannot drift apart
    import neuralop_mp.layers.input_checks as input_checks
    from neuralop_mp.configs.validation import upstream_choices, validate_model

    assert upstream_choices()["factorization"] == input_checks.factorization_choices()
    model = load_config("darcy", TFNO).model  # cp
    monkeypatch.setattr(input_checks, "factorization_choices", lambda: (None, "tucker"))
    assert upstream_choices()["factorization"] == (None, "tucker")
    with pytest.raises(ValueError, match=r"Invalid model\.factorization='cp'; allowed values: None, 'tucker'"):
        validate_model(model)
