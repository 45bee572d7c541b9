"""``fixed_rank_modes`` as one integer mode, and modes that name no dimension of the weight.

Upstream passes an int on to tensorly-torch, whose Tucker fails on it ("'int' object is
not iterable"); the layer takes it as that one mode, as a list of it builds (CP and TT
ignore the value: test_layer_faults.py). A mode outside the weight's dimensions is refused
with the allowed values instead of a bare IndexError from inside tensorly-torch (past the
last) or a weight that keeps no dimension at full rank (a negative mode, which
tensorly-torch does not count from the end).
"""
import numpy as np
import pytest
import torch
from neuralop.layers.spectral_convolution import SpectralConv

from neuralop_mp.layers.input_checks import check_layer_arguments
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.layers.tests.reference import rel_err


@pytest.mark.filterwarnings("ignore:Given only one int for 'rank':RuntimeWarning")  # tensorly's note on rank=3
@pytest.mark.parametrize("mode", [0, 1, 3, np.int64(2)])
@pytest.mark.parametrize("rank", [0.5, 3])
def test_an_integer_tucker_mode_is_that_one_mode_kept_at_full_rank(mode, rank):
    torch.manual_seed(0)
    kwargs = dict(in_channels=4, out_channels=4, n_modes=(6, 8), factorization="tucker", rank=rank,
                  implementation="factorized")
    ours = MixedPrecisionSpectralConv(**kwargs, fixed_rank_modes=mode)
    shape = (4, 4, 6, 5)
    factors = [tuple(f.shape) for f in ours.weight.factors]
    assert factors[int(mode)] == (shape[int(mode)],) * 2  # that dimension at full rank
    # the same weight as upstream builds from a list of that mode, and the same output
    upstream = SpectralConv(**kwargs, fixed_rank_modes=[int(mode)])
    assert [tuple(f.shape) for f in upstream.weight.factors] == factors
    ours.load_state_dict(upstream.state_dict(), strict=True)
    x = torch.randn(2, 4, 12, 10)
    assert rel_err(ours(x), upstream(x).double()) <= 1e-5


@pytest.mark.parametrize("bad", [4, -1, [0, 7], "first", 0.5, [0.0]])
def test_tucker_modes_that_name_no_dimension_are_refused_with_the_allowed_values(bad):
    with pytest.raises(ValueError, match=r"Invalid fixed_rank_modes=.*factorization='tucker'; allowed values: True, "
                                         r"False, None, or an integer mode or a list of them in 0\.\.3 \(the "
                                         r"dimensions of the spectral weight of shape \(4, 4, 6, 5\)\)"):
        MixedPrecisionSpectralConv(4, 4, (6, 8), factorization="tucker", rank=0.5, fixed_rank_modes=bad)
    # the same check for the config validation, before any layer is built
    with pytest.raises(ValueError, match="Invalid fixed_rank_modes="):
        check_layer_arguments(4, 4, (6, 8), 3, "tucker", False, fixed_rank_modes=bad)

