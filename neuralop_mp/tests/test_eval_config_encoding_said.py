"""``neuralop-mp eval`` of a folder that records no data processor (upstream's Trainer or
``save_checkpoint``) encodes the data as the config says: the log says so, and names the two flags
that encode otherwise (was: nothing said, an error 0.65 where upstream's evaluation gives 2.9)."""
import shutil

import pytest

from neuralop_mp.data import generate_burgers, generate_darcy
from neuralop_mp.evaluate import recorded_metrics_text, run_evaluation
from neuralop_mp.training.tests.tiny import tiny_fno


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """``(folder, data root)``: an upstream FNO saved with save_checkpoint alone, Darcy files at 8 points."""
    folder = tmp_path_factory.mktemp("saved")
    root = tmp_path_factory.mktemp("data")
    generate_darcy(root, resolutions=(8,), n_train=4, n_test=2, progress=False)
    tiny_fno(mixed_precision_layer=False).save_checkpoint(folder, "model")
    return folder, root


def _evaluate(folder, root, *extra, spec=None):
    lines = []
    run_evaluation(folder, spec=spec, log=lines.append,
                   overrides=["--data.data_root", str(root), "--data.train_resolution", "8", "--data.n_train", "4",
                              "--data.batch_size", "2", "--data.test_resolutions", "[8]", "--data.n_tests", "[2]",
                              "--data.test_batch_sizes", "[2]", *extra])
    return lines


@pytest.mark.parametrize("encoding, said", [
    ((), "outputs normalized, raw inputs"),  # the darcy config's
    (("--data.encode_input", "false", "--data.encode_output", "false"), "raw inputs and outputs"),
    (("--data.encode_input", "true"), "inputs and outputs normalized"),
])
def test_eval_says_it_uses_the_configs_encoding(saved, encoding, said):
    folder, root = saved
    lines = _evaluate(folder, root, *encoding)
    said_lines = [line for line in lines if "data encoding:" in line]
    assert said_lines == [
        f"[neuralop-mp] data encoding: the config's ({said}): {folder / 'model'}_* records no data processor of its "
        "training (upstream's Trainer and save_checkpoint write none); if the training encoded otherwise, give its "
        "encoding with --data.encode_input / --data.encode_output (upstream's scripts train on raw data: "
        "--data.encode_input false --data.encode_output false), or its config with --config."], lines


def test_a_run_folder_evaluated_with_another_config_says_its_processor_is_not_used(saved, tmp_path):
    """A run folder given --config: its data_processor.pt goes with its own config, which the line says."""
    folder, root = saved
    run = tmp_path / "run"
    shutil.copytree(folder, run)
    (run / "data_processor.pt").write_bytes(b"")  # only its presence is looked at: never read with --config
    lines = _evaluate(run, root, spec="darcy")
    assert [line for line in lines if "data encoding:" in line] == [
        "[neuralop-mp] data encoding: the config's (outputs normalized, raw inputs): the run's own data_processor.pt "
        "goes with the run's own config, not with --config; if the training encoded otherwise, give its encoding "
        "with --data.encode_input / --data.encode_output (upstream's scripts train on raw data: --data.encode_input "
        "false --data.encode_output false), or its config with --config."], lines


@pytest.fixture(scope="module")
def burgers_root(tmp_path_factory):
    """Burgers files at 8 points in space (17 time levels): 4 training samples, 2 test samples."""
    root = tmp_path_factory.mktemp("burgers")
    generate_burgers(root, resolutions=(8,), n_train=4, n_test=2, progress=False, device="cpu")
    return root


@pytest.mark.parametrize("as_run", [False, True], ids=["save_checkpoint folder", "run folder with --config"])
def test_a_burgers_config_says_its_fixed_encoding_and_no_flag_it_lacks(saved, burgers_root, tmp_path, as_run):
    """A Burgers data section has no encode_input/encode_output (its loader always normalizes both):
    eval says so, evaluates, and suggests only --config (was: AttributeError on data.encode_input)."""
    folder, _ = saved
    if as_run:
        folder = tmp_path / "run"
        shutil.copytree(saved[0], folder)
        (folder / "data_processor.pt").write_bytes(b"")  # only its presence is looked at with --config
        why = "the run's own data_processor.pt goes with the run's own config, not with --config"
    else:
        why = (f"{folder / 'model'}_* records no data processor of its training (upstream's Trainer and "
               "save_checkpoint write none)")
    lines = []
    result = run_evaluation(folder, spec="burgers", log=lines.append, overrides=[
        "--data.data_root", str(burgers_root), "--data.train_resolution", "8", "--data.n_train", "4",
        "--data.batch_size", "2", "--data.test_resolutions", "[8]", "--data.n_tests", "[2]",
        "--data.test_batch_sizes", "[2]", "--device", "cpu"])
    assert [line for line in lines if "data encoding:" in line] == [
        f"[neuralop-mp] data encoding: the config's (inputs and outputs normalized): {why}; if the training encoded "
        "otherwise, give its config with --config (BurgersDatasetConfig has no encode_input / encode_output: its "
        "loader always encodes so)."], lines
    assert "--data.encode" not in "\n".join(lines)
    assert sorted(result["metrics"]) == ["8_h1", "8_l2"] and all(v > 0 for v in result["metrics"].values())


def test_recorded_errors_off_with_a_burgers_config_suggest_no_encoding_flag():
    """The likely causes of errors far from the recorded ones name --config alone where the data
    section has no encode_* fields, and both flags where it has them."""
    last = {"epoch": 3, "8_l2": 0.1}
    with_flags = recorded_metrics_text({"8_l2": 10.0}, last, False)
    without = recorded_metrics_text({"8_l2": 10.0}, last, False, encoding_flags=False)
    assert "--data.encode_output false --data.encode_input false" in with_flags
    assert "--data.encode" not in without and "try its config with --config" in without
