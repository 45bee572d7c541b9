"""The arguments a model class's constructor takes, and a constructor record's positional
arguments named after them (upstream's ``BaseModel`` records what a model was built with)."""
import inspect

from torch import nn


def constructor_params(cls):
    """Named constructor arguments of ``cls``, following ``**kwargs`` up the MRO.

    TFNO's own ``__init__`` is ``(*args, **kwargs)`` and forwards to FNO's, so its
    real arguments are FNO's. Returns ``(params, takes_any)``: ``takes_any`` is True
    when the ``**kwargs`` chain reaches ``nn.Module`` (a model that consumes arbitrary
    keywords itself), so unknown keys cannot be told apart from valid ones.
    """
    params = {}
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    for klass in cls.__mro__:
        if klass is nn.Module:
            return params, True
        if "__init__" not in vars(klass):
            continue
        sig = inspect.signature(vars(klass)["__init__"]).parameters
        params.update({k: p for k, p in sig.items() if k != "self" and p.kind in named})
        if not any(p.kind is p.VAR_KEYWORD for p in sig.values()):
            return params, False
    return params, True


def positional_named(cls, args, kwargs):
    """The recorded arguments with the positional ones named after ``cls``'s parameters.

    Upstream's ``BaseModel`` records ``args`` as given and, besides them, the default of every
    parameter not passed by keyword, those passed positionally included: ``cls(*args, **kwargs)``
    would pass them twice. Each positional value is named and overrides the recorded default.
    """
    if not args:
        return kwargs
    params, _ = constructor_params(cls)
    names = [name for name, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD]
    if len(args) > len(names):
        raise TypeError(f"The checkpoint records {len(args)} positional arguments; {cls.__name__} takes at most "
                        f"{len(names)} ({', '.join(names)}).")
    return {**kwargs, **dict(zip(names, args))}
