"""A Ctrl-C that lands in a weakref finalizer (Python prints "Exception ignored" and goes on)
is raised again at the next batch; outside the guard nothing changes."""
import gc
import os
import signal
import weakref

import pytest
import torch

from neuralop_mp.training import interrupts
from neuralop_mp.training.interrupts import catching_interrupts, raise_if_interrupted


class _Watched:
    pass


def _sigint_inside_a_finalizer():
    """Deliver SIGINT while a finalizer runs: its KeyboardInterrupt is swallowed by Python."""
    watched = _Watched()
    weakref.finalize(watched, lambda: (os.kill(os.getpid(), signal.SIGINT), sum(range(10_000))))
    del watched
    gc.collect()


def test_a_swallowed_ctrl_c_is_raised_at_the_next_check(monkeypatch):
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    with catching_interrupts():
        _sigint_inside_a_finalizer()  # training would go on here
        assert reported == []  # not printed as an "Exception ignored" error
        with pytest.raises(KeyboardInterrupt):
            raise_if_interrupted()
        raise_if_interrupted()  # raised once


def test_the_guard_restores_the_hook_and_forgets_the_interrupt():
    import sys

    hook = sys.unraisablehook
    with catching_interrupts():
        assert sys.unraisablehook is not hook
        interrupts._pending = True
    assert sys.unraisablehook is hook
    raise_if_interrupted()  # nothing pending after the block


def test_a_ctrl_c_the_code_caught_is_not_raised_again():
    # a script that ends a phase with Ctrl-C and trains on: no phantom interrupt at its next batch
    with catching_interrupts():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100_000))  # the interpreter runs the handler here
        except KeyboardInterrupt:
            pass
        raise_if_interrupted()


def test_an_ignored_sigint_stays_ignored():
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with catching_interrupts():
            os.kill(os.getpid(), signal.SIGINT)
            sum(range(100_000))
            raise_if_interrupted()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_other_unraisable_errors_still_reach_the_previous_hook(monkeypatch):
    reported = []
    monkeypatch.setattr("sys.unraisablehook", reported.append)
    with catching_interrupts():
        watched = _Watched()
        weakref.finalize(watched, lambda: 1 / 0)
        del watched
        gc.collect()
    assert [type(u.exc_value) for u in reported] == [ZeroDivisionError]


def test_the_trainer_checks_at_every_batch_of_a_batch_hook_of_its_own(monkeypatch):
    # the check wraps whatever train_one_batch the class has: a subclass's own body too
    from torch.utils.data import DataLoader

    from neuralop_mp.training.tests.tiny import tiny_fno
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    batches = []

    class OwnBatch(MixedPrecisionTrainer):
        def train_one_batch(self, idx, sample, training_loss):
            batches.append(idx)
            monkeypatch.setattr(interrupts, "_pending", True)  # a Ctrl-C swallowed during this batch
            self.optimizer.zero_grad(set_to_none=True)
            self.n_samples += sample["y"].shape[0]
            return (self.model(sample["x"]) - sample["y"]).square().mean()

    samples = [{"x": torch.randn(1, 8, 8), "y": torch.randn(1, 8, 8)} for _ in range(4)]
    trainer = OwnBatch(model=tiny_fno(), n_epochs=1, verbose=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train(DataLoader(samples, batch_size=2), {}, torch.optim.AdamW(trainer.model.parameters()), None)
    assert batches == [0]  # raised at the second batch, before its hook


def test_a_ctrl_c_swallowed_during_training_stops_train_from_python():
    # no CLI around it: the trainer's own train() installs the hook
    from torch.utils.data import DataLoader

    from neuralop_mp.training.tests.tiny import tiny_fno
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    model = tiny_fno()
    samples = [{"x": torch.randn(1, 8, 8), "y": torch.randn(1, 8, 8)} for _ in range(4)]
    batches = []

    def loss(out, y, **kwargs):
        batches.append(1)
        if len(batches) == 1:
            _sigint_inside_a_finalizer()  # swallowed: training would go on
        return (out - y).square().mean()

    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, verbose=False)
    optimizer = torch.optim.AdamW(model.parameters())
    with pytest.raises(KeyboardInterrupt):
        trainer.train(DataLoader(samples, batch_size=2), {}, optimizer, None, training_loss=loss)
    assert len(batches) == 1  # raised at the second batch, before its forward
