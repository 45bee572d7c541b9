"""Soft-gating skip connections that keep an autocast activation in its half type.

Upstream's ``SoftGating`` returns ``weight * x`` with an fp32 ``weight``. Under
``torch.autocast`` elementwise products are not autocast ops, so a half ``x`` is
promoted back to fp32 and every activation after the channel-MLP skip (the block's
sum, its nonlinearity, the next block's input) is then saved for backward in fp32.
Casting the gate to the activation's dtype keeps the whole block in half; the fp32
master parameter and its gradient are unchanged, and in fp32 the cast is a no-op,
so outputs in full precision are bit-identical to upstream's.
"""
from neuralop.layers.skip_connections import SoftGating


class HalfSafeSoftGating(SoftGating):
    """``SoftGating`` whose gate (and bias) take the dtype of the input."""

    def forward(self, x):
        weight = self.weight.to(x.dtype)
        if self.bias is not None:
            return weight * x + self.bias.to(x.dtype)
        return weight * x


def adopt_half_safe_soft_gating(model):
    """Turn every upstream ``SoftGating`` of ``model`` into :class:`HalfSafeSoftGating`, in place.

    The instances keep their parameters, buffers, hooks and state_dict keys: only the
    class changes (the subclass adds no state), so checkpoints and optimizers that
    already hold these parameters are unaffected. Returns the number of modules changed.
    """
    changed = 0
    for module in model.modules():
        if type(module) is SoftGating:
            module.__class__ = HalfSafeSoftGating
            changed += 1
    return changed
