"""Tiny models and data for the training tests: a few milliseconds per epoch."""
import torch
from neuralop.losses import LpLoss
from neuralop.models import FNO

from neuralop_mp.training.trainer import MixedPrecisionTrainer


class DictDataset(torch.utils.data.Dataset):
    """Samples as ``{"x": ..., "y": ...}`` dicts, the batch format neuralop's Trainer expects."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return {"x": self.x[i], "y": self.y[i]}


def tiny_data(n=16, size=8, batch_size=4, seed=0):
    """A smooth nonlinear map on random fields; shuffled train loader + one test loader."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=gen)
    y = torch.tanh(x) + 0.5 * x.roll(1, dims=-1)
    train = torch.utils.data.DataLoader(DictDataset(x, y), batch_size=batch_size, shuffle=True)
    test = {"8": torch.utils.data.DataLoader(DictDataset(x[:8], y[:8]), batch_size=4)}
    return train, test


def tiny_fno(mixed_precision_layer=True, seed=0):
    from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv

    torch.manual_seed(seed)
    kwargs = {"conv_module": MixedPrecisionSpectralConv} if mixed_precision_layer else {}
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2, **kwargs)


def optimizer_and_scheduler(model, lr=1e-2):
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    return optimizer, torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)


def loss():
    return LpLoss(d=2, reduction="sum")


def spectral_weights(model):
    """The complex spectral weight tensors of the model."""
    return [p for n, p in model.named_parameters() if p.is_complex()]


def snapshot(model, optimizer):
    """Deep copies of the weights and of the optimizer state, for exact comparisons."""
    weights = {k: v.detach().clone() for k, v in model.state_dict().items() if torch.is_tensor(v)}
    state = {
        i: {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.items()}
        for i, s in optimizer.state_dict()["state"].items()
    }
    return weights, state


def assert_same(a, b):
    """Exact equality of two nested dicts of tensors / numbers."""
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], dict):
            assert_same(a[key], b[key])
        elif torch.is_tensor(a[key]):
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key



class Interrupted(Exception):
    """Raised by :class:`CrashingTrainer`: a job killed between epochs."""


class CrashingTrainer(MixedPrecisionTrainer):
    """Dies at the start of epoch ``crash_at`` (None: never), like a job killed between epochs."""

    crash_at = None

    def on_epoch_start(self, epoch):
        if epoch == self.crash_at:
            raise Interrupted(epoch)
        super().on_epoch_start(epoch)


def crash_then_resume(save_dir, saved, resumed, crash_at):
    """Train a tiny FNO with ``saved`` = (precision schedule, n_epochs) until a crash after epoch
    ``crash_at`` (checkpoints in ``save_dir`` every epoch), then resume a fresh model from them with
    ``resumed`` = (schedule, n_epochs); return the warnings the resume raised, every one recorded."""
    import warnings

    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno(seed=0)
    optimizer, scheduler = optimizer_and_scheduler(model)
    first = CrashingTrainer(model=model, n_epochs=saved[1], precision_schedule=saved[0])
    first.crash_at = crash_at
    try:
        first.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=save_dir)
    except Interrupted:
        pass
    model = tiny_fno(seed=1)
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=resumed[1], precision_schedule=resumed[0])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer.train(train, test, optimizer, scheduler, training_loss=loss(), resume_from_dir=save_dir)
    return caught
