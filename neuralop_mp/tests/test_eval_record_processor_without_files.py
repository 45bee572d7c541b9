"""eval of a trainer's checkpoint folder whose record holds the training's data processor, for a
data loader without test files of its own (the config's loader builds the test sets): the errors
are those of the training's processor, not of the one that loader built."""
import warnings

import pytest
import torch
from neuralop.data.transforms.data_processors import DefaultDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer
from neuralop.models import FNO
from neuralop.training import Trainer
from torch.utils.data import DataLoader

from neuralop_mp import train_pipeline as pipeline
from neuralop_mp.data import loaders
from neuralop_mp.training.tests.tiny import loss

from .test_eval_trainer_record import OWN_ENCODING, _evaluate, trainer_folder  # noqa: F401 (a fixture)


def _samples(seed):
    """Two 8x8 samples whose outputs are of the order the training's normalizer (mean 2, std 3) encodes."""
    generator = torch.Generator().manual_seed(seed)
    return [{"x": torch.randn(1, 8, 8, generator=generator), "y": 2 + 3 * torch.randn(1, 8, 8, generator=generator)}
            for _ in range(2)]


def _processor(mean, std):
    out = UnitGaussianNormalizer(mean=torch.tensor([[[[mean]]]]), std=torch.tensor([[[[std]]]]), eps=1e-7)
    processor = DefaultDataProcessor(out_normalizer=out)
    processor.eval()  # upstream's eval() returns None
    return processor


def _as_a_loader_without_files(monkeypatch, samples, built_processor):
    """The config's loader (Darcy here) as one without files: build_data makes the test set and
    ``built_processor``, the encoding such a loader fits on its own training data."""
    monkeypatch.delitem(loaders.LOADER_FILES, "load_darcy", raising=False)
    monkeypatch.setattr(pipeline, "build_data", lambda config, progress=True: (
        DataLoader(samples, batch_size=2), {8: DataLoader(samples, batch_size=2)}, built_processor))


def _upstream_l2(folder, samples, processor):
    """upstream's Trainer.evaluate of the trainer's saved model: the relative L2 error per sample."""
    model = FNO.from_checkpoint(folder, "best_model").eval()
    trainer = Trainer(model=model, n_epochs=1, device="cpu", verbose=False, data_processor=processor)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(trainer.evaluate({"l2": loss()}, DataLoader(samples, batch_size=2), log_prefix="8")["8_l2"])


def test_the_trainings_processor_replaces_the_one_the_loader_built(trainer_folder, monkeypatch):  # noqa: F811
    folder, root = trainer_folder
    samples = _samples(seed=17)
    errors = {}
    for name, built in [("training's", _processor(2.0, 3.0)), ("other", _processor(-1.0, 0.5))]:
        _as_a_loader_without_files(monkeypatch, samples, built)
        result, log = _evaluate(folder / "best_model_state_dict.pt", root)
        assert f"{OWN_ENCODING} (outputs normalized" in log
        errors[name] = result["metrics"]
    # the premise: the two encodings give other errors (upstream's evaluation of the saved model)
    theirs = _upstream_l2(folder, samples, _processor(2.0, 3.0))
    assert _upstream_l2(folder, samples, _processor(-1.0, 0.5)) != pytest.approx(theirs, rel=1e-2)
    # whatever the loader built, the errors are the training's processor's, as upstream evaluates them
    assert errors["other"] == errors["training's"]
    assert errors["other"]["8_l2"] == pytest.approx(theirs, rel=1e-5)
