"""``neuralop-mp train --resume`` refuses before any data loads a spectral weight dtype that switches
the optimizer ``opt.optimizer adamw`` builds. No training here."""
import pytest

from neuralop_mp import cli
from neuralop_mp.run_folder import write_command

from .test_cli import fake_result


@pytest.fixture
def seen(monkeypatch):
    """The pipeline replaced by a recorder: what it was called with (nothing: refused before it)."""
    import neuralop_mp.train_pipeline as pipeline

    calls = {}
    monkeypatch.setattr(pipeline, "run_training", lambda config, **kwargs: calls.update(config=config, **kwargs)
                        or fake_result())
    return calls


@pytest.mark.parametrize("saved_dtype, given_dtype, switch", [
    ("complex64", "complex32", "from torch's AdamW to TensorGRaD"),
    ("complex32", "complex64", "from TensorGRaD to torch's AdamW"),
])
def test_a_spectral_weight_dtype_that_switches_adamws_class_is_refused_before_the_data(
        tmp_path, capsys, seen, saved_dtype, given_dtype, switch):
    """It was refused after the data load, blaming optimizer.pt's class: the factory builds TensorGRaD for
    complex32 weights under opt.optimizer adamw."""
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--model.spectral_weight_dtype", saved_dtype])
    assert cli.main(["train", "--resume", str(tmp_path), "--model.spectral_weight_dtype", given_dtype]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err  # one line, no traceback
    assert (f"Cannot resume {tmp_path} with another model.spectral_weight_dtype (model.spectral_weight_dtype="
            f"{given_dtype!r} given, {saved_dtype!r} saved): with opt.optimizer 'adamw' it switches the optimizer "
            f"{switch}") in err, err
    assert not seen  # refused before the pipeline: no data loaded


@pytest.mark.parametrize("optimizer", ["tensorgrad", "galore"])
def test_the_dtype_may_change_where_the_optimizer_is_tensorgrad_either_way(tmp_path, seen, optimizer):
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--opt.optimizer", optimizer])
    assert cli.main(["train", "--resume", str(tmp_path), "--model.spectral_weight_dtype", "complex32"]) == 0
    assert seen["config"].model.spectral_weight_dtype == "complex32"


def test_the_same_dtype_spelled_otherwise_resumes(tmp_path, seen):
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--model.spectral_weight_dtype", "complex32"])
    assert cli.main(["train", "--resume", str(tmp_path), "--model.spectral_weight_dtype", "chalf"]) == 0
    assert seen["resume"] is True



@pytest.mark.parametrize("saved, given", [("tensorgrad", "adamw"), ("adamw", "galore")])
def test_another_optimizer_kind_is_refused_naming_it_not_the_runs_recorded_settings(tmp_path, capsys, seen,
                                                                                   saved, given):
    """Switching tensorgrad to adamw was refused for the run's recorded --opt.tensorgrad_update_proj_gap
    ("AdamW reads no TensorGRaD setting; leave it out"), a key the user never typed and cannot leave out."""
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--opt.optimizer", saved,
                                      *(["--opt.tensorgrad_update_proj_gap", "3"] if saved != "adamw" else [])])
    assert cli.main(["train", "--resume", str(tmp_path), "--opt.optimizer", given]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert (f"Cannot resume {tmp_path} with another opt.optimizer (opt.optimizer={given!r} given, {saved!r} saved): "
            f"its checkpoint holds the state of {saved!r}.") in err, err
    assert not seen


def test_the_runs_own_optimizer_kind_given_again_resumes(tmp_path, seen):
    write_command(tmp_path, "darcy", ["--opt.n_epochs", "2", "--opt.optimizer", "tensorgrad"])
    assert cli.main(["train", "--resume", str(tmp_path), "--opt.optimizer", "tensorgrad"]) == 0
    assert seen["resume"] is True
