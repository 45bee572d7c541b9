"""The precision setters warn, once per model, when upstream's checkpoint of the model would
not rebuild what they set (``warn_unrecorded_precision``); not for a temporary switch, not
for the plugin's own classes, and once for a whole precision schedule."""
import functools
import sys
import warnings

import neuralop
import pytest
import torch
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionSpectralConv
from neuralop_mp.layers.autocast_scope import autocast_scope
from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data

LOST = "is upstream's class"  # in every warning of warn_unrecorded_precision


def upstream_fno():
    """Upstream's class with the plugin's layers, as the docs build it."""
    torch.manual_seed(0)
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2,
               conv_module=MixedPrecisionSpectralConv)


def plugin_fno():
    torch.manual_seed(0)
    return MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2)


def lost_warnings(caught):
    return [w for w in caught if LOST in str(w.message)]


class no_lost_warning(warnings.catch_warnings):
    """A block in which a warning of a lost precision is an error."""

    def __enter__(self):
        entered = super().__enter__()
        warnings.filterwarnings("error", message=f".*{LOST}")
        return entered


def test_set_precision_on_upstreams_fno_warns_once_naming_what_is_lost_and_the_plugins_class(tmp_path):
    model = upstream_fno()
    with pytest.warns(UserWarning, match=LOST) as caught:
        neuralop_mp.set_precision(model, "mixed")
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert warning.filename == __file__  # the line that switched, not the plugin's
    assert "fno_block_precision='mixed' (it loads with 'full')" in message, message
    assert "neuralop_mp.MixedPrecisionFNO" in message and "precision_policy=" in message, message
    with no_lost_warning():
        neuralop_mp.set_precision(model, "mixed")  # again: once per model
        neuralop_mp.set_precision(model, "half", stabilizer="tanh")  # nor for a later change
        ours = plugin_fno()
        neuralop_mp.set_precision(ours, "mixed")  # the plugin's class records its settings
        neuralop_mp.set_spectral_weight_dtype(ours, "complex32")
        neuralop_mp.set_autocast_scope(ours, "fno_blocks")
    model.save_checkpoint(tmp_path, "m")  # what the warning says: the record rebuilds "full"
    assert neuralop_mp.get_precision_policy(neuralop_mp.load_model(tmp_path, "m")).fno_block_precision == "full"


@pytest.mark.parametrize("setter, lost", [
    (lambda m: neuralop_mp.set_spectral_weight_dtype(m, "complex32"),
     "spectral_weight_dtype='complex32' (it loads with 'complex64')"),
    (lambda m: neuralop_mp.set_autocast_scope(m, "fno_blocks"), "autocast_scope='fno_blocks' (it loads with 'model')"),
    (lambda m: neuralop_mp.apply_precision_policy(m, {"fno_block_precision": "half", "half_dtype": "bfloat16",
                                                      "autocast_scope": "spectral"}),
     "fno_block_precision='half' (it loads with 'full'), half_dtype='bfloat16' (it loads with 'auto'), "
     "autocast_scope='spectral' (it loads with 'model')"),
])
def test_each_setter_warns_and_a_policy_once_for_all_it_changed(setter, lost):
    model = upstream_fno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setter(model)
    (warning,) = lost_warnings(caught)
    assert lost in str(warning.message) and warning.filename == __file__, str(warning.message)


def test_a_switch_that_leaves_the_recorded_settings_or_no_model_does_not_warn():
    model = upstream_fno()
    with no_lost_warning():
        neuralop_mp.set_precision(model, "full")  # what its record rebuilds
        neuralop_mp.set_autocast_scope(model, "model")
        layer = MixedPrecisionSpectralConv(2, 2, (4, 4))  # a bare layer has no checkpoint record
        neuralop_mp.set_precision(layer, "mixed")
        neuralop_mp.set_spectral_weight_dtype(layer, "complex32")
        neuralop_mp.set_precision(model.fno_blocks, "mixed")  # a part: the model's own switch warns
        neuralop_mp.set_precision(model.fno_blocks, "full")


def test_temporary_switches_do_not_warn_nor_use_up_the_warning():
    """precision() and autocast_scope() restore the model when their block ends: nothing is
    lost, no warning, and the model's one warning is left for a change that stays. A change
    that stays, made inside such a block, is warned when the block ends, for itself alone."""
    model = upstream_fno()
    x = torch.randn(2, 1, 8, 8)
    before = neuralop_mp.get_precision_policy(model)
    with no_lost_warning():
        with neuralop_mp.precision(model, "half", half_dtype="bfloat16"), autocast_scope(model, "spectral"):
            with neuralop_mp.precision(model, "mixed", stabilizer="tanh"):
                model(x)
        with autocast_scope(model, "fno_blocks"), neuralop_mp.precision(model, "mixed"):
            model(x)
    assert neuralop_mp.get_precision_policy(model) == before
    with pytest.warns(UserWarning, match=LOST) as caught:
        with neuralop_mp.precision(model, "half", half_dtype="bfloat16"):
            neuralop_mp.set_spectral_weight_dtype(model, "complex32")  # stays after the block
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert "spectral_weight_dtype='complex32'" in message and "fno_block_precision" not in message, message
    assert "half_dtype" not in message and warning.filename == __file__, message


def test_auto_warns_once_for_its_decision_not_for_its_measurements():
    model = upstream_fno()
    x = torch.randn(2, 1, 16, 16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neuralop_mp.set_precision(model, "auto", calibration=x, half_dtype="bfloat16")
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    decided = neuralop_mp.get_precision(model)[0]
    assert "half_dtype='bfloat16' (it loads with 'auto')" in message, message
    assert (f"fno_block_precision={decided!r}" in message) == (decided != "full"), (decided, message)
    assert warning.filename == __file__


def test_a_schedule_run_of_upstreams_fno_with_the_plugin_enabled_warns_once():
    """An upstream script's own FNO (the plugin's layers), trained by upstream's Trainer while
    the plugin is enabled with a schedule: every phase switches the model, one warning for the
    run, at the script's train call; the plugin's class, trained the same way, none."""
    train, test = tiny_data(n=8, batch_size=8)
    runs = {}
    with neuralop_mp.enabled(schedule="half:0.25,mixed:0.5,full:0.25", half_dtype="bfloat16"):
        for name, model in (("upstream", upstream_fno()), ("plugin", plugin_fno())):
            optimizer, scheduler = optimizer_and_scheduler(model)
            trainer = neuralop.Trainer(model=model, n_epochs=4, device="cpu", verbose=False)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                line = sys._getframe().f_lineno + 1
                trainer.train(train, test, optimizer, scheduler, training_loss=loss(), eval_losses={"l2": loss()})
            runs[name] = lost_warnings(caught)
            assert [h["precision"] for h in trainer.history] == ["half", "mixed", "mixed", "full"]
    (warning,) = runs["upstream"]
    assert (warning.filename, warning.lineno) == (__file__, line)
    assert "fno_block_precision='half'" in str(warning.message)
    assert runs["plugin"] == []


def test_the_warning_has_its_own_class_and_models_never_saved_can_silence_it():
    """Benchmarks build upstream's class with our layers to compare with upstream's rows: they
    silence the warning for those models only (a filter by class, not by message)."""
    from neuralop_mp.bench import gpu
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning, ignoring_unrecorded_precision

    with pytest.warns(UnrecordedPrecisionWarning, match=LOST):
        neuralop_mp.set_precision(upstream_fno(), "mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnrecordedPrecisionWarning)
        with ignoring_unrecorded_precision():
            neuralop_mp.set_precision(upstream_fno(), "mixed")
        variant = next(v for v in gpu.VARIANTS if v.ours)
        gpu.build("FNO", 8, variant, 4, torch.device("cpu"))
    with pytest.warns(UnrecordedPrecisionWarning):  # outside the block, the filter is gone
        neuralop_mp.set_precision(upstream_fno(), "mixed")


@pytest.mark.parametrize("temporary", [lambda a: neuralop_mp.precision(a, "full"),
                                       lambda a: autocast_scope(a, "fno_blocks")], ids=["precision", "autocast_scope"])
@pytest.mark.parametrize("change, lost", [
    (lambda b: neuralop_mp.set_precision(b, "mixed"), "fno_block_precision='mixed'"),
    (lambda b: neuralop_mp.set_spectral_weight_dtype(b, "complex32"), "spectral_weight_dtype='complex32'"),
], ids=["set_precision", "set_spectral_weight_dtype"])
def test_a_change_that_stays_on_another_model_inside_a_temporary_switch_is_warned_at_once(temporary, change, lost):
    a, b = upstream_fno(), upstream_fno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with temporary(a):
            change(b)
            (warning,) = lost_warnings(caught)  # at once, not left to a's block
    assert lost_warnings(caught) == [warning]  # a is restored: nothing more
    assert lost in str(warning.message) and warning.filename == __file__, str(warning.message)


def test_a_suspended_generator_defers_its_models_check_only_and_a_part_is_its_models():
    """A generator suspended inside precision(a, ...) leaves a change that stays on b checked
    at once; a change of a's part (its fno_blocks) inside a's block is a's, warned when it ends."""
    def holding(a):
        with neuralop_mp.precision(a, "full"):
            yield

    a, b = upstream_fno(), upstream_fno()
    suspended = holding(a)
    next(suspended)
    try:
        with pytest.warns(UserWarning, match=LOST):
            neuralop_mp.set_precision(b, "mixed")
    finally:
        with no_lost_warning():
            suspended.close()  # a is restored: nothing to warn about

    with pytest.warns(UserWarning, match=LOST) as caught:
        with neuralop_mp.precision(a, "half"):
            with no_lost_warning():
                neuralop_mp.set_spectral_weight_dtype(a.fno_blocks, "complex32")  # stays; checked with a
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert "spectral_weight_dtype='complex32'" in message and "fno_block_precision" not in message, message
    assert warning.filename == __file__


def _fno_with(layer):
    return FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=1, conv_module=layer,
               fno_block_precision="mixed")


def _uno_with(layer, **block_kwargs):
    from neuralop.layers.fno_block import FNOBlocks
    from neuralop_mp.models.uno_registration import UNO

    # upstream's UNO hands its integral_operator to no block: the layer is its blocks' conv_module
    return UNO(in_channels=1, out_channels=1, hidden_channels=4, n_layers=2, uno_out_channels=[4, 4],
               uno_n_modes=[[4, 4], [4, 4]], uno_scalings=[[1, 1], [1, 1]], channel_mlp_skip="linear",
               operator_block=functools.partial(FNOBlocks, conv_module=layer, **block_kwargs))


@pytest.mark.parametrize("build", [_fno_with, lambda layer: _uno_with(layer, fno_block_precision="mixed")],
                         ids=["FNO", "UNO"])
def test_settings_a_recorded_partial_passes_to_the_layers_are_recorded(build, tmp_path):
    """An upstream model whose layer argument is a functools.partial with precision keywords:
    its checkpoint rebuilds them, so a switch that keeps them does not warn; one that changes
    them names only what it changed."""
    layer = functools.partial(MixedPrecisionSpectralConv, half_dtype="bfloat16", spectral_weight_dtype="complex32")
    model = build(layer)
    built = neuralop_mp.get_precision_policy(model)
    assert (built.fno_block_precision, built.half_dtype, built.spectral_weight_dtype) == (
        "mixed", "bfloat16", "complex32")
    with no_lost_warning():
        neuralop_mp.set_precision(model, "mixed", stabilizer=None)  # changes nothing
        neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    model.save_checkpoint(tmp_path, "m")
    assert neuralop_mp.get_precision_policy(type(model).from_checkpoint(tmp_path, "m")) == built
    with pytest.warns(UserWarning, match=LOST) as caught:
        neuralop_mp.set_precision(model, "half")
    (warning,) = lost_warnings(caught)
    assert str(warning.message).count("(it loads with") == 1, str(warning.message)
    assert "fno_block_precision='half' (it loads with 'mixed')" in str(warning.message), str(warning.message)


def test_a_layer_partials_mode_is_overridden_by_its_block_and_so_not_recorded():
    """FNOBlocks passes its own fno_block_precision to its layers: a mode in the layer's partial
    never reaches them, and the record rebuilds the block's (here its default, "full")."""
    model = _uno_with(functools.partial(MixedPrecisionSpectralConv, fno_block_precision="mixed"))
    assert neuralop_mp.get_precision(model)[0] == "full"
    with pytest.warns(UserWarning, match="fno_block_precision='mixed' \\(it loads with 'full'\\)"):
        neuralop_mp.set_precision(model, "mixed")


@pytest.fixture
def process_group(tmp_path):
    """A one-rank gloo process group, as DistributedDataParallel needs."""
    import torch.distributed as dist

    if dist.is_initialized():
        pytest.skip("a process group is already initialized")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        yield
    finally:
        dist.destroy_process_group()


@pytest.mark.parametrize("wrap", ["DistributedDataParallel", "DataParallel"])
def test_a_wrapped_model_is_checked_as_the_model_it_wraps(wrap, request):
    """The trainer switches its model as given, DistributedDataParallel-wrapped under DDP: warned
    as the model itself is (what is saved is the wrapped model); other containers still pass."""
    if wrap == "DistributedDataParallel":
        request.getfixturevalue("process_group")
    model = upstream_fno()
    wrapped = getattr(torch.nn.parallel, wrap)(model)
    with pytest.warns(UserWarning, match=LOST) as caught:
        neuralop_mp.apply_precision_policy(wrapped, {"fno_block_precision": "mixed", "half_dtype": "bfloat16"})
    (warning,) = lost_warnings(caught)
    assert "fno_block_precision='mixed'" in str(warning.message) and warning.filename == __file__
    with no_lost_warning():
        neuralop_mp.set_precision(model, "half")  # the same model: warned once
        neuralop_mp.set_precision(torch.nn.Sequential(upstream_fno()), "mixed")  # a container: passes


def test_temporary_switches_held_by_generators_may_end_in_any_order():
    """Two blocks held by generators and closed first-in, first-out: once both ended, nothing
    of either model stays deferred (a change that stays is warned for both)."""
    first, second = upstream_fno(), upstream_fno()

    def hold(model):
        with neuralop_mp.precision(model, "half"):
            yield

    held = [hold(first), hold(second)]
    for generator in held:
        next(generator)
    for generator in held:  # not the reverse order of entry
        generator.close()
    for model in (first, second):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            neuralop_mp.set_precision(model, "half")
        assert len(lost_warnings(caught)) == 1


@pytest.mark.parametrize("temporary", [lambda m: neuralop_mp.precision(m, "half", half_dtype="bfloat16"),
                                       lambda m: autocast_scope(m, "spectral")], ids=["precision", "autocast_scope"])
def test_a_change_that_stays_is_warned_when_a_temporary_switch_ends_with_an_error(temporary):
    """The block's error passes unchanged, and its end check still runs: what stays is warned,
    the temporary switch itself (restored) is not."""
    model = upstream_fno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(KeyError, match="the block's own"):
            with temporary(model):
                neuralop_mp.set_spectral_weight_dtype(model, "complex32")  # stays after the block
                raise KeyError("the block's own")
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert "spectral_weight_dtype='complex32'" in message and warning.filename == __file__, message
    assert "fno_block_precision" not in message and "autocast_scope" not in message, message


def test_an_error_in_a_temporary_switch_is_raised_even_where_its_check_fails():
    """A warning filtered into an error at the end check of a block that raises does not
    replace the block's own error (at the end of a block that does not raise, it is raised)."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    with warnings.catch_warnings():
        warnings.simplefilter("error", UnrecordedPrecisionWarning)
        with pytest.raises(KeyError, match="the block's own") as raised:
            with neuralop_mp.precision(upstream_fno(), "half") as model:
                neuralop_mp.set_spectral_weight_dtype(model, "complex32")
                raise KeyError("the block's own")
        assert raised.value.__context__ is None
        with pytest.raises(UnrecordedPrecisionWarning):
            with neuralop_mp.precision(upstream_fno(), "half") as model:
                neuralop_mp.set_spectral_weight_dtype(model, "complex32")


def test_a_temporary_switch_of_a_part_leaves_its_model_checked_at_once():
    """Deferring a part (fno_blocks) defers the part, not the model it belongs to."""
    model = upstream_fno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with neuralop_mp.precision(model.fno_blocks, "full"):
            neuralop_mp.set_spectral_weight_dtype(model, "complex32")
            (warning,) = lost_warnings(caught)  # at once, not left to the part's block
    assert lost_warnings(caught) == [warning] and "spectral_weight_dtype='complex32'" in str(warning.message)


def test_the_once_per_model_record_does_not_keep_a_model_alive():
    import gc
    import weakref

    model = upstream_fno()
    with pytest.warns(UserWarning, match=LOST):
        neuralop_mp.set_precision(model, "mixed")
    gone = weakref.ref(model)
    del model
    gc.collect()
    assert gone() is None
    with pytest.warns(UserWarning, match=LOST):  # a new model is warned for itself
        neuralop_mp.set_precision(upstream_fno(), "mixed")


def _fnogno(cls=None, **kwargs):
    from neuralop.models import FNOGNO

    torch.manual_seed(0)
    return (cls or FNOGNO)(in_channels=1, out_channels=1, gno_coord_dim=2, fno_n_modes=(4, 4), fno_hidden_channels=4,
                           fno_n_layers=1, gno_channel_mlp_hidden_layers=[8], gno_use_open3d=False,
                           gno_use_torch_scatter=False, **kwargs)


def _gino(**kwargs):
    from neuralop.models import GINO

    torch.manual_seed(0)
    return GINO(in_channels=1, out_channels=1, gno_coord_dim=2, fno_n_modes=(4, 4), fno_hidden_channels=4,
                fno_n_layers=1, gno_use_open3d=False, gno_use_torch_scatter=False, **kwargs)


@pytest.mark.parametrize("build", [_fnogno, _gino], ids=["FNOGNO", "GINO"])
def test_fnognos_and_ginos_recorded_layer_partial_and_stabilizer_are_read(build, tmp_path):
    """FNOGNO and GINO record their FNO's layer and stabilizer as fno_conv_module and
    fno_stabilizer: what those rebuild is recorded, and only a change from it is warned."""
    layer = functools.partial(MixedPrecisionSpectralConv, half_dtype="bfloat16", spectral_weight_dtype="complex32")
    model = build(fno_conv_module=layer, fno_block_precision="mixed", fno_stabilizer="tanh")
    built = neuralop_mp.get_precision_policy(model)
    assert built == neuralop_mp.PrecisionPolicy(fno_block_precision="mixed", half_dtype="bfloat16", stabilizer="tanh",
                                                spectral_weight_dtype="complex32", autocast_scope="model")
    with no_lost_warning():
        neuralop_mp.set_precision(model, "mixed")  # changes nothing
        neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    model.save_checkpoint(tmp_path, "m")
    assert neuralop_mp.get_precision_policy(type(model).from_checkpoint(tmp_path, "m")) == built
    with pytest.warns(UserWarning, match=LOST) as caught:
        neuralop_mp.set_precision(model, "half", stabilizer=None)
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert message.count("(it loads with") == 2, message
    assert ("fno_block_precision='half' (it loads with 'mixed')" in message
            and "stabilizer=None (it loads with 'tanh')" in message), message


def test_a_check_raised_as_an_error_at_the_end_of_a_block_that_raises_does_not_use_up_the_warning():
    """The block's error wins over the end check's (filtered into an error): that check is not
    seen, so the model's one warning is still due; the next change that stays raises it."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    model = upstream_fno()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnrecordedPrecisionWarning)
        with pytest.raises(KeyError, match="the block's own"):
            with neuralop_mp.precision(model, "half"):
                neuralop_mp.set_spectral_weight_dtype(model, "complex32")
                raise KeyError("the block's own")
        with pytest.raises(UnrecordedPrecisionWarning, match="spectral_weight_dtype='complex32'"):
            neuralop_mp.set_precision(model, "mixed")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        neuralop_mp.set_precision(model, "half")
    (warning,) = lost_warnings(caught)  # given once it is seen, then once per model as before
    with no_lost_warning():
        neuralop_mp.set_precision(model, "mixed")


class MyFNO(FNO, name="UnrecordedMyFNO"):
    """A user's subclass of upstream's FNO."""


def _fnogno_subclass():
    from neuralop.models import FNOGNO

    class MyFNOGNO(FNOGNO, name="UnrecordedMyFNOGNO"):
        """A user's subclass of upstream's FNOGNO."""

    return MyFNOGNO


def test_the_warning_says_whose_class_the_model_is_and_offers_only_what_loads_it():
    """Upstream's class with a plugin class for it: that class, or load_model's precision_policy
    (it builds the plugin's class); a user's subclass, or upstream's class without a plugin
    class for it (FNOGNO): set them again after loading (load_model refuses precision_policy)."""
    torch.manual_seed(0)
    my_fno = MyFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=1,
                   conv_module=MixedPrecisionSpectralConv)
    fnogno = _fnogno(fno_conv_module=MixedPrecisionSpectralConv)
    my_fnogno = _fnogno(_fnogno_subclass(), fno_conv_module=MixedPrecisionSpectralConv)
    again = "Set the precision again after loading the checkpoint (neuralop_mp.set_precision)"
    cases = [
        (upstream_fno(), "FNO is upstream's class", "neuralop_mp.MixedPrecisionFNO (what"),
        (my_fno, "MyFNO is a subclass of upstream's FNO",
         f"{again}, or derive MyFNO from neuralop_mp.MixedPrecisionFNO"),
        (fnogno, "FNOGNO is upstream's class", f"{again}; the plugin's classes"),
        (my_fnogno, "MyFNOGNO is a subclass of upstream's FNOGNO", f"{again}; the plugin's classes"),
    ]
    for model, whose, advice in cases:
        with pytest.warns(UserWarning, match="its checkpoint") as caught:
            neuralop_mp.set_precision(model, "mixed")
        (warning,) = [w for w in caught if "its checkpoint" in str(w.message)]
        message = str(warning.message)
        assert message.startswith(whose + ": ") and advice in message and warning.filename == __file__, message
        assert ("precision_policy=" in message) is (type(model) is FNO), message
        # each sentence starts with a capital, or with a name of code
        assert all(sentence[:1].isupper() or sentence.startswith("neuralop_mp.") for sentence in message.split(". "))


def test_a_setter_on_a_wrapper_of_a_model_in_a_temporary_switch_is_left_to_its_end():
    """Inside a temporary switch of a model, a setter on its DataParallel wrapper switches the
    same model: checked when the block ends (the switch itself restored, not warned)."""
    model = upstream_fno()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with neuralop_mp.precision(model, "half"):
            neuralop_mp.set_spectral_weight_dtype(torch.nn.DataParallel(model), "complex32")
            assert not lost_warnings(caught)
    (warning,) = lost_warnings(caught)
    message = str(warning.message)
    assert "spectral_weight_dtype='complex32'" in message and "fno_block_precision" not in message, message
