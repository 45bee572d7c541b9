"""``neuralop-mp run`` of upstream's train_darcy.py, copied with a Trainer subclass of the
user's own, as upstream's docs allow: one whose ``train_one_batch`` is its own body (guarded
and, with float16, loss-scaled as ours is), and one whose ``train_one_epoch`` is its own loop
(trained as upstream's Trainer where loss scaling is off; refused before its first step
where it is on)."""
import math

import pytest

from neuralop_mp.runner import activation
from neuralop_mp.runner.cli import run_script

from .test_run_scripts import TINY_DARCY, in_scripts, no_network  # noqa: F401  (fixtures)

BATCH_HOOK = '''
class PenaltyTrainer(Trainer):
    """Upstream's batch hook written out, with a small penalty on the output."""

    def train_one_batch(self, idx, sample, training_loss):
        self.optimizer.zero_grad(set_to_none=True)
        sample = self.data_processor.preprocess(sample)
        self.n_samples += sample["y"].shape[0]
        out = self.model(**sample)
        out, sample = self.data_processor.postprocess(out, sample)
        if idx == 0:
            print(f"[penalty hook] epoch {self.epoch}")
        return training_loss(out, **sample) + 1e-4 * out.float().pow(2).mean()


'''

EPOCH_LOOP = '''
class OwnLoopTrainer(Trainer):
    """An epoch loop of its own, upstream's shape, that does not call super().train_one_epoch."""

    def train_one_epoch(self, epoch, train_loader, training_loss):
        self.on_epoch_start(epoch)
        self.model.train()
        self.data_processor.train()
        self.n_samples, err = 0, 0.0
        for idx, sample in enumerate(train_loader):
            loss = self.train_one_batch(idx, sample, training_loss)
            loss.backward()
            self.optimizer.step()
            err += loss.item()
        self.scheduler.step()
        print(f"[own loop] epoch {epoch}")
        return err / len(train_loader), err / self.n_samples, None, 0.0


'''


def _copy_with_trainer_class(scripts, name, source, class_name):
    """upstream's train_darcy.py as ``name``, its trainer built from ``source``'s class."""
    text = (scripts / "train_darcy.py").read_text()
    assert text.count("trainer = Trainer(") == 1
    text = text.replace("trainer = Trainer(", source + f"trainer = {class_name}(")
    (scripts / name).write_text(text)
    return name


def _trainer_of(report):
    assert not activation.is_enabled()
    (trainer,) = report.to_dict()["trainers"]
    return trainer


@pytest.mark.parametrize("flags", [{}, {"precision": "mixed", "half_dtype": "float16"}],
                         ids=["no-flags", "mixed-float16"])
def test_a_script_whose_trainer_has_a_batch_hook_of_its_own_trains_guarded(in_scripts, darcy_root, no_network,
                                                                           capsys, flags):
    script = _copy_with_trainer_class(in_scripts, "train_darcy_penalty.py", BATCH_HOOK, "PenaltyTrainer")
    result = run_script(script, TINY_DARCY + ["--opt.n_epochs", "2"], data_root=darcy_root, **flags)
    assert result.exit_status == 0, result.error
    trainer = _trainer_of(result.report)
    assert trainer["class"] == "PenaltyTrainer" and "MixedPrecisionTrainer" in trainer["bases"]
    history = trainer["history"]
    assert [h["epoch"] for h in history] == [0, 1]
    assert all(math.isfinite(h["train_loss"]) for h in history)
    if flags:  # float16 spectral layers: the loss is scaled, through the hook of the script's own
        assert [h["precision"] for h in history] == ["mixed", "mixed"]
        assert all(h["loss_scale"] > 1 for h in history)
    out = capsys.readouterr().out
    assert "[penalty hook] epoch 0" in out and "[penalty hook] epoch 1" in out
    assert no_network == []


def test_a_script_whose_trainer_runs_an_epoch_loop_of_its_own(in_scripts, darcy_root, no_network, capsys):
    script = _copy_with_trainer_class(in_scripts, "train_darcy_own_loop.py", EPOCH_LOOP, "OwnLoopTrainer")
    # no flags: no loss scaling, it trains as under upstream's Trainer, each epoch recorded
    result = run_script(script, TINY_DARCY + ["--opt.n_epochs", "2"], data_root=darcy_root)
    assert result.exit_status == 0, result.error
    history = _trainer_of(result.report)["history"]
    assert [h["epoch"] for h in history] == [0, 1] and all(math.isfinite(h["train_loss"]) for h in history)
    assert "[own loop] epoch 1" in capsys.readouterr().out

    # float16 loss scaling: refused at the loop's first step, saying what to change
    result = run_script(script, TINY_DARCY + ["--opt.n_epochs", "2"], precision="mixed", half_dtype="float16",
                        data_root=darcy_root)
    assert result.exit_status == 1 and isinstance(result.error, RuntimeError)
    message = str(result.error)
    assert message.startswith("OwnLoopTrainer.train_one_epoch stepped the optimizer outside MixedPrecisionTrainer's "
                              "guarded step (its loop does not call super().train_one_epoch)"), message
    assert "Call super().train_one_epoch(epoch, train_loader, training_loss)" in message
    assert message.endswith("(neuralop-mp run: --mp.loss_scaling none).")
    assert not _trainer_of(result.report)["history"]
    assert "[own loop]" not in capsys.readouterr().out
    assert no_network == []
