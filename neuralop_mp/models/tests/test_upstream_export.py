"""Checkpoints across the plugin/upstream boundary: the plugin's checkpoint files pickle its classes
(upstream's ``BaseModel.state_dict()`` puts the constructor record in the weights file too), so plain
neuraloperator cannot read them where neuralop_mp is not installed; ``export_upstream_checkpoint``
writes files that it can read, and a trainer's weights-only file loads into upstream's class as it is.
``load_model`` builds the class it is asked for, or refuses."""
import functools
import pickle
import subprocess
import sys
import warnings

import pytest
import torch
from neuralop.models import FNO, TFNO, UNO

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from neuralop_mp.models.checkpoints import export_upstream_checkpoint

ARGS = dict(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)


class _PlainNeuralopUnpickler(pickle.Unpickler):
    """Unpickles as a process without neuralop_mp would: any global of the plugin is an error."""

    def find_class(self, module, name):
        if module.split(".")[0] == "neuralop_mp":
            raise ModuleNotFoundError(f"No module named {module!r} (plain neuraloperator)")
        return super().find_class(module, name)


class _PlainNeuralop:
    Unpickler = _PlainNeuralopUnpickler
    load = pickle.load


def _load_as_plain_neuralop(path):
    return torch.load(path, weights_only=False, pickle_module=_PlainNeuralop)


def _from_checkpoint_as_plain_neuralop(cls, folder, name):
    """What upstream's ``cls.from_checkpoint(folder, name)`` does, with both files unpickled as a
    process without neuralop_mp would unpickle them."""
    init = _load_as_plain_neuralop(folder / f"{name}_metadata.pkl")
    args = init.pop("args", ())
    for key in ("_name", "_version"):
        init.pop(key, None)
    model = cls(*args, **init)
    model.load_state_dict(_load_as_plain_neuralop(folder / f"{name}_state_dict.pt"))
    return model


def _float64_output(model, x):
    """``model``'s output in float64 (complex128 spectral weights): the reference. Cast parameter by
    parameter: ``Module.to(torch.float64)`` would drop the imaginary parts of complex weights."""
    with torch.no_grad():
        for p in model.parameters():
            p.data = p.data.to(torch.complex128 if p.is_complex() else torch.float64)
        return model.eval()(x.double())


def _plugin_models():
    torch.manual_seed(0)
    yield "MixedPrecisionFNO bf16 complex32", FNO, MixedPrecisionFNO(
        **ARGS, fno_block_precision="mixed", half_dtype="bfloat16", spectral_weight_dtype="complex32")
    torch.manual_seed(1)
    yield "MixedPrecisionTFNO", TFNO, MixedPrecisionTFNO(**ARGS, fno_block_precision="mixed", rank=0.5)
    torch.manual_seed(2)  # upstream's own class, the plugin's layer passed in (the drop-in use)
    yield "FNO conv_module=MixedPrecisionSpectralConv", FNO, FNO(
        **ARGS, conv_module=neuralop_mp.MixedPrecisionSpectralConv)


@pytest.mark.parametrize("index", range(3))
def test_export_writes_a_checkpoint_plain_neuraloperator_reads(tmp_path, index):
    label, upstream, model = list(_plugin_models())[index]
    model.save_checkpoint(tmp_path / "ours", "model")
    # the finding: the plugin's own files name its classes, in the weights file too
    with pytest.raises(ModuleNotFoundError, match="neuralop_mp"):
        _load_as_plain_neuralop(tmp_path / "ours" / "model_state_dict.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the precision settings dropped: upstream's runs in full precision
        exported = export_upstream_checkpoint(tmp_path / "ours", "model", tmp_path / "up")
    assert type(exported) is upstream, label
    loaded = _from_checkpoint_as_plain_neuralop(upstream, tmp_path / "up", "model")
    for key, value in model.state_dict().items():  # complex32 storage widened exactly to complex64
        if key != "_metadata":
            assert torch.equal(loaded.state_dict()[key], value.to(loaded.state_dict()[key].dtype)), (label, key)
    # the outputs are the plugin's model's in full precision up to float32 rounding: both against the
    # float64 reference (the checkpoint's weights in upstream's layers, complex128), and each other
    torch.manual_seed(3)
    x = torch.randn(2, 1, 16, 16)
    reference = _float64_output(_from_checkpoint_as_plain_neuralop(upstream, tmp_path / "up", "model"), x)
    neuralop_mp.set_precision(model, "full")
    with torch.no_grad():
        outputs = {"exported": loaded.eval()(x), "plugin's in full": model.eval()(x)}
    assert all(y.dtype == torch.float32 for y in outputs.values())
    for name, y in outputs.items():
        error = ((y.double() - reference).norm() / reference.norm()).item()
        assert error < 1e-5, (label, name, error)  # float32 arithmetic against float64: ~1e-7 expected
    gap = ((outputs["exported"] - outputs["plugin's in full"]).norm() / reference.norm()).item()
    assert gap < 1e-5, (label, gap)


UNO_ARGS = dict(in_channels=1, out_channels=1, hidden_channels=8, n_layers=2, uno_out_channels=[8, 8],
                uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1.0, 1.0], [1.0, 1.0]], channel_mlp_skip="linear")


@pytest.mark.parametrize("plugin, upstream, args, storage", [
    (MixedPrecisionFNO, FNO, ARGS, "complex64"),
    (MixedPrecisionFNO, FNO, ARGS, "complex32"),
    (MixedPrecisionUNO, UNO, UNO_ARGS, "complex32"),
], ids=["FNO", "FNO complex32", "UNO complex32"])
def test_a_trainers_weights_only_file_loads_into_upstreams_class(tmp_path, plugin, upstream, args, storage):
    """Route (b), without the plugin: a trainer checkpoint's weights file (a run folder's
    ``checkpoint/model_state_dict.pt``) holds tensors only, so it loads with
    ``torch.load(weights_only=True)`` into upstream's class built with the same arguments (a UNO
    into ``neuralop.models.UNO``), complex32 storage widened exactly to complex64 as it loads."""
    from neuralop_mp.training.tests.tiny import loss, tiny_data

    torch.manual_seed(0)
    model = plugin(**args, fno_block_precision="mixed", spectral_weight_dtype=storage)
    train, test = tiny_data(n=4)
    trainer = neuralop_mp.MixedPrecisionTrainer(model=model, n_epochs=1, verbose=False)
    # an optimizer that keeps complex32 weights' moments in float32 (AdamW's own overflow)
    optimizer = neuralop_mp.create_optimizer(model, {"optimizer": "adamw", "learning_rate": 1e-2})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trainer.train(train, test, optimizer, None, training_loss=loss(), eval_losses={"l2": loss()}, save_every=1,
                      save_dir=tmp_path)
    state = torch.load(tmp_path / "model_state_dict.pt", weights_only=True)
    assert "_metadata" not in state
    assert {v.dtype for v in state.values() if torch.is_tensor(v) and v.is_complex()} == {getattr(torch, storage)}  # as the file holds it
    plain = upstream(**args)
    plain.load_state_dict(state)  # strict
    loaded = plain.state_dict()
    assert {v.dtype for v in loaded.values() if torch.is_tensor(v) and v.is_complex()} == {torch.complex64}
    for key, value in model.state_dict().items():
        if key != "_metadata":
            assert torch.equal(loaded[key], value.to(loaded[key].dtype)), key


def test_export_of_a_uno_is_refused_naming_the_way(tmp_path):
    torch.manual_seed(0)
    model = MixedPrecisionUNO(**UNO_ARGS, fno_block_precision="mixed")
    model.save_checkpoint(tmp_path, "model")
    with pytest.raises(ValueError, match=r"'MixedPrecisionUNO' checkpoint.*upstream's UNO is a plain torch Module.*"
                                         r"torch\.nn\.Module\.state_dict\(model\)"):
        export_upstream_checkpoint(tmp_path, "model", tmp_path / "up")
    assert not (tmp_path / "up").exists()


def test_export_warns_of_fourier_modes_upstreams_record_cannot_hold(tmp_path):
    """Modes moved since the build (incremental training) are the plugin's record alone: upstream's
    from_checkpoint rebuilds the constructor's, which the export says."""
    torch.manual_seed(0)
    model = MixedPrecisionFNO(**{**ARGS, "n_modes": (2, 2)}, max_n_modes=(4, 4))
    model.n_modes = (4, 4)
    model.save_checkpoint(tmp_path, "model")
    with pytest.warns(UserWarning, match=r"rebuilds the Fourier modes its constructor sets.*set them again"):
        exported = export_upstream_checkpoint(tmp_path, "model", tmp_path / "up")
    assert list(exported.fno_blocks.convs[0].n_modes) == [4, 3]  # the model itself keeps them


@pytest.mark.parametrize("model_class", [FNO, "fno", "FNO"], ids=["class", "name", "name in capitals"])
def test_load_model_refuses_an_upstream_class_with_a_precision_policy(tmp_path, model_class):
    """The class asked for, or an error: the plugin's class in its place would save checkpoints that
    plain neuraloperator cannot read (was: a MixedPrecisionFNO returned without a word)."""
    torch.manual_seed(0)
    FNO(**ARGS).save_checkpoint(tmp_path, "m")
    with pytest.raises(ValueError, match=r"Invalid model_class=.* with precision_policy='mixed': upstream's FNO "
                                         r"runs no precision policy; give model_class='mixedprecisionfno'"):
        neuralop_mp.load_model(tmp_path, "m", model_class=model_class, precision_policy="mixed")
    # without model_class the checkpoint's upstream class is built as the plugin's, as documented
    assert type(neuralop_mp.load_model(tmp_path, "m", precision_policy="mixed")) is MixedPrecisionFNO


_PLAIN_PROCESS = """
import sys
sys.modules["neuralop_mp"] = None  # as where it is not installed: importing it raises
import torch
from neuralop.models import FNO
model = FNO.from_checkpoint(sys.argv[1], "model").eval()
with torch.no_grad():
    y = model(torch.load(sys.argv[2]))
torch.save(y, sys.argv[3])
"""


@pytest.mark.slow
def test_the_export_loads_in_a_process_without_neuralop_mp(tmp_path):
    torch.manual_seed(0)
    model = MixedPrecisionFNO(**ARGS, fno_block_precision="mixed", spectral_weight_dtype="complex32")
    model.save_checkpoint(tmp_path, "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exported = export_upstream_checkpoint(tmp_path, "model", tmp_path / "up")
    torch.manual_seed(1)
    torch.save(torch.randn(2, 1, 16, 16), tmp_path / "x.pt")
    subprocess.run([sys.executable, "-c", _PLAIN_PROCESS, str(tmp_path / "up"), str(tmp_path / "x.pt"),
                    str(tmp_path / "y.pt")], check=True, cwd=tmp_path)
    reference = _float64_output(exported, torch.load(tmp_path / "x.pt"))
    error = ((torch.load(tmp_path / "y.pt").double() - reference).norm() / reference.norm()).item()
    assert error < 1e-5, error  # float32 arithmetic against float64 (the thread count may differ: not bitwise)


def test_a_refused_export_leaves_the_out_folder_as_it_was(tmp_path):
    """The files are written and checked in a temporary folder, then moved into place: an export
    refused for a plugin object in the record leaves an earlier export of the same name as it was,
    and no folder it made (was: its files written over the earlier ones, then the refusal)."""
    torch.manual_seed(0)
    FNO(**ARGS, conv_module=neuralop_mp.MixedPrecisionSpectralConv).save_checkpoint(tmp_path / "good", "model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        export_upstream_checkpoint(tmp_path / "good", "model", tmp_path / "up")
    before = {path.name: path.read_bytes() for path in (tmp_path / "up").iterdir()}
    assert sorted(before) == ["model_metadata.pkl", "model_state_dict.pt"]

    torch.manual_seed(1)  # the plugin's layer in a partial: upstream's FNO takes it as it is
    FNO(**ARGS, conv_module=functools.partial(neuralop_mp.MixedPrecisionSpectralConv)).save_checkpoint(
        tmp_path / "bad", "model")
    for out in (tmp_path / "up", tmp_path / "new" / "up"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(ValueError, match=r"its model_state_dict\.pt still names the plugin's .*"
                                                 rf"MixedPrecisionSpectralConv.*Nothing was written in {out}"):
                export_upstream_checkpoint(tmp_path / "bad", "model", out)
    assert {path.name: path.read_bytes() for path in (tmp_path / "up").iterdir()} == before
    assert not (tmp_path / "new").exists()
