"""The forward's peak of live tensor bytes with a GPU's choices forced on a CPU.

Between GPU sessions, what a change does to a GPU step's memory can be counted on a CPU:
the model is built as ``neuralop-mp bench gpu`` builds it, and the choices the plugin
makes from the device are forced to a GPU's
(:func:`~neuralop_mp.layers.product_paths.force_device_choices`): the pointwise work
on the whole grid with upstream's modules and the lifting and projection recomputed in
backward, the spectral product's path (16-bit matrix products; TFNO's rebuilt dense
weight), the dense product's mode chunks, FFTs along the last axis; and autocast over the whole model. The forward is then counted by
:class:`~neuralop_mp.peak_memory.PeakTensorBytes` (parameters excluded): its peak and
what it leaves alive for backward. The GPU's ``torch.cuda.max_memory_allocated`` also
holds cuFFT's work areas and the allocator's rounding, which this does not see: compare
counts with counts. Not forced: cuFFT's float16 transforms of the "half" fp16 variants
(a CPU has none: they count float32 transforms).

Usage (the figures in docs/benchmarks.md, "GPU campaign"):
``python benchmarks/forward_peak_gpu_choices.py --arch FNO --res 256 --batch 4``
"""
import argparse

import torch

from neuralop_mp.bench.gpu import VARIANTS, build
from neuralop_mp.layers.autocast_scope import set_autocast_scope
from neuralop_mp.layers.product_paths import force_device_choices
from neuralop_mp.peak_memory import PeakTensorBytes


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
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0], allow_abbrev=False)
    parser.add_argument("--arch", default="FNO", choices=("FNO", "TFNO"))
    parser.add_argument("--res", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--variant", action="append",
                        help="a `bench gpu` variant name (repeat; default: upstream full and ours mixed fp16/bf16)")
    args = parser.parse_args(argv)
    names = args.variant or ["upstream full", "ours mixed fp16 + tanh + autocast", "ours mixed bf16 + autocast"]
    by_name = {v.name: v for v in VARIANTS}
    torch.set_num_threads(1)
    for name in names:
        # a CPU's spectral path would keep float32 temporaries and, for TFNO, the factorized plan
        with force_device_choices("cuda"):
            peak, kept = count(args.arch, by_name[name], args.res, args.batch)
        print(f"{args.arch} {args.res}^2 batch {args.batch}, {name}: forward peak {peak / 2**20:.1f} MiB, "
              f"kept at its end {kept / 2**20:.1f} MiB (parameters excluded)")


if __name__ == "__main__":
    main()
