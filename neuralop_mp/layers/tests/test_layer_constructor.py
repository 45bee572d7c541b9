"""The layer's constructor: precision arguments validated once, unknown keywords passed on."""
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp import PrecisionPolicy
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.weight_storage import spectral_weight_parameters


class RecordingSpectralConv(SpectralConv):
    """Stands in for a newer upstream SpectralConv that takes ``enforce_hermitian_symmetry``
    (neuraloperator's main branch passes it from FNOBlocks to every conv_module)."""

    def __init__(self, *args, enforce_hermitian_symmetry=False, **kwargs):
        self.received = {"enforce_hermitian_symmetry": enforce_hermitian_symmetry}
        super().__init__(*args, **kwargs)


class NewerUpstreamLayer(MixedPrecisionSpectralConv, RecordingSpectralConv):
    """Our layer on top of the newer upstream: MRO puts RecordingSpectralConv right after ours."""


def test_unknown_keyword_reaches_spectral_conv():
    assert NewerUpstreamLayer.__mro__[1:3] == (MixedPrecisionSpectralConv, RecordingSpectralConv)
    layer = NewerUpstreamLayer(3, 3, (4, 4), enforce_hermitian_symmetry=True, half_dtype="bfloat16")
    assert layer.received == {"enforce_hermitian_symmetry": True}
    assert layer.half_dtype == "bfloat16"  # our own keywords are not forwarded, and still applied
    default = NewerUpstreamLayer(3, 3, (4, 4))
    assert default.received == {"enforce_hermitian_symmetry": False}


def test_keyword_the_installed_spectral_conv_does_not_take_is_named():
    # neuraloperator 2.0.0's SpectralConv has no **kwargs: say which keyword and why
    with pytest.raises(TypeError, match=r"\['enforce_hermitian_symmetry'\].*SpectralConv does not take"):
        MixedPrecisionSpectralConv(3, 3, (4, 4), enforce_hermitian_symmetry=True)


@pytest.mark.parametrize("key, value, allowed", [
    ("fno_block_precision", "hlaf", "'full', 'mixed', 'half'"),
    ("half_dtype", "fp16", "'auto', 'float16', 'bfloat16'"),
    ("stabilizer", "clip", "None, 'off', 'tanh'"),
    ("spectral_weight_dtype", "complex16", "'complex64', 'complex32'"),
])
def test_bad_precision_argument_names_value_and_allowed_values(key, value, allowed):
    with pytest.raises(ValueError, match=rf"Invalid {key}='{value}'; allowed values: {allowed}\."):
        MixedPrecisionSpectralConv(3, 3, (4, 4), **{key: value})


def test_an_unknown_fft_norm_is_refused_when_the_layer_is_built():
    """torch.fft refused it only at the first forward call, in its own words."""
    with pytest.raises(ValueError, match=r"Invalid fft_norm='unitary'; allowed values: 'forward', 'backward', "
                                         r"'ortho', None\."):
        MixedPrecisionSpectralConv(3, 3, (4, 4), fft_norm="unitary")
    for norm in ("forward", "backward", "ortho", None):  # torch.fft's, each runs
        layer = MixedPrecisionSpectralConv(3, 3, (4, 4), fft_norm=norm)
        assert layer(torch.randn(1, 3, 8, 8)).shape == (1, 3, 8, 8)


def test_precision_arguments_become_the_layers_policy():
    layer = MixedPrecisionSpectralConv(3, 3, (4, 4), fno_block_precision="half", half_dtype=torch.float16,
                                       stabilizer="null", spectral_weight_dtype="chalf")
    assert layer.precision_policy == PrecisionPolicy("half", "float16", None, "complex32")
    assert [p.dtype for p in spectral_weight_parameters(layer)] == [torch.complex32]
    assert layer.fno_block_precision == "half"  # upstream's attribute, read by upstream's code
