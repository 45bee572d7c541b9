"""``neuralop-mp eval`` of a folder that records no data processor (upstream's Trainer or
``save_checkpoint``) encodes the data as the config says: the log says so, and names the two flags
that encode otherwise (was: nothing said, an error 0.65 where upstream's evaluation gives 2.9)."""
import shutil

import pytest

from neuralop_mp.data import generate_darcy
from neuralop_mp.evaluate import run_evaluation
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
