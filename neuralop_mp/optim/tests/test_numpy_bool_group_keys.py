"""A numpy bool for TensorGRaD's on/off settings (a param group's upstream ``tensorgrad`` key, and
``compress`` beside it) is taken exactly as the Python bool it is; strings stay refused.

A group built from arrays (``tensorgrad=mask.any()``) held ``numpy.True_``, which was refused as
no bool. Taken as a Python bool, the group compresses as with ``True``: the same state and
weights after a step (fresh random gradients, bit for bit), and its state dict holds Python bools,
so ``torch.load(weights_only=True)`` reads it (a numpy scalar in a param group is refused there).
"""
import io
import re

import numpy as np
import pytest
import torch

from neuralop_mp.optim import TensorGRaD
from neuralop_mp.optim.tests.helpers import random_tensor


def _stepped(key, flag):
    """A TensorGRaD of one spectral and one plain parameter, its spectral group given ``key=flag``,
    after one step with fixed random gradients; returns the optimizer and the two parameters."""
    spectral = torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 2))
    plain = torch.nn.Parameter(random_tensor((7,), False, 1))
    opt = TensorGRaD([{"params": [plain]}, {"params": [spectral], key: flag, "rank": 0.5}], lr=1e-2)
    spectral.grad, plain.grad = random_tensor(spectral.shape, True, 3), random_tensor(plain.shape, False, 4)
    opt.step()
    return opt, spectral, plain


@pytest.mark.parametrize("key", ["tensorgrad", "compress"])
@pytest.mark.parametrize("flag", [np.True_, np.False_], ids=["np.True_", "np.False_"])
def test_a_numpy_bool_group_flag_acts_and_is_kept_as_the_python_bool(key, flag):
    opt, spectral, plain = _stepped(key, flag)
    reference, spectral_ref, plain_ref = _stepped(key, bool(flag))
    group = opt.param_groups[1]
    assert type(group[key]) is bool and group[key] is bool(flag) and group["compress"] is bool(flag)
    assert torch.equal(opt.state[spectral]["compressed"], reference.state[spectral_ref]["compressed"])
    if key == "tensorgrad":  # upstream's key: no size threshold, the group compresses as it says
        assert bool(opt.state[spectral]["compressed"]) is bool(flag)
    assert torch.equal(spectral.detach(), spectral_ref.detach()) and torch.equal(plain.detach(), plain_ref.detach())
    buffer = io.BytesIO()
    torch.save(opt.state_dict(), buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=True)
    assert loaded["param_groups"][1][key] is bool(flag)


@pytest.mark.parametrize("flag", ["False", "True", np.str_("True")])
def test_strings_stay_refused_for_the_tensorgrad_key(flag):
    with pytest.raises(TypeError, match=rf"^Invalid tensorgrad={re.escape(repr(flag))}; expected True or False\.$"):
        TensorGRaD([{"params": [torch.nn.Parameter(random_tensor((6, 5, 4, 3), True, 2))], "tensorgrad": flag}])
