"""Precision survives upstream's checkpoint API; upstream checkpoints load into ours and back."""
import warnings

import neuralop
import pytest
import torch
from neuralop.models import FNO
from neuralop.models.base_model import BaseModel
from zencfg.bunch import Bunch

import neuralop_mp
from neuralop_mp import MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO, PrecisionPolicy
from neuralop_mp.layers.weight_storage import spectral_weight_parameters
from neuralop_mp.tests.exact import equal_exactly

from .test_registry import SMALL

_NON_DEFAULT_MIXED = dict(fno_block_precision="mixed", half_dtype="bfloat16", stabilizer="tanh",
                          spectral_weight_dtype="complex32")
NON_DEFAULT = {
    "fno": _NON_DEFAULT_MIXED,
    "tfno": dict(fno_block_precision="half", half_dtype="float16", stabilizer="tanh",
                 spectral_weight_dtype="complex32"),
    "uno": _NON_DEFAULT_MIXED,
}
PLUGIN_CLASS = {"fno": MixedPrecisionFNO, "tfno": MixedPrecisionTFNO, "uno": MixedPrecisionUNO}


def build(arch, **policy):
    torch.manual_seed(0)
    return neuralop_mp.get_model(Bunch({"model": {**SMALL[arch], **policy}}))


def weights(model):
    return {k: v for k, v in model.state_dict().items() if k != "_metadata"}


def assert_same_weights(a, b, *, cast=None):
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for key in wa:
        left, right = wa[key], wb[key]
        if cast is not None:
            left, right = left.to(cast) if left.is_complex() else left, right.to(cast) if right.is_complex() else right
        assert equal_exactly(left, right), key


@pytest.mark.parametrize("arch", ["fno", "tfno", "uno"])
@pytest.mark.parametrize("loader", ["from_checkpoint", "load_model"])
def test_precision_dtypes_and_weights_survive_a_checkpoint(arch, loader, tmp_path):
    model = build(arch, **NON_DEFAULT[arch])
    assert type(model) is PLUGIN_CLASS[arch]
    model.save_checkpoint(tmp_path, "m")
    if loader == "from_checkpoint":
        loaded = type(model).from_checkpoint(tmp_path, "m")
    else:
        loaded = neuralop_mp.load_model(tmp_path, "m")
    assert type(loaded) is type(model)
    assert loaded.precision_policy == PrecisionPolicy(**NON_DEFAULT[arch]) == model.precision_policy
    assert {p.dtype for layer in neuralop_mp.mixed_precision_layers(loaded)
            for p in spectral_weight_parameters(layer)} == {torch.complex32}
    assert_same_weights(model, loaded)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))  # same weights, same settings: bit for bit


def test_checkpoint_records_the_precision_the_model_is_in_when_saved(tmp_path):
    model = build("fno", fno_block_precision="mixed", half_dtype="bfloat16")
    neuralop_mp.set_precision(model, "full", stabilizer="tanh")  # e.g. the last phase of a schedule
    model.save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m")
    assert loaded.precision_policy == PrecisionPolicy("full", "bfloat16", "tanh", "complex64")


def test_layers_in_different_precisions_save_the_model_level_record_and_warn_once(tmp_path):
    model = build("fno", fno_block_precision="mixed", half_dtype="bfloat16")
    neuralop_mp.set_precision(model, "full")
    model.state_dict()  # records "full"
    neuralop_mp.mixed_precision_layers(model)[0].fno_block_precision = "mixed"  # one layer set by hand
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        state = model.state_dict()
        model.state_dict()
        model.save_checkpoint(tmp_path, "m")
    messages = [str(w.message) for w in caught if "per-layer settings must be reapplied" in str(w.message)]
    assert len(messages) == 1 and "different precisions" in messages[0]
    # the record stays as last written
    assert state["_metadata"]["fno_block_precision"] == "full"
    loaded = neuralop_mp.load_model(tmp_path, "m")
    assert loaded.precision_policy == PrecisionPolicy("full", "bfloat16", None, "complex64")
    assert_same_weights(model, loaded)


def test_a_later_state_dict_leaves_an_earlier_ones_metadata_alone():
    torch.manual_seed(0)
    model = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    first = model.state_dict()
    neuralop_mp.set_precision(model, "mixed")
    second = model.state_dict()
    assert first["_metadata"]["fno_block_precision"] == "full"
    assert second["_metadata"]["fno_block_precision"] == "mixed"


@pytest.mark.parametrize("policy", [None, "mixed"])
@pytest.mark.parametrize("cls", [FNO, MixedPrecisionFNO])
def test_a_model_built_with_positional_arguments_loads(tmp_path, cls, policy):
    torch.manual_seed(0)
    model = cls((8, 8), 1, 1, 8, 2)  # n_layers=2 positionally: upstream's record also holds its default, 4
    model.save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m", precision_policy=policy)
    assert loaded.n_layers == 2 and loaded.hidden_channels == 8 and tuple(loaded.n_modes) == (8, 8)
    assert_same_weights(model, loaded)
    if policy is not None:
        assert loaded.precision_policy.fno_block_precision == policy


@pytest.mark.parametrize("cls", [MixedPrecisionFNO, MixedPrecisionTFNO])
def test_upstreams_from_checkpoint_loads_a_plugin_model_built_with_positional_arguments(tmp_path, cls):
    """The plugin's classes record positional arguments by name: upstream's own classmethod
    rebuilds them (for upstream's FNO it fails, "multiple values": load_model is the way)."""
    torch.manual_seed(0)
    model = cls((8, 8), 1, 1, 8, 2, fno_block_precision="mixed", half_dtype="bfloat16")
    neuralop_mp.set_precision(model, "half")
    model.save_checkpoint(tmp_path, "m")
    loaded = cls.from_checkpoint(tmp_path, "m")
    assert loaded.n_layers == 2 and loaded.hidden_channels == 8 and tuple(loaded.n_modes) == (8, 8)
    assert loaded.precision_policy == model.precision_policy and loaded.precision_policy.fno_block_precision == "half"
    assert_same_weights(model, loaded)
    FNO((8, 8), 1, 1, 8, 2).save_checkpoint(tmp_path, "up")
    with pytest.raises(TypeError, match="multiple values for argument 'n_layers'"):
        FNO.from_checkpoint(tmp_path, "up")


class _WidthFNO(MixedPrecisionFNO, name="WidthFNO"):
    """A user's subclass with its own constructor, calling the plugin's positionally."""

    def __init__(self, width=4, **kwargs):
        super().__init__((8, 8), 1, 1, width, **kwargs)


class _PassThroughFNO(MixedPrecisionFNO, name="PassThroughFNO"):
    """A user's subclass whose constructor passes its arguments on as they came."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)


def test_a_subclass_passing_positional_arguments_through_is_rebuilt_by_upstreams_classmethod(tmp_path):
    torch.manual_seed(0)
    model = _PassThroughFNO((8, 8), 1, 1, 12, 2)
    model.save_checkpoint(tmp_path, "m")
    for loaded in (_PassThroughFNO.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m", _PassThroughFNO)):
        assert type(loaded) is _PassThroughFNO and loaded.hidden_channels == 12 and loaded.n_layers == 2
        assert_same_weights(model, loaded)


class _RenamedFNO(MixedPrecisionFNO, name="RenamedFNO"):
    """A user's subclass passing its arguments on under names of its own."""

    def __init__(self, modes, cin, cout, width, **kwargs):
        super().__init__(modes, cin, cout, width, **kwargs)


def test_a_subclass_renaming_positional_arguments_keeps_upstreams_record(tmp_path):
    """Its record keeps the arguments positional: recorded under our names, its own
    constructor could not take them back."""
    torch.manual_seed(0)
    model = _RenamedFNO((8, 8), 1, 1, 12, n_layers=2)
    model.save_checkpoint(tmp_path, "m")
    for loaded in (_RenamedFNO.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m", _RenamedFNO)):
        assert type(loaded) is _RenamedFNO and loaded.hidden_channels == 12 and loaded.n_layers == 2
        assert_same_weights(model, loaded)


@pytest.mark.parametrize("args, kwargs", [((12,), {"n_layers": 2}), ((), {"width": 12, "n_layers": 2})])
def test_a_subclass_with_its_own_constructor_keeps_its_own_record(tmp_path, args, kwargs):
    """Upstream's record holds the arguments of the user's call (the subclass's): renaming the
    positional arguments the subclass passes on would replace them with the parent's."""
    torch.manual_seed(0)
    model = _WidthFNO(*args, **kwargs)
    model.save_checkpoint(tmp_path, "m")
    for loaded in (_WidthFNO.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m", _WidthFNO)):
        assert type(loaded) is _WidthFNO and loaded.hidden_channels == 12 and loaded.n_layers == 2
        assert_same_weights(model, loaded)


class _NarrowFNO(MixedPrecisionFNO, name="NarrowFNO"):
    """A user's subclass with a narrow constructor of its own: no **kwargs, no policy keys."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1,
                         fno_block_precision="mixed", half_dtype="bfloat16")


class _NarrowSubFNO(_NarrowFNO, name="NarrowSubFNO"):
    """A subclass of it that keeps its constructor."""


@pytest.mark.parametrize("cls", [_NarrowFNO, _NarrowSubFNO])
@pytest.mark.parametrize("args, kwargs", [((), {}), ((6,), {}), ((), {"width": 6})])
def test_a_subclass_with_a_narrow_constructor_is_rebuilt_from_its_own_record(tmp_path, cls, args, kwargs):
    """Upstream records the arguments of the subclass's own constructor (not the plugin class's
    signature it would inherit), so upstream's classmethod and load_model can call it again."""
    torch.manual_seed(0)
    model = cls(*args, **kwargs)
    model.save_checkpoint(tmp_path, "m")
    rebuilt = (cls.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m"),
               neuralop_mp.load_model(tmp_path, "m", cls))
    for loaded in rebuilt:
        assert type(loaded) is cls and loaded.hidden_channels == (6 if args or kwargs else 4)
        assert loaded.precision_policy == model.precision_policy
        assert loaded.precision_policy.fno_block_precision == "mixed"
        assert_same_weights(model, loaded)


def test_a_narrow_subclass_saved_in_another_precision_than_it_builds_warns_once(tmp_path):
    """Its constructor takes no policy key: the record cannot keep a precision set since it was
    built, and the save says so (once per model), naming what it loads with instead."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = _NarrowFNO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")  # as built: nothing is lost
        neuralop_mp.set_precision(model, "half")  # the plugin's class: no warning at the switch
    with pytest.warns(UnrecordedPrecisionWarning) as caught:
        model.save_checkpoint(tmp_path, "m")
    (warning,) = caught
    message = str(warning.message)
    assert ("NarrowFNO's constructor does not take fno_block_precision" in message
            and "fno_block_precision='half' (it loads with 'mixed')" in message and "half_dtype" not in message
            and warning.filename == __file__), message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.state_dict()  # once per model
    assert neuralop_mp.load_model(tmp_path, "m").precision_policy.fno_block_precision == "mixed"



class _ModesFNO(MixedPrecisionFNO, name="ModesFNO"):
    """A user's subclass taking its modes as ``*args``: ``_ModesFNO(4, 4)``."""

    def __init__(self, *n_modes, width=6):
        super().__init__(n_modes, 1, 1, width, n_layers=1)


class _PositionalOnlyFNO(MixedPrecisionFNO, name="PositionalOnlyFNO"):
    """A user's subclass whose width is positional-only."""

    def __init__(self, width=4, /):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1)


class _PrependFNO(MixedPrecisionFNO, name="PrependFNO"):
    """A user's subclass fixing the first argument and passing the others on as they came."""

    def __init__(self, *args, **kwargs):
        super().__init__((4, 4), *args, **kwargs)


@pytest.mark.parametrize("make, args, width", [
    (lambda: _ModesFNO(4, 4), (4, 4), 6),
    (lambda: _ModesFNO(4, 4, width=8), (4, 4), 8),
    (lambda: _PositionalOnlyFNO(6), (6,), 6),
    (lambda: _PositionalOnlyFNO(), (), 4),
    (lambda: _PrependFNO(1, 1, 6, 1), (1, 1, 6, 1), 6),
], ids=["*args", "*args+keyword", "positional-only", "positional-only default", "*args passed on"])
def test_a_subclass_taking_arguments_only_by_position_is_built_and_rebuilt(tmp_path, make, args, width):
    """Values only a position reaches (``*args``, positional-only parameters) stay positional in the
    record, and no positional-only parameter is recorded by name: upstream's classmethod, which
    calls ``cls(*args, **record)``, and neuralop_mp.load_model rebuild the model, in the precision set on it where its
    constructor takes the policy's keys."""
    torch.manual_seed(0)
    model = make()
    assert model.hidden_channels == width
    assert model._init_kwargs["args"] == args
    assert ("width" in model._init_kwargs) is isinstance(model, _ModesFNO)  # by name only where a keyword takes it
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")
    for loaded in (type(model).from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m")):
        assert type(loaded) is type(model) and loaded.hidden_channels == width
        assert_same_weights(model, loaded)
    if isinstance(model, _PrependFNO):  # its **kwargs take the policy's keys: a switch is recorded
        neuralop_mp.set_precision(model, "half")
        model.save_checkpoint(tmp_path, "m")
        assert type(model).from_checkpoint(tmp_path, "m").precision_policy.fno_block_precision == "half"


class _SwitchingFNO(MixedPrecisionFNO, name="SwitchingFNO"):
    """A user's subclass whose constructor switches the model after the plugin's built it."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1,
                         fno_block_precision="mixed")
        neuralop_mp.set_precision(self, "half")


def test_what_a_narrow_constructor_builds_is_taken_when_it_returns(tmp_path):
    """The settings a narrow subclass's checkpoint rebuilds are those its whole constructor leaves
    (here "half", switched after the plugin's constructor): saved as built, nothing is warned; a
    later switch away from them is warned and loads in them."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = _SwitchingFNO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")
    assert _SwitchingFNO.from_checkpoint(tmp_path, "m").precision_policy == model.precision_policy
    neuralop_mp.set_precision(model, "mixed")
    with pytest.warns(UnrecordedPrecisionWarning, match="fno_block_precision='mixed' \\(it loads with 'half'\\)"):
        model.save_checkpoint(tmp_path, "m")
    assert neuralop_mp.load_model(tmp_path, "m").precision_policy.fno_block_precision == "half"


class _WidthMixin:
    """A mixin with a narrow constructor, placed before the plugin's class."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1,
                         fno_block_precision="mixed")


class _MixedInFNO(_WidthMixin, MixedPrecisionFNO, name="MixedInFNO"):
    pass


def test_a_subclass_built_by_a_mixins_constructor_is_recorded_by_it(tmp_path):
    """The constructor that ``cls(...)`` runs is the mixin's: upstream records its arguments, and
    what it builds is what a switch is compared with."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = _MixedInFNO(6)
    model.save_checkpoint(tmp_path, "m")
    for loaded in (_MixedInFNO.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m")):
        assert type(loaded) is _MixedInFNO and loaded.hidden_channels == 6
        assert loaded.precision_policy.fno_block_precision == "mixed"
        assert_same_weights(model, loaded)
    neuralop_mp.set_precision(model, "half")
    with pytest.warns(UnrecordedPrecisionWarning, match="MixedInFNO's constructor does not take fno_block_precision"):
        model.save_checkpoint(tmp_path, "m")


def test_a_narrow_subclass_pickled_before_its_build_was_noted_saves_without_a_warning(tmp_path):
    """A whole-model pickle of the code before (no note of what its constructor builds) saves: the
    keys its constructor takes are recorded, and nothing is warned (there is nothing to compare with)."""
    torch.manual_seed(0)
    model = _NarrowFNO(6)
    del model.__dict__["_built_policy"]  # as unpickled from the code before
    neuralop_mp.set_precision(model, "half")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        state = model.state_dict()
        model.save_checkpoint(tmp_path, "m")
    assert "fno_block_precision" not in state["_metadata"]
    assert _NarrowFNO.from_checkpoint(tmp_path, "m").hidden_channels == 6


def test_the_narrow_subclass_warning_names_the_line_that_saved_through_a_container_and_its_grammar():
    """Saved through a container (or a data-parallel wrapper), the warning names the caller's line,
    not torch's; one setting lost is "it"."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = _NarrowFNO()
    neuralop_mp.set_precision(model, "half")
    with pytest.warns(UnrecordedPrecisionWarning) as caught:
        torch.nn.Sequential(model).state_dict()
    (warning,) = caught
    message = str(warning.message)
    assert warning.filename == __file__, warning.filename
    assert "rebuilds it as that constructor builds it" in message and "them" not in message, message


@pytest.mark.parametrize("target, policy", [(_PassThroughFNO, None), ("tfno", None), (None, "mixed"),
                                            ("mixedprecisiontfno", "mixed")])
def test_an_upstream_checkpoint_built_positionally_loads_into_a_class_taking_any_arguments(tmp_path, target, policy):
    """The record's positional values are named after the class that saved it (FNO): a class whose
    own signature is (*args, **kwargs) (a pass-through subclass, upstream's TFNO) would otherwise
    get them by position beside the recorded defaults ("multiple values for argument 'n_layers'")."""
    torch.manual_seed(0)
    model = FNO((8, 8), 1, 1, 8, 2)  # n_layers=2 positionally: the record also holds its default, 4
    model.save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m", target, precision_policy=policy)
    assert loaded.n_layers == 2 and loaded.hidden_channels == 8 and tuple(loaded.n_modes) == (8, 8)
    assert_same_weights(model, loaded)
    if policy is not None:
        assert loaded.precision_policy.fno_block_precision == policy


def test_a_subclass_taking_the_plugins_arguments_loads_its_checkpoint_in_its_precision(tmp_path):
    """A subclass passing every argument on to the plugin's class takes the policy's keys: loaded
    into it, a plugin checkpoint keeps its settings (nothing is dropped as for upstream's classes)."""
    torch.manual_seed(0)
    model = MixedPrecisionFNO((8, 8), 1, 1, 8, 2, fno_block_precision="mixed", half_dtype="bfloat16")
    model.save_checkpoint(tmp_path, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = neuralop_mp.load_model(tmp_path, "m", _PassThroughFNO)
    assert type(loaded) is _PassThroughFNO and loaded.precision_policy == model.precision_policy
    assert_same_weights(model, loaded)


class _PassOfNarrowFNO(_NarrowFNO, name="PassOfNarrowFNO"):
    """A pass-through subclass of a narrow subclass: its **kwargs reach a constructor taking none
    of the policy's keys."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)


class _KwOfNarrowFNO(_NarrowFNO, name="KwOfNarrowFNO"):
    """A subclass of a narrow subclass taking **kwargs (and passing them on to it)."""

    def __init__(self, width=4, **kwargs):
        super().__init__(width, **kwargs)


class _SwitchingKwOfNarrowFNO(_NarrowFNO, name="SwitchingKwOfNarrowFNO"):
    """As _KwOfNarrowFNO, switching the model once the narrow constructor has built it."""

    def __init__(self, width=4, **kwargs):
        super().__init__(width, **kwargs)
        neuralop_mp.set_precision(self, "half")


@pytest.mark.parametrize("cls, built", [(_PassOfNarrowFNO, "mixed"), (_KwOfNarrowFNO, "mixed"),
                                        (_SwitchingKwOfNarrowFNO, "half")])
def test_a_subclass_whose_kwargs_reach_a_narrow_constructor_records_none_of_the_policy(tmp_path, cls, built):
    """Which keys a constructor takes follows its **kwargs up to the constructor they reach (here
    the narrow one): none of the policy's keys is recorded, what its own constructor leaves the
    model in is what a save compares with, and a later switch is warned and loads as built."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = cls(6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")  # as built: nothing is lost
    assert not set(PrecisionPolicy.keys()) & set(model._init_kwargs)
    for loaded in (cls.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m")):
        assert type(loaded) is cls and loaded.hidden_channels == 6
        assert loaded.precision_policy == model.precision_policy and loaded.precision_policy.fno_block_precision == built
        assert_same_weights(model, loaded)
    neuralop_mp.set_precision(model, "full")
    with pytest.warns(UnrecordedPrecisionWarning,
                      match=f"{cls.__name__}'s constructor does not take fno_block_precision: .*"
                            f"fno_block_precision='full' \\(it loads with '{built}'\\)"):
        model.save_checkpoint(tmp_path, "m")
    assert neuralop_mp.load_model(tmp_path, "m").precision_policy.fno_block_precision == built


class _ModeFirstFNO(MixedPrecisionFNO, name="ModeFirstFNO"):
    """A user's subclass taking the mode first and its modes as ``*args``: ``_ModeFirstFNO("mixed", 4, 4)``."""

    def __init__(self, fno_block_precision="full", *n_modes):
        super().__init__(n_modes, 1, 1, 4, n_layers=1, fno_block_precision=fno_block_precision)


class _ModeFirstKwFNO(MixedPrecisionFNO, name="ModeFirstKwFNO"):
    """As _ModeFirstFNO, passing the other keys on through **kwargs."""

    def __init__(self, fno_block_precision="full", *n_modes, **kwargs):
        super().__init__(n_modes, 1, 1, 4, n_layers=1, fno_block_precision=fno_block_precision, **kwargs)


@pytest.mark.parametrize("cls", [_ModeFirstFNO, _ModeFirstKwFNO])
def test_a_policy_key_passed_by_position_stays_in_the_records_positional_arguments(tmp_path, cls):
    """The record holds the mode in its positional arguments: recorded by keyword too, a rebuild
    would pass it twice. A later switch of it cannot be recorded: warned, it loads as built."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = cls("mixed", 4, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")
    assert model._init_kwargs["args"] == ("mixed", 4, 4) and "fno_block_precision" not in model._init_kwargs
    for loaded in (cls.from_checkpoint(tmp_path, "m"), neuralop_mp.load_model(tmp_path, "m")):
        assert type(loaded) is cls and loaded.precision_policy.fno_block_precision == "mixed"
        assert_same_weights(model, loaded)
    neuralop_mp.set_precision(model, "half")
    with pytest.warns(UnrecordedPrecisionWarning) as caught:
        model.save_checkpoint(tmp_path, "m")
    (warning,) = caught
    message = str(warning.message)
    assert (f"{cls.__name__}'s constructor took fno_block_precision by position" in message
            and "fno_block_precision='half' (it loads with 'mixed')" in message
            and "Pass fno_block_precision by keyword to record it." in message and "Take" not in message), message
    assert cls.from_checkpoint(tmp_path, "m").precision_policy.fno_block_precision == "mixed"


@pytest.mark.parametrize("make, target, saver, error", [
    (lambda: _ModesFNO(4, 4), "mixedprecisionfno", "_ModesFNO", "missing a required argument: 'out_channels'"),
    (lambda: _PositionalOnlyFNO(6), "mixedprecisionfno", "_PositionalOnlyFNO", "missing a required argument"),
    (lambda: MixedPrecisionFNO((4, 4), 1, 1, 6, 1), _PositionalOnlyFNO, "MixedPrecisionFNO",
     "unexpected keyword argument 'n_layers'"),
    (lambda: FNO((4, 4), 1, 1, 6, 1), _WidthFNO, "FNO", "multiple values for argument 'n_modes'"),
], ids=["*args->plugin", "positional-only->plugin", "plugin->positional-only", "upstream->narrow"])
def test_a_class_that_cannot_take_a_checkpoints_arguments_is_named_with_the_saving_class(tmp_path, make, target,
                                                                                          saver, error):
    torch.manual_seed(0)
    make().save_checkpoint(tmp_path, "m")
    loading = BaseModel._models[target] if isinstance(target, str) else target
    with pytest.raises(TypeError, match=f"^{loading.__name__} cannot be built from the arguments that a checkpoint "
                                        f"saved by {saver} records: .*{error}") as caught:
        neuralop_mp.load_model(tmp_path, "m", target)
    assert isinstance(caught.value.__cause__, TypeError)


def test_the_saving_classs_own_constructor_error_passes_as_it_is():
    from neuralop_mp.models.checkpoints import build_model

    with pytest.raises(TypeError, match="^_NarrowFNO.__init__\\(\\) got an unexpected keyword argument 'depth'$"):
        build_model({"_name": "NarrowFNO", "args": (), "width": 4, "depth": 2})


class _UnevenFNO(MixedPrecisionFNO, name="UnevenFNO"):
    """A narrow constructor that leaves its two layers in different modes."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=2,
                         fno_block_precision="mixed")
        neuralop_mp.set_precision(self.fno_blocks.convs[0], "half")


def test_a_uniform_switch_of_a_model_whose_constructor_leaves_its_layers_uneven_is_warned(tmp_path):
    """Its checkpoint rebuilds the layers as that constructor leaves them (in different modes): a
    switch of the whole model to one mode since is lost, and the save says so, once."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning

    torch.manual_seed(0)
    model = _UnevenFNO(6)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.save_checkpoint(tmp_path, "m")  # as built: only the per-layer warning of old
    assert not [w for w in caught if issubclass(w.category, UnrecordedPrecisionWarning)]
    neuralop_mp.set_precision(model, "full")
    with pytest.warns(UnrecordedPrecisionWarning,
                      match="_UnevenFNO's constructor leaves the spectral layers in different precision settings.*"
                            "fno_block_precision='full'"):
        model.save_checkpoint(tmp_path, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.state_dict()  # once per model
    with pytest.raises(ValueError, match="different precisions"):
        _UnevenFNO.from_checkpoint(tmp_path, "m").precision_policy  # what the warning says: rebuilt uneven


def test_a_precision_an_upstream_checkpoint_would_lose_is_warned_once(tmp_path):
    """Upstream's FNO with the plugin's layers, switched after it was built: its checkpoint
    loads in the constructor's precision, and the warning says what is lost and which class
    keeps it, once. Nothing to say for a model as built, nor for the plugin's classes."""
    from neuralop_mp.models.mixed_precision_models import warn_unrecorded_precision

    torch.manual_seed(0)
    model = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                conv_module=neuralop_mp.MixedPrecisionSpectralConv, stabilizer="tanh")
    ours = MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_unrecorded_precision(model)  # as built: its record rebuilds it
        assert not warn_unrecorded_precision(_upstream_fno())  # upstream's layers: no setting of ours
        neuralop_mp.set_precision(ours, "mixed", half_dtype="bfloat16")
        assert not warn_unrecorded_precision(ours)  # its checkpoints record the switch
    with pytest.warns(UserWarning) as caught:
        neuralop_mp.set_precision(model, "mixed", half_dtype="bfloat16")  # the switch calls warn_unrecorded_precision
    message = str(caught[0].message)
    assert caught[0].filename == __file__  # the caller's line
    assert ("FNO is upstream's class" in message and "fno_block_precision='mixed' (it loads with 'full')" in message
            and "half_dtype='bfloat16' (it loads with 'auto')" in message and "stabilizer" not in message
            and "neuralop_mp.MixedPrecisionFNO" in message and "precision_policy=" in message), message
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_unrecorded_precision(model)  # once per model
    model.save_checkpoint(tmp_path, "m")  # what the warning says: the record rebuilds full precision
    assert neuralop_mp.get_precision_policy(neuralop_mp.load_model(tmp_path, "m")).fno_block_precision == "full"


def test_upstream_names_stay_upstream_and_plugin_names_are_ours():
    assert BaseModel._models["fno"] is neuralop.models.FNO
    assert BaseModel._models["tfno"] is neuralop.models.TFNO
    for cls in (MixedPrecisionFNO, MixedPrecisionTFNO, MixedPrecisionUNO):
        assert BaseModel._models[cls.__name__.lower()] is cls
    # a plain config still gives upstream's own class, through either get_model
    for get_model in (neuralop.get_model, neuralop_mp.get_model):
        assert type(get_model(Bunch({"model": dict(SMALL["fno"])}))) is FNO


def _upstream_fno():
    torch.manual_seed(1)
    kwargs = {k: v for k, v in SMALL["fno"].items() if k not in ("model_arch", "data_channels")}
    return FNO(in_channels=1, **kwargs)


def test_upstream_checkpoint_loads_into_ours(tmp_path):
    upstream = _upstream_fno()
    upstream.save_checkpoint(tmp_path, "up")
    ours = MixedPrecisionFNO.from_checkpoint(tmp_path, "up")  # upstream's classmethod, our class
    assert neuralop_mp.mixed_precision_layers(ours) and ours.precision_policy.is_default
    assert_same_weights(upstream, ours)
    x = torch.randn(3, 1, 8, 8)
    with torch.no_grad():
        # "full" is upstream's computation up to fp32 rounding of a different contraction order
        torch.testing.assert_close(ours(x), upstream(x), rtol=1e-5, atol=1e-5)
    mixed = neuralop_mp.load_model(tmp_path, "up", precision_policy={"fno_block_precision": "mixed",
                                                                      "half_dtype": "bfloat16"})
    assert type(mixed) is MixedPrecisionFNO and mixed.precision_policy.fno_block_precision == "mixed"
    assert_same_weights(upstream, mixed)


def test_our_checkpoint_loads_into_upstream_and_back(tmp_path):
    ours = build("fno", **NON_DEFAULT["fno"])
    ours.save_checkpoint(tmp_path, "ours")
    with pytest.warns(UserWarning, match="runs in full precision") as caught:
        upstream = neuralop_mp.load_model(tmp_path, "ours", model_class=FNO)
    assert caught[0].filename == __file__  # the caller's line, not the loader's
    assert type(upstream) is FNO
    assert all(type(m).__name__ == "SpectralConv" for m in upstream.fno_blocks.convs)
    assert_same_weights(ours, upstream, cast=torch.complex64)  # complex32 -> complex64 is exact
    upstream.save_checkpoint(tmp_path, "back")
    again = neuralop_mp.load_model(tmp_path, "back", model_class="mixedprecisionfno",
                                   precision_policy=ours.precision_policy)
    assert again.precision_policy == ours.precision_policy
    assert_same_weights(ours, again)


def test_a_mode_or_a_dict_as_precision_policy_keeps_the_other_recorded_settings(tmp_path):
    """Loading a tanh-stabilized checkpoint in another mode keeps its tanh (and a dict
    changes only its keys); a PrecisionPolicy replaces every setting."""
    torch.manual_seed(0)
    upstream = FNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=6, n_layers=2, stabilizer="tanh")
    upstream.save_checkpoint(tmp_path, "tanh")
    x = 3 * torch.randn(2, 1, 16, 16)  # large enough for tanh to matter
    with torch.no_grad():
        reference = upstream(x)
        for policy in ("full", {"fno_block_precision": "full"}):
            loaded = neuralop_mp.load_model(tmp_path, "tanh", precision_policy=policy)
            assert type(loaded) is MixedPrecisionFNO and loaded.precision_policy.stabilizer == "tanh"
            torch.testing.assert_close(loaded(x), reference, rtol=1e-5, atol=1e-5)
        mixed = neuralop_mp.load_model(tmp_path, "tanh", precision_policy={"fno_block_precision": "mixed",
                                                                            "half_dtype": "bfloat16"})
        assert mixed.precision_policy == PrecisionPolicy("mixed", "bfloat16", "tanh")
        replaced = neuralop_mp.load_model(tmp_path, "tanh", precision_policy=PrecisionPolicy("full"))
        assert replaced.precision_policy.stabilizer is None
    with pytest.raises(ValueError, match="fno_block_precision"):
        neuralop_mp.load_model(tmp_path, "tanh", precision_policy="quarter")


@pytest.mark.parametrize("arch", ["fno", "tfno"])
def test_the_tanh_stabilizer_survives_a_load_into_upstreams_class(tmp_path, arch):
    """tanh is upstream's own argument (TFNO takes it through **kwargs): a full-precision
    plugin model with tanh loads into upstream's class as the same function, without a
    warning; upstream's UNO, which has no such argument, warns that it is dropped."""
    from neuralop.models import TFNO

    torch.manual_seed(0)
    ours = PLUGIN_CLASS[arch](n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=4, n_layers=2,
                              fno_block_precision="full", stabilizer="tanh")
    ours.save_checkpoint(tmp_path, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is lost: no warning
        upstream = neuralop_mp.load_model(tmp_path, "m", model_class=FNO if arch == "fno" else TFNO)
    assert upstream.fno_blocks.stabilizer == "tanh"
    x = 3 * torch.randn(2, 1, 8, 8)  # large enough for tanh to matter
    with torch.no_grad():
        torch.testing.assert_close(upstream(x), ours(x), rtol=1e-5, atol=1e-5)


def test_a_stabilizer_upstreams_uno_cannot_take_is_named_when_dropped(tmp_path):
    ours = build("uno", fno_block_precision="full", stabilizer="tanh")
    ours.save_checkpoint(tmp_path, "m")
    with pytest.warns(UserWarning, match=r"without the tanh stabilizer, which UNO does not take"):
        upstream = neuralop_mp.load_model(tmp_path, "m", model_class="uno")  # upstream's UNO, registered
    assert type(upstream).__name__ == "UNO"


def test_load_model_rejects_an_unknown_class_name(tmp_path):
    _upstream_fno().save_checkpoint(tmp_path, "up")
    with pytest.raises(ValueError, match=r"Invalid model_class='fnoo'; registered models: .*mixedprecisionfno"):
        neuralop_mp.load_model(tmp_path, "up", model_class="fnoo")


def test_a_checkpoint_of_a_plugin_subclass_loads_into_upstreams_class(tmp_path):
    """A user's subclass of the plugin's FNO saved in mixed precision, loaded into upstream's FNO: its
    plugin-only keys are dropped as for the plugin's own class (with the warning that upstream's
    model runs in full precision); it failed on ``half_dtype`` before."""
    torch.manual_seed(0)
    model = _PassThroughFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=2,
                            fno_block_precision="mixed", half_dtype="bfloat16")
    model.save_checkpoint(tmp_path, "m")
    with pytest.warns(UserWarning, match="runs in full precision"):
        upstream = neuralop_mp.load_model(tmp_path, "m", model_class=FNO)
    assert type(upstream) is FNO
    assert_same_weights(model, upstream)


@pytest.mark.parametrize("cls", [_PassThroughFNO, _NarrowFNO])
def test_a_plugin_subclass_checkpoint_loads_with_a_precision_policy(tmp_path, cls):
    """``load_model(precision_policy=...)`` takes subclasses of the plugin's classes (it refused them):
    the settings go to a constructor that takes them, and are set on the built model otherwise."""
    torch.manual_seed(0)
    model = (cls(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8, n_layers=1)
             if cls is _PassThroughFNO else cls(8))
    model.save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m", precision_policy={"fno_block_precision": "half",
                                                                     "half_dtype": "bfloat16"})
    assert type(loaded) is cls
    assert (loaded.precision_policy.fno_block_precision, loaded.precision_policy.half_dtype) == ("half", "bfloat16")
    assert_same_weights(model, loaded)


def test_a_narrow_subclass_checkpoint_loads_with_an_auto_policy_pending_a_decision(tmp_path):
    """``precision_policy="auto"`` for a constructor that does not take it: built in "full" with the
    decision pending, as the plugin's classes take "auto" (it raised asking for calibration data)."""
    _NarrowFNO(8).save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m", precision_policy="auto")
    assert type(loaded) is _NarrowFNO
    assert loaded.precision_policy.fno_block_precision == "full" and loaded.precision_decision == "pending"


class _AutoNarrowFNO(MixedPrecisionFNO, name="AutoNarrowFNO"):
    """A narrow constructor that leaves its precision to be decided from data."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1,
                         fno_block_precision="auto")


def test_a_fixed_precision_policy_ends_a_decision_the_constructor_left_pending(tmp_path):
    """The constructor's own "auto" left the decision pending; loading with a fixed mode puts the
    model in it and leaves nothing pending (the trainer would otherwise calibrate it away)."""
    model = _AutoNarrowFNO(8)
    assert model.precision_decision == "pending"
    model.save_checkpoint(tmp_path, "m")
    loaded = neuralop_mp.load_model(tmp_path, "m", precision_policy={"fno_block_precision": "mixed",
                                                                     "half_dtype": "bfloat16"})
    assert loaded.precision_policy.fno_block_precision == "mixed" and loaded.precision_decision is None


def test_load_model_on_a_trainer_checkpoint_folder_gives_the_weights_only_recipe_which_works(tmp_path):
    """A Trainer's ``save_every`` folder holds weights without ``model_metadata.pkl`` (by design): the
    error says so and gives the recipe, which the test follows to the trained weights."""
    from neuralop_mp.models.mixed_precision_models import ignoring_unrecorded_precision
    from neuralop_mp.training.tests.tiny import loss, optimizer_and_scheduler, tiny_data, tiny_fno
    from neuralop_mp.training.trainer import MixedPrecisionTrainer

    model = tiny_fno(seed=0)
    train, test = tiny_data(n=8, batch_size=4)
    trainer = MixedPrecisionTrainer(model=model, n_epochs=1, precision_schedule="mixed")
    with ignoring_unrecorded_precision():  # upstream's FNO switched by the schedule: not what is tested here
        trainer.train(train, test, *optimizer_and_scheduler(model), training_loss=loss(), save_every=1,
                      save_dir=tmp_path)
    weights = tmp_path / "model_state_dict.pt"
    with pytest.raises(FileNotFoundError) as raised:
        neuralop_mp.load_model(tmp_path, "model")
    message = str(raised.value)
    assert message.startswith(f"No model checkpoint metadata at {tmp_path / 'model_metadata.pkl'}")
    recipe = f"model.load_state_dict(torch.load({str(weights)!r}, weights_only=True))"
    assert "weights only (a Trainer checkpoint)" in message and recipe in message, message
    rebuilt = tiny_fno(seed=1)  # built as the run did, other initial weights
    exec(recipe, {"model": rebuilt, "torch": torch})
    trained = model.state_dict()
    assert all(equal_exactly(rebuilt.state_dict()[k], v) for k, v in trained.items() if torch.is_tensor(v))
    # a folder without the weights either: the plain message
    with pytest.raises(FileNotFoundError) as raised:
        neuralop_mp.load_model(tmp_path, "best_model")
    assert "Trainer checkpoint" not in str(raised.value)


def _outputs_and_gradients(model, seed=0):
    torch.manual_seed(seed)
    x = torch.randn(2, 1, 16, 16)
    model.zero_grad()
    out = model(x)
    out.square().mean().backward()
    return out.detach(), {name: p.grad.clone() for name, p in model.named_parameters()}


def _recompute_record(folder, name="m"):
    from neuralop_mp.training.checkpointing import METADATA_SUFFIX
    metadata = torch.load(folder / f"{name}{METADATA_SUFFIX}", weights_only=False)
    return {key: value for key, value in metadata.items() if key.startswith("recompute")}


@pytest.mark.parametrize("arch, recompute", [("fno", dict(recompute="fourier")),
                                             ("fno", dict(recompute="block", recompute_chunk_points=64)),
                                             ("tfno", dict(recompute="block")),
                                             ("uno", dict(recompute="block", recompute_chunk_points=100))])
@pytest.mark.parametrize("loader", ["from_checkpoint", "load_model"])
def test_recompute_survives_a_checkpoint_with_the_same_outputs_and_gradients(arch, recompute, loader, tmp_path):
    """What a model recomputes in backward (and the slices of "block"'s lifting and projection, which
    tile the pointwise work another way) is recorded and set again: the same numbers, bitwise."""
    from neuralop_mp.models.recompute import recompute_chunk_points, recompute_mode
    model = build(arch, fno_block_precision="mixed", **recompute)
    model.save_checkpoint(tmp_path, "m")
    assert _recompute_record(tmp_path) == recompute
    loaded = (type(model).from_checkpoint(tmp_path, "m") if loader == "from_checkpoint"
              else neuralop_mp.load_model(tmp_path, "m"))
    assert type(loaded) is type(model)
    assert recompute_mode(loaded) == recompute_mode(model) == recompute["recompute"]
    assert recompute_chunk_points(loaded) == recompute_chunk_points(model)
    (out, grads), (out_loaded, grads_loaded) = _outputs_and_gradients(model), _outputs_and_gradients(loaded)
    assert equal_exactly(out, out_loaded)
    assert grads.keys() == grads_loaded.keys()
    assert all(equal_exactly(grads[name], grads_loaded[name]) for name in grads), arch


def test_a_checkpoint_records_the_recompute_the_model_is_in_when_saved(tmp_path):
    """Switched with set_recompute after construction, as get_model and users do; a model without
    recompute records neither key, as before the keys were recorded."""
    from neuralop_mp.models.recompute import set_recompute
    model = build("fno", fno_block_precision="mixed")
    assert not {"recompute", "recompute_chunk_points"} & set(model._init_kwargs)
    model.save_checkpoint(tmp_path, "none")
    assert _recompute_record(tmp_path, "none") == {}
    set_recompute(model, "block", chunk_points=32)
    model.save_checkpoint(tmp_path, "block")
    assert _recompute_record(tmp_path, "block") == {"recompute": "block", "recompute_chunk_points": 32}
    assert {k: v for k, v in model.state_dict()["_metadata"].items() if k.startswith("recompute")} == {
        "recompute": "block", "recompute_chunk_points": 32}
    set_recompute(model, "none")
    model.save_checkpoint(tmp_path, "again")
    assert _recompute_record(tmp_path, "again") == {}


def test_a_checkpoint_whose_record_has_no_recompute_loads_without_it(tmp_path):
    """Checkpoints written before recompute was recorded (no key) load, recomputing nothing."""
    from neuralop_mp.models.recompute import recompute_mode
    from neuralop_mp.training.checkpointing import METADATA_SUFFIX
    model = build("fno", fno_block_precision="mixed", recompute="block", recompute_chunk_points=64)
    model.save_checkpoint(tmp_path, "m")
    path = tmp_path / f"m{METADATA_SUFFIX}"
    metadata = torch.load(path, weights_only=False)
    torch.save({k: v for k, v in metadata.items() if not k.startswith("recompute")}, path)
    for loaded in (neuralop_mp.load_model(tmp_path, "m"), MixedPrecisionFNO.from_checkpoint(tmp_path, "m")):
        assert recompute_mode(loaded) == "none"
        assert_same_weights(model, loaded)


def test_recompute_recorded_by_a_plugin_model_is_set_on_upstreams_class(tmp_path):
    """Upstream's FNO cannot take the recompute arguments: load_model sets them on the built model."""
    from neuralop_mp.models.recompute import recompute_chunk_points, recompute_mode
    build("fno", fno_block_precision="mixed", recompute="block", recompute_chunk_points=64).save_checkpoint(
        tmp_path, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the precision upstream's class cannot take: tested elsewhere
        loaded = neuralop_mp.load_model(tmp_path, "m", model_class="fno")
    assert type(loaded) is FNO
    assert (recompute_mode(loaded), recompute_chunk_points(loaded)) == ("block", 64)


def test_a_narrow_subclass_cannot_record_recompute_and_warns_once(tmp_path):
    """A constructor that does not take the recompute arguments cannot rebuild them: not recorded
    (its checkpoint still loads), and the saver is told to set it again."""
    from neuralop_mp.models.mixed_precision_models import UnrecordedPrecisionWarning
    from neuralop_mp.models.recompute import recompute_mode, set_recompute
    model = set_recompute(_NarrowFNO(), "fourier")
    with pytest.warns(UnrecordedPrecisionWarning, match="does not take recompute by keyword.*"
                                                        "recompute='fourier' \\(it loads with 'none'\\)"):
        model.save_checkpoint(tmp_path, "m")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")  # once per model
    assert _recompute_record(tmp_path) == {}
    assert recompute_mode(neuralop_mp.load_model(tmp_path, "m")) == "none"


class _BlockNarrowFNO(MixedPrecisionFNO, name="BlockNarrowFNO"):
    """A narrow constructor that sets recompute itself."""

    def __init__(self, width=4):
        super().__init__(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=width, n_layers=1,
                         recompute="block", recompute_chunk_points=32)


def test_a_narrow_constructors_own_recompute_is_rebuilt_by_it_without_a_warning(tmp_path):
    from neuralop_mp.models.recompute import recompute_chunk_points, recompute_mode
    model = _BlockNarrowFNO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.save_checkpoint(tmp_path, "m")
    assert _recompute_record(tmp_path) == {}
    for loaded in (neuralop_mp.load_model(tmp_path, "m"), _BlockNarrowFNO.from_checkpoint(tmp_path, "m")):
        assert (recompute_mode(loaded), recompute_chunk_points(loaded)) == ("block", 32)


@pytest.mark.parametrize("arch", ["fno", "uno"])
def test_saving_again_reads_the_constructor_once_per_class(arch, monkeypatch):
    """Every state_dict() records the current precision and recompute: what the class's constructor
    takes (its signature, through **kwargs) is read at the first save only, and the records match."""
    from neuralop_mp.models import mixed_precision_models as mpm

    model = build(arch, **NON_DEFAULT[arch])
    neuralop_mp.models.recompute.set_recompute(model, "block")
    first = model.state_dict()["_metadata"]
    calls = []
    for name in ("constructor_params", "positional_parameters"):
        original = getattr(mpm, name)
        monkeypatch.setattr(mpm, name, lambda *a, original=original, name=name: calls.append(name) or original(*a))
    again = [model.state_dict()["_metadata"] for _ in range(3)]
    assert calls == []
    assert all(record == first for record in again)
    assert first["recompute"] == "block"
