"""Bad sizes and unknown arguments of the model builders are refused by name, before any work.

``get_model`` built ``data_channels=0`` / ``-1`` or ``patching.levels=-1`` (a model that fails at
its first forward) and failed deep in torch for ``data_channels=1.5`` or ``patching.levels='2'``;
the plugin's classes built ``in_channels=0`` and named ``hidden_channels=0`` as a layer's
``in_channels``; an unknown keyword was Python's bare "got an unexpected keyword argument".
"""
import numpy as np
import pytest
import torch

import neuralop_mp
from neuralop.models import FNO, TFNO
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO

FNO_CONFIG = dict(model_arch="fno", data_channels=1, out_channels=1, n_modes=[4, 4], hidden_channels=4, n_layers=1)
FNO_ARGS = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
UNO_ARGS = dict(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2, uno_out_channels=[4, 4],
                uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1, 1], [1, 1]])


def _config(patching=None, **model):
    config = {"model": {**FNO_CONFIG, **model}}
    if patching is not None:
        config["patching"] = patching
    return config


@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (1.5, TypeError), ("2", TypeError),
                                          (True, TypeError)])
def test_get_model_refuses_data_channels_that_are_no_integer_of_at_least_one(value, error):
    with pytest.raises(error, match=rf"^Invalid model\.data_channels={value!r}; allowed values: integers >= 1 "
                                    r"\(the input's channel count\)\.$"):
        neuralop_mp.get_model(_config(data_channels=value))


@pytest.mark.parametrize("value, error", [(-1, ValueError), (1.5, TypeError), ("2", TypeError)])
def test_get_model_refuses_patching_levels_that_are_no_integer_of_at_least_zero(value, error):
    with pytest.raises(error, match=rf"^Invalid patching\.levels={value!r}; allowed values: integers >= 0 "
                                    r"\(0: no patching\)\.$"):
        neuralop_mp.get_model(_config(patching={"levels": value}))


@pytest.mark.parametrize("patching, in_channels", [(None, 2), ({"levels": None}, 2), ({"levels": 0}, 2),
                                                   ({"levels": 2}, 6)])
def test_get_model_builds_data_channels_times_levels_plus_one(patching, in_channels):
    torch.manual_seed(0)
    model = neuralop_mp.get_model(_config(patching=patching, data_channels=2))
    assert model.in_channels == in_channels
    assert model(torch.randn(2, in_channels, 8, 8)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("cls, base", [(MixedPrecisionFNO, FNO_ARGS), (MixedPrecisionTFNO, FNO_ARGS),
                                       (MixedPrecisionUNO, UNO_ARGS)], ids=["fno", "tfno", "uno"])
@pytest.mark.parametrize("key", ["in_channels", "out_channels", "hidden_channels", "n_layers"])
@pytest.mark.parametrize("value, error", [(0, ValueError), (-1, ValueError), (2.0, TypeError), ("4", TypeError)])
def test_the_plugin_models_refuse_sizes_below_one_naming_their_own_argument(cls, base, key, value, error):
    least = 0 if key == "n_layers" and cls is not MixedPrecisionUNO else 1
    if value == 0 and least == 0:  # n_layers=0: an FNO/TFNO of no block, as upstream builds (test below)
        assert len(cls(**{**base, key: value}).fno_blocks.convs) == 0
        return
    with pytest.raises(error, match=rf"^Invalid {cls.__name__}\.{key}={value!r}; allowed values: integers >= {least}\.$"):
        cls(**{**base, key: value})


@pytest.mark.parametrize("cls, upstream_cls", [(MixedPrecisionFNO, FNO), (MixedPrecisionTFNO, TFNO)], ids=["fno", "tfno"])
def test_a_model_of_no_block_builds_as_upstreams_does(cls, upstream_cls):
    """Upstream's FNO and TFNO build n_layers=0 (a lifting then a projection); its checkpoint loads into
    the plugin's class: the same output."""
    x = torch.randn(2, 1, 8, 8)
    torch.manual_seed(0)
    upstream = upstream_cls(**{**FNO_ARGS, "n_layers": 0})
    torch.manual_seed(0)
    ours = cls(**{**FNO_ARGS, "n_layers": 0})
    torch.testing.assert_close(ours(x), upstream(x))


def test_a_numpy_integer_size_still_builds_the_model():
    np = pytest.importorskip("numpy")
    torch.manual_seed(0)
    model = MixedPrecisionFNO(**{**FNO_ARGS, "in_channels": np.int64(2), "n_layers": np.int64(2)})
    assert len(model.fno_blocks.convs) == 2
    assert model(torch.randn(2, 2, 8, 8)).shape == (2, 1, 8, 8)


def test_an_unknown_keyword_names_the_class_and_the_closest_argument():
    with pytest.raises(TypeError, match=r"^MixedPrecisionTFNO\.__init__\(\) got an unexpected keyword argument "
                                        r"'rnak' \(did you mean 'rank'\?\)\.$"):
        MixedPrecisionTFNO(**FNO_ARGS, rnak=2)


def test_an_unknown_keyword_without_a_close_argument_lists_the_arguments():
    with pytest.raises(TypeError) as raised:
        MixedPrecisionFNO(**FNO_ARGS, bogus=1, hiden_channels=4)
    message = str(raised.value)
    assert message.startswith("MixedPrecisionFNO.__init__() got unexpected keyword arguments 'bogus', "
                              "'hiden_channels' (did you mean 'hidden_channels'?); its arguments are: n_modes, "
                              "in_channels, out_channels, hidden_channels, n_layers,"), message
    assert "half_dtype" in message and message.endswith("."), message


def test_a_missing_argument_names_the_class():
    args = {k: v for k, v in FNO_ARGS.items() if k != "n_modes"}
    with pytest.raises(TypeError, match=r"^MixedPrecisionFNO\.__init__\(\) missing a required argument: 'n_modes'$"):
        MixedPrecisionFNO(**args)


def test_a_missing_argument_leads_and_an_unknown_keyword_beside_it_is_named_too():
    args = {k: v for k, v in FNO_ARGS.items() if k != "n_modes"}
    with pytest.raises(TypeError, match=r"^MixedPrecisionFNO\.__init__\(\) missing a required argument: 'n_modes'; "
                                        r"it also got an unexpected keyword argument 'rnak' \(did you mean "
                                        r"'rank'\?\)\.$"):
        MixedPrecisionFNO(**args, rnak=2)


@pytest.mark.parametrize("factor, as_upstream_reads_it", [
    ((0.5, 0.5), [0.5, 0.5]), (np.float32(0.5), 0.5), (np.int64(2), 2), ([np.float64(0.5), np.int64(1)], [0.5, 1]),
    (torch.tensor(0.5), 0.5), (np.array(2.0), 2), ([(0.5, 1), [1, 2]], [[0.5, 1], [1, 2]]),
], ids=["tuple", "numpy-float", "numpy-int", "numpy-list", "0-d tensor", "0-d array", "per-layer-per-dim"])
def test_a_models_tuple_or_numpy_scaling_factor_scales_as_the_list_or_number_it_spells(factor, as_upstream_reads_it):
    """Upstream's validation turned a tuple or a numpy integer into None (no scaling, without a word):
    the plugin's model takes them as the list or number they spell, as upstream's FNO takes that
    (same weights: the same output, float32 rounding)."""
    x = torch.randn(2, 1, 16, 16)
    kwargs = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    torch.manual_seed(0)
    ours = MixedPrecisionFNO(**kwargs, resolution_scaling_factor=factor)
    torch.manual_seed(0)
    upstream = FNO(**kwargs, resolution_scaling_factor=as_upstream_reads_it)
    expected = upstream(x)
    assert expected.shape[-1] != 16  # the factor scales
    torch.testing.assert_close(ours(x), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factor", [torch.tensor(True), torch.tensor(2 + 0j), True, "2", float("nan"), 0,
                                    [0.5, "2"], [[0.5, 0.5, 0.5]]],
                         ids=["bool-tensor", "complex-tensor", "bool", "str", "nan", "zero", "str-entry", "3-entry"])
def test_a_models_malformed_scaling_factor_is_refused_naming_it(factor):
    """Refused by the model's own name (a bool tensor became 1.0, a complex one 2.0, a string was
    dropped by upstream, a list entry of another length failed at forward)."""
    with pytest.raises(ValueError, match=r"^Invalid MixedPrecisionFNO\.resolution_scaling_factor=.*; allowed values: "
                                         r"None, a finite number > 0"):
        MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                          resolution_scaling_factor=factor)
