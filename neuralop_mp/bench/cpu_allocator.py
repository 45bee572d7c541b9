"""Benchmark: what keeping freed CPU memory in the process costs and gains.

For FNO and TFNO 2D (the spectral benchmark's model) at one size, upstream full
precision and ours mixed bfloat16 + autocast each train a few steps in a fresh
process, once with malloc as it is (``--cpu-allocator system``) and once with freed
memory kept (``keep``, :mod:`neuralop_mp.cpu_allocator`). Each process reports its
median step time, the minor page faults and the kernel (system) CPU time per step, and
its peak resident memory (``ru_maxrss``, which includes torch and Python themselves).
Fresh processes because the setting lasts for the life of a process and the peak
resident size never goes down.

Usage: ``neuralop-mp bench allocator [--quick] [--steps N] [--res N] [--batch N] [--out DIR] [--update-docs]``.
"""
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from ..vocabulary import OneLineErrorParser
from ..data.cli import positive_int
from .report import (add_output_arguments, header, markdown_table, refuse_partial_docs_update,
                     shown_command, write_results)

VARIANTS = ("upstream full", "ours mixed bfloat16 + autocast")


def measure(mode, arch, variant, res, batch, steps, quick):
    """In this process: set the allocator, train ``steps`` steps after one warm-up, return the row."""
    import torch

    from ..cpu_allocator import cpu_allocator_mode, set_cpu_allocator
    from .spectral import MODEL, QUICK_MODEL, VARIANTS as SPECTRAL_VARIANTS, _step, build

    set_cpu_allocator(mode)
    torch.set_num_threads(1)
    device = torch.device("cpu")
    v = next(v for v in SPECTRAL_VARIANTS if v.name == variant)
    torch.manual_seed(0)
    model = build(arch, v, QUICK_MODEL if quick else MODEL, device)
    x = torch.randn(batch, 1, res, res)
    _step(model, x, v, device)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        _step(model, x, v, device)
        times.append(time.perf_counter() - start)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {"model": arch, "res": res, "batch": batch, "variant": variant, "asked": mode, "malloc": cpu_allocator_mode(),
            "step s": statistics.median(times), "faults / step": (after.ru_minflt - usage.ru_minflt) / steps,
            "kernel s / step": (after.ru_stime - usage.ru_stime) / steps,
            "peak RSS MiB": after.ru_maxrss / 1024}  # kilobytes on Linux


def add_ratios(rows):
    """``keep / system``: each kept row's step time and peak resident size over the same
    configuration's with malloc as it is (none where "keep" could not be applied)."""
    system = {(r["model"], r["variant"]): r for r in rows if r["asked"] == "system"}
    for r in rows:
        base = system.get((r["model"], r["variant"]))
        if r["asked"] == "keep" and r["malloc"] == "keep" and base is not None:
            r["time keep / system"] = r["step s"] / base["step s"]
            r["RSS keep / system"] = r["peak RSS MiB"] / base["peak RSS MiB"]
    return rows


def run(quick=False, steps=None, res=None, batch=None, models=("FNO", "TFNO")):
    """Measure every (model, variant, malloc) in its own process; returns (markdown body, data)."""
    res = (32 if quick else 256) if res is None else res
    batch = 2 if batch is None else batch
    steps = (2 if quick else 3) if steps is None else steps
    rows = []
    for arch in models:
        for variant in VARIANTS:
            for mode in ("system", "keep"):
                args = [sys.executable, "-m", "neuralop_mp.bench.cpu_allocator", "--child", mode, arch, variant,
                        str(res), str(batch), str(steps)] + (["--quick"] if quick else [])
                out = subprocess.run(args, capture_output=True, text=True)
                if out.returncode != 0:
                    raise RuntimeError(f"{arch} {variant} with --cpu-allocator {mode} failed:\n{out.stderr[-2000:]}")
                rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
                print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    add_ratios(rows)
    columns = ["model", "res", "batch", "variant", "malloc", "step s", "time keep / system", "faults / step",
               "kernel s / step", "peak RSS MiB", "RSS keep / system"]
    body = (f"Each row a fresh process with 1 torch thread: one warm-up step, then the median of {steps} "
            f"training steps. Load average when the run ended: {os.getloadavg()[0]:.1f}.\n\n"
            + markdown_table(rows, columns) + "\n")
    return body, dict(rows=rows, steps=steps)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "--child":  # one measurement, in the fresh process run() started
        mode, arch, variant, res, batch, steps = argv[1:7]
        print(json.dumps(measure(mode, arch, variant, int(res), int(batch), int(steps), "--quick" in argv)))
        return 0
    parser = OneLineErrorParser(prog="neuralop-mp bench allocator", description=__doc__.split("\n")[0])
    # the time is the 8 processes' start (Python, torch, neuraloperator), not their steps
    parser.add_argument("--quick", action="store_true",
                        help=f"a small model at 32^2, 2 steps; still one fresh process per row "
                             f"({2 * len(VARIANTS) * 2}: FNO and TFNO, {len(VARIANTS)} variants, 2 malloc settings), "
                             "each starting Python and torch: about a minute")
    # counts >= 1, refused at parse time as the other benchmarks refuse them (0 was read as the default)
    parser.add_argument("--steps", type=positive_int, default=None, help="timed steps per process (default 3)")
    parser.add_argument("--res", type=positive_int, default=None, help="grid size (default 256)")
    parser.add_argument("--batch", type=positive_int, default=None, help="batch size (default 2)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a tiny run, or another grid or batch, is not the table the docs' notes (and the README) describe
    refuse_partial_docs_update(parser, "allocator", args,
                               {"--quick": args.quick, "--res": args.res is not None, "--batch": args.batch is not None})
    body, data = run(quick=args.quick, steps=args.steps, res=args.res, batch=args.batch)
    text = header("Freed CPU memory kept: step time, page faults and resident memory",
                  shown_command("neuralop-mp bench allocator", argv)) + "\n" + body
    print(text)
    write_results("allocator", text, data, out=args.out, update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
