"""Two loaders, two names: ``neuralop_mp.load_model(folder, name)`` returns the model, and
``neuralop_mp.run_folder.load_model_and_precision(path)`` returns ``(model, precision)``. The
second was also called ``load_model``, so a caller of the one got what the other returns; that
name stays as a deprecated alias that warns (``FutureWarning``, which Python shows by default)."""
import re
import warnings
from pathlib import Path

import pytest
import torch

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO
from neuralop_mp import run_folder

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.fixture
def saved(tmp_path):
    """A tiny model saved in half precision (not the default: the precision returned is read back)."""
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1)
    neuralop_mp.set_precision(model, "half", half_dtype="bfloat16")
    run_folder.save_model(model, tmp_path)
    return tmp_path, model


def _future_warnings(call):
    """``(result, FutureWarnings raised)`` of ``call()``, every warning recorded (none filtered out)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = call()
    return result, [w for w in caught if issubclass(w.category, FutureWarning)]


def test_load_model_and_precision_returns_the_model_and_its_precision_without_a_warning(saved):
    folder, model = saved
    (loaded, precision), raised = _future_warnings(lambda: run_folder.load_model_and_precision(folder))
    assert raised == []
    assert type(loaded) is MixedPrecisionFNO
    assert precision == run_folder.model_precision(model)
    assert precision["mode"] == "half" and precision["half_dtype"] == "bfloat16"
    assert all(torch.equal(loaded.state_dict()[key], value) for key, value in model.state_dict().items()
               if isinstance(value, torch.Tensor))
    # the package's load_model, of the same files, gives the model alone
    assert isinstance(neuralop_mp.load_model(folder, "model"), MixedPrecisionFNO)


def test_the_old_name_warns_once_per_call_and_returns_what_the_new_one_does(saved):
    folder, _ = saved
    expected_model, expected_precision = run_folder.load_model_and_precision(folder, mixed_precision_layer=True)
    for _ in range(2):  # once per call, not once per process
        (loaded, precision), raised = _future_warnings(
            lambda: run_folder.load_model(folder, map_location="cpu", mixed_precision_layer=True))
        assert len(raised) == 1, [str(w.message) for w in raised]
        message = str(raised[0].message)
        assert "load_model_and_precision" in message and "(model, precision)" in message
        assert raised[0].filename == __file__  # points at the caller's line, where the user changes the name
        assert type(loaded) is type(expected_model) and precision == expected_precision
        assert loaded.state_dict().keys() == expected_model.state_dict().keys()
        assert all(torch.equal(loaded.state_dict()[key], value) for key, value in expected_model.state_dict().items()
                   if isinstance(value, torch.Tensor))


def test_the_new_name_is_exported_where_the_docs_import_it():
    """docs/configs.md imports it from ``neuralop_mp.run_folder`` and docs/spectral_layer.md names
    its dotted path (integration_tests/test_docs_names.py calls that path after a plain import)."""
    configs = (DOCS / "configs.md").read_text()
    imports = re.findall(r"^from neuralop_mp\.run_folder import (.+)$", configs, re.M)
    assert any("load_model_and_precision" in line.split(", ") for line in imports), imports
    assert "neuralop_mp.run_folder.load_model_and_precision" in (DOCS / "spectral_layer.md").read_text()
    # the top-level name stays the model-only loader
    assert neuralop_mp.load_model.__module__ == "neuralop_mp.models.checkpoints"
