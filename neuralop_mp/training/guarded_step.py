"""The pieces that let upstream's epoch loop run a scaled, guarded step unchanged.

neuralop's ``Trainer.train_one_epoch`` calls, per batch, ``loss = train_one_batch(...)``,
``loss.backward()`` and ``self.optimizer.step()``. :class:`ScaleGradient` makes that
``backward`` a scaled one while ``loss.item()`` still reads the true loss;
:class:`StepThroughTrainer` stands in for the optimizer so that ``step()`` is the
trainer's guarded step; :func:`non_finite_parameters` is the check after it.
"""
import torch

from ..optim.nonfinite import finite_flags


class TrainingStopped(RuntimeError):
    """A stop of the trainer's own: too many skipped steps in a row, an epoch without a finite
    loss, weights made non-finite by a step, or the loss scaler giving up at its floor. The
    message says why and what to try; the weights of the last checkpoint are the ones to go on
    from. A RuntimeError, so callers catching that keep working."""


class ScaleGradient(torch.autograd.Function):
    """Identity on the loss whose backward multiplies the gradient by the loss scale:
    upstream's ``loss.backward()`` then runs a scaled backward while ``loss.item()``
    still reads the true loss."""

    @staticmethod
    def forward(ctx, loss, scale):
        ctx.scale = scale
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class StepThroughTrainer:
    """The optimizer as upstream's epoch loop sees it: ``step()`` runs the trainer's guarded
    step in its place; everything else is the wrapped optimizer's."""

    def __init__(self, optimizer, guarded_step):
        self._optimizer, self._guarded_step = optimizer, guarded_step

    def step(self, closure=None):
        if closure is not None:
            raise ValueError("MixedPrecisionTrainer does not support optimizer closures.")
        self._guarded_step()

    def __getattr__(self, name):
        return getattr(self._optimizer, name)


class DeferredPlateauStep(StepThroughTrainer):
    """A ReduceLROnPlateau scheduler as upstream's epoch loop sees it: ``step()``, whatever
    upstream passes (its loss sum counts skipped batches as 0), runs the trainer's own plateau
    step in its place."""

    def step(self, *args, **kwargs):
        self._guarded_step()


def non_finite_parameters(optimizer, model=None):
    """Names (from ``model``, else ``"param i"``) of the optimizer's parameters holding inf/NaN.

    One read back to the host per device (:func:`~neuralop_mp.optim.nonfinite.finite_flags`).
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    flags = finite_flags([p.detach() for p in params])
    if all(flags):
        return []
    names = {id(p): n for n, p in model.named_parameters()} if model is not None else {}
    return [names.get(id(p), f"param {i}") for i, (p, ok) in enumerate(zip(params, flags)) if not ok]
