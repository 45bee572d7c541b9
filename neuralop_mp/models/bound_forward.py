"""Callables stored on a module that reach it through a weak reference.

The pointwise tiles and the recompute wrappers replace a module's ``forward`` (or an FNO
block's ``forward_with_postactivation``) by a callable kept in the module's own
``__dict__``. Holding the module strongly would make a reference cycle (module ->
callable -> module): a deleted model, its parameters and their gradients, would then stay
allocated until Python's cyclic garbage collector happened to run, on a GPU until then
holding its memory. Through a weak reference the model is freed as soon as the last
reference to it goes; the callable is only ever called through the module, which is then
alive. One case a strong reference served and this does not: a shallow copy
(``copy.copy``) of a module shares the entries of its ``__dict__``, so its forward is the original's
and stops with a clear error once the original is deleted (``copy.deepcopy`` copies it).
"""
import weakref

__all__ = ["BoundToModule"]


class BoundToModule:
    """Base class: ``self.module`` is the module given to ``__init__``, weakly referenced."""

    def __init__(self, module):
        self._module_ref = weakref.ref(module)

    @property
    def module(self):
        module = self._module_ref()
        if module is None:
            # a shallow copy of a module shares this object with the original, now deleted
            raise RuntimeError(
                f"This {type(self).__name__} was set on a module that no longer exists: it came with a shallow "
                "copy (copy.copy) of that module, which shares the entries of its __dict__. Use copy.deepcopy, or call "
                "neuralop_mp.models.pointwise_tiles.set_pointwise_tiles (and set_recompute) on the copy.")
        return module
