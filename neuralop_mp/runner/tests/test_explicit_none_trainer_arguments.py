"""A script that passes ``precision_schedule=None`` (or ``half_dtype=None``) to its Trainer asks for
the trainer's default, nothing of its own: the runner's Trainer kept the None, so the run trained
without the requested schedule (or half type) and the summary still said the option set it. And
the note for a script's own schedule named the option by its expanded schedule, twice."""
import textwrap

import pytest

from neuralop_mp.runner.cli import main

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    import neuralop_mp
    from neuralop.losses import LpLoss
    from neuralop.training import Trainer
    model = neuralop_mp.MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4,
                                          n_layers=1)
    own = {key: None if value == "None" else value for key, value in (a.split("=", 1) for a in sys.argv[1:])}
    trainer = Trainer(model=model, n_epochs=2, verbose=False, **own)
    data = [{"x": torch.randn(2, 1, 8, 8), "y": torch.randn(2, 1, 8, 8)}]
    trainer.train(data, {}, torch.optim.AdamW(model.parameters()), None, training_loss=LpLoss(d=2),
                  eval_losses={})
    print(f"trainer got: schedule {trainer.precision_schedule}, half_dtype {trainer.half_dtype}, "
          f"loss_scaling {trainer.loss_scaling}")
    """
)


def _run(tmp_path, capsys, *argv):
    path = tmp_path / "own_trainer.py"
    path.write_text(SCRIPT)
    status = main([str(path), *argv])
    captured = capsys.readouterr()
    assert status == 0, captured.out + captured.err
    return captured.out, captured.out[captured.out.index("neuralop-mp summary"):]


@pytest.mark.parametrize("option, schedule, phases", [
    (["--mp.schedule", "mixed:0.5,full:0.5"], "mixed:0.5,full:0.5",
     "precision phases: mixed+autocast in bfloat16 (epoch 0), full (epoch 1)"),
    (["--mp.precision", "mixed"], "mixed", "precision phases: mixed+autocast in bfloat16 (epochs 0-1)"),
])
def test_an_explicit_none_schedule_takes_the_requested_one(tmp_path, capsys, option, schedule, phases):
    out, summary = _run(tmp_path, capsys, *option, "--", "precision_schedule=None")
    assert f"trainer got: schedule {schedule}, half_dtype auto" in out, out
    assert f"trainer: Trainer (a MixedPrecisionTrainer), schedule {schedule}, on cpu" in summary, summary
    assert phases in summary, summary
    assert "NOT applied" not in out, out


@pytest.mark.filterwarnings("ignore:half_dtype='float16' on a CPU")  # float16 tells from 'auto' (bfloat16 here)
def test_an_explicit_none_half_dtype_takes_the_requested_one(tmp_path, capsys):
    out, summary = _run(tmp_path, capsys, "--mp.precision", "mixed", "--mp.half_dtype", "float16", "--",
                        "half_dtype=None")
    assert "trainer got: schedule mixed, half_dtype float16" in out, out
    assert "precision phases: mixed+autocast in float16 (epochs 0-1)" in summary, summary


def test_an_explicit_none_loss_scaling_stays_the_scripts_own(tmp_path, capsys):
    """loss_scaling=None is no scaling ("none"), not the trainer's default ("auto"): a choice, kept."""
    out, _ = _run(tmp_path, capsys, "--mp.precision", "mixed", "--mp.loss_scaling", "dynamic", "--",
                  "loss_scaling=None")
    assert "trainer got: schedule mixed, half_dtype auto, loss_scaling none" in out, out


@pytest.mark.parametrize("typed, requested", [
    ("paper", "--mp.schedule paper (schedule 'half:0.25,mixed:0.5,full:0.25')"),
    ("mixed:0.5,full:0.5", "--mp.schedule mixed:0.5,full:0.5"),  # nothing more to say: named once
])
def test_the_override_note_names_the_option_as_typed_and_the_schedule_once(tmp_path, capsys, typed, requested):
    out, summary = _run(tmp_path, capsys, "--mp.schedule", typed, "--", "precision_schedule=full")
    assert "trainer got: schedule full" in out, out
    line = (f"WARNING: the script passes its own precision_schedule='full' to Trainer: it was kept, and the "
            f"requested {requested} was NOT applied to that trainer.")
    assert [ln.strip() for ln in summary.splitlines() if "it was kept" in ln] == [line], summary


@pytest.mark.filterwarnings("ignore:Precision schedule .* get no epoch")  # paper's half phase on 2 epochs
def test_the_trained_model_line_names_the_schedule_option_as_typed(tmp_path, capsys):
    _, summary = _run(tmp_path, capsys, "--mp.schedule", "paper")
    assert "; precision set by the trainer's schedule from --mp.schedule paper\n" in summary, summary


@pytest.mark.filterwarnings("ignore:neuralop_mp was enabled, but no model")  # nothing built in these blocks
@pytest.mark.parametrize("given, as_given", [
    ("paper", "paper"), (["mixed:0.5", "full:0.5"], "mixed:0.5,full:0.5"), ("", None), (None, None)])
def test_the_report_keeps_the_schedule_as_given(fake_parts, given, as_given):
    import neuralop_mp
    from neuralop_mp.runner.intercept import requested_precision

    with neuralop_mp.enabled(schedule=given) as report:
        pass
    assert report.options["schedule_as_given"] == as_given
    assert report.to_dict()["options"]["schedule_as_given"] == as_given
    if as_given is not None:
        assert requested_precision(report.options) == f"--mp.schedule {as_given}"
