"""Model-level values that upstream's classes use wrongly or fail on deep inside, refused by the
name the user typed: a UNO's ``uno_scalings`` row of the wrong length (it was refused by the
spectral layer as its own ``resolution_scaling_factor``), an on/off setting that is no bool
(``separable="False"`` built a separable model), and ``get_model``'s factorization rank of no
kind tensorly-torch means (a TFNO's ``rank=0`` built upstream's model with a divide-by-zero
warning). The values upstream's configs use still build, as upstream builds them.
"""
import re
import warnings

import numpy as np
import pytest
import torch
from neuralop.models import FNO

from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionUNO
from neuralop_mp.models.registry import get_model

UNO_SIZES = dict(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2, uno_out_channels=[4, 4],
                 uno_n_modes=[[4, 4], [4, 4]], channel_mlp_skip="linear")
FNO_CONFIG = dict(model_arch="fno", data_channels=1, out_channels=1, hidden_channels=4, n_modes=[4, 4], n_layers=1)


def _uno_config(**model):
    return {"model": {"model_arch": "uno", "data_channels": 1, "fno_block_precision": "mixed",
                      **{k: v for k, v in UNO_SIZES.items() if k != "in_channels"}, **model}}


@pytest.mark.parametrize("scalings, row, shown", [
    ([[1.0, 1.0], [0.5, 0.5, 0.5]], 1, "[0.5, 0.5, 0.5] (3 entries)"),
    ([[1], [0.5, 0.5]], 0, "[1] (1 entry)"),
    ([[1, 1], 0.5], 1, "0.5"),
    ([[1, 1], [0.5, "a"]], 1, "[0.5, 'a']"),
    ([[1, 1], [0.5, 0.0]], 1, "[0.5, 0.0]"),
])
def test_a_uno_scalings_row_that_is_no_list_of_one_factor_per_dimension_is_refused_naming_the_row(
        scalings, row, shown):
    """Named ``uno_scalings[i]`` (the row), with its value and the expected length, from the class
    and through get_model; the layer's own ``resolution_scaling_factor`` is not what was typed."""
    expected = (rf"Invalid {{}}\.uno_scalings\[{row}\]={re.escape(shown)}; allowed values: a list of 2 finite "
                r"numbers > 0 .*as uno_n_modes\[0\] has 2 entries")
    with pytest.raises(ValueError, match="^" + expected.format("MixedPrecisionUNO")) as caught:
        MixedPrecisionUNO(**UNO_SIZES, uno_scalings=scalings)
    assert "resolution_scaling_factor" not in str(caught.value)
    with pytest.raises(ValueError, match="^" + expected.format("MixedPrecisionUNO")):
        get_model(_uno_config(uno_scalings=scalings))


def test_uno_scalings_that_are_no_list_are_refused_naming_them():
    with pytest.raises(ValueError, match=r"^Invalid MixedPrecisionUNO\.uno_scalings=0\.5; allowed values: a list "
                                         r"with one row per layer, each a list of 2 finite numbers > 0"):
        MixedPrecisionUNO(**UNO_SIZES, uno_scalings=0.5)


def test_tuple_rows_of_uno_scalings_scale_as_the_lists_they_spell():
    """A row given as a tuple (or numpy numbers) builds the model the list of floats builds: the
    same output grid and the same numbers (fresh random input; the same parameters by seed)."""
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(3))
    outputs = []
    for scalings in ([[1.0, 1.0], [0.5, 0.5]], [(1, 1), (np.float64(0.5), 0.5)]):
        torch.manual_seed(0)
        model = MixedPrecisionUNO(**UNO_SIZES, uno_scalings=scalings)
        with torch.no_grad():
            outputs.append(model(x))
    assert outputs[0].shape == (2, 1, 8, 8)
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)


@pytest.mark.parametrize("key", ["separable", "use_channel_mlp", "preactivation", "complex_data"])
@pytest.mark.parametrize("value", ["False", "True", None, 2, 0.5])
@pytest.mark.parametrize("precision", ["full", "mixed"])
def test_get_model_refuses_a_flag_that_is_no_bool_naming_the_config_key(key, value, precision):
    """Upstream's classes take any value for its truth (``"False"`` is True); refused before the
    model is built, naming ``model.<key>``, in upstream's path (full precision) and the plugin's."""
    config = {"model": {**FNO_CONFIG, "fno_block_precision": precision, key: value}}
    with pytest.raises((TypeError, ValueError),
                       match=rf"^Invalid model\.{key}={re.escape(repr(value))}; allowed values: True, False"):
        get_model(config)


def test_the_plugin_class_refuses_a_flag_that_is_no_bool_naming_its_own_argument():
    with pytest.raises(TypeError, match=r"^Invalid MixedPrecisionFNO\.separable='False'; allowed values: True, False"):
        MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, separable="False")


@pytest.mark.parametrize("value, meant", [(np.True_, True), (np.False_, False), (1, True), (0, False)])
def test_numpy_bools_and_0_or_1_build_upstreams_model_for_that_bool(value, meant):
    """Upstream's default_config.py writes ``use_channel_mlp: int = 0``: 0 and 1 (and numpy bools)
    build the model of that bool, the same parameters and output as upstream's FNO given it."""
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    built = get_model({"model": {**FNO_CONFIG, "use_channel_mlp": value, "separable": value}})
    torch.manual_seed(0)
    reference = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1,
                    use_channel_mlp=meant, separable=meant)
    assert built.fno_blocks.use_channel_mlp is meant and built.fno_blocks.convs[0].separable is meant
    assert built.state_dict().keys() == reference.state_dict().keys()
    with torch.no_grad():
        expected, got = reference(x), built(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6 * expected.abs().max().item())


@pytest.mark.parametrize("arch, extra", [("tfno", {}), ("fno", {"factorization": "tucker"}),
                                         ("fno", {"factorization": "cp"}), ("tfno", {"fno_block_precision": "mixed"})])
@pytest.mark.parametrize("rank", [0, 0.0, -1, -0.5, float("nan"), 1.5, float("inf")])
def test_get_model_refuses_a_factorization_rank_of_no_kind_tensorly_means(arch, extra, rank):
    """rank <= 0, NaN and fractions above 1 (inf included), with the architecture's own
    factorization (TFNO: Tucker) or the config's: refused naming ``model.rank``, the value and the
    allowed range, before upstream's model is built (rank 0 built one with a divide-by-zero warning)."""
    config = {"model": {**FNO_CONFIG, "model_arch": arch, "rank": rank, **extra}}
    allowed = (r"allowed values: a fraction in \(0, 1\] of the dense weight's parameters, an integer >= 1"
               if not rank > 0 else r"a float rank is the fraction of the dense weight's parameters kept")
    with pytest.raises(ValueError, match=rf"^Invalid model\.rank={re.escape(repr(rank))}.*{allowed}"):
        get_model(config)


@pytest.mark.parametrize("arch, extra", [("tfno", {}), ("fno", {"factorization": "cp"}), ("fno", {})])
@pytest.mark.parametrize("rank", [0.1, 1.0, 2, np.float32(0.5), np.int64(2)])
def test_ranks_upstream_means_build_without_a_division_by_zero(arch, extra, rank):
    """Fractions in (0, 1] and integer ranks build, without the divide-by-zero warning (an integer
    rank keeps tensorly-torch's own note that it is used for every mode); a numpy number as the
    Python number it holds (upstream's layer failed on a numpy float: ``torch.empty`` took it for a
    size). A plain FNO builds with any rank, which it does not use (upstream's FNOConfig writes
    ``rank: float = 1.0`` beside no factorization)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = get_model({"model": {**FNO_CONFIG, "model_arch": arch, "rank": rank, **extra}})
    assert not [w for w in caught if "divide" in str(w.message)]
    if extra or arch == "tfno":
        assert type(model.fno_blocks.convs[0].rank) is type(rank.item() if isinstance(rank, np.generic) else rank)
    else:
        get_model({"model": {**FNO_CONFIG, "rank": 0, "factorization": None}})
