"""A run folder keeps the data normalizers its training fitted (``data_processor.pt``): ``eval``
encodes and decodes with them and reads no training file, refuses overrides that would change
the model's training data or their encoding, and a Python user decodes predictions with
``load_data_processor``; a run stopped before its final save says how to get its model.
Small real runs on generated 8x8 Darcy files (a few seconds each)."""
import json
import shutil

import pytest
import torch

from neuralop_mp import cli
from neuralop_mp.data import load_darcy
from neuralop_mp.run_folder import DATA_PROCESSOR_FILE, load_data_processor, load_model_and_precision

from .test_train_pipeline import TINY_RUN

TINY_ARGS = [token for key, value in TINY_RUN.items() for token in (f"--{key}", value)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """``(run folder, data root)`` of a finished one-epoch run with --save_best."""
    base = tmp_path_factory.mktemp("eval_normalizer")
    out, root = base / "run", base / "data"
    assert cli.main(["train", "darcy", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     "--save_best", "--data.data_root", str(root), *TINY_ARGS]) == 0
    return out, root


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the run and of its data, for a test to remove files from: ``(run, data root)``; the
    run's own data root is given as an override (allowed: it changes neither the data nor their encoding)."""
    out, root = trained
    shutil.copytree(out, tmp_path / "run")
    shutil.copytree(root, tmp_path / "data")
    return tmp_path / "run", tmp_path / "data"


def _eval(capsys, *args):
    code = cli.main(["eval", *map(str, args), "--threads", "1"])
    captured = capsys.readouterr()
    return code, captured.err


def test_train_writes_the_normalizers_it_fitted_loadable_weights_only(trained):
    out, root = trained
    saved = torch.load(out / DATA_PROCESSOR_FILE, weights_only=True)
    assert saved["class"] == "DefaultDataProcessor" and saved["in_normalizer"] is None  # darcy: encode_output only
    _, _, fitted = load_darcy(root, n_train=4, n_tests=[4], batch_size=4, test_batch_sizes=[4], train_resolution=8,
                              test_resolutions=[8], progress=False)
    processor = load_data_processor(out)
    assert torch.equal(processor.out_normalizer.mean, fitted.out_normalizer.mean)
    assert torch.equal(processor.out_normalizer.std, fitted.out_normalizer.std)
    assert processor.out_normalizer.eps == fitted.out_normalizer.eps
    assert DATA_PROCESSOR_FILE in json.loads((out / "results.json").read_text())["files"]["data_processor"]


@pytest.mark.parametrize("model_file", ["", "best_model_state_dict.pt"])
def test_eval_reads_no_training_file_and_gives_the_errors_train_reported(run, capsys, model_file):
    """The training file removed: eval neither reads nor generates it, and its errors are bitwise train's."""
    out, root = run
    (root / "darcy_train_8.pt").unlink()
    json_path = out.parent / "eval.json"
    code, err = _eval(capsys, out / model_file, "--data.data_root", root, "--json", json_path)
    assert code == 0, err
    assert not (root / "darcy_train_8.pt").exists()
    trained = json.loads((out / "results.json").read_text())
    assert json.loads(json_path.read_text())["metrics"] == trained["metrics"]


def test_eval_of_a_run_without_the_normalizer_file_fits_them_again_as_before(run, capsys):
    out, root = run
    (out / DATA_PROCESSOR_FILE).unlink()
    json_path = out.parent / "eval.json"
    code, err = _eval(capsys, out, "--data.data_root", root, "--json", json_path)
    assert code == 0, err
    assert json.loads(json_path.read_text())["metrics"] == json.loads((out / "results.json").read_text())["metrics"]


@pytest.mark.parametrize("key, value, run_value", [("n_train", "2", "4"), ("train_resolution", "16", "8"),
                                                    ("encode_output", "false", "True"),
                                                    ("encode_input", "true", "False")])
def test_eval_refuses_an_override_of_the_data_the_model_was_trained_on(trained, capsys, key, value, run_value):
    out, _ = trained
    code, err = _eval(capsys, out, f"--data.{key}", value)
    assert code != 0
    assert f"--data.{key} " in err and f"(the run's: {run_value})" in err
    assert str(value).lower() in err.lower()


def test_eval_accepts_the_runs_own_value_of_a_trained_data_key(trained, capsys):
    out, _ = trained
    code, err = _eval(capsys, out, "--data.n_train", "4", "--data.train_resolution", "8")
    assert code == 0, err


def test_a_python_user_decodes_predictions_to_physical_units(trained):
    """load_model_and_precision + load_data_processor give the predictions train evaluated: their relative L2
    error against the stored targets is the one results.json reports."""
    from neuralop.losses import LpLoss

    out, root = trained
    model, _ = load_model_and_precision(out)
    model.eval()
    processor = load_data_processor(out)
    stored = torch.load(root / "darcy_test_8.pt", weights_only=True)
    sample = {"x": stored["x"][:4].float().unsqueeze(1), "y": stored["y"][:4].unsqueeze(1)}
    with torch.no_grad():
        batch = processor.preprocess(dict(sample))
        prediction, _ = processor.postprocess(model(batch["x"]), batch)
    assert prediction.shape == sample["y"].shape
    error = LpLoss(d=2, p=2, reduction="sum")(prediction, sample["y"]).item() / 4
    reported = json.loads((out / "results.json").read_text())["metrics"]["8_l2"]
    assert error == pytest.approx(reported, rel=1e-4)


def test_a_run_stopped_before_its_final_save_names_its_checkpoint_epoch_and_resume(run, capsys):
    out, _ = run
    for name in ("model_state_dict.pt", "model_metadata.pkl", "best_model_state_dict.pt", "best_model_metadata.pkl"):
        (out / name).unlink()
    for target in (out, out / "checkpoint"):
        code, err = _eval(capsys, target)
        assert code != 0
        assert str(out / "checkpoint") in err and "epoch 0" in err
        assert f"neuralop-mp train --resume {out}" in err


BURGERS_ARGS = ["--data.n_train", "4", "--data.batch_size", "4", "--data.n_tests", "[4]",
                "--data.test_resolutions", "[32]", "--data.test_batch_sizes", "[4]", "--model.hidden_channels", "4",
                "--model.n_layers", "1", "--model.n_modes", "[4,4]", "--verbose", "false"]


def test_eval_restores_an_input_normalizer_and_the_burgers_processor(tmp_path, capsys):
    """Burgers encodes its input and output, with upstream's Burgers1dTimeDataProcessor: eval with the
    saved file (no training file there), and without it (fitted again), give train's errors."""
    out, root = tmp_path / "run", tmp_path / "data"
    assert cli.main(["train", "burgers", "--output_dir", str(out), "--opt.n_epochs", "1", "--threads", "1",
                     "--data.data_root", str(root), *BURGERS_ARGS]) == 0
    saved = torch.load(out / DATA_PROCESSOR_FILE, weights_only=True)
    assert saved["class"] == "Burgers1dTimeDataProcessor"
    assert saved["in_normalizer"] is not None and saved["out_normalizer"] is not None
    processor = load_data_processor(out)
    assert type(processor).__name__ == "Burgers1dTimeDataProcessor"
    assert torch.equal(processor.in_normalizer.mean, saved["in_normalizer"]["mean"])
    trained = json.loads((out / "results.json").read_text())["metrics"]

    refit = tmp_path / "refit"  # the run without its file: the normalizers fitted on the training data again
    shutil.copytree(out, refit)
    (refit / DATA_PROCESSOR_FILE).unlink()
    code, err = _eval(capsys, refit, "--json", tmp_path / "refit.json")
    assert code == 0, err
    (root / "burgers_train_32.pt").unlink()  # with the file: no training data read
    code, err = _eval(capsys, out, "--json", tmp_path / "saved.json")
    assert code == 0, err
    assert not (root / "burgers_train_32.pt").exists()
    assert json.loads((tmp_path / "saved.json").read_text())["metrics"] == trained
    assert json.loads((tmp_path / "refit.json").read_text())["metrics"] == trained


def test_a_resumed_run_keeps_its_normalizer_file(run, capsys):
    """A resume loads the data again and writes the file it fitted: the same normalizers, with which
    eval gives the resumed run's errors."""
    out, root = run
    before = torch.load(out / DATA_PROCESSOR_FILE, weights_only=True)
    assert cli.main(["train", "--resume", str(out), "--opt.n_epochs", "2", "--data.data_root", str(root)]) == 0
    after = torch.load(out / DATA_PROCESSOR_FILE, weights_only=True)
    assert after["class"] == before["class"] and after["in_normalizer"] is None
    assert torch.equal(after["out_normalizer"]["mean"], before["out_normalizer"]["mean"])
    assert torch.equal(after["out_normalizer"]["std"], before["out_normalizer"]["std"])
    capsys.readouterr()
    (root / "darcy_train_8.pt").unlink()
    json_path = out.parent / "eval.json"
    code, err = _eval(capsys, out, "--data.data_root", root, "--json", json_path)
    assert code == 0, err
    resumed = json.loads((out / "results.json").read_text())
    assert len(resumed["history"]) == 2 and json.loads(json_path.read_text())["metrics"] == resumed["metrics"]
