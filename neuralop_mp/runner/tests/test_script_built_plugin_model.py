"""A script that builds the plugin's model itself (MixedPrecisionFNO(...), or FNO(...,
conv_module=MixedPrecisionSpectralConv)) instead of calling get_model: its precision is applied by
the trainer, and neither the start check nor the summary says it was not."""
import textwrap

import pytest

from neuralop_mp.layers.layer_precision import UpstreamLayersKeptWarning
from neuralop_mp.runner.cli import main
from neuralop_mp.runner.report import ActivationReport
from neuralop_mp.runner.static_check import scan_source, start_warnings
from neuralop_mp.runner.summary import end_warnings

# an upstream FNO with the plugin's layer (conv_module=) records no precision in its checkpoint: told, not tested here
pytestmark = pytest.mark.filterwarnings("ignore::neuralop_mp.models.mixed_precision_models.UnrecordedPrecisionWarning")

BUILDS = {
    "plugin_class": "model = neuralop_mp.MixedPrecisionFNO(**KW)",
    "conv_module": "model = FNO(**KW, conv_module=MixedPrecisionSpectralConv)",
}
SCRIPT = textwrap.dedent(
    """
    import sys
    import neuralop_mp
    from neuralop.models import FNO
    from neuralop.training import Trainer
    from neuralop_mp import MixedPrecisionSpectralConv
    KW = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    {build}
    if "--with-upstream" in sys.argv:  # an upstream FNO corrected by the plugin's
        import torch

        class Corrected(torch.nn.Module):
            def __init__(self, corr):
                super().__init__()
                self.base, self.corr = FNO(**KW), corr

            def forward(self, x, **kwargs):
                return self.base(x) + self.corr(x)

        model = Corrected(model)
    extra = ({{"precision_schedule": "full"}} if "--own-schedule" in sys.argv else
             {{"precision_schedule": "paper"}} if "--own-paper" in sys.argv else {{}})
    trainer = Trainer(model=model, n_epochs=1, verbose=False, **extra)
    import torch
    from neuralop.losses import LpLoss
    data = [{{"x": torch.randn(2, 1, 8, 8), "y": torch.randn(2, 1, 8, 8)}}]
    trainer.train(data, {{}}, torch.optim.AdamW(model.parameters()), None, training_loss=LpLoss(d=2), eval_losses={{}})
    print("layer precision:", [m.fno_block_precision for m in model.modules()
                               if type(m).__name__.endswith("SpectralConv")])
    """
)


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_start_check_recognises_the_plugins_classes(build):
    scan = scan_source(SCRIPT.format(build=BUILDS[build]))
    (warning,) = start_warnings(scan, {"precision": "mixed"})
    assert "NOT" not in warning and "MixedPrecision" in warning and "Trainer switches them" in warning
    assert start_warnings(scan, {}) == []  # nothing requested: nothing the plugin misses
    no_trainer = scan_source(f"import neuralop_mp\nKW = {{}}\n{BUILDS[build]}\n")
    (warning, _) = start_warnings(no_trainer, {"precision": "mixed"})
    assert "without a Trainer" in warning and "NOT be applied" in warning


def test_a_model_whose_build_the_source_does_not_show_is_a_cannot_tell():
    scan = scan_source("from my_models import make\nfrom neuralop import Trainer\nTrainer(model=make())\n")
    (warning,) = start_warnings(scan, {"precision": "mixed"})
    assert warning.startswith("the script never calls get_model") and "cannot be told" in warning
    assert "will NOT" not in warning


def _summary(tmp_path, build, capsys, *flags):
    path = tmp_path / "own_model.py"
    path.write_text(SCRIPT.format(build=BUILDS[build]))
    status = main([str(path), "--mp.precision", "mixed", "--", *flags])
    out = capsys.readouterr().out
    assert status == 0, out
    return out, out[out.index("neuralop-mp summary"):]


@pytest.mark.parametrize("build", sorted(BUILDS))
def test_the_summary_tells_what_the_trainer_got_not_that_nothing_was_applied(build, tmp_path, capsys):
    out, summary = _summary(tmp_path, build, capsys)
    assert "NOT applied" not in out and "NOT be applied" not in out, out
    assert "layer precision: ['mixed']" in out  # the trainer's schedule switched the script's layers
    assert "precision phases: mixed" in summary
    assert ("built by the script, not through get_model) with 1 MixedPrecisionSpectralConv layer(s); precision "
            "set by the trainer's schedule from --mp.precision mixed") in summary, summary


def test_the_scripts_own_schedule_is_said_to_win(tmp_path, capsys):
    out, summary = _summary(tmp_path, "plugin_class", capsys, "--own-schedule")
    assert "layer precision: ['full']" in out
    assert "precision set by the script's own precision_schedule" in summary
    assert ("WARNING: the script passes its own precision_schedule='full' to Trainer: it was kept, and the requested "
            "--mp.precision mixed was NOT applied to that trainer.") in summary, summary


def test_the_scripts_own_schedule_equal_to_the_requested_one_is_no_override(tmp_path, capsys):
    """'paper' passed by the script under --mp.schedule paper was compared as text with the expanded
    schedule, and the summary said the requested precision was NOT applied."""
    path = tmp_path / "own_model.py"
    path.write_text(SCRIPT.format(build=BUILDS["plugin_class"]))
    assert main([str(path), "--mp.schedule", "paper", "--", "--own-paper"]) == 0
    out = capsys.readouterr().out
    assert "NOT applied" not in out, out
    assert "precision set by the script's own precision_schedule" in out


def test_upstream_layers_beside_the_plugins_are_named(tmp_path, capsys):
    with pytest.warns(UpstreamLayersKeptWarning, match="base.fno_blocks.convs.0"):
        out, summary = _summary(tmp_path, "plugin_class", capsys, "--with-upstream")
    assert "layer precision: ['full', 'mixed']" in out  # upstream's layer kept, the plugin's switched
    assert "and 1 upstream spectral layer(s)" in summary
    assert ("WARNING: Corrected (trained by Trainer) has 1 upstream spectral layer(s) that stayed in their own "
            "precision: base.fno_blocks.convs.0") in summary, summary


def test_end_warnings_count_a_trained_plugin_model():
    report = ActivationReport({"precision": "mixed"})
    report.trainers.append({"class": "Trainer", "plugin_layers": 2, "upstream_layers": [], "trained_model": "X",
                            "built_by": "the script"})
    assert end_warnings(report) == []
    report.trainers[0]["plugin_layers"] = 0  # a trainer of a model without plugin layers: not applied
    assert any("NOT applied" in w for w in end_warnings(report))
    report.exit_status = 1  # a script that failed after training a plugin model ran with the plugin
    report.trainers[0]["plugin_layers"] = 2
    assert not any("nothing ran with the plugin" in w for w in end_warnings(report))
