"""Callables stored on a module that reach it through a weak reference.

The pointwise tiles and the recompute wrappers replace a module's ``forward`` (or an FNO
block's ``forward_with_postactivation``) by a callable kept in the module's own
``__dict__``. Holding the module strongly would make a reference cycle (module ->
callable -> module): a deleted model, its parameters and their gradients, would then stay
allocated until Python's cyclic garbage collector happened to run, on a GPU until then
holding its memory. Through a weak reference the model is freed as soon as the last
reference to it goes; the callable is only ever called through the module, which is then
alive.
"""
import weakref

__all__ = ["BoundToModule"]


class BoundToModule:
    """Base class: ``self.module`` is the module given to ``__init__``, weakly referenced."""

    def __init__(self, module):
        self._module_ref = weakref.ref(module)

    @property
    def module(self):
        return self._module_ref()
