"""The errors of a run with multi-grid patching are means over the samples the loss summed.

Upstream's trainer divided the summed test losses by the number of targets after ``preprocess``,
``batch * 4**levels`` patches, while the loss saw the outputs stitched back into ``batch``
samples: the reported errors were ``4**levels`` times too small. Here a model that returns the
level-0 channel of its input (the patch of ``x`` itself) makes the stitched output equal ``x``, so
the expected errors are computed from the raw tensors alone, without any patching code.
"""
import pytest
import torch
from neuralop.losses import LpLoss

from neuralop_mp.data.patching import PatchingDataProcessor
from neuralop_mp.training.tests.tiny import DictDataset
from neuralop_mp.training.trainer import MixedPrecisionTrainer


class LevelZeroChannel(torch.nn.Module):
    """Returns channel 0 of its input: under patching, the (padded) patch of ``x``; a parameter
    that changes nothing, so the optimizer has something to step."""

    def __init__(self):
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def forward(self, x, **kwargs):
        return x[:, :1] + 0.0 * self.unused


def relative_l2(out, y):
    """Per-sample ``||out - y|| / ||y||`` over the grid (the spacing cancels in the ratio)."""
    diff = (out - y).flatten(1).norm(dim=1)
    return diff / y.flatten(1).norm(dim=1)


def quadrants(t):
    """The 2x2 patches of every sample of ``t`` (batch, c, h, w), each a sample of its own."""
    h, w = t.shape[-2] // 2, t.shape[-1] // 2
    return torch.cat([t[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for i in (0, 1) for j in (0, 1)])


@pytest.mark.parametrize("stitching", [False, True])
def test_patched_test_error_is_the_mean_over_samples_and_training_over_the_loss_terms(stitching):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(6, 1, 8, 8, generator=gen)
    y = x + 0.3 * torch.randn(6, 1, 8, 8, generator=gen) + 0.1 * torch.arange(6.0).view(6, 1, 1, 1)
    loader = torch.utils.data.DataLoader(DictDataset(x, y), batch_size=4)  # batches of 4 and 2
    model = LevelZeroChannel()
    processor = PatchingDataProcessor(model=model, levels=1, padding_fraction=0.0, stitching=stitching)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, data_processor=processor, verbose=False)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1)
    l2 = LpLoss(d=2, p=2, reduction="sum")
    metrics = trainer.train(loader, {"8": loader}, optimizer, scheduler, training_loss=l2,
                            eval_losses={"l2": l2})

    expected_test = relative_l2(x, y).mean().item()
    assert metrics["8_l2"] == pytest.approx(expected_test, abs=1e-6)
    # the same through evaluate (what `neuralop-mp eval` calls)
    errors = trainer.evaluate({"l2": l2}, loader, log_prefix="again")
    assert float(errors["again_l2"]) == pytest.approx(expected_test, abs=1e-6)

    # training: without stitching the loss sums over the patches (the mean is per patch), with
    # stitching over the whole samples
    terms = relative_l2(quadrants(x), quadrants(y)) if not stitching else relative_l2(x, y)
    assert trainer.history[-1]["train_loss"] == pytest.approx(terms.mean().item(), abs=1e-6)
