"""Benchmark: step time and saved-for-backward bytes of FNO/TFNO, upstream's layer vs ours.

For FNO and TFNO 2D (4 layers, 64 hidden channels, 32x32 modes) at each (resolution,
batch), one training step (forward + backward) of:

- upstream neuraloperator in full precision, upstream's own ``fno_block_precision``
  "mixed" and "half" (on CPU they crash: the row says so), upstream under
  ``torch.autocast``;
- upstream's model with every spectral layer replaced by ``x * 0`` (:class:`SpectralFloor`):
  the time of everything else in the step, the floor of any spectral layer's ratio; and
  the same for ours (its pointwise work in tiles of grid points on CPU,
  :mod:`neuralop_mp.models.pointwise_tiles`, as the plugin's models run it);
- our layer in full precision, "mixed" bfloat16 with and without autocast, "mixed"
  float16 with tanh. Our autocast rows use the default ``autocast_scope="auto"``
  (on a CPU: float32 outside the spectral layers) and, for comparison, scope "model"
  (autocast over the whole model, as upstream + autocast); "mixed" bfloat16 with the
  Fourier path or whole FNO blocks recomputed in backward (``model.recompute``).

Variants are interleaved: each round times every variant once, and the table shows
the median over rounds, so load from other processes hits all variants alike
(ratios from one run are what to compare; absolute seconds depend on the load,
printed with the table). On CPU each step's process CPU time is reported too: with one
torch thread it counts the work done, not the time spent waiting for a core that other
processes hold, so its ratios are the ones to read on a shared machine. Memory is the
bytes autograd saves for backward (parameters excluded): device independent. The spectral product path each of our
rows used is listed under the table. On CPU, freed memory is kept in the process by
default (``--cpu-allocator keep``, :mod:`neuralop_mp.cpu_allocator`) for every variant
alike: otherwise each step's page faults on fresh memory dominate the large sizes and
move with the host's memory pressure.

A crash of one of our rows, or of upstream full or its floor (the references of the
ratios), fails the command (exit 1, one line on stderr): the rows are written all the same,
the docs are not updated. Upstream's own 16-bit modes crashing is what their row notes.

Usage: ``neuralop-mp bench spectral [--quick] [--out DIR] [--update-docs]``
(or ``python -m neuralop_mp.bench.spectral``).
"""
import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass

import torch
from neuralop.layers.spectral_convolution import SpectralConv
from neuralop.models import FNO, TFNO
from torch import nn

from ..layers.autocast_scope import set_autocast_scope
from ..layers.complex_half import native_half_matmul
from ..layers.path_report import summarize_product_paths
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..cpu_allocator import CPU_ALLOCATOR_MODES, DEFAULT_CPU_ALLOCATOR, describe_cpu_allocator, set_cpu_allocator
from ..memory import SavedTensorBytes
from ..vocabulary import OneLineErrorParser, scope_on_device
from ..models.mixed_precision_models import ignoring_unrecorded_precision
from ..models.pointwise_tiles import set_pointwise_tiles
from ..models.recompute import set_recompute
from ..layers.precision_switch import set_precision
from ..data.cli import positive_int, seconds
from ..vocabulary import check_int_at_least
from ..run_records import human_bytes
from .cli import threads_type
from .report import (add_output_arguments, header, markdown_table, refuse_partial_docs_update,
                     shown_command, write_results)

MODEL = dict(n_modes=(32, 32), hidden_channels=64, n_layers=4)
QUICK_MODEL = dict(n_modes=(8, 8), hidden_channels=16, n_layers=2)
SIZES = [(64, 1), (64, 2), (128, 2), (256, 2), (64, 32)]  # (resolution, batch)
QUICK_SIZES = [(32, 2)]


FLOOR = "upstream, spectral layers as x * 0 (floor)"
OURS_FLOOR = "ours, spectral layers as x * 0 (floor)"


@dataclass(frozen=True)
class Variant:
    """One row: whose layer, its precision and the autocast dtype around the model."""

    name: str
    ours: bool
    mode: str
    half_dtype: str = "bfloat16"
    stabilizer: str = None
    autocast: torch.dtype = None
    autocast_scope: str = "auto"  # ours only: where autocast may act (layers/autocast_scope.py)
    recompute: str = "none"  # ours only: what backward recomputes instead of saving (models/recompute.py)
    spectral_floor: bool = False  # the model with each spectral layer replaced by SpectralFloor


VARIANTS = [
    Variant("upstream full", False, "full"),
    Variant("upstream mixed", False, "mixed"),
    Variant("upstream half", False, "half"),
    Variant("upstream + autocast bfloat16", False, "full", autocast=torch.bfloat16),
    Variant(FLOOR, False, "full", spectral_floor=True),
    Variant(OURS_FLOOR, True, "full", spectral_floor=True),
    Variant("ours full", True, "full"),
    Variant("ours mixed bfloat16 + autocast", True, "mixed", autocast=torch.bfloat16),
    Variant("ours mixed bfloat16 + autocast, scope model", True, "mixed", autocast=torch.bfloat16,
            autocast_scope="model"),
    Variant("ours mixed bfloat16", True, "mixed"),
    Variant("ours mixed float16 + tanh", True, "mixed", "float16", "tanh"),
    Variant("ours mixed bfloat16 + recompute fourier", True, "mixed", recompute="fourier"),
    Variant("ours mixed bfloat16 + recompute block", True, "mixed", recompute="block"),
]


class SpectralFloor(nn.Module):
    """Stands in for a spectral layer at (almost) no cost: ``x * 0``, one elementwise pass
    forward and backward. Any spectral layer at least writes its output, so a model with
    these in place of its spectral layers times everything else of the step: the float32
    lifting, skips, channel MLPs, activations and projection that upstream and ours share.
    Its time over upstream full's is a lower bound on the ratio of any spectral layer."""

    resolution_scaling_factor = None  # no resolution change in these models
    transform = SpectralConv.transform  # upstream's: the identity here, as pointwise tiles expect

    def forward(self, x, output_shape=None):
        return x * 0


def _floor_spectral_layers(model):
    convs = model.fno_blocks.convs
    for i in range(len(convs)):
        convs[i] = SpectralFloor()
    return model


def build(arch, variant, model_kwargs, device):
    cls = FNO if arch == "FNO" else TFNO
    kwargs = dict(in_channels=1, out_channels=1, **model_kwargs)
    if not variant.ours:
        model = cls(fno_block_precision=variant.mode, **kwargs)
        return (_floor_spectral_layers(model) if variant.spectral_floor else model).to(device)
    model = cls(conv_module=MixedPrecisionSpectralConv, **kwargs)
    with ignoring_unrecorded_precision():  # upstream's class, as upstream's rows; never saved
        set_precision(model, variant.mode, half_dtype=variant.half_dtype, stabilizer=variant.stabilizer)
        set_autocast_scope(model, variant.autocast_scope)
    set_pointwise_tiles(model)  # as the plugin's model classes do
    set_recompute(model, variant.recompute)
    return (_floor_spectral_layers(model) if variant.spectral_floor else model).to(device)


def _autocast(variant, device):
    return torch.autocast(device.type, dtype=variant.autocast or torch.float32, enabled=variant.autocast is not None)


def _step(model, x, variant, device):
    model.zero_grad(set_to_none=True)
    with _autocast(variant, device):
        out = model(x)
    out.float().square().mean().backward()


def _crash_note(exc, device):
    message = str(exc).strip().splitlines()[0][:90]
    return f"crashes on {device.type.upper()}: {type(exc).__name__}: {message}"


def measure_size(arch, res, batch, variants, rounds, device, model_kwargs, slow_step_s=float("inf")):
    """Rows of one (arch, resolution, batch): saved bytes, then interleaved timed rounds.

    An autocast variant whose warm-up step took longer than ``slow_step_s`` and more than
    three times upstream full's warm-up (emulated 16-bit autocast on CPUs without 16-bit
    matrix units) is not repeated: its time is that one step's (first-call and hook
    overheads included, small at that duration).
    """
    torch.manual_seed(0)
    x = torch.randn(batch, 1, res, res, device=device)
    live, rows = {}, {}
    reference_warmup_s = 0.0  # upstream full's, the first variant
    for v in variants:
        torch.manual_seed(0)
        model = build(arch, v, model_kwargs, device)
        row = rows[v.name] = dict(model=arch, res=res, batch=batch, variant=v.name)
        try:
            start = time.perf_counter()
            with SavedTensorBytes(exclude=model.parameters()) as meter, _autocast(v, device):
                out = model(x)
            row["saved MiB"] = meter.bytes / 2**20
            out.float().square().mean().backward()  # also the warm-up
            del out
            warmup_s = time.perf_counter() - start
            if v.name == "upstream full":
                reference_warmup_s = warmup_s
        except Exception as exc:  # upstream's half modes on CPU, e.g. "MKL FFT doesn't support Half"
            # noted in the row; a crash of a reference or of our code fails the command (unexpected_failures)
            row["note"] = _crash_note(exc, device)
            row["failed"] = "run"
            continue
        if v.ours:
            row["product path"] = "; ".join(summarize_product_paths(model))
        if v.autocast is not None and warmup_s > max(slow_step_s, 3 * reference_warmup_s):
            row["step s"] = warmup_s
            row["note"] = "one step only (autocast step slower than --slow-step-s)"
            continue
        live[v.name] = (model, v, [])
    for _ in range(rounds):
        for model, v, times in live.values():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, cpu_start = time.perf_counter(), time.process_time()
            _step(model, x, v, device)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - start, time.process_time() - cpu_start))
    for name, (_, _, times) in live.items():
        rows[name]["round s"] = [wall for wall, _ in times]  # for the per-round ratios (add_ratios)
        rows[name]["step s"] = statistics.median(wall for wall, _ in times)
        if device.type == "cpu":
            rows[name]["cpu s"] = statistics.median(cpu for _, cpu in times)
    return list(rows.values())


# the rows every ratio is taken against: their crash leaves the table without its reference
REFERENCES = ("upstream full", FLOOR)


def unexpected_failures(rows):
    """What should fail the run: a crash of one of our rows, or of a reference row
    (:data:`REFERENCES`): one line per crashed row. Upstream's own 16-bit modes crashing (on a CPU:
    no half FFT) is what the table reports, not a failure of the run (as ``bench gpu``'s rule)."""
    ours = {v.name for v in VARIANTS if v.ours}
    return [f"{r['model']} {r['res']}^2 batch {r['batch']} {r['variant']}: {r['note']}" for r in rows
            if r.get("failed") and (r["variant"] in ours or r["variant"] in REFERENCES)]


def _floor_applies(variant_name, device_type):
    """Whether the floor row times the rest of this variant's step: the same float32 code, run
    once; not so with autocast outside the spectral layers, or whole blocks recomputed."""
    v = next((v for v in VARIANTS if v.name == variant_name), None)
    if v is not None and v.recompute == "block":
        return False
    if v is None or v.autocast is None:
        return True
    return v.ours and scope_on_device(v.autocast_scope, device_type) == "spectral"


def add_ratios(rows, device_type="cpu"):
    """``saved / up. full``, ``time / up. full`` and ``cpu / up. full`` against upstream full
    of the same size; and, where the floor rows of that size were timed, ``spectral / up.``:
    the time of the row's spectral layers over upstream's, each being the step's time
    minus its library's floor (everything but the spectral layers: upstream's floor for
    upstream's rows, ours for ours, or upstream's in runs saved before ours was timed;
    the same code in every row without autocast outside the spectral layers or block
    recompute; those rows, and rows timed on their warm-up step only, get no such ratio);
    and ``per-round range``: the lowest and highest of the row's per-round step time over
    upstream full's in the same round, where both were timed over the same two or more rounds."""
    def same_size(name):
        return {(r["model"], r["res"], r["batch"]): r for r in rows if r["variant"] == name}

    base, floor, ours_floor = same_size("upstream full"), same_size(FLOOR), same_size(OURS_FLOOR)
    for r in rows:
        size = (r["model"], r["res"], r["batch"])
        b, f = base.get(size), floor.get(size)
        own = ours_floor.get(size, f) if r["variant"].startswith("ours") else f
        for key, ratio in (("saved MiB", "saved / up. full"), ("step s", "time / up. full"),
                           ("cpu s", "cpu / up. full")):
            if b is not None and key in r and key in b:
                r[ratio] = r[key] / b[key]
        r.pop("per-round ratios", None)  # derived: recomputed from the times on every call
        r.pop("per-round range", None)
        rounds, base_rounds = r.get("round s") or (), (b or {}).get("round s") or ()
        if r is not b and len(rounds) >= 2 and len(rounds) == len(base_rounds) and min(base_rounds) > 0:
            # each round's ratio to upstream full's step of the same round: the rounds interleave
            # the variants, so a slow spell longer than a round reaches both sides of a pair
            paired = [t / u for t, u in zip(rounds, base_rounds)]
            r["per-round ratios"] = paired
            r["per-round range"] = f"{min(paired):.2f}-{max(paired):.2f}"
        if b is not None and f is not None and all("step s" in x for x in (r, b, f, own)) \
                and b["step s"] > f["step s"] and "note" not in r and _floor_applies(r["variant"], device_type):
            r["spectral / up."] = (r["step s"] - own["step s"]) / (b["step s"] - f["step s"])
    return rows


def run(quick=False, sizes=None, rounds=None, models=("FNO", "TFNO"), threads=None, device=None,
        slow_step_s=float("inf"), cpu_allocator=None):
    """Measure; returns (markdown body, data dict).

    ``cpu_allocator`` (CPU only): :func:`~neuralop_mp.cpu_allocator.set_cpu_allocator`
    before the first model is built; every variant runs in this one process, so
    upstream's rows and ours get the same allocator.
    """
    if threads is not None:  # 0 is refused by torch here rather than silently ignored
        torch.set_num_threads(threads)
    device = torch.device(device or "cpu")
    if device.type == "cpu" and cpu_allocator is not None:
        set_cpu_allocator(cpu_allocator)
    sizes = sizes or (QUICK_SIZES if quick else SIZES)
    # given rounds win over quick's 1; 0 is refused, not read as "the default"
    rounds = (1 if quick else 3) if rounds is None else check_int_at_least("rounds", rounds)
    model_kwargs = QUICK_MODEL if quick else MODEL
    load_before = os.getloadavg()[0]
    rows = []
    for arch in models:
        for res, batch in sizes:
            for row in measure_size(arch, res, batch, VARIANTS, rounds, device, model_kwargs, slow_step_s):
                rows.append(row)
                print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()
                       if k not in ("product path", "round s")}, flush=True)
    load_after = os.getloadavg()[0]
    native = native_half_matmul(torch.bfloat16, device)
    data = dict(rows=rows, model=model_kwargs, rounds=rounds, threads=torch.get_num_threads(), device_type=device.type,
                cpu_allocator=describe_cpu_allocator() if device.type == "cpu" else None,
                native_bf16_matmul=native, load_average_before=load_before, load_average_after=load_after)
    return render(data), data


def spread_summary(rows):
    """One sentence on how far this run's ratios moved between rounds: the median over rows
    of half their per-round range, and the widest row; "" without per-round ratios."""
    spreads = [((max(r["per-round ratios"]) - min(r["per-round ratios"])) / 2, r) for r in rows
               if r.get("per-round ratios")]
    if not spreads:
        return ""
    widest, row = max(spreads, key=lambda s: s[0])
    typical = statistics.median(s for s, _ in spreads)
    return (f"One round's ratio to upstream full moved by about ±{typical:.2f} in this run (half the per-round "
            f"range, median over rows; widest ±{widest:.2f}: {row['model']} {row['res']}^2 batch {row['batch']}, "
            f"{row['variant']}); the medians in `time / up. full` move less. ")


def render(data):
    """The markdown body of a run from its data (``spectral.json`` minus the run's device and
    date): the conditions, the table with the ratios, the product paths."""
    # runs saved before device_type was recorded: CPU runs have process CPU times
    device_type = data.get("device_type") or ("cpu" if any("cpu s" in r for r in data["rows"]) else "cuda")
    on_cpu = device_type == "cpu"
    rows = add_ratios(data["rows"], device_type)
    per_round = any(r.get("per-round ratios") for r in rows)  # not in runs saved before it, nor of one round
    columns = ["model", "res", "batch", "variant", "saved MiB", "saved / up. full", "step s", "time / up. full"]
    columns += ["per-round range"] if per_round else []
    columns += ["spectral / up."]
    columns += ["cpu s", "cpu / up. full"] if on_cpu else []
    columns += ["note"]
    paths = sorted({r["product path"] for r in rows if r.get("product path")})
    model = data["model"]
    modes = model["n_modes"]
    return (
        f"FNO/TFNO 2D, {model['n_layers']} layers, {model['hidden_channels']} hidden channels, "
        f"{modes[0]}x{modes[1]} modes; {data['threads']} torch thread(s); native bfloat16 matmul on this device: "
        f"{data['native_bf16_matmul']}. " + (f"CPU memory: {data['cpu_allocator']}. " if data.get("cpu_allocator") else "") +
        f"Median over {data['rounds']} interleaved round(s) of one training step each; ratios are to upstream full "
        f"precision at the same size; "
        + ("`per-round range` is the lowest and highest ratio of a row's step to upstream full's step in the same "
           "round (how far the ratio moves within this run); " if per_round else "")
        + "`spectral / up.` is the step's time minus its library's floor row's, over "
        "upstream full's minus upstream's floor row's. " + spread_summary(rows) +
        f"Load average (1 min) before / after: {data['load_average_before']:.1f} / "
        f"{data['load_average_after']:.1f}.\n\n"
        + markdown_table(rows, columns) + "\n\nSpectral product paths of our rows (`neuralop_mp.model_product_paths`):\n\n"
        + "\n".join(f"- {p}" for p in paths) + "\n"
    )


def machine_memory_bytes():
    """The machine's physical memory in bytes, or None where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, OSError, ValueError):  # no sysconf (Windows), or no such name
        return None


def oversized(sizes, model_kwargs, memory=None):
    """The first ``(res, batch)`` of ``sizes`` whose one float32 activation of the model (batch x
    hidden channels x res^2, the lifted input) alone exceeds ``memory`` bytes (default: the
    machine's), with what that activation needs; None where every size fits or the memory is
    unknown. A training step holds several such tensors, so a size refused here could never run:
    without this check it ended in an allocator's traceback, possibly after the smaller sizes' work."""
    memory = machine_memory_bytes() if memory is None else memory
    if memory is None:
        return None
    for res, batch in sizes:
        needed = batch * model_kwargs["hidden_channels"] * res * res * 4
        if needed > memory:
            return (res, batch), needed, memory
    return None


def _size(text):
    """An argparse type: ``RESxBATCH`` (``64x2``), both positive integers, as ``(res, batch)``."""
    parts = text.lower().split("x")
    try:
        if len(parts) != 2:
            raise argparse.ArgumentTypeError(text)
        return tuple(positive_int(part) for part in parts)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}; allowed values: RESxBATCH, two positive "
                                         "integers such as 64x2") from None


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench spectral", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small model at 32^2, one round (seconds); --rounds and --sizes given as well win")
    parser.add_argument("--rounds", type=positive_int, default=None,
                        help="interleaved timed rounds (default 3; 1 with --quick)")
    parser.add_argument("--models", nargs="+", default=["FNO", "TFNO"], choices=["FNO", "TFNO"])
    parser.add_argument("--threads", type=threads_type, default=None, metavar="N|auto",
                        help="torch intra-op threads; auto: the CPUs other processes leave idle (default: torch's)")
    parser.add_argument("--sizes", type=_size, nargs="+", default=None, metavar="RESxBATCH",
                        help="e.g. 64x2 256x2 (default: " + " ".join(f"{r}x{b}" for r, b in SIZES) + ")")
    parser.add_argument("--slow-step-s", type=seconds, default=float("inf"),
                        help="autocast rows whose warm-up step took longer are not repeated (default: never)")
    parser.add_argument("--cpu-allocator", choices=CPU_ALLOCATOR_MODES, default=DEFAULT_CPU_ALLOCATOR,
                        help="keep: freed memory stays in the process for the next step, for every variant "
                             "alike (default); system: malloc as it is (neuralop_mp/cpu_allocator.py)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a tiny run, or some of the table's rows, is not the docs' table
    refuse_partial_docs_update(parser, "spectral", args, {"--quick": args.quick, "--sizes": args.sizes,
                                                          "--models": args.models != ["FNO", "TFNO"]})
    model_kwargs = QUICK_MODEL if args.quick else MODEL
    too_large = oversized(args.sizes or (QUICK_SIZES if args.quick else SIZES), model_kwargs)
    if too_large is not None:  # before anything is measured: one line naming the size
        (res, batch), needed, memory = too_large
        parser.error(f"argument --sizes: {res}x{batch} needs {human_bytes(needed)} for one activation of the model "
                     f"(batch {batch} x {model_kwargs['hidden_channels']} channels x {res}^2 float32), more than "
                     f"this machine's {human_bytes(memory)} of memory; a training step holds several")
    body, data = run(quick=args.quick, sizes=args.sizes, rounds=args.rounds, models=args.models, threads=args.threads,
                     slow_step_s=args.slow_step_s, cpu_allocator=args.cpu_allocator)
    command = shown_command("neuralop-mp bench spectral", argv)
    text = header("Spectral layer: step time and saved-for-backward bytes", command) + "\n" + body
    print(text)
    failures = unexpected_failures(data.get("rows", []))  # a stand-in run (tests) may return none
    # the rows are written all the same (what ran is worth reading); a table with our crash is no measurement
    write_results("spectral", text, data, out=args.out, update_docs=args.update_docs and not failures)
    if failures:  # one line: the first crash; every row's note is in the table
        more = f" (and {len(failures) - 1} more row(s), each noted in the table)" if len(failures) > 1 else ""
        docs = "; docs/benchmarks.md not updated" if args.update_docs else ""
        print(f"neuralop-mp bench spectral: error: {failures[0]}{more}{docs}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
