"""The arguments a model class's constructor takes, and a constructor record's positional
arguments named after them where a keyword reaches them (upstream's ``BaseModel`` records
what a model was built with)."""
import inspect

from torch import nn

from ..layers.input_checks import check_flag, flag_parameters


def constructor_params(cls):
    """Named constructor arguments of ``cls``, following ``**kwargs`` up the MRO.

    TFNO's own ``__init__`` is ``(*args, **kwargs)`` and forwards to FNO's, so its
    real arguments are FNO's. The chain stops at one of the plugin's classes (a class
    defining ``_plugin_signature``): its constructor takes what that signature names, the
    precision policy's keys included. Returns ``(params, takes_any)``: ``takes_any`` is True
    when the ``**kwargs`` chain reaches ``nn.Module`` (a model that consumes arbitrary
    keywords itself), so unknown keys cannot be told apart from valid ones.
    """
    params = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for klass in cls.__mro__:
        if klass is nn.Module:
            return params, True
        if "_plugin_signature" in vars(klass):
            sig = vars(klass)["_plugin_signature"].parameters
        elif "__init__" in vars(klass):
            sig = inspect.signature(vars(klass)["__init__"]).parameters
        else:
            continue
        params.update({k: p for k, p in sig.items() if k != "self" and p.kind in named})
        if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
            return params, False
    return params, True


def positional_parameters(cls, count):
    """The parameters of ``inspect.signature(cls)`` that ``count`` positional arguments bind to,
    in order (fewer where the others go to ``*args``)."""
    params = inspect.signature(cls).parameters.values()
    return [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)][:count]


def rebuilding_arguments(cls, args, kwargs):
    """``(args, kwargs)`` such that ``cls(*args, **kwargs)`` repeats the call upstream recorded.

    Upstream's ``BaseModel`` records a call of ``cls`` as its positional arguments (``args``)
    and its keywords plus the default of every parameter of ``inspect.signature(cls)`` not
    passed by keyword, those passed positionally included (passed twice on a rebuild) and
    positional-only ones (which no keyword reaches). Each positional value that binds to a
    positional-or-keyword parameter is named after it, replacing the recorded default; the
    values only a position reaches stay positional: those of positional-only parameters and,
    where some go to ``*args``, all of them (the ones before cannot be named). Positional-only
    parameters are dropped from the keywords. Never raises: the call was made.
    """
    params = inspect.signature(cls).parameters.values()
    positional = positional_parameters(cls, len(args))
    if len(args) > len(positional):  # some went to *args
        kept = len(args)
    else:  # positional-only parameters come first
        kept = sum(p.kind is p.POSITIONAL_ONLY for p in positional)
    unnamed = {p.name for p in positional[:kept]} | {p.name for p in params if p.kind is p.POSITIONAL_ONLY}
    named = {p.name: value for p, value in zip(positional[kept:], args[kept:])}
    return tuple(args[:kept]), {**{k: v for k, v in kwargs.items() if k not in unnamed}, **named}


def check_flag_arguments(prefix, arguments, params):
    """``arguments`` (a dict of constructor arguments, changed in place and returned) with each of
    its on/off settings, the arguments of ``params`` whose default is a bool
    (:func:`~neuralop_mp.layers.input_checks.flag_parameters`: ``separable``, ``use_channel_mlp``,
    ``preactivation``, ...), checked and made a Python bool
    (:func:`~neuralop_mp.layers.input_checks.check_flag`), named ``<prefix>.<name>`` in its error:
    upstream's models take any value for its truth, so ``separable="False"`` built a separable
    model."""
    for name in flag_parameters(params):
        if name in arguments:
            arguments[name] = check_flag(f"{prefix}.{name}", arguments[name])
    return arguments
