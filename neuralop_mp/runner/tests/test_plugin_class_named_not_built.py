"""The start check counts a plugin class as the script's model only where the script builds with it:
one it imports or names in an isinstance check while it builds upstream's FNO(...) builds nothing,
and the check said the script "builds the plugin's layers itself" and the Trainer would switch them.
So does one given to a keyword other than a layer keyword (conv_module=), or a name rebound to an
upstream class before it is called; a call of the script's own subclass of a plugin class builds it."""
import textwrap

import pytest

from neuralop_mp.runner.cli import main
from neuralop_mp.runner.static_check import scan_source, start_warnings

DIRECT_FNO = "model = FNO(n_modes=(4, 4), hidden_channels=4)\nTrainer(model=model, n_epochs=1)\n"
NAMED_ONLY = {
    "import": "from neuralop_mp import MixedPrecisionFNO\n",
    "aliased import": "from neuralop_mp import MixedPrecisionFNO as MPF\n",
    "isinstance": "import neuralop_mp\nprint(isinstance(model, neuralop_mp.MixedPrecisionFNO))\n",
    "issubclass of an import": ("from neuralop_mp import MixedPrecisionSpectralConv\n"
                                "print(issubclass(type(model), MixedPrecisionSpectralConv))\n"),
    # passes on the code before 7d1e41f too, by design: the scan reads the syntax tree, where a comment is
    # absent and a string is a constant, never a name; it guards that no later change reads the text
    "comment and string": "# a MixedPrecisionFNO would do\nNOTE = 'MixedPrecisionFNO'\n",
    # only a layer keyword builds: any keyword counted before
    "another keyword": "from neuralop_mp import MixedPrecisionFNO\nlog(kind=MixedPrecisionFNO)\n",
    "a keyword of partial": ("import functools, neuralop_mp\n"
                             "f = functools.partial(print, kind=neuralop_mp.MixedPrecisionFNO)\n"),
    # a name's last assignment decides: an alias rebound to upstream's class builds upstream's
    "rebound to upstream's class": ("from neuralop_mp import MixedPrecisionFNO\ncls = MixedPrecisionFNO\n"
                                    "cls = FNO\nother = cls(n_modes=(4, 4), hidden_channels=4)\n"),
    "rebound by unpacking": ("import neuralop_mp\ncls = neuralop_mp.MixedPrecisionFNO\ncls, n = FNO, 4\n"
                             "other = cls(n_modes=(n, n), hidden_channels=4)\n"),
}


@pytest.mark.parametrize("named", sorted(NAMED_ONLY))
def test_a_plugin_class_only_named_is_not_a_plugin_model(named):
    scan = scan_source(DIRECT_FNO + NAMED_ONLY[named])
    assert scan.plugin_classes == set()
    (warning,) = start_warnings(scan, {"precision": "mixed"})
    assert warning == ("the script builds its model directly (FNO(...)): the mixed-precision layer cannot be "
                       "injected and the requested precision will NOT be applied."), warning


def test_a_plugin_class_only_named_beside_an_unseen_build_is_a_cannot_tell():
    scan = scan_source("from my_models import make\nimport neuralop_mp\nfrom neuralop import Trainer\n"
                       "model = make()\nassert isinstance(model, neuralop_mp.MixedPrecisionFNO)\n"
                       "Trainer(model=model)\n")
    (warning,) = start_warnings(scan, {"precision": "mixed"})
    assert "cannot be told" in warning and "builds the plugin's layers itself" not in warning, warning


BUILT = {
    "call": ("from neuralop_mp import MixedPrecisionFNO\nmodel = MixedPrecisionFNO(**KW)\n", "MixedPrecisionFNO"),
    "aliased call": ("from neuralop_mp import MixedPrecisionTFNO as T\nmodel = T(**KW)\n", "MixedPrecisionTFNO"),
    "attribute call": ("import neuralop_mp\nmodel = neuralop_mp.MixedPrecisionUNO(**KW)\n", "MixedPrecisionUNO"),
    "from_checkpoint": ("import neuralop_mp\nmodel = neuralop_mp.MixedPrecisionFNO.from_checkpoint('ckpt', 'm')\n",
                        "MixedPrecisionFNO"),
    "conv_module=": ("from neuralop_mp import MixedPrecisionSpectralConv as C\nmodel = FNO(**KW, conv_module=C)\n",
                     "MixedPrecisionSpectralConv"),
    "partial": ("import functools, neuralop_mp\nconv = functools.partial(neuralop_mp.MixedPrecisionSpectralConv)\n"
                "model = FNO(**KW, conv_module=conv)\n", "MixedPrecisionSpectralConv"),
    "assigned, then called": ("import neuralop_mp\ncls = neuralop_mp.MixedPrecisionFNO\nmodel = cls(**KW)\n",
                              "MixedPrecisionFNO"),
    # the last assignment in source order decides (a breadth-first walk sees the nested one last)
    "rebound to a plugin class after a branch": ("from neuralop_mp import MixedPrecisionFNO\nif KW:\n"
                                                 "    cls = FNO\ncls = MixedPrecisionFNO\nmodel = cls(**KW)\n",
                                                 "MixedPrecisionFNO"),
    "GINO's fno_conv_module=": ("import neuralop_mp\n"
                                "model = GINO(**KW, fno_conv_module=neuralop_mp.MixedPrecisionSpectralConv)\n",
                                "MixedPrecisionSpectralConv"),
    # the script's own subclass, directly or through another one, is the plugin class it derives from
    "subclass": ("from neuralop_mp import MixedPrecisionFNO\n\n\nclass Net(MixedPrecisionFNO):\n"
                 "    def forward(self, x):\n        return super().forward(x) * 2\n\n\nmodel = Net(**KW)\n",
                 "MixedPrecisionFNO"),
    "subclass of a subclass": ("import neuralop_mp as mp\nclass Base(mp.MixedPrecisionTFNO):\n    pass\n"
                               "class Net(torch.nn.Module, Base):\n    pass\nmodel = Net(**KW)\n",
                               "MixedPrecisionTFNO"),
}


@pytest.mark.parametrize("build", sorted(BUILT))
def test_a_plugin_class_built_with_counts(build):
    source, cls = BUILT[build]
    scan = scan_source(source + "isinstance(model, FNO)\nTrainer(model=model)\n")
    assert scan.plugin_classes == {cls}
    (warning,) = start_warnings(scan, {"precision": "mixed"})
    assert f"it builds the plugin's layers itself ({cls})" in warning, warning


SCRIPT = textwrap.dedent(
    """
    import torch
    from neuralop.losses import LpLoss
    from neuralop.models import FNO
    from neuralop.training import Trainer
    from neuralop_mp import MixedPrecisionFNO
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    print("plugin model:", isinstance(model, MixedPrecisionFNO))
    Trainer(model=model, n_epochs=1, verbose=False)
    """
)


def test_the_run_does_not_say_that_an_upstream_fno_has_the_plugins_layers(tmp_path, capsys):
    path = tmp_path / "named.py"
    path.write_text(SCRIPT)
    assert main([str(path), "--mp.precision", "mixed"]) == 1  # the Trainer refuses the upstream model
    out = capsys.readouterr().out
    assert "plugin model: False" in out
    assert "builds the plugin's layers itself" not in out and "Trainer switches them" not in out, out
    assert ("neuralop-mp run: WARNING: the script builds its model directly (FNO(...)): the mixed-precision layer "
            "cannot be injected and the requested precision will NOT be applied.") in out, out
