"""``run_folder.load_model_and_precision``: files that do not fit together are a CheckpointError naming them; an
error of the model's own constructor (a user's subclass) passes as it is, not blamed on the files."""
import shutil

import pytest

from neuralop_mp import MixedPrecisionFNO
from neuralop_mp.run_folder import load_model_and_precision, save_model
from neuralop_mp.training.checkpointing import CheckpointError


class _RefusingFNO(MixedPrecisionFNO, name="RunFolderRefusingFNO"):
    """A user's subclass whose constructor raises a RuntimeError of its own while ``refuse`` is set."""

    refuse = False

    def __init__(self, *args, **kwargs):
        if type(self).refuse:
            raise RuntimeError("no GPU with tensor cores: this model refuses to be built")
        super().__init__(*args, **kwargs)


def _saved(folder, model_class=MixedPrecisionFNO, width=4):
    model = model_class(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1)
    save_model(model, folder)
    return folder


@pytest.mark.parametrize("mixed_precision_layer", [False, True])
def test_a_runtime_error_of_the_models_constructor_passes_as_it_is(monkeypatch, tmp_path, mixed_precision_layer):
    """It was reported as the files that "cannot be loaded together"."""
    folder = _saved(tmp_path, _RefusingFNO)
    assert type(load_model_and_precision(folder)[0]) is _RefusingFNO  # the files themselves load
    monkeypatch.setattr(_RefusingFNO, "refuse", True)
    with pytest.raises(RuntimeError) as raised:
        load_model_and_precision(folder, mixed_precision_layer=mixed_precision_layer)
    assert type(raised.value) is RuntimeError and not isinstance(raised.value, CheckpointError)
    assert str(raised.value) == "no GPU with tensor cores: this model refuses to be built"
    # its traceback reaches the constructor's line
    tb = raised.value.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    assert tb.tb_frame.f_code is _RefusingFNO.__init__.__code__


def test_weights_that_do_not_fit_the_recorded_model_name_both_files(tmp_path):
    """The metadata of a width-8 model beside the weights of a width-4 one: torch's size mismatch,
    as a CheckpointError naming both files."""
    folder = _saved(tmp_path / "narrow")
    wide = _saved(tmp_path / "wide", width=8)
    shutil.copy(wide / "model_metadata.pkl", folder / "model_metadata.pkl")
    with pytest.raises(CheckpointError) as raised:
        load_model_and_precision(folder)
    message = str(raised.value)
    assert message.startswith(f"Cannot load the model from {folder}: ") and "cannot be loaded together" in message
    assert str(folder / "model_state_dict.pt") in message and str(folder / "model_metadata.pkl") in message
    assert "size mismatch" in message
