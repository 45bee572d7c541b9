"""A deleted plugin model is freed at once, not when the cyclic garbage collector runs."""
import copy
import gc
import weakref

import pytest
import torch

import neuralop_mp


def test_a_deleted_model_with_tiles_is_freed_without_the_garbage_collector():
    """The tiled forwards (and recompute's wrappers) live in the modules' __dict__ and reach
    their module through a weak reference: no cycle of ours keeps the parameters and
    gradients alive. (With recompute, what torch's checkpoint keeps after a backward can
    still hold modules until the collector runs: not checked here.)"""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        model = neuralop_mp.MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8,
                                              n_layers=2, fno_block_precision="mixed")
        model(torch.randn(2, 1, 128, 128)).square().mean().backward()  # 32768 points: in tiles
        weight, grad = weakref.ref(model.fno_blocks.convs[0].weight), weakref.ref(model.lifting.fcs[0].weight.grad)
        del model
        assert weight() is None and grad() is None
    finally:
        if was_enabled:
            gc.enable()


def test_a_shallow_copy_that_outlives_its_original_says_what_to_do():
    """copy.copy shares the module's __dict__, the tiled forward with it; once the original is
    gone that forward has no module: a clear error, and deepcopy works."""
    model = neuralop_mp.MixedPrecisionFNO(n_modes=(4, 4), in_channels=1, out_channels=1, hidden_channels=8,
                                          n_layers=2)
    x = torch.randn(2, 3, 16, 16)  # the lifting's input: 1 channel and 2 positional ones
    expected = model.lifting(x)
    deep, shallow = copy.deepcopy(model.lifting), copy.copy(model.lifting)
    del model
    gc.collect()
    assert torch.equal(deep(x), expected)
    with pytest.raises(RuntimeError, match=r"set on a module that no longer exists: it came with a shallow copy .* "
                                           r"Use copy.deepcopy, or call .*set_pointwise_tiles"):
        shallow(x)
