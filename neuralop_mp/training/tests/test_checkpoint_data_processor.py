"""A trainer's checkpoint records the data processor it trained with (``precision_state.pt``'s
``data_processor``, as a run folder's ``data_processor.pt`` records one), loadable weights-only,
so that ``neuralop-mp eval`` of the folder encodes as the training did; a processor that record
cannot rebuild is recorded as None (eval then falls to the config's and compares the errors)."""
import torch
from neuralop.data.transforms.data_processors import DefaultDataProcessor, MGPatchingDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

from neuralop_mp.run_folder import data_processor_from_state, data_processor_state
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE
from neuralop_mp.training.trainer import MixedPrecisionTrainer

from .tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno


def _saved_state(tmp_path, data_processor):
    train, test = tiny_data(n=8, batch_size=8)
    model = tiny_fno()
    optimizer, scheduler = optimizer_and_scheduler(model)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, data_processor=data_processor)
    trainer.train(train, test, optimizer, scheduler, training_loss=loss(), save_every=1, save_dir=tmp_path / "ck")
    return torch.load(tmp_path / "ck" / PRECISION_STATE_FILE, weights_only=True)


def test_the_checkpoint_records_the_trainers_processor_and_it_decodes_alike(tmp_path):
    out = UnitGaussianNormalizer(mean=torch.tensor([[[[2.0]]]]), std=torch.tensor([[[[3.0]]]]), eps=1e-7)
    state = _saved_state(tmp_path, DefaultDataProcessor(in_normalizer=None, out_normalizer=out))
    recorded = state["data_processor"]
    assert recorded["class"] == "DefaultDataProcessor" and recorded["in_normalizer"] is None
    assert recorded["out_normalizer"]["mean"].item() == 2.0 and recorded["out_normalizer"]["std"].item() == 3.0
    rebuilt = data_processor_from_state(recorded, tmp_path / "ck" / PRECISION_STATE_FILE)
    prediction = torch.randn(2, 1, 8, 8)
    assert torch.equal(rebuilt.postprocess(prediction, {"y": prediction})[0], prediction * (3.0 + 1e-7) + 2.0)


def test_a_trainer_without_a_processor_records_none(tmp_path):
    assert _saved_state(tmp_path, None)["data_processor"] is None


class _OwnNormalizer(torch.nn.Module):  # a user's normalizer: its encoding is not mean/std/eps
    mean, std, eps = torch.zeros(1), torch.ones(1), 0.0

    def transform(self, x):
        return x.clamp(0, 1)


class _OwnProcessor(DefaultDataProcessor):  # a subclass may preprocess otherwise
    pass


def test_processors_the_record_cannot_rebuild_are_not_recorded():
    unit = UnitGaussianNormalizer(mean=torch.zeros(1), std=torch.ones(1))
    assert data_processor_state(DefaultDataProcessor(in_normalizer=unit)) is not None
    assert data_processor_state(DefaultDataProcessor(out_normalizer=_OwnNormalizer())) is None
    assert data_processor_state(_OwnProcessor(in_normalizer=unit)) is None
    assert data_processor_state(MGPatchingDataProcessor(model=torch.nn.Identity(), levels=1, padding_fraction=0,
                                                        stitching=False, in_normalizer=unit)) is None
    assert data_processor_state(None) is None
