"""Param-group settings of :class:`~neuralop_mp.optim.tensorgrad.TensorGRaD`:
defaults, upstream-compatible defaults, and validation with messages that name
the bad value."""
import math
from numbers import Integral, Real

from ..vocabulary import check_choice
from .adam_math import STATE_DTYPES
from .composite_projector import ORDERS
from .sparse_projector import SPARSE_TYPES, _check_ratio
from .tucker_projector import RANK_CONVENTIONS, _check_rank

# Group keys of upstream neuraloperator's TensorGRaD (main branch). A group that
# names ``tensorgrad`` is written for upstream's class: it gets upstream's
# meaning for the keys it leaves out (low-rank first, no sparse part unless
# sparse_ratio is given, tensorly's float-rank convention, gap 50, 10 HOOI sweeps,
# no size threshold).
UPSTREAM_GROUP_DEFAULTS = {
    "order": "lowrank_first",
    "sparse_ratio": None,
    "rank_convention": "params",
    "update_proj_gap": 50,
    "tucker_n_iter_max": 10,
    "min_params": 0,  # upstream compresses every weight of a tensorgrad group
}


def _check_real(key, value, *, low=None, high=None, low_open=False, high_open=False):
    if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
        raise ValueError(f"Invalid {key}={value!r}; expected a finite number.")
    bad_low = low is not None and (value <= low if low_open else value < low)
    bad_high = high is not None and (value >= high if high_open else value > high)
    if bad_low or bad_high:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(
            f"Invalid {key}={value!r}; expected a value in {lo}{'-inf' if low is None else low}, "
            f"{'inf' if high is None else high}{hi}."
        )
    return value


def _check_int(key, value, low):
    if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
        raise ValueError(f"Invalid {key}={value!r}; expected an int >= {low}.")
    return int(value)


def _check_bool(key, value):
    if not isinstance(value, bool):
        raise TypeError(f"Invalid {key}={value!r}; expected True or False.")
    return value


def validate_group(group):
    """Check every setting of a param group (after defaults are filled in)."""
    _check_real("lr", float(group["lr"]) if hasattr(group["lr"], "item") else group["lr"], low=0.0)
    betas = group["betas"]
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"Invalid betas={betas!r}; expected two floats in [0, 1).")
    for i, beta in enumerate(betas):
        _check_real(f"betas[{i}]", beta, low=0.0, high=1.0, high_open=True)
    _check_real("eps", group["eps"], low=0.0)
    _check_real("weight_decay", group["weight_decay"], low=0.0)
    for key in ("scale", "sparse_scale", "lambda_sparse"):
        _check_real(key, group[key])
    _check_int("update_proj_gap", group["update_proj_gap"], 1)
    _check_int("tucker_n_iter_max", group["tucker_n_iter_max"], 0)
    _check_int("min_params", group["min_params"], 0)
    _check_int("sparse_mode", group["sparse_mode"], 0)
    _check_int("seed", group["seed"], 0)
    for key in ("compress", "correct_bias", "warm_restart", "reset_sparse_moments", "reset_lowrank_moments",
                "scale_by_mask_ratio"):
        _check_bool(key, group[key])
    check_choice("order", group["order"], ORDERS)
    check_choice("sparse_type", group["sparse_type"], SPARSE_TYPES)
    check_choice("rank_convention", group["rank_convention"], RANK_CONVENTIONS)
    check_choice("state_dtype", group["state_dtype"], tuple(STATE_DTYPES))
    if group["rank"] is not None:
        group["rank"] = _check_rank(group["rank"])
    if group["sparse_ratio"] is not None:
        group["sparse_ratio"] = _check_ratio(group["sparse_ratio"])
    if group["compress"] and group["rank"] is None and group["sparse_ratio"] is None:
        raise ValueError(
            "Invalid rank=None with sparse_ratio=None in a compressed group; set one of them or compress=False."
        )
    return group
