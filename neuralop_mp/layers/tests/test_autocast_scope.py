"""Autocast scopes: which layers autocast rounds to 16 bits, and which run exactly as float32."""
import copy

import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO
from neuralop_mp.layers.autocast_scope import autocast_scope, get_autocast_scope, set_autocast_scope
from neuralop_mp.layers.spectral_conv import MixedPrecisionSpectralConv
from neuralop_mp.vocabulary import resolve_autocast_scope

SMALL = dict(in_channels=1, out_channels=1, hidden_channels=8, n_layers=2, fno_block_precision="mixed",
             half_dtype="bfloat16")


def _model(arch, scope):
    torch.manual_seed(0)
    if arch == "uno":
        return MixedPrecisionUNO(in_channels=1, out_channels=1, hidden_channels=8, n_layers=3,
                                 uno_out_channels=[8, 8, 8], uno_n_modes=[[4, 4], [4, 4], [4, 4]],
                                 uno_scalings=[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]], channel_mlp_skip="linear",
                                 fno_block_precision="mixed", half_dtype="bfloat16", autocast_scope=scope)
    cls = MixedPrecisionTFNO if arch == "tfno" else MixedPrecisionFNO
    return cls(n_modes=(4, 4), autocast_scope=scope, **SMALL)


def _roles(model):
    """``{name: module}`` of the layers outside the FNO blocks and the pointwise layers inside."""
    outside = {"lifting": model.lifting, "projection": model.projection}
    if hasattr(model, "horizontal_skips"):
        outside.update({f"horizontal_skips.{k}": m for k, m in model.horizontal_skips.items()})
    blocks = [model.fno_blocks] if not isinstance(model.fno_blocks, torch.nn.ModuleList) else list(model.fno_blocks)
    inside = {}
    for b, block in enumerate(blocks):
        inside.update({f"block{b}.fno_skip": block.fno_skips[0], f"block{b}.channel_mlp": block.channel_mlp[0]})
    return outside, inside


def _record(modules):
    """Forward hooks recording (input, output) of each named module's first call."""
    records, handles = {}, []
    for name, module in modules.items():
        def hook(m, args, out, name=name):
            records.setdefault(name, (args[0].detach(), out.detach()))
        handles.append(module.register_forward_hook(hook))
    return records, handles


@pytest.mark.parametrize("arch", ["fno", "tfno", "uno"])
@pytest.mark.parametrize("scope", ["model", "fno_blocks", "spectral"])
def test_float32_scoped_layers_equal_a_float32_run_bitwise_and_the_others_are_16_bit(arch, scope):
    model = _model(arch, scope).eval()
    outside, inside = _roles(model)
    records, handles = _record({**outside, **inside})
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    for handle in handles:
        handle.remove()
    float32_layers = {"model": {}, "fno_blocks": outside, "spectral": {**outside, **inside}}[scope]
    for name, (layer_input, output) in records.items():
        module = {**outside, **inside}[name]
        if name in float32_layers:
            with torch.no_grad():  # the same layer, no autocast, on its recorded input in float32
                expected = module(layer_input.float())
            assert output.dtype == torch.float32 and torch.equal(output, expected), name
        else:
            assert output.dtype == torch.bfloat16, name
    with torch.no_grad():
        reference = model(x)  # no autocast
    if scope == "spectral":  # autocast changes nothing: 16 bits only inside the spectral layers
        assert torch.equal(y, reference)
    else:
        assert y.dtype == (torch.bfloat16 if scope == "model" else torch.float32)
        assert not torch.equal(y.float(), reference)


def test_scope_is_a_constructor_argument_kept_by_checkpoints_with_upstream_state_dict_keys(tmp_path):
    model = _model("fno", "fno_blocks")
    upstream = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    assert model.state_dict().keys() - {"_metadata"} == upstream.state_dict().keys() - {"_metadata"}
    model.load_state_dict(upstream.state_dict(), strict=False)  # an upstream checkpoint still loads
    x = torch.randn(2, 1, 16, 16)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = model(x)
    set_autocast_scope(model, "spectral")
    with autocast_scope(model, "fno_blocks"):  # the context manager restores the previous scope
        model.save_checkpoint(tmp_path, "m")
    assert get_autocast_scope(model) == "spectral"
    for restored in (MixedPrecisionFNO.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m"),
                     copy.deepcopy(_model("fno", "fno_blocks"))):
        assert restored.precision_policy.autocast_scope == "fno_blocks"
        restored.load_state_dict(model.state_dict())
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            assert torch.equal(restored(x), expected)


def test_bad_scope_names_the_value_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"Invalid MixedPrecisionFNO\.autocast_scope='blocks'; allowed values: "
                                         r"'auto', 'model', 'fno_blocks', 'spectral'\."):
        _model("fno", "blocks")
    layer = MixedPrecisionSpectralConv(4, 4, n_modes=(4, 4))
    with pytest.raises(ValueError, match=r"autocast_scope='fno_blocks' for MixedPrecisionSpectralConv.*allowed "
                                         r"values for it: 'auto', 'model', 'spectral'"):
        set_autocast_scope(layer, "fno_blocks")
    with pytest.raises(ValueError, match="'auto', 'model', 'fno_blocks', 'spectral'"):
        neuralop_mp.get_model({"model": {"model_arch": "fno", "data_channels": 1, "out_channels": 1,
                                         "n_modes": [4, 4], "autocast_scope": 3}})


def test_autocast_is_restored_after_a_scoped_layer_raises_and_gradients_flow():
    model = _model("fno", "fno_blocks")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        with pytest.raises(RuntimeError):
            model(torch.randn(2, 3, 16, 16))  # 3 channels: the lifting's convolution raises
        assert torch.is_autocast_enabled("cpu")
        loss = model(torch.randn(2, 1, 16, 16)).float().square().mean()
    loss.backward()
    assert model.lifting.fcs[0].weight.grad is not None and torch.isfinite(model.lifting.fcs[0].weight.grad).all()


def test_auto_scope_is_resolved_per_device_and_upstream_models_keep_plain_autocast():
    assert resolve_autocast_scope("auto", "cuda") == "model"
    assert resolve_autocast_scope(None, "cuda") == "model"
    assert resolve_autocast_scope("fno_blocks", "cuda") == "fno_blocks"
    upstream = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                   conv_module=MixedPrecisionSpectralConv)
    assert get_autocast_scope(upstream) == "model"
    assert get_autocast_scope(_model("fno", "auto")) == "auto"


def test_trainer_with_autocast_in_scope_spectral_trains_exactly_as_mixed_without_autocast():
    """The CPU default ("auto" is "spectral" there): a "mixed" phase with autocast on ends
    with bit-identical weights to one with autocast off; scope "model" does not."""
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data
    from neuralop_mp.vocabulary import AUTO_AUTOCAST_SCOPE

    assert resolve_autocast_scope("auto", "cpu") == AUTO_AUTOCAST_SCOPE["other"] == "spectral"

    def train(schedule, scope):
        model = _model("fno", scope)
        trainer = neuralop_mp.MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule=schedule,
                                                    half_dtype="bfloat16", verbose=False)
        train_loader, test_loaders = tiny_data(n=8, size=8)
        torch.manual_seed(1)
        trainer.train(train_loader, test_loaders, *optimizer_and_scheduler(model), training_loss=loss())
        assert [h["autocast"] for h in trainer.history] == [schedule == "mixed"]
        return [p.detach().clone() for p in model.parameters()]

    reference = train("mixed/noautocast", "model")
    for scope, equal in (("auto", True), ("spectral", True), ("model", False)):
        weights = train("mixed", scope)
        assert all(torch.equal(a, b) for a, b in zip(weights, reference)) is equal, scope


def test_a_wrapper_or_container_reads_and_sets_the_scope_of_the_models_inside():
    """Set on an nn.Sequential (an EMA holder) or a DataParallel, the scope was stored on the wrapper
    and changed nothing inside, without a word, and the wrapper read as plain autocast."""
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              fno_block_precision="mixed", half_dtype="bfloat16", autocast_scope="fno_blocks")
    lifted = []
    model.lifting.register_forward_hook(lambda module, args, out: lifted.append(out.dtype))
    x = torch.randn(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    for wrapper in (torch.nn.Sequential(model), torch.nn.DataParallel(model)):
        set_autocast_scope(model, "fno_blocks")
        assert get_autocast_scope(wrapper) == "fno_blocks"
        assert neuralop_mp.get_precision_policy(wrapper).autocast_scope == "fno_blocks"
        assert set_autocast_scope(wrapper, "model") == "fno_blocks" and get_autocast_scope(model) == "model"
        with torch.autocast("cpu", dtype=torch.bfloat16):
            wrapper(x)
        assert lifted[-1] == torch.bfloat16  # the lifting runs under autocast now: the request reached it
    other = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                              autocast_scope="spectral")
    holder = torch.nn.ModuleDict({"a": model, "b": other})  # e.g. a model and its EMA copy
    with pytest.raises(ValueError, match=r"models inside ModuleDict have different autocast scopes \(model, spectral\)"):
        get_autocast_scope(holder)
    with autocast_scope(holder, "fno_blocks"):  # a temporary scope gives each model its own back
        assert get_autocast_scope(holder) == "fno_blocks"
    assert (get_autocast_scope(model), get_autocast_scope(other)) == ("model", "spectral")
    assert set_autocast_scope(holder, "fno_blocks") is None  # no one previous scope, but one now
    assert get_autocast_scope(holder) == get_autocast_scope(other) == "fno_blocks"
    set_autocast_scope(other, "spectral")
    neuralop_mp.apply_precision_policy(holder, {"autocast_scope": "model"})  # the same through the policy API
    assert get_autocast_scope(holder) == "model"
    plain = torch.nn.Sequential(torch.nn.Linear(2, 2))  # no operator inside: the container's own scope
    assert set_autocast_scope(plain, "spectral") == "model" and get_autocast_scope(plain) == "spectral"


def test_a_scope_set_through_a_container_warns_of_a_checkpoint_that_loses_it_and_applies_to_plain_models():
    """Set through an nn.Sequential on upstream's FNO with the plugin's layers, the scope its checkpoint
    would not keep was set without the warning a direct set gives; on upstream's FNO with upstream's
    layers, apply_precision_policy ignored an autocast_scope given alone."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    upstream = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                   conv_module=MixedPrecisionSpectralConv)
    with pytest.warns(UnrecordedPrecisionWarning, match="autocast_scope='fno_blocks'"):
        set_autocast_scope(torch.nn.Sequential(upstream), "fno_blocks")
    other = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1,
                conv_module=MixedPrecisionSpectralConv)
    with pytest.warns(UnrecordedPrecisionWarning, match="autocast_scope='fno_blocks'"):  # the policy API alike
        neuralop_mp.apply_precision_policy(torch.nn.Sequential(other), {"autocast_scope": "fno_blocks"})
    plain = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
    neuralop_mp.set_precision(plain, "full", stabilizer="tanh")
    neuralop_mp.apply_precision_policy(plain, {"autocast_scope": "fno_blocks"})
    assert get_autocast_scope(plain) == "fno_blocks"
    assert plain.fno_blocks.stabilizer == "tanh"  # a setting not given is kept
    neuralop_mp.apply_precision_policy(plain, {"fno_block_precision": "full"})
    assert plain.fno_blocks.stabilizer == "tanh" and get_autocast_scope(plain) == "fno_blocks"
