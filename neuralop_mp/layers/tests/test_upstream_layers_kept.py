"""A model with both upstream and plugin spectral layers (a frozen upstream FNO beside a plugin
correction): a precision switch changes the plugin's layers and the containers holding them only;
upstream's layers keep their own precision, and the user is told which, once."""
import warnings

import pytest
import torch
from neuralop.losses import LpLoss
from neuralop.models import FNO
from torch import nn

import neuralop_mp
from neuralop_mp.layers.layer_precision import UpstreamLayersKeptWarning, upstream_spectral_layers
from neuralop_mp.layers.precision_switch import get_precision, precision, set_precision

KW = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=2)


class _Correction(nn.Module):
    """An upstream FNO (frozen, say) plus a plugin FNO that corrects it."""

    def __init__(self):
        super().__init__()
        self.base = FNO(**KW)
        self.corr = neuralop_mp.MixedPrecisionFNO(**KW)

    def forward(self, x, **kwargs):
        return self.base(x) + self.corr(x)


def _flags(module):
    return {m.__dict__["fno_block_precision"] for m in module.modules() if "fno_block_precision" in m.__dict__}


def test_upstream_layers_keep_their_precision_and_run_on_cpu():
    model = _Correction()
    with pytest.warns(UpstreamLayersKeptWarning) as record:
        set_precision(model, "mixed", stabilizer="tanh")
    assert _flags(model.base) == {"full"}  # FNO, FNOBlocks and upstream's SpectralConv layers alike
    assert _flags(model.corr) == {"mixed"}
    assert model.base.fno_blocks.stabilizer is None and model.corr.fno_blocks.stabilizer == "tanh"
    assert get_precision(model) == ("mixed", "auto", "tanh")
    message = str(record[0].message)
    assert "base.fno_blocks.convs.0, base.fno_blocks.convs.1" in message and "'full'" in message
    assert record[0].filename == __file__  # the user's line
    assert model(torch.randn(1, 1, 8, 8)).shape == (1, 1, 8, 8)  # upstream's half FFT would crash on CPU


def test_the_warning_is_given_once_per_model_and_not_for_a_pure_plugin_model():
    model = _Correction()
    with pytest.warns(UpstreamLayersKeptWarning):
        set_precision(model, "mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UpstreamLayersKeptWarning)
        set_precision(model, "half")
        with precision(model, "mixed"):
            pass
        set_precision(model, "full")  # the upstream layers are in "full": nothing to say
        set_precision(neuralop_mp.MixedPrecisionFNO(**KW), "mixed")
    assert _flags(model.base) == {"full"}


def test_a_whole_upstream_model_in_full_is_still_switched_as_a_whole():
    upstream = FNO(**KW)
    set_precision(upstream, "full", stabilizer="tanh")  # no plugin layer: every copy, as before
    assert upstream.fno_blocks.stabilizer == "tanh"
    assert [name for name, _ in upstream_spectral_layers(upstream)] == ["fno_blocks.convs.0", "fno_blocks.convs.1"]


def test_a_user_module_holding_a_bare_upstream_layer_is_left_alone():
    from neuralop.layers.spectral_convolution import SpectralConv

    model = nn.ModuleDict({"own": SpectralConv(1, 1, (4, 4)),
                           "plugin": neuralop_mp.MixedPrecisionSpectralConv(1, 1, (4, 4))})
    with pytest.warns(UpstreamLayersKeptWarning, match=r"\bown\b"):
        set_precision(model, "mixed")
    assert model["own"].fno_block_precision == "full" and model["plugin"].fno_block_precision == "mixed"


def test_auto_calibration_leaves_the_upstream_part_alone():
    model = _Correction()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        set_precision(model, "auto", calibration=torch.randn(2, 1, 16, 16))
    assert _flags(model.base) == {"full"}
    model(torch.randn(1, 1, 8, 8))


class _Pairs(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = torch.randn(4, 1, 16, 16), torch.randn(4, 1, 16, 16)

    def __len__(self):
        return 4

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def test_the_trainers_schedule_trains_a_frozen_upstream_part_in_full():
    model = _Correction()
    for p in model.base.parameters():
        p.requires_grad_(False)
    loader = torch.utils.data.DataLoader(_Pairs(), batch_size=2)
    trainer = neuralop_mp.MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed", verbose=False)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    with pytest.warns(UpstreamLayersKeptWarning):
        trainer.train(loader, {}, optimizer, None, training_loss=LpLoss(d=2), eval_losses={})
    assert trainer.history[-1]["precision"] == "mixed"
    assert _flags(model.base) == {"full"} and _flags(model.corr) == {"mixed"}


def test_the_no_layer_hint_covers_a_module_that_creates_spectral_conv_itself():
    with pytest.raises(ValueError) as error:
        set_precision(FNO(**KW), "mixed")
    message = str(error.value)
    assert "conv_module=neuralop_mp.MixedPrecisionSpectralConv" in message
    assert "creates SpectralConv(...) itself: use MixedPrecisionSpectralConv in its place (same arguments and " \
           "state_dict)" in message


def test_a_stabilizer_set_in_full_precision_names_the_upstream_part_that_keeps_its_own():
    """set_precision(model, 'full', stabilizer='tanh'): the upstream part keeps no stabilizer while the
    plugin's gets tanh; the upstream layers matched the mode, so nothing was said."""
    model = _Correction()
    with pytest.warns(UpstreamLayersKeptWarning, match=r"fno_block_precision='full' and stabilizer='tanh' are set "
                                                       r".* keep their own precision \('full'\) and stabilizer"):
        set_precision(model, "full", stabilizer="tanh")
    assert model.base.fno_blocks.stabilizer is None and model.corr.fno_blocks.stabilizer == "tanh"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UpstreamLayersKeptWarning)
        set_precision(_Correction(), "full")  # nothing differs from what upstream's part keeps: quiet


def test_a_stabilizer_after_a_precision_switch_is_told_too():
    """The warning was told once per set of layers: a later stabilizer the upstream part keeps went untold."""
    model = _Correction()
    with pytest.warns(UpstreamLayersKeptWarning, match="fno_block_precision='mixed' is set"):
        set_precision(model, "mixed")
    with pytest.warns(UpstreamLayersKeptWarning, match="stabilizer='tanh' are set"):
        set_precision(model, "full", stabilizer="tanh")


def test_the_policy_and_scope_of_a_model_with_an_upstream_part_are_the_plugin_parts():
    """get_precision_policy / get_autocast_scope raised 'different autocast scopes (auto, model)' on such a
    model: the upstream FNO has no scope set, the plugin's sets 'auto' when built."""
    model = _Correction()
    with pytest.warns(UpstreamLayersKeptWarning):
        set_precision(model, "mixed")
    assert neuralop_mp.get_autocast_scope(model) == "auto"
    assert neuralop_mp.get_precision_policy(model).fno_block_precision == "mixed"
    neuralop_mp.set_autocast_scope(model.corr, "model")
    assert neuralop_mp.get_autocast_scope(model) == "model"
    two = nn.ModuleDict({"a": neuralop_mp.MixedPrecisionFNO(**KW), "b": neuralop_mp.MixedPrecisionFNO(**KW)})
    neuralop_mp.set_autocast_scope(two["b"], "model")
    with pytest.raises(ValueError, match="different autocast scopes"):  # two set, disagreeing: still refused
        neuralop_mp.get_autocast_scope(two)
