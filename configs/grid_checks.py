"""Settings checked against the grids of the run's data, before any data loads.

Multi-grid patching (``patching.*``) and UNO's end-to-end resolution scaling
(``model.uno_scalings``) are valid or not depending on the grid sizes the model sees:
``data.train_resolution`` and each ``data.test_resolutions`` entry (as patches, with patching).
Upstream fails on a bad combination only inside the first batch, after the data were
generated. The rules are upstream's own: patching is probed with upstream's
``MultigridPatching2D`` on a small tensor of each grid, and UNO's output size follows the
arithmetic of ``neuralop.models.UNO.forward`` (``round(size * product of the scalings)``,
with its ``DomainPadding``).
"""
import contextlib
import functools
import io

import torch

#: largest grid size of an axis whose size the config does not give (Burgers' time levels)
#: checked for UNO's output size, and largest resolution a refusal of patching suggests
_ANY_SIZE_UP_TO = 4096


def check_grid_settings(config):
    """Refuse patching and UNO scalings the run's grids cannot take.

    Raises
    ------
    ValueError
        One line naming the key, the bad value, the grid it fails on and the allowed values.
    """
    check_patching(config)
    check_uno_scalings(config)


# ---------------------------------------------------------------- the data's grids

def _grid_axes(data):
    """``(n_time_axes, n_space_axes)`` of a built-in loader's samples (the leading time axes have a
    size the config does not give; the space axes have ``resolution`` points), else None."""
    loader_name = getattr(data, "loader_name", None)
    if not callable(loader_name):
        return None
    from neuralop_mp.data.loaders import LOADER_FILES, SAMPLE_LAYOUT, SPATIAL_DIMS

    name = loader_name()
    if name not in SAMPLE_LAYOUT:
        return None
    spatial = SPATIAL_DIMS[LOADER_FILES[name][0]]
    return SAMPLE_LAYOUT[name]["dims"] - spatial, spatial


def _resolutions(data):
    """``[(text naming the key and value, resolution)]``: the training resolution, then each test one."""
    found = [(f"data.train_resolution={data.train_resolution}", data.train_resolution)]
    found += [(f"data.test_resolutions entry {r}", r) for r in data.test_resolutions]
    return found


def _dataset_name(data):
    return data.loader_name().replace("load_", "")


# ---------------------------------------------------------------- multi-grid patching

@functools.lru_cache(maxsize=None)  # a probe of the whole grid: train validates twice, eval again
def patching_works(resolution, levels, padding, stitching):
    """Whether upstream's multi-grid patching handles a ``resolution`` x ``resolution`` grid:
    patches it, gives the loss outputs and targets of one shape (training) and stitches the
    level-0 patches back into the grid (evaluation), on a small probe tensor."""
    from neuralop.training.patching import MultigridPatching2D

    with contextlib.redirect_stdout(io.StringIO()):  # its constructor prints its settings
        patcher = MultigridPatching2D(torch.nn.Identity(), levels=levels, padding_fraction=padding,
                                      stitching=stitching)
    grid = torch.arange(float(resolution * resolution)).reshape(1, 1, resolution, resolution)
    try:
        with torch.no_grad():
            x, y = patcher.patch(grid, grid.clone())
            out = x[:, :1]  # an output of the patches' shape: the model keeps it
            train_out, train_y = patcher.unpatch(out, y, evaluation=False)
            eval_out, eval_y = patcher.unpatch(out, y, evaluation=True)
    except (AssertionError, RuntimeError, ValueError, IndexError):  # what upstream raises in a first batch
        return False
    # a wrong tiling can still reshape without an error: then the channels or the round trip differ
    return (x.shape[1] == levels + 1 and train_out.shape == train_y.shape
            and torch.equal(eval_out, grid) and torch.equal(eval_y, grid))


def patch_size(resolution, levels, padding):
    """Points per axis of the patches the model sees (upstream's arithmetic: the grid split into
    ``2**levels`` patches per axis, each padded by ``round(resolution * padding)`` on both sides)."""
    return resolution // 2 ** levels + 2 * int(round(resolution * padding))


def check_patching(config):
    """``patching.levels`` > 0 needs a 2-D dataset whose every resolution upstream's multi-grid
    patching splits (with ``patching.padding`` and ``patching.stitching``): refused otherwise,
    naming the levels allowed at the failing resolution and the nearest resolutions allowed
    with these levels."""
    patching = config.patching
    levels = patching.levels
    if not levels:
        return
    axes = _grid_axes(config.data)
    if axes is None:
        return  # a loader of the user's: its grids are known once loaded
    if axes != (0, 2):
        raise ValueError(
            f"Invalid patching.levels={levels} with the {_dataset_name(config.data)} data; allowed values: 0. "
            "Upstream's multi-grid patching splits inputs and targets on one 2-D grid, and these data's inputs "
            "are 1-D (their own data processor, which patching replaces, spreads them over the targets' time axis).")
    padding, stitching = patching.padding, bool(patching.stitching)
    for key, resolution in _resolutions(config.data):
        if patching_works(resolution, levels, padding, stitching):
            continue
        n = 2 ** levels
        allowed_levels = [lv for lv in range(resolution.bit_length()) if lv != levels
                          and (lv == 0 or patching_works(resolution, lv, padding, stitching))]
        resolutions = _nearest_patchable(resolution, levels, padding, stitching)
        if resolution % n:
            reason = f"a {resolution}-point axis does not split into 2**levels={n} equal patches"
        elif padding and patching_works(resolution, levels, 0.0, stitching):
            reason = (f"its {resolution // n}x{resolution // n} patches padded by round({resolution} x {padding}) = "
                      f"{int(round(resolution * padding))} points per side do not fit the grid")
        else:
            reason = (f"a {resolution}x{resolution} grid does not split into {n}x{n} patches of "
                      f"{resolution // n}x{resolution // n} points with {levels} coarser level(s) of context")
        if resolutions:
            other = f"; with patching.levels={levels}: resolutions such as {', '.join(map(str, resolutions))}"
        else:
            other = ", or a lower patching.padding" if padding else ""
        raise ValueError(
            f"Invalid patching.levels={levels} for {key} (patching.padding={padding}): {reason} "
            f"(upstream's MultigridPatching2D fails on it in the first batch). Allowed at resolution {resolution}: "
            f"patching.levels {', '.join(map(str, allowed_levels))}{other}.")


def _nearest_patchable(resolution, levels, padding, stitching, wanted=3, tries=64):
    """Up to ``wanted`` resolutions, multiples of ``2**levels`` from ``resolution`` up to
    4096, that :func:`patching_works` with these settings (``tries`` candidates at most)."""
    n = 2 ** levels
    start = max(n, -(-resolution // n) * n)
    found = []
    for candidate in range(start, min(start + tries * n, _ANY_SIZE_UP_TO + 1), n):
        if patching_works(candidate, levels, padding, stitching):
            found.append(candidate)
            if len(found) == wanted:
                break
    return found


# ---------------------------------------------------------------- UNO's output size

def uno_scaling_product(scalings, n_dim):
    """UNO's end-to-end scaling per dimension, as upstream computes it: the entries of the
    layers' scalings multiplied in order (a one-number entry stands for every dimension)."""
    rows = [list(row) if isinstance(row, (list, tuple)) else [row] for row in scalings]
    product = [1] * len(rows[0])
    for row in rows:
        product = [i * j for i, j in zip(product, row)]
    return product * n_dim if len(product) == 1 else product


def uno_output_size(size, factor, domain_padding=None):
    """Points of UNO's output along an axis of ``size`` input points (upstream's ``UNO.forward``:
    ``int(round(padded size * factor))``, less the padding ``DomainPadding`` scales and removes)."""
    pad = int(round(domain_padding * size)) if domain_padding else 0
    out = int(round((size + 2 * pad) * factor))
    return max(out - 2 * round(factor * pad), 0)


def _domain_padding_per_axis(value, n_dim):
    """UNO's ``domain_padding`` per axis, or None where upstream's UNO pads nothing."""
    values = list(value) if isinstance(value, (list, tuple)) else [value] * n_dim
    # upstream pads when a list sums to > 0, or a number is > 0
    if value is None or (sum(values) if isinstance(value, (list, tuple)) else value) <= 0:
        return [None] * n_dim
    return [float(v) for v in values]


def _plain(scalings):
    return [list(row) if isinstance(row, (list, tuple)) else row for row in scalings]


def _grid_text(sizes):
    return "x".join(map(str, sizes))


def check_uno_scalings(config):
    """UNO's output must have the targets' grid (the input's) at every resolution of the run: its
    size per axis is ``round(input size * product of the scalings)`` (with the domain padding, as
    upstream pads and unpads), so a product of 1 per dimension always works and another only where
    it rounds back; an axis whose size the config does not give (Burgers' time levels) is checked
    at every size up to 4096."""
    model = config.model
    scalings = getattr(model, "uno_scalings", None)
    modes = getattr(model, "uno_n_modes", None)
    if not scalings or not modes:
        return
    n_dim = len(modes[0])
    product = uno_scaling_product(scalings, n_dim)
    if all(f == 1 for f in product):
        return  # every grid keeps its size
    axes = _grid_axes(config.data)
    if axes is None or sum(axes) != n_dim:
        return  # data of the user's, or of other dimensions (refused once the data's are known)
    padding = _domain_padding_per_axis(getattr(model, "domain_padding", None), n_dim)
    n_time, _ = axes
    patching = config.patching
    for key, resolution in _resolutions(config.data):
        side = patch_size(resolution, patching.levels, patching.padding) if patching.levels else resolution
        grids = [[size] * n_time + [side] * (n_dim - n_time)
                 for size in (range(2, _ANY_SIZE_UP_TO + 1) if n_time else [None])]
        for grid in grids:
            out = [uno_output_size(s, f, p) for s, f, p in zip(grid, product, padding)]
            if out == grid:
                continue
            what = (f"the {_grid_text(grid)} patches of {key}" if patching.levels else
                    f"the {_grid_text(grid)} inputs of {key}"
                    + (" (the time axis: any size)" if n_time else ""))
            raise ValueError(
                f"Invalid model.uno_scalings={_plain(scalings)!r}: the product of the layers' scalings "
                f"per dimension is {product}, and upstream's UNO gives an output of round(input size x product) "
                f"points per axis: {_grid_text(out)} for {what}, whose targets have {_grid_text(grid)} (the loss "
                "fails in the first batch). Allowed values: scalings whose product per dimension is 1, such as "
                "the default [[1, 1], [0.5, 0.5], [2, 2], [1, 1]], or one that rounds every input grid of the run "
                "back to its size.")
