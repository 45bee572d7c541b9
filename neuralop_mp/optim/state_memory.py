"""Memory of a TensorGRaD optimizer: parameters, gradients and state by category."""
import torch

from .adam_math import compute_dtype
from .state_checks import BASIS_INFIX

_MOMENTS = ("exp_avg", "exp_avg_sq")


def state_memory_report(optimizer):
    """Bytes held by parameters, gradients and optimizer state, by category.

    Returns a dict with ``params``, ``grads`` (gradients present now),
    ``moments``, ``factors``, ``indices``, ``other`` (step counters, seeds,
    flags, the births of kept sparse entries), ``state`` (their sum),
    ``adamw_state`` (two full-size moments in the dtype the math runs in, fp32 /
    complex64, what AdamW keeps for fp32 weights), and ``state_ratio = state / adamw_state``.
    """
    report = dict.fromkeys(("params", "grads", "moments", "factors", "indices", "other"), 0)
    adamw = 0
    for group in optimizer.param_groups:
        for p in group["params"]:
            report["params"] += p.numel() * p.element_size()
            adamw += 2 * p.numel() * compute_dtype(p).itemsize
            if p.grad is not None:
                report["grads"] += p.grad.numel() * p.grad.element_size()
            for key, value in optimizer.state.get(p, {}).items():
                if not isinstance(value, torch.Tensor):
                    continue
                nbytes = value.numel() * value.element_size()
                if key.endswith(_MOMENTS):
                    report["moments"] += nbytes
                elif BASIS_INFIX + "factor" in key:
                    report["factors"] += nbytes
                elif BASIS_INFIX in key:
                    report["indices"] += nbytes
                else:
                    report["other"] += nbytes
    report["state"] = report["moments"] + report["factors"] + report["indices"] + report["other"]
    report["adamw_state"] = adamw
    report["state_ratio"] = report["state"] / adamw if adamw else float("nan")
    return report
