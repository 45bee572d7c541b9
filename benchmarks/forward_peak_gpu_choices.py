"""The forward's peak of live tensor bytes with a GPU's choices forced on a CPU.

Between GPU sessions, what a change does to a GPU step's memory can be counted on a CPU:
the model is built as ``neuralop-mp bench gpu`` builds it, and the choices the plugin
makes only on a GPU are forced (the pointwise work on the whole grid with upstream's
modules, the lifting and projection recomputed in backward, FFTs along the last axis,
autocast over the whole model). The forward is then counted by
:class:`~neuralop_mp.peak_memory.PeakTensorBytes` (parameters excluded): its peak and
what it leaves alive for backward. The GPU's ``torch.cuda.max_memory_allocated`` also
holds cuFFT's work areas and the allocator's rounding, which this does not see: compare
counts with counts.

Usage (the figures in docs/benchmarks.md, "GPU campaign"):
``python benchmarks/forward_peak_gpu_choices.py --arch FNO --res 256 --batch 4``
"""
import argparse

import torch

from neuralop_mp.bench.gpu import VARIANTS, build
from neuralop_mp.layers import truncated_fft
from neuralop_mp.layers.autocast_scope import set_autocast_scope
from neuralop_mp.models import pointwise_tiles
from neuralop_mp.peak_memory import PeakTensorBytes


def force_gpu_choices():
    """What the plugin does on a GPU, here: no tiles, upstream's 1x1 modules, the lifting
    and projection recomputed, FFTs along the last axis."""
    recomputes_on = pointwise_tiles.recomputes_on
    pointwise_tiles.recomputes_on = lambda mlp, device_type: recomputes_on(mlp, "cuda")
    pointwise_tiles._tiling = lambda x, tile_points: None
    pointwise_tiles._product_dtype = lambda x, tiling: None
    truncated_fft.set_last_axis_transform("fft")


def count(arch, variant, res, batch, hidden=64, modes=32):
    """``(forward peak, kept at the forward's end)`` in bytes, parameters excluded."""
    torch.manual_seed(0)
    model, _ = build(arch, hidden, variant, modes, torch.device("cpu"))
    if variant.ours:
        set_autocast_scope(model, "model")  # what "auto" resolves to on a GPU
    x = torch.randn(batch, 1, res, res)
    with PeakTensorBytes(alive=[list(model.parameters()), x]) as meter:
        with torch.autocast("cpu", dtype=variant.autocast or torch.float32, enabled=variant.autocast is not None):
            out = model(x)
        kept = meter.live_bytes
    del out
    return meter.peak_bytes - meter.baseline_bytes, kept


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", default="FNO", choices=("FNO", "TFNO"))
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--variant", action="append",
                        help="a `bench gpu` variant name (repeat; default: upstream full and ours mixed fp16/bf16)")
    args = parser.parse_args(argv)
    names = args.variant or ["upstream full", "ours mixed fp16 + tanh + autocast", "ours mixed bf16 + autocast"]
    by_name = {v.name: v for v in VARIANTS}
    force_gpu_choices()
    torch.set_num_threads(1)
    for name in names:
        peak, kept = count(args.arch, by_name[name], args.res, args.batch)
        print(f"{args.arch} {args.res}^2 batch {args.batch}, {name}: forward peak {peak / 2**20:.1f} MiB, "
              f"kept at its end {kept / 2**20:.1f} MiB (parameters excluded)")


if __name__ == "__main__":
    main()
