"""What a run's settings promise is checked before its data are generated, and kept through
``--resume`` and ``eval``: an integer factorization rank the spectral layer refuses, a separable
UNO whose layers change width, modes or channels a built-in dataset's samples do not have and
repeated test resolutions are refused before any data; a model constructor's own refusal is one
line; a resume refuses another section class (before the run's recorded keys of its own class are
read) and the data keys ``eval`` refuses; ``eval --res`` keeps the run's test sets where it tested;
a run records the physics of the files it read."""
import json
import re

import pytest

from neuralop_mp import cli
from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.configs import load_config
from neuralop_mp.run_setup import RunSetupError

from .test_train_pipeline import TINY_RUN, _four_random_samples_as_data

TFNO8 = {"model": "TFNOConfig", "model.hidden_channels": "8", "model.n_modes": "[4,4]"}


def _quiet(*args, **kwargs):
    pass


def _no_data(monkeypatch):
    monkeypatch.setattr(pipeline, "build_data", lambda *a, **k: pytest.fail("data loaded"))


# ---------------------------------------------------------------- 1: integer ranks, model build errors
@pytest.mark.parametrize("precision", ["full", "mixed"])
@pytest.mark.parametrize("factorization, rank, message", [
    # 100 million parameters for a (8, 8, 4, 3) weight of 768: built silently in full precision
    ("Tucker", "100", "Invalid rank=100 with factorization='Tucker' on the spectral weight of shape (8, 8, 4, 3)"),
    ("tt", "100000", "Invalid rank=100000 with factorization='tt' on the spectral weight of shape (8, 8, 4, 3)"),
])
def test_an_integer_rank_the_layer_refuses_is_refused_before_the_data_in_every_precision(precision, factorization,
                                                                                       rank, message):
    overrides = {**TFNO8, "model.factorization": factorization, "model.fno_block_precision": precision}
    with pytest.raises(ValueError) as raised:
        load_config("navier_stokes", {**overrides, "model.rank": rank})
    assert str(raised.value).startswith(f"model.rank: {message}"), str(raised.value)
    assert "Allowed values: integers <= " in str(raised.value)
    # the largest the layer allows passes (its own bound: Tucker 10 on this weight)
    assert load_config("navier_stokes", {**overrides, "model.rank": "10" if factorization == "Tucker" else "12"})


def test_each_uno_layer_gets_the_integer_rank_check():
    # the last layer's weight (8 + 8 in, 8 out, modes 2x2) is the smallest: CP allows rank <= 16 * its 512 entries
    overrides = {"model": "UNOConfig", "model.hidden_channels": "8", "model.n_layers": "2",
                 "model.uno_out_channels": "[8,8]", "model.uno_n_modes": "[[8,8],[2,2]]",
                 "model.uno_scalings": "[[1,1],[1,1]]", "model.factorization": "cp"}
    with pytest.raises(ValueError, match=r"Invalid rank=500 with factorization='cp' on the spectral weight of shape "
                                         r"\(16, 8, 2, 2\)"):
        load_config("darcy", {**overrides, "model.rank": "500"})


@pytest.mark.parametrize("error", [ValueError("Invalid thing=3; allowed values: 1."), TypeError("bad kwarg")])
def test_an_error_of_the_model_constructor_is_a_one_line_setup_error(monkeypatch, error):
    _four_random_samples_as_data(monkeypatch)

    def refuse(*args, **kwargs):
        raise error

    monkeypatch.setattr(pipeline, "build_model", refuse)
    with pytest.raises(RunSetupError) as raised:
        pipeline.run_training(load_config("darcy", TINY_RUN), progress=False, write=False, log=_quiet)
    assert str(raised.value) == f"model: {error}"


# ---------------------------------------------------------------- 3: separable UNO
def test_a_separable_uno_whose_layers_change_width_is_refused_before_the_data():
    uno = {"model": "UNOConfig", "model.hidden_channels": "8", "model.separable": "true",
           "model.uno_n_modes": "[[4],[4],[4],[4]]", "model.uno_scalings": "[[1],[1],[1],[1]]"}
    with pytest.raises(ValueError) as raised:
        load_config("burgers", {**uno, "model.uno_out_channels": "[8,16,16,8]"})
    message = str(raised.value)
    assert message.startswith("Invalid model.separable=True with model.uno_out_channels=[8, 16, 16, 8] "
                              "(model.hidden_channels=8): UNO layer 1 takes 8 channels"), message
    assert "\n" not in message
    # widths whose every layer keeps its width, the horizontal skips' channels included: upstream builds them
    config = load_config("burgers", {**uno, "model.uno_out_channels": "[8,8,16,24]"})
    pipeline.build_model(config)


# ---------------------------------------------------------------- 5: modes and channels before the data
@pytest.mark.parametrize("config_name, overrides, message", [
    ("navier_stokes", {"model.n_modes": "[16]"},
     "Invalid model.n_modes=[16]; the navier_stokes data are 2-dimensional: it needs 2 mode counts"),
    # Burgers' target is the space-time trajectory: 2 dimensions
    ("burgers", {"model.n_modes": "[16]"}, "Invalid model.n_modes=[16]; the burgers data are 2-dimensional"),
    ("darcy", {"model.data_channels": "3"}, "Invalid model.data_channels=3; the darcy data need 1 "),
])
def test_a_model_that_does_not_fit_a_builtin_dataset_is_refused_before_anything_is_generated(
        monkeypatch, tmp_path, config_name, overrides, message):
    _no_data(monkeypatch)
    with pytest.raises(RunSetupError) as raised:
        pipeline.run_training(load_config(config_name, overrides), progress=False, output_dir=tmp_path / "run",
                              log=_quiet)
    assert str(raised.value).startswith(message), str(raised.value)
    assert not (tmp_path / "run").exists()


def test_the_builtin_layouts_are_the_loaders_samples(tmp_path):
    from neuralop_mp import data
    from neuralop_mp.data.loaders import SAMPLE_LAYOUT

    for loader_name, layout in SAMPLE_LAYOUT.items():
        train_loader, _, _ = getattr(data, loader_name)(
            data_root=tmp_path, n_train=2, n_tests=[1], test_batch_sizes=[1], batch_size=2, train_resolution=8,
            test_resolutions=[8], progress=False)
        sample = train_loader.dataset[0]
        assert (sample["x"].shape[0], sample["y"].shape[0], pipeline.data_dims(train_loader)) == (
            layout["data_channels"], layout["out_channels"], layout["dims"]), loader_name


def test_data_of_another_loader_are_still_checked_once_loaded(monkeypatch):
    from neuralop_mp.data import loaders

    _four_random_samples_as_data(monkeypatch)
    monkeypatch.setattr(loaders, "SAMPLE_LAYOUT", {})  # as for a loader of the user's
    monkeypatch.setattr(pipeline, "build_model", lambda *a, **k: pytest.fail("model built"))
    with pytest.raises(RunSetupError, match=r"^Invalid model.out_channels=2; the darcy data need 1 \(a training "
                                            r"sample has x of shape \(1, 8, 8\)"):
        pipeline.run_training(load_config("darcy", {**TINY_RUN, "model.out_channels": "2"}), progress=False,
                              write=False, log=_quiet)


# ---------------------------------------------------------------- 7: repeated test resolutions, the files' physics
def test_a_test_resolution_given_twice_is_refused():
    with pytest.raises(ValueError, match=r"^Invalid data.test_resolutions=\[32, 32\]: 32 given more than once"):
        load_config("navier_stokes", {"data.test_resolutions": "[32,32]"})


def test_a_run_records_the_files_it_read_with_their_physics(monkeypatch, tmp_path):
    overrides = {**TINY_RUN, "data.data_root": str(tmp_path / "data"), "model.n_modes": "[4,4]",
                 "data.n_train": "2", "data.batch_size": "2", "data.n_tests": "[1]", "data.test_batch_sizes": "[1]"}
    result = pipeline.run_training(load_config("navier_stokes", overrides), progress=False,
                                   output_dir=tmp_path / "run", log=_quiet)
    recorded = json.loads((tmp_path / "run" / "results.json").read_text())["data_files"]
    assert recorded == result["data_files"]
    assert [entry["file"] for entry in recorded] == [str(tmp_path / "data" / f"nsforcing_{split}_8.pt")
                                                     for split in ("train", "test")]
    for entry in recorded:
        assert entry["record"]["generator"] == "navier_stokes" and entry["record"]["viscosity"] == 1e-3
        assert entry["samples_in_file"] >= 1


# ---------------------------------------------------------------- 2 and 6: what a resume may not change
def _recorded_run(monkeypatch, tmp_path, overrides):
    from neuralop_mp.run_folder import write_command

    run = tmp_path / "run"
    run.mkdir()
    write_command(run, "darcy", overrides)
    seen = {}
    monkeypatch.setattr(pipeline, "run_training", lambda config, **kwargs: seen.update(config=config) or 1 / 0)
    return run, seen


@pytest.mark.parametrize("given, changed", [
    (["--data.n_train", "8"], "data.n_train=8 given, 4 saved"),
    (["--data.train_resolution", "16"], "data.train_resolution=16 given, 8 saved"),
    (["--data.encode_input", "true"], "data.encode_input=True given, False saved"),
])
def test_a_resume_refuses_the_data_keys_eval_refuses(monkeypatch, tmp_path, capsys, given, changed):
    from neuralop_mp.evaluate import TRAINED_DATA_KEYS

    run, seen = _recorded_run(monkeypatch, tmp_path, ["--data.n_train", "4", "--data.train_resolution", "8",
                                                      "--data.test_resolutions", "[8]", "--data.n_tests", "[4]",
                                                      "--data.test_batch_sizes", "[4]"])
    assert given[0][len("--data."):] in TRAINED_DATA_KEYS
    assert cli.main(["train", "--resume", str(run), *given]) == 2
    err = capsys.readouterr().err
    assert f"Cannot resume {run} with other training data than it was trained on ({changed})" in err, err
    assert not seen


def test_a_resume_may_change_the_test_sets(monkeypatch, tmp_path, capsys):
    run, seen = _recorded_run(monkeypatch, tmp_path, ["--data.n_train", "4"])
    with pytest.raises(ZeroDivisionError):  # the (replaced) training was reached
        cli.main(["train", "--resume", str(run), "--data.n_tests", "[8,8]"])
    assert seen["config"].data.n_tests == [8, 8] and seen["config"].data.n_train == 4


def test_a_resume_refuses_another_section_class_naming_the_runs(monkeypatch, tmp_path, capsys):
    run, seen = _recorded_run(monkeypatch, tmp_path, ["--model", "UNOConfig", "--model.uno_out_channels",
                                                      "[16,32,32,16]"])
    assert cli.main(["train", "--resume", str(run), "--model", "FNOConfig"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"neuralop-mp train: error: Cannot resume {run} with another --model class (model="
                           "'FNOConfig' given, 'UNOConfig' saved): cannot change --model at resume, the run's recorded "
                           "keys and checkpoint are those of UNOConfig. Resume without --model FNOConfig, or start a "
                           "new run."), err
    assert not seen
    # the run's own class given again is no change
    with pytest.raises(ZeroDivisionError):
        cli.main(["train", "--resume", str(run), "--model", "unoconfig"])
    assert seen["config"].model.uno_out_channels == [16, 32, 32, 16]


# ---------------------------------------------------------------- 4: eval --res keeps the run's test sets
def test_eval_res_keeps_the_size_of_a_test_set_the_config_has():
    from neuralop_mp.evaluate import ConfigSource, eval_config

    source = ConfigSource("darcy", ["--data.test_resolutions", "[16,32]", "--data.n_tests", "[8,4]",
                                    "--data.test_batch_sizes", "[8,2]"], True)
    data = eval_config(source, [], ["32", "64", "16"]).data
    assert (data.test_resolutions, data.n_tests, data.test_batch_sizes) == ([32, 64, 16], [4, 8, 8], [2, 8, 8])
    with pytest.raises(ValueError, match=r"Invalid --res 16 32 16: 16 given more than once"):
        eval_config(source, [], ["16", "32", "16"])


def test_eval_at_the_runs_own_resolutions_repeats_its_errors_and_says_the_samples(monkeypatch, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data.data_root", str(tmp_path / "data"), "--data.n_train", "2", "--data.batch_size", "2",
            "--data.train_resolution", "8", "--data.test_resolutions", "[8,16]", "--data.n_tests", "[4,2]",
            "--data.test_batch_sizes", "[4,2]", "--model.n_modes", "[4,4]", "--model.hidden_channels", "4",
            "--model.n_layers", "1", "--opt.n_epochs", "1", "--verbose", "false"]
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--threads", "1", *args]) == 0
    trained = json.loads((out / "results.json").read_text())["metrics"]
    capsys.readouterr()
    assert cli.main(["eval", str(out), "--res", "16", "8", "--json", str(tmp_path / "eval.json")]) == 0
    evaluated = json.loads((tmp_path / "eval.json").read_text())
    assert evaluated["metrics"] == trained  # bit for bit, at both resolutions
    printed = capsys.readouterr().out
    assert "[neuralop-mp] test samples: 2 at 16, 4 at 8" in printed
    assert re.search(r"\| samples per test set +\| 2 at 16, 4 at 8 ", printed)  # and in the result table
    assert evaluated["n_test_samples"] == {"16": 2, "8": 4}
