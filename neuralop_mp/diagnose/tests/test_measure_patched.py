"""A model trained with multi-grid patching is refused by the measurement in one line naming
patching (it takes each patch with its coarser levels as channels; the measurement runs the
model on whole grids), not with a traceback at its first layer."""
import pytest
import torch

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.diagnose import measure


def _fno(in_channels):
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(4, 4), in_channels=in_channels, out_channels=1, hidden_channels=4, n_layers=1)


def test_a_model_taking_the_channels_of_patching_is_refused_naming_patching():
    with pytest.raises(ValueError) as raised:
        measure(_fno(2), torch.randn(2, 1, 16, 16), n_bands=2)
    message = str(raised.value)
    assert message.startswith("MixedPrecisionFNO takes 2 input channels and the data give 1: a model trained with "
                              "multi-grid patching (patching.levels=1")
    assert "Allowed: a model whose in_channels are the data's (1), trained with patching.levels 0." in message
    assert "or one trained on other data" in message and "\n" not in message


def test_other_channel_mismatches_name_the_channels_only():
    with pytest.raises(ValueError, match=r"takes 3 input channels and the data give 2; allowed: a model whose "
                                         r"in_channels are the data's \(2\)\.$"):
        measure(_fno(3), torch.randn(2, 2, 16, 16), n_bands=2)
