"""A script that gives its Trainer its own all-"full" precision_schedule asks nothing mixed of its
model: under --mp.precision mixed the runner's Trainer refused a model without the plugin's layer,
although the script's own schedule wins over the option (and the summary says it overrides it)."""
import textwrap

import pytest

from neuralop_mp.runner.cli import main

SCRIPT = textwrap.dedent(
    """
    import sys
    import torch
    from neuralop.losses import LpLoss
    from neuralop.models import FNO
    from neuralop.training import Trainer
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    own = dict(arg.split("=", 1) for arg in sys.argv[1:])
    trainer = Trainer(model=model, n_epochs=2, verbose=False, **own)
    data = [{"x": torch.randn(2, 1, 8, 8), "y": torch.randn(2, 1, 8, 8)}]
    trainer.train(data, {}, torch.optim.AdamW(model.parameters()), None, training_loss=LpLoss(d=2),
                  eval_losses={})
    print("trained, layer precision:", [m.fno_block_precision for m in model.modules()
                                        if type(m).__name__.endswith("SpectralConv")])
    """
)


def _run(tmp_path, capsys, *argv):
    path = tmp_path / "plain_fno.py"
    path.write_text(SCRIPT)
    status = main([str(path), *argv])
    return status, capsys.readouterr()


@pytest.mark.parametrize("option", [["--mp.precision", "mixed"], ["--mp.schedule", "mixed:0.5,full:0.5"]])
@pytest.mark.parametrize("own", ["full", "full:0.5,full:0.5"])
def test_the_scripts_full_schedule_overrides_the_option(tmp_path, capsys, option, own):
    status, captured = _run(tmp_path, capsys, *option, "--", f"precision_schedule={own}")
    out = captured.out
    assert status == 0, out + captured.err
    assert "trained, layer precision: ['full']" in out
    summary = out[out.index("neuralop-mp summary"):]
    assert "trainer: Trainer (a MixedPrecisionTrainer), schedule " in summary
    assert "precision phases: full (epochs 0-1)" in summary, summary
    # one line telling that the script's schedule was kept over the option
    assert (f"WARNING: the script passes its own precision_schedule={own!r} to Trainer: it was kept, and the "
            f"requested {' '.join(option)}") in summary, summary
    assert "has no MixedPrecisionSpectralConv layer" not in out + captured.err


def test_the_scripts_own_switching_schedule_is_refused_naming_it(tmp_path, capsys):
    status, captured = _run(tmp_path, capsys, "--mp.precision", "mixed", "--", "precision_schedule=half")
    assert status == 1
    # the trainer's refusal as one line naming the script's line, not a traceback
    assert ("neuralop-mp run: error: plain_fno.py, line 9: neuralop.Trainer (Trainer) refused to be created: "
            "precision_schedule='half' switches the spectral layers to ['half'], but FNO has no "
            "MixedPrecisionSpectralConv layer") in captured.err, captured.err
    assert "Traceback" not in captured.err


def test_without_a_schedule_of_its_own_the_option_is_still_refused(tmp_path, capsys):
    status, captured = _run(tmp_path, capsys, "--mp.precision", "mixed")
    assert status == 1
    assert ("RuntimeError: neuralop-mp: precision schedule 'mixed' requested, but the model passed to Trainer "
            "(FNO) has no MixedPrecisionSpectralConv layer") in captured.err, captured.err
