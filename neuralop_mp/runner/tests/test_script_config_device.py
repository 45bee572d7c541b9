"""Under the activation, ``get_model`` resolves a half type of "auto" on the device the script's config
names (``device``), as :func:`neuralop_mp.get_model` does, not on whether CUDA is available: a CPU run on
a CUDA machine builds the CPU choice (bfloat16: no stabilizer), and its stabilizer-off note follows."""
import neuralop
import pytest
import torch

import neuralop_mp
from neuralop_mp.layers.precision_switch import mixed_precision_layers


def _script_config(**top):
    return {**top, "model": {"model_arch": "fno", "n_modes": [4, 4], "hidden_channels": 4, "n_layers": 2,
                             "data_channels": 1, "out_channels": 1}}


def _stabilizers(model):
    """The FNOBlocks' stabilizer, and every spectral layer's."""
    return model.fno_blocks.stabilizer, {layer.stabilizer for layer in mixed_precision_layers(model)}


@pytest.fixture
def cuda_machine(monkeypatch):
    """CUDA reported available (the models are built, not moved: nothing runs on it)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.mark.parametrize("top, blocks", [
    ({"device": "cpu"}, None),    # bfloat16 on the CPU: no stabilizer (was: tanh, the CUDA choice)
    ({"device": "cuda:0"}, "tanh"),
    ({}, "tanh"),                 # upstream's configs name no device: CUDA when available, as its setup picks
    ({"device": None}, "tanh"),
])
def test_half_auto_is_decided_on_the_script_configs_device(cuda_machine, top, blocks):
    with neuralop_mp.enabled(precision="half"):
        built = neuralop.get_model(_script_config(**top))
    direct = neuralop_mp.get_model({**_script_config(**top), "model": {
        **_script_config()["model"], "fno_block_precision": "half"}})
    assert _stabilizers(built) == _stabilizers(direct) == (blocks, {None})


@pytest.mark.parametrize("top, noted", [({"device": "cpu"}, False), ({}, True)])
def test_the_stabilizer_off_note_follows_the_script_configs_device(cuda_machine, top, noted):
    """The script's own float16-or-not "half" (no --mp.precision): "off" risks overflow only in float16."""
    config = _script_config(**top)
    config["model"].update(fno_block_precision="half", half_dtype="auto")
    with neuralop_mp.enabled(stabilizer="off") as report:
        neuralop.get_model(config)
    assert any("stabilizer" in note and "float16" in note for note in report.notes) == noted, report.notes


@pytest.mark.parametrize("device", ["mps", 0, "xpu:1"])
@pytest.mark.parametrize("precision", [None, "half"])
def test_a_device_the_plugin_does_not_run_on_is_the_scripts_own(cuda_machine, device, precision):
    """A script config naming "mps" (or an index) built under the activation before the device was read;
    reading it must not refuse it: "auto" then follows upstream's setup (CUDA when available)."""
    with neuralop_mp.enabled(**({"precision": precision} if precision else {})):
        model = neuralop.get_model(_script_config(device=device))
    if precision == "half":
        assert _stabilizers(model) == ("tanh", {None})
    else:
        assert isinstance(model, torch.nn.Module)
