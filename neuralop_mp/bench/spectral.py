"""Benchmark: memory and step time of FNO/TFNO with upstream's and our spectral layer.

For FNO and TFNO 2D (4 layers, 64 hidden channels, 32 modes) at several resolutions,
measures per training step:

- bytes of tensors saved for backward (``neuralop_mp.memory.SavedTensorBytes``,
  parameters excluded; device independent),
- forward+backward time (median over repetitions),
- on CUDA, ``torch.cuda.max_memory_allocated``,

for upstream full precision, upstream's own "mixed"/"half" (or the error they raise),
upstream under ``torch.autocast``, and our layer in each mode and half type (under
autocast for the 16-bit modes), with ratios to upstream full. Writes the table to
docs/benchmarks.md (section "spectral").

Usage: ``python -m neuralop_mp.bench.spectral [--quick] [--batch 4] [--resolutions 64 128]``
"""
import argparse
import statistics
import sys
import time

import torch
from neuralop.models import FNO, TFNO

from ..layers.complex_half import native_half_matmul
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..memory import SavedTensorBytes
from ..layers.precision_switch import set_precision
from .report import header, markdown_table, update_section

HALF = {"bfloat16": torch.bfloat16, "float16": torch.float16}


def _variants(device):
    """(name, model class kwargs, upstream precision, our (mode, half, stabilizer) or None, autocast dtype)."""
    auto = torch.float16 if device.type == "cuda" else torch.bfloat16
    rows = [
        ("upstream full", None, "full", None),
        ("upstream mixed", None, "mixed", None),
        ("upstream half", None, "half", None),
        (f"upstream + autocast {str(auto)[6:]}", None, "full", auto),
        ("ours full", ("full", "auto", None), None, None),
    ]
    for half in ("bfloat16", "float16"):
        stab = "tanh" if half == "float16" else None
        rows.append((f"ours mixed {half} + autocast", ("mixed", half, stab), None, HALF[half]))
        rows.append((f"ours half {half} + autocast", ("half", half, stab), None, HALF[half]))
    rows.append(("ours mixed bfloat16, no autocast", ("mixed", "bfloat16", None), None, None))
    return rows


def _build(arch, ours, upstream_mode, device):
    cls = FNO if arch == "FNO" else TFNO
    kwargs = dict(n_modes=(32, 32), in_channels=1, out_channels=1, hidden_channels=64, n_layers=4)
    if ours is None:
        model = cls(fno_block_precision=upstream_mode, **kwargs)
    else:
        model = cls(conv_module=MixedPrecisionSpectralConv, **kwargs)
        mode, half, stab = ours
        set_precision(model, mode, half_dtype=half, stabilizer=stab)
    return model.to(device)


def _step(model, x, autocast):
    device_type = x.device.type
    with torch.autocast(device_type, dtype=autocast or torch.float32, enabled=autocast is not None):
        out = model(x)
    out.float().square().mean().backward()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(arch, variant, resolution, batch, reps, device, max_forward_s=float("inf")):
    name, ours, upstream_mode, autocast = variant
    torch.manual_seed(0)
    model = _build(arch, ours, upstream_mode, device)
    x = torch.randn(batch, 1, resolution, resolution, device=device)
    row = dict(model=arch, res=resolution, variant=name)
    try:
        with torch.no_grad(), torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            model(x)  # warm-up: kernel selection, plan caches
        start = time.perf_counter()
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                out = model(x)
        forward_s = time.perf_counter() - start
        row["saved MiB"] = meter.bytes / 2**20
        out.float().square().mean().backward()
        del out
    except Exception as exc:  # upstream's half modes on CPU, e.g. "not implemented for 'ComplexHalf'"
        message = str(exc).strip().splitlines()[0][:90]
        row["note"] = f"crashes on {device.type.upper()}: {type(exc).__name__}: {message}"
        return row
    if forward_s > max_forward_s:
        row["note"] = f"timing skipped: one forward took {forward_s:.0f} s"
        return row
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for _ in range(reps):
        model.zero_grad(set_to_none=True)
        _sync(device)
        start = time.perf_counter()
        _step(model, x, autocast)
        _sync(device)
        times.append(time.perf_counter() - start)
    row["step s"] = statistics.median(times)
    if device.type == "cuda":
        row["cuda peak MiB"] = torch.cuda.max_memory_allocated() / 2**20
    return row


def compare_complex_products(device, batch, reps=5):
    """Time of the dense spectral product (64 channels, 32x17 modes) per complex-product method."""
    from ..layers.complex_half import compute_dtype_for, complex_einsum_pair, to_real_form

    eq = "bixy,ioxy->boxy"
    x = torch.randn(batch, 64, 32, 17, dtype=torch.cfloat, device=device)
    w = torch.randn(64, 64, 32, 17, dtype=torch.cfloat, device=device)
    rows = []
    for half in ("bfloat16", "float16"):
        dtype = HALF[half]
        a = to_real_form(x, dtype).requires_grad_()
        b = to_real_form(w, dtype).requires_grad_()
        for method in ("block", "gauss"):
            times = []
            for _ in range(reps + 1):
                _sync(device)
                start = time.perf_counter()
                out = complex_einsum_pair(eq, a, b, method=method)
                out.float().sum().backward()
                _sync(device)
                times.append(time.perf_counter() - start)
            rows.append(dict(half=half, method=method, compute=str(compute_dtype_for(dtype, device))[6:],
                             **{"fwd+bwd ms": 1e3 * statistics.median(times[1:])}))
    return rows


def add_ratios(rows):
    base = {(r["model"], r["res"]): r for r in rows if r["variant"] == "upstream full"}
    for r in rows:
        b = base.get((r["model"], r["res"]))
        if b is None:
            continue
        for key, ratio in (("saved MiB", "saved / up. full"), ("step s", "time / up. full")):
            if key in r and key in b:
                r[ratio] = r[key] / b[key]
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="resolutions 32 and 64 only, 1 repetition")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 4 on CUDA, 2 on CPU)")
    parser.add_argument("--resolutions", type=int, nargs="+", default=None)
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions per row")
    parser.add_argument("--models", nargs="+", default=["FNO", "TFNO"], choices=["FNO", "TFNO"])
    parser.add_argument("--max-forward-s", type=float, default=60.0,
                        help="skip the timed steps of a row whose first forward took longer (slow CPU bf16)")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cuda = device.type == "cuda"
    resolutions = args.resolutions or ([32, 64] if args.quick else ([64, 128, 256, 512, 1024] if cuda else [64, 128, 256]))
    batch = args.batch or (4 if cuda else 2)
    reps = args.reps or (5 if cuda else 1)
    rows = []
    for arch in args.models:
        for res in resolutions:
            for variant in _variants(device):
                row = measure(arch, variant, res, batch, reps if res < 256 or cuda else 1, device,
                              args.max_forward_s)
                rows.append(row)
                print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    add_ratios(rows)
    products = compare_complex_products(device, batch)
    product_table = markdown_table(products, ["half", "method", "compute", "fwd+bwd ms"])
    print(product_table)
    columns = ["model", "res", "variant", "saved MiB", "saved / up. full", "step s", "time / up. full"]
    if cuda:
        columns.append("cuda peak MiB")
    columns.append("note")
    table = markdown_table(rows, columns)
    print(table)
    if not args.no_write:
        command = "python -m neuralop_mp.bench.spectral " + " ".join(argv if argv is not None else sys.argv[1:])
        native = native_half_matmul(torch.bfloat16, device)
        body = (
            header("Spectral layer: saved-for-backward bytes and step time", command.strip())
            + f"\nFNO/TFNO 2D, 4 layers, 64 hidden channels, 32x32 modes, batch {batch}; "
            f"native bf16 matmul on this device: {native}. Ratios are to upstream full precision "
            "at the same resolution.\n\n" + table + "\n"
            + "\nComplex product in real arithmetic (dense 64x64 channels, 32x17 modes, "
            f"batch {batch}):\n\n" + product_table + "\n"
        )
        if not cuda:
            body += "\nGPU rows (512^2, 1024^2, cuda peak memory, fp16 FFTs): pending, no GPU in this session.\n"
        update_section("spectral", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
