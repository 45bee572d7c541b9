"""Factorization arguments of MixedPrecisionSpectralConv that tensorly-torch accepts and then
builds wrongly or fails on deep inside: each refused at construction, naming the value and
the allowed ones, while every value that builds a working weight still builds."""
import re

import pytest
import torch
from tltorch import FactorizedTensor

from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

pytestmark = pytest.mark.reliability

_ALLOWED = re.escape("allowed values: None, 'cp', 'dense', 'tt', 'tucker'.")


@pytest.mark.parametrize("name", ["complexcp", "ComplexCP", "ComplexTucker", "complextt", "COMPLEXDENSE", "svd"])
def test_complex_and_unknown_factorizations_are_refused_with_the_allowed_names(name):
    """tensorly-torch's "Complex*" factorizations store real (..., 2) views: with complex32 storage
    the layer could not even be printed ("mixed dtypes: []"). Refused up front, as the CLI does."""
    with pytest.raises(ValueError, match=rf"Invalid factorization={name!r}; {_ALLOWED}"):
        MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=name, rank=0.5, fno_block_precision="mixed",
                                   spectral_weight_dtype="complex32")


def test_every_allowed_factorization_builds_in_any_case_and_the_list_follows_tensorly_torch():
    from neuralop_mp.layers.input_checks import factorization_choices

    registry = {name for name in FactorizedTensor._factorizations if not name.startswith("complex")}
    assert factorization_choices() == (None,) + tuple(sorted(registry))
    for name in factorization_choices():
        for spelled in {name, name.upper() if name else None}:
            layer = MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=spelled, rank=0.5,
                                               fno_block_precision="mixed", spectral_weight_dtype="complex32")
            assert layer.spectral_weight_dtype == "complex32"
            assert "spectral_weight_dtype='complex32'" in repr(layer)
            assert layer(torch.randn(1, 4, 12, 12)).shape == (1, 4, 12, 12)


def test_a_cp_fraction_that_rounds_to_rank_zero_is_refused_with_the_smallest_allowed_fraction():
    # weight (8, 8, 6, 4): 1536 entries, one rank-one term 26; 0.002 keeps 3 entries, CP rank 0
    with pytest.raises(ValueError, match=r"Invalid rank=0\.002 with factorization='cp' on the spectral weight of "
                                         r"shape \(8, 8, 6, 4\) \(dense: 1536 parameters\): tensorly-torch derives CP "
                                         r"rank 0 from it.*Allowed values: a fraction in \[0\.00847, 1\] \(CP rank 1 "
                                         r"and up\), or an integer >= 1\."):
        MixedPrecisionSpectralConv(8, 8, (6, 6), factorization="cp", rank=0.002)
    # the named fraction is the bound applied: it builds CP rank 1, and so does every fraction above
    for rank in (0.00847, 0.01):
        layer = MixedPrecisionSpectralConv(8, 8, (6, 6), factorization="cp", rank=rank)
        assert layer.weight.rank == 1
        assert torch.isfinite(layer(torch.randn(1, 8, 12, 12))).all()
    with pytest.raises(ValueError, match=r"Invalid rank=0\.0084"):
        MixedPrecisionSpectralConv(8, 8, (6, 6), factorization="cp", rank=0.0084)
    # Tucker and TT keep every rank >= 1 from any fraction: still accepted
    for factorization in ("tucker", "tt"):
        MixedPrecisionSpectralConv(8, 8, (6, 6), factorization=factorization, rank=0.002)


def test_a_weight_no_cp_fraction_can_factorize_takes_integer_ranks_only():
    # weight (1, 1, 1, 1): even the fraction 1 keeps 1 entry of the 4 of a rank-one term
    with pytest.raises(ValueError, match=r"Invalid rank=1\.0 .*shape \(1, 1, 1, 1\).*Allowed values: an integer "
                                         r">= 1 \(no fraction in \(0, 1\] gives CP rank 1 on this weight\)\."):
        MixedPrecisionSpectralConv(1, 1, (1, 1), factorization="cp", rank=1.0)
    assert MixedPrecisionSpectralConv(1, 1, (1, 1), factorization="cp", rank=1).weight.rank == 1


@pytest.mark.parametrize("n_modes, separable, complex_data, shape", [
    ((6, 6), False, False, (4, 4, 6, 4)),
    ((6, 6), True, False, (4, 6, 4)),
    ((6,), False, True, (4, 4, 6)),
    ((4, 4, 4), True, False, (4, 4, 4, 3)),
])
def test_tucker_rank_tuples_have_one_rank_per_weight_dimension(n_modes, separable, complex_data, shape):
    """The expected length is the order of the weight the layer builds (channels, then modes;
    one channel axis when separable): a tuple of another length built a Tucker weight of the
    wrong order, and the forward failed later ("Shapes do not match")."""
    kwargs = dict(n_modes=n_modes, separable=separable, complex_data=complex_data, factorization="tucker")
    for rank in ((2,) * (len(shape) - 1), (2,) * (len(shape) + 1)):
        with pytest.raises(ValueError, match=rf"Invalid rank={re.escape(repr(rank))} with factorization='tucker' on "
                                             rf"the spectral weight of shape {re.escape(repr(shape))}: Tucker takes "
                                             rf"one rank per dimension of the weight: {len(shape)} entries\."):
            MixedPrecisionSpectralConv(4, 4, rank=rank, **kwargs)
    layer = MixedPrecisionSpectralConv(4, 4, rank=(2,) * len(shape), **kwargs)
    assert tuple(layer.weight.shape) == shape
    x = torch.randn(1, 4, *(8,) * len(n_modes), dtype=torch.complex64 if complex_data else torch.float32)
    assert layer(x).shape == x.shape


@pytest.mark.parametrize("factorization, rank, message", [
    ("cp", (2,), r"CP takes one rank, not a tuple\. Allowed values: a fraction in \(0, 1\] of the dense weight's "
                 r"parameters, or an integer >= 1\."),
    ("cp", (2, 2, 2, 2), r"CP takes one rank, not a tuple"),
    ("tt", (1, 2, 2, 1), r"TT takes one rank per bond between cores plus the two boundary ranks: 5 entries, the "
                         r"first and last 1\. .*or a tuple of 5 integers >= 1"),
    ("tt", (2, 2, 2, 2, 2), r"TT takes one rank per bond between cores plus the two boundary ranks: 5 entries"),
])
def test_cp_and_tt_rank_tuples_that_do_not_fit_the_weight_are_refused(factorization, rank, message):
    with pytest.raises(ValueError, match=rf"Invalid rank={re.escape(repr(rank))} with factorization="
                                         rf"'{factorization}' on the spectral weight of shape \(4, 4, 6, 4\): "
                                         + message):
        MixedPrecisionSpectralConv(4, 4, (6, 6), factorization=factorization, rank=rank)
    layer = MixedPrecisionSpectralConv(4, 4, (6, 6), factorization="tt", rank=(1, 2, 3, 2, 1))
    assert layer(torch.randn(1, 4, 12, 12)).shape == (1, 4, 12, 12)
