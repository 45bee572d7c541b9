"""Autoregressive evaluation against upstream's: each batch's rollout losses averaged over its
steps, and the batch's samples counted once per rollout (not once per step)."""
import warnings

import pytest
import torch
from neuralop.training import Trainer

from neuralop_mp.training.tests.tiny import DictDataset, loss, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer


class RolloutProcessor(torch.nn.Module):
    """A data processor whose every rollout step differs (the input shifted, the target scaled),
    ending the rollout itself at step ``stop`` (None: never), as upstream's rollout processors do."""

    def __init__(self, stop=None):
        super().__init__()
        self.stop = stop

    @property
    def device(self):
        return torch.device("cpu")

    def preprocess(self, sample, step=0):
        if self.stop is not None and step >= self.stop:
            return None
        if step == 0:
            return dict(sample)
        return {"x": sample["x"].roll(1, dims=-1), "y": 1.5 * sample["y"]}

    def postprocess(self, out, sample, step=0):
        return out, sample


def _test_loader(seed):
    # 10 samples in batches of 4: the last batch is smaller, so counting per batch matters
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(10, 1, 8, 8, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-2)
    return torch.utils.data.DataLoader(DictDataset(x, y), batch_size=4)


def _evaluate(trainer_cls, processor, loader, max_steps):
    model = tiny_fno(seed=3).eval()
    trainer = trainer_cls(model=model, n_epochs=1, device="cpu", verbose=False, data_processor=processor)
    trainer.on_epoch_start(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        errors = trainer.evaluate({"l2": loss()}, loader, mode="autoregression", max_steps=max_steps)
    return {k: float(v) for k, v in errors.items()}, trainer.n_samples


@pytest.mark.parametrize("stop, max_steps, seed", [
    (None, 3, 11),  # max_steps ends every rollout
    (2, None, 12),  # the processor ends every rollout
    (2, 3, 13),  # the processor ends it before max_steps
])
def test_autoregressive_evaluate_matches_upstream(stop, max_steps, seed):
    loader = _test_loader(seed)
    ours, ours_count = _evaluate(MixedPrecisionTrainer, RolloutProcessor(stop), loader, max_steps)
    theirs, theirs_count = _evaluate(Trainer, RolloutProcessor(stop), loader, max_steps)
    assert ours.keys() == theirs.keys() == {"_l2"}
    # the same float32 model and losses: equal up to float32 summation order
    assert ours["_l2"] == pytest.approx(theirs["_l2"], rel=1e-5)
    assert ours_count == theirs_count == 10  # once per rollout, not once per step


def test_autoregressive_error_is_the_mean_over_steps_of_the_per_sample_loss():
    # a float64 hand computation: per batch, the mean over the rollout's steps of the summed
    # relative L2 losses; then the sum over batches divided by the number of samples
    loader, steps = _test_loader(21), 3
    model = tiny_fno(seed=3).eval()
    lp = loss()
    total = 0.0
    with torch.no_grad():
        for batch in loader:
            x, y = batch["x"], batch["y"]
            step_losses = []
            for t in range(steps):
                if t:
                    x, y = x.roll(1, dims=-1), 1.5 * y
                step_losses.append(float(lp(model(x).double(), y.double())))
            assert len(set(step_losses)) == steps  # the steps differ: a sum is not a mean
            total += sum(step_losses) / steps
    ours, count = _evaluate(MixedPrecisionTrainer, RolloutProcessor(), loader, steps)
    assert count == 10
    assert ours["_l2"] == pytest.approx(total / 10, rel=1e-5)
