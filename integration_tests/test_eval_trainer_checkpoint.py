"""``neuralop-mp eval`` of a checkpoint folder that upstream's ``train_darcy.py`` wrote under
``neuralop-mp run`` (``save_every``): not a run folder of ``neuralop-mp train``, so its config is
the built-in ``darcy``, which encodes the outputs that the script trains on raw. The error is the
one the script itself computed, because the checkpoint records the script's data processor; where
the numbers disagree anyway (a checkpoint without that record), eval says so on stderr."""
import contextlib
import json
import shutil

import pytest
import torch

from neuralop_mp.cli import main
from neuralop_mp.runner.cli import run_script
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE

TINY = ["--verbose", "false", "--data.n_train", "32", "--data.batch_size", "16", "--data.n_tests", "[16,16]",
        "--model.arch", "fno", "--model.n_modes", "[8,8]", "--model.hidden_channels", "8", "--model.n_layers", "2",
        "--opt.n_epochs", "1"]
# the same 16 test samples at each resolution as the script evaluated on, in full precision as it ran:
# only the summation order of the batches may differ
SAME_DATA_RTOL = 1e-4


@pytest.fixture(scope="module")
def saved_checkpoint(upstream_scripts, darcy_root, tmp_path_factory):
    """``(checkpoint folder, its precision_state.pt contents)`` of upstream's train_darcy.py with
    ``save_every=1`` (its trainer's own option), trained for 1 epoch under the plugin."""
    script = (upstream_scripts / "train_darcy.py").read_text()
    call = "    eval_losses=eval_losses,\n)"
    assert script.count(call) == 1 and "encode_output=False" in script  # the script trains on raw outputs
    folder = tmp_path_factory.mktemp("saved") / "ckpt_darcy"
    # a copy of its own: the session's copy of upstream's scripts/ must hold upstream's files alone
    # (test_every_upstream_script_either_runs_or_is_refused_up_front lists them)
    own = tmp_path_factory.mktemp("neuraloperator_saving")
    for name in ("scripts", "config"):
        shutil.copytree(upstream_scripts.parent / name, own / name)
    saving = own / "scripts" / "train_darcy_saving.py"
    saving.write_text(script.replace(call, f"    eval_losses=eval_losses,\n    save_every=1,\n"
                                           f"    save_dir={str(folder)!r},\n)"))
    with contextlib.chdir(saving.parent):  # upstream's scripts find ../config from their folder
        result = run_script(saving.name, TINY, data_root=darcy_root)
    assert result.exit_status == 0, result.error
    return folder, torch.load(folder / PRECISION_STATE_FILE, weights_only=True)


def _eval(folder, darcy_root, tmp_path, *extra):
    json_path = tmp_path / "eval.json"
    assert main(["eval", str(folder), "--threads", "1", "--json", str(json_path), "--data.data_root", str(darcy_root),
                 "--data.n_tests", "[16,16]", *extra]) == 0
    return json.loads(json_path.read_text())["metrics"]


def test_eval_of_an_upstream_scripts_checkpoint_gives_the_error_the_script_recorded(saved_checkpoint, darcy_root,
                                                                                   tmp_path, capsys):
    folder, state = saved_checkpoint
    recorded = state["history"][-1]
    metrics = _eval(folder, darcy_root, tmp_path)
    for key in ("16_l2", "16_h1", "32_l2", "32_h1"):  # was 0.68 for a recorded 13.8 (16_l2)
        assert metrics[key] == pytest.approx(recorded[key], rel=SAME_DATA_RTOL), key
    # because the script's processor (no normalizer: raw inputs and outputs) travels with the checkpoint
    assert state["data_processor"] == {"class": "DefaultDataProcessor", "in_normalizer": None,
                                       "out_normalizer": None}
    captured = capsys.readouterr()
    assert "data encoding: the training's own (raw inputs and outputs" in captured.out
    assert "WARNING" not in captured.err


def test_a_checkpoint_without_its_processor_that_disagrees_with_its_record_is_warned(saved_checkpoint, darcy_root,
                                                                                    tmp_path, capsys):
    """A checkpoint of an earlier version (no processor recorded) falls to the darcy config's
    normalizers, which the model never saw: the error is far off the recorded one, and said."""
    folder, state = saved_checkpoint
    older = tmp_path / "older"
    shutil.copytree(folder, older)
    state = dict(state)
    state.pop("data_processor", None)
    torch.save(state, older / PRECISION_STATE_FILE)
    metrics = _eval(older, darcy_root, tmp_path)
    recorded = state["history"][-1]["16_l2"]
    assert max(metrics["16_l2"] / recorded, recorded / metrics["16_l2"]) > 1.5  # the darcy config's normalizer
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "recorded at its last epoch" in line]
    assert line.startswith("[neuralop-mp] WARNING: ")
    assert f"16_l2 {metrics['16_l2']:.4g} (recorded {recorded:.4g})" in line
    assert "--data.encode_output false" in line

    # the advice holds: without the output normalizer the recorded error comes back, and no warning
    metrics = _eval(older, darcy_root, tmp_path, "--data.encode_output", "false", "--data.encode_input", "false")
    assert metrics["16_l2"] == pytest.approx(recorded, rel=SAME_DATA_RTOL)
    assert "recorded at its last epoch" not in capsys.readouterr().err
