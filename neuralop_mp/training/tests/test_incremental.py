"""IncrementalMixedPrecisionTrainer: upstream's incremental algorithms with the plugin's trainer.

Subclassing both trainers does not work (upstream's constructor asserts, or the plugin's
arguments are refused); this class takes both sets of arguments, runs upstream's algorithms,
and saves their state with the training state: a run stopped after an epoch and resumed ends
bitwise where the uninterrupted run ends (weights, every module's n_modes, the losses seen)."""
import inspect

import pytest
import torch
from neuralop.data.transforms.data_processors import IncrementalDataProcessor
from neuralop.training import IncrementalFNOTrainer

import neuralop_mp
from neuralop_mp.models.mixed_precision_models import MixedPrecisionFNO, MixedPrecisionTFNO
from neuralop_mp.training.incremental import IncrementalMixedPrecisionTrainer
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, tiny_data

LOSS_GAP = dict(incremental_loss_gap=True, incremental_loss_eps=1e9)  # grows after every epoch but the first
GRAD = dict(incremental_grad=True, incremental_grad_eps=0.9999, incremental_grad_max_iter=2, incremental_buffer=1)


class StopsAt(IncrementalMixedPrecisionTrainer):
    stop_at = None

    def on_epoch_start(self, epoch):
        if epoch == self.stop_at:
            raise KeyboardInterrupt  # the run ends here: its last checkpoint is the previous epoch's
        super().on_epoch_start(epoch)


def _n_modes(model):
    return {name: list(module.n_modes) for name, module in model.named_modules() if hasattr(module, "n_modes")}


def _model(cls=MixedPrecisionFNO):
    torch.manual_seed(0)
    return cls(n_modes=(2, 2), max_n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2,
               fno_block_precision="mixed", half_dtype="bfloat16")


def _run(algorithm, save_dir=None, resume=None, stop_at=None, cls=MixedPrecisionFNO, resolutions=False):
    model = _model(cls)
    train, _ = tiny_data(n=8, size=16 if resolutions else 8)
    # upstream's resolution schedule: 4x4, then 8x8 from epoch 2, 16x16 from epoch 4
    processor = IncrementalDataProcessor(subsampling_rates=[4, 2, 1], dataset_resolution=16,
                                         dataset_indices=[2, 3], epoch_gap=2) if resolutions else None
    trainer = StopsAt(model=model, n_epochs=6, precision_schedule="mixed:0.5,full:0.5", half_dtype="bfloat16",
                      data_processor=processor, **algorithm)
    trainer.stop_at = stop_at
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    try:
        trainer.train(train, {}, optimizer, scheduler, training_loss=loss(), eval_losses={},
                      save_every=1 if save_dir else None, save_dir=save_dir or "./ckpt", resume_from_dir=resume)
    except KeyboardInterrupt:
        pass
    return model, trainer


@pytest.mark.parametrize("algorithm, cls", [(LOSS_GAP, MixedPrecisionFNO), (GRAD, MixedPrecisionFNO),
                                            (GRAD, MixedPrecisionTFNO)], ids=["loss_gap", "grad", "grad-tfno"])
def test_a_stopped_and_resumed_run_ends_bitwise_as_the_uninterrupted_one(tmp_path, algorithm, cls):
    whole, whole_trainer = _run(algorithm, cls=cls)
    _, stopped = _run(algorithm, save_dir=tmp_path, stop_at=2, cls=cls)  # saved after epoch 1, mid-accumulation
    resumed, resumed_trainer = _run(algorithm, save_dir=tmp_path, resume=tmp_path, cls=cls)
    assert len(stopped.history) == 2
    assert whole.fno_blocks.convs[0].n_modes[0] > 3  # grew past what the stopped run had
    assert _n_modes(resumed) == _n_modes(whole)
    assert resumed_trainer.loss_list == whole_trainer.loss_list
    assert [h["precision"] for h in resumed_trainer.history] == ["mixed"] * 3 + ["full"] * 3
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_a_resume_continues_the_resolution_schedule_of_upstreams_incremental_data_processor(tmp_path):
    whole, whole_trainer = _run(LOSS_GAP, resolutions=True)
    _run(LOSS_GAP, save_dir=tmp_path, stop_at=3, resolutions=True)  # saved after epoch 2, the first at 8x8
    resumed, resumed_trainer = _run(LOSS_GAP, save_dir=tmp_path, resume=tmp_path, resolutions=True)
    assert resumed_trainer.data_processor.current_res == whole_trainer.data_processor.current_res == 16
    assert resumed_trainer.loss_list == whole_trainer.loss_list  # the resumed epochs trained at 8, 16, 16
    for (name, a), b in zip(whole.named_parameters(), resumed.parameters()):
        assert torch.equal(a, b), name


def test_it_keeps_the_plugins_arguments_and_runs_upstreams_algorithm():
    model = _model()
    trainer = IncrementalMixedPrecisionTrainer(model=model, n_epochs=2, precision_schedule="mixed:0.5,full:0.5",
                                               **LOSS_GAP)
    assert isinstance(trainer, IncrementalFNOTrainer) and isinstance(trainer, MixedPrecisionTrainer)
    assert str(trainer.precision_schedule) == "mixed:0.5,full:0.5"
    assert neuralop_mp.IncrementalMixedPrecisionTrainer is IncrementalMixedPrecisionTrainer
    train, _ = tiny_data(n=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    trainer.train(train, {}, optimizer, None, training_loss=loss(), eval_losses={})
    assert model.fno_blocks.convs[0].n_modes == [3, 2] and len(trainer.loss_list) == 2
    trainer.train(train, {}, optimizer, None, training_loss=loss(), eval_losses={})  # a new run: losses afresh
    assert len(trainer.loss_list) == 2 and model.fno_blocks.convs[0].n_modes == [4, 3]


def test_the_incremental_defaults_are_upstreams():
    ours = inspect.signature(IncrementalMixedPrecisionTrainer.__init__).parameters
    theirs = inspect.signature(IncrementalFNOTrainer.__init__).parameters
    incremental = [name for name in theirs if name.startswith("incremental")]
    assert len(incremental) == 7
    assert {name: ours[name].default for name in incremental} == {name: theirs[name].default for name in incremental}


@pytest.mark.parametrize("kwargs, error, match", [
    ({}, ValueError, r"Invalid incremental_loss_gap=False with incremental_grad=False; allowed values: exactly one"),
    ({**LOSS_GAP, "incremental_grad": True}, ValueError, r"exactly one of them True"),
    ({"incremental_grad": "yes"}, TypeError, r"Invalid incremental_grad='yes'; allowed values: True, False"),
    ({**GRAD, "incremental_grad_eps": -1}, ValueError, r"Invalid incremental_grad_eps=-1; allowed values: finite"),
    ({**LOSS_GAP, "incremental_loss_eps": float("nan")}, ValueError, r"Invalid incremental_loss_eps=nan"),
    ({**GRAD, "incremental_buffer": -1}, ValueError, r"Invalid incremental_buffer=-1; allowed values: integers >= 0"),
    ({**GRAD, "incremental_grad_max_iter": 0}, ValueError, r"Invalid incremental_grad_max_iter=0"),
    ({**GRAD, "incremental_max_iter": 1.5}, TypeError, r"Invalid incremental_max_iter=1.5"),
])
def test_bad_incremental_arguments_are_refused_naming_them(kwargs, error, match):
    with pytest.raises(error, match=match):
        IncrementalMixedPrecisionTrainer(model=_model(), n_epochs=2, **kwargs)


def test_a_model_without_fno_blocks_to_grow_is_refused_naming_it():
    with pytest.raises(TypeError, match=r"Invalid model: a Conv2d; allowed values: an FNO or TFNO"):
        IncrementalMixedPrecisionTrainer(model=torch.nn.Conv2d(1, 1, 1), n_epochs=2, **LOSS_GAP)
