"""A trainer's checkpoint folder records its training (data processor, history) in
``precision_state.pt`` for the trainer's own save alone (models.checkpoints.trainer_record): eval and
``run_folder.load_data_processor`` take it for those weights, never for a model of the user's own
saved beside them; eval refuses an explicit encoding the record does not do; a malformed record
is a one-line error naming its file."""
import warnings

import pytest
import torch
from neuralop.data.transforms.data_processors import DefaultDataProcessor
from neuralop.data.transforms.normalizers import UnitGaussianNormalizer

from neuralop_mp.cli import main
from neuralop_mp.data import generate_darcy
from neuralop_mp.evaluate import TrainingRecord, run_evaluation, training_record
from neuralop_mp.run_folder import data_processor_from_state, load_data_processor
from neuralop_mp.runner.intercept import save_model_metadata_beside
from neuralop_mp.training.checkpointing import PRECISION_STATE_FILE
from neuralop_mp.training.tests.tiny import loss, tiny_data, tiny_fno
from neuralop_mp.training.trainer import MixedPrecisionTrainer

OWN_ENCODING = "data encoding: the training's own"


class _WritesMetadataBeside(MixedPrecisionTrainer):
    """Checkpoints as ``neuralop-mp run``'s trainer does: the model's metadata beside its weights."""

    def checkpoint(self, save_dir):
        super().checkpoint(save_dir)
        save_model_metadata_beside(save_dir, self.model, epoch=self.epoch)


@pytest.fixture(scope="module")
def trainer_folder(tmp_path_factory):
    """``(folder, data root)``: a ``save_best`` folder (the trainer's save: ``best_model``, its
    processor encoding the outputs only) with a model of the user's own saved beside it as
    ``model``, and Darcy test files at 8 points."""
    folder = tmp_path_factory.mktemp("trainer") / "ckpt"
    root = tmp_path_factory.mktemp("data")
    generate_darcy(root, resolutions=(8,), n_train=0, n_test=2, progress=False)
    train, test = tiny_data(n=8)
    out = UnitGaussianNormalizer(mean=torch.tensor([[[[2.0]]]]), std=torch.tensor([[[[3.0]]]]), eps=1e-7)
    model = tiny_fno(mixed_precision_layer=False)
    trainer = _WritesMetadataBeside(model=model, n_epochs=1, verbose=False,
                                    data_processor=DefaultDataProcessor(out_normalizer=out))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(),
                      eval_losses={"l2": loss()}, save_best="8_l2", save_dir=folder)
    tiny_fno(mixed_precision_layer=False, seed=1).save_checkpoint(folder, "model")  # the user's own
    assert (folder / "best_model_state_dict.pt").is_file() and (folder / PRECISION_STATE_FILE).is_file()
    return folder, root


def _evaluate(checkpoint, root, *extra):
    lines = []
    overrides = ["--data.data_root", str(root), "--data.test_resolutions", "[8]", "--data.n_tests", "[2]",
                 "--data.test_batch_sizes", "[2]", *extra]
    result = run_evaluation(checkpoint, overrides=overrides, log=lines.append)
    return result, "\n".join(lines)


def test_the_record_belongs_to_the_trainers_own_save_only(trainer_folder):
    from neuralop_mp.models.checkpoints import trainer_record  # the one rule, shared with load_model

    folder, _ = trainer_folder
    path, state = trainer_record(folder, "best_model")
    assert path == folder / PRECISION_STATE_FILE and state["data_processor"]["out_normalizer"] is not None
    assert trainer_record(folder, "model") is None  # the user's weights: not what the trainer recorded
    assert training_record(folder, "model") == TrainingRecord()
    assert training_record(folder, "best_model").processor == state["data_processor"]


def test_eval_of_the_users_model_beside_the_trainers_does_not_take_its_record(trainer_folder):
    folder, root = trainer_folder
    _, log = _evaluate(folder / "best_model_state_dict.pt", root)
    assert f"{OWN_ENCODING} (outputs normalized, raw inputs" in log
    # the user's model: the config's encoding and nothing to compare (was: the trainer's processor and
    # its errors, a false warning where they differ)
    _, log = _evaluate(folder / "model_state_dict.pt", root)
    assert OWN_ENCODING not in log and "recorded at its last epoch" not in log


def test_load_data_processor_falls_back_to_the_trainers_record(trainer_folder, tmp_path):
    folder, _ = trainer_folder
    for given in (folder, folder / "best_model_state_dict.pt"):
        processor = load_data_processor(given)
        assert processor.in_normalizer is None and processor.out_normalizer.mean.item() == 2.0
        assert not processor.training  # eval mode, as from data_processor.pt
    with pytest.raises(FileNotFoundError, match=r"holds no trainer checkpoint recording a data processor") as err:
        load_data_processor(folder / "model_state_dict.pt")  # the user's own model: not the trainer's record
    assert "\n" not in str(err.value)
    # a trainer that had no processor records none: said, not the earlier version's advice
    empty = tmp_path / "none"
    model = tiny_fno(mixed_precision_layer=False)
    train, _ = tiny_data(n=4)
    MixedPrecisionTrainer(model=model, n_epochs=1, verbose=False).train(
        train, {}, torch.optim.AdamW(model.parameters(), lr=1e-2), None, training_loss=loss(), eval_losses={},
        save_every=1, save_dir=empty)
    with pytest.raises(FileNotFoundError, match=rf"{PRECISION_STATE_FILE} records no data processor"):
        load_data_processor(empty)


@pytest.mark.parametrize("state, problem", [
    ({"class": "DefaultDataProcessor"}, "its in_normalizer is missing"),
    ({"class": "DefaultDataProcessor", "in_normalizer": None, "out_normalizer": {"mean": torch.zeros(1)}},
     r"its out_normalizer is a dict with keys \['mean'\] \(bad or missing: std, eps\)"),
    ({"class": "DefaultDataProcessor", "in_normalizer": [1.0], "out_normalizer": None},
     "its in_normalizer is a list"),
])
def test_a_malformed_record_is_one_line_naming_its_file(tmp_path, state, problem):
    where = tmp_path / PRECISION_STATE_FILE
    with pytest.raises(ValueError, match=rf"^{where} records a malformed data processor: {problem}; allowed: None "
                                         r"or \{'mean': tensor, 'std': tensor, 'eps': number\}") as err:
        data_processor_from_state(state, where)
    assert "\n" not in str(err.value)


def test_an_explicit_encoding_the_record_does_not_do_is_refused(trainer_folder, capsys):
    folder, root = trainer_folder
    best = folder / "best_model_state_dict.pt"
    with pytest.raises(ValueError, match=r"^--data.encode_output false \(the training's: true\): eval of a checkpoint "
                                         r"that records its training's data processor \(.*precision_state.pt\) "
                                         r"encodes as the training did; drop the override\.$"):
        _evaluate(best, root, "--data.encode_output", "false")
    with pytest.raises(ValueError, match=r"^--data.encode_input true \(the training's: false\): "):
        _evaluate(best, root, "--data.encode_input", "true")
    # what the record does is accepted, and used
    _, log = _evaluate(best, root, "--data.encode_output", "true", "--data.encode_input", "false")
    assert OWN_ENCODING in log
    # the user's model beside it has no record: its override is the encoding
    _evaluate(folder / "model_state_dict.pt", root, "--data.encode_output", "false")
    # at the CLI: one line, no traceback
    capsys.readouterr()
    assert main(["eval", str(best), "--threads", "1", "--data.data_root", str(root), "--data.test_resolutions", "[8]",
                 "--data.n_tests", "[2]", "--data.test_batch_sizes", "[2]", "--data.encode_output=false"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("neuralop-mp eval: error: --data.encode_output false (the training's: true)")
    assert "\n" not in err and "Traceback" not in err


def test_an_unreadable_record_is_said_and_eval_goes_on_with_the_config(trainer_folder, tmp_path):
    """A damaged precision_state.pt: the weights still load, eval encodes as the config says, and
    says that the training's processor and errors were not used (was: silently)."""
    import shutil

    folder, root = trainer_folder
    damaged = tmp_path / "ckpt"
    shutil.copytree(folder, damaged)
    path = damaged / PRECISION_STATE_FILE
    path.write_bytes(path.read_bytes()[:100])  # truncated
    assert "precision_state.pt" in training_record(damaged, "best_model").unreadable
    result, log = _evaluate(damaged / "best_model_state_dict.pt", root)
    assert OWN_ENCODING not in log and result["metrics"]
    (line,) = [line for line in log.splitlines() if "WARNING" in line]
    assert str(path) in line and "are not used" in line
