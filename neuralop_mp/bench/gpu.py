"""The GPU campaign in one call: CUDA tests, then spectral and optimizer rows on CUDA.

``neuralop-mp bench gpu --out DIR`` (or ``bash benchmarks/gpu.sh DIR``) on a CUDA
machine:

1. runs the CUDA tests (``pytest -k cuda``, from the checkout: a plain install ships no
   tests, and its result then says "skipped (installed package ...)", not a failure);
2. for FNO and TFNO 2D (4 layers, 64 hidden channels; FNO also 128 at 256^2) at
   256, 512 and 1024^2 (powers of two: cuFFT computes half precision) and 768^2
   (not a power of two: our "half" falls back to fp32 FFTs, upstream's crashes),
   one training step of each variant: upstream full, upstream "mixed"/"half" with
   tanh, upstream + fp16 autocast, ours "mixed"/"half" in float16 (tanh) and
   bfloat16 under autocast, and ours "mixed" float16 with complex32 weights and
   TensorGRaD (the step includes the optimizer step; the other rows use AdamW);
3. reports per variant the peak ``torch.cuda.max_memory_allocated`` (reset before
   each variant) and the median step time from CUDA events after warm-up steps,
   with ratios to upstream full and to upstream "mixed", and from one more step the
   bytes the forward keeps for backward and the phase (forward, backward, optimizer
   step) where the peak falls;
4. writes ``gpu.md``, ``gpu.json`` and ``gpu_memory.png`` (peak memory against
   resolution) into the output folder, and with ``--profile`` ``gpu_profile.txt``:
   kernel-level ``torch.profiler`` tables of one step of several variants
   (:func:`profile_cases`, within what is left of the time budget).

As it goes (so that a campaign killed by an outer timeout still leaves them) it writes
``gpu_cuda_tests.txt`` (the CUDA tests' whole output, a timeout's partial output too;
their FAILED/ERROR lines also go into ``gpu.json`` and ``gpu.md``) and ``gpu_rows.jsonl``
(one JSON object a line, each row as soon as it is measured: :func:`read_rows`).

On one H200 the table took 84 and 90 s in two runs (2026-12-04, the table's "Wall time",
which includes the CUDA tests' 16 and 24 s), the whole command about 100 s. On slower GPUs
a time budget bounds it: no variant starts once the budget is spent (its row says it was
skipped). That budget is one rule: :data:`BUDGET_S` (:data:`LIMIT_S`, 8 minutes, less
:data:`END_MARGIN_S`, the margin for the variant running then and for writing the results)
less the time since the campaign started. Run by ``gpu.sh``, the campaign starts with it
(:data:`START_ENV`: its venv, installs and imports count), and the whole of it is meant to
end within the 8 minutes. Run without ``gpu.sh``, the 8 minutes count from ``bench gpu``'s
:func:`main`, after Python's start and the imports (a few seconds, more on a cold
machine), so the command as a whole may take that much longer.

``--dry-run`` walks every variant at a tiny size on CPU with a GPU's choices
(:func:`gpu_choices_on_cpu`): the plugin's choices made from a tensor's device are forced to
CUDA's (:func:`~neuralop_mp.layers.product_paths.force_device_choices`: the 16-bit products,
TFNO's rebuilt weight, whole-grid pointwise work with the lifting and projection recomputed,
the GPU's mode-chunk budget), cuFFT's float16 transforms have a CPU stand-in
(:mod:`.cufft_float16_standin`: our "half" fp16 takes the float16-FFT path at power-of-2 sizes,
upstream's 16-bit modes run there and crash elsewhere, as on a GPU), and the autocast scope is
CUDA's ("model"); the CUDA calls (events, memory statistics, the test run) are skipped. Each
row of ours records its spectral product path, pointwise work and autocast scope
(:func:`path_fields`), which CI checks are the GPU's. What stays the CPU's: autocast itself (CPU autocast, its own op
lists), the 1x1 convolutions as CPU matrix products (they act on a CPU tensor only) and the
kernels under all of it.

References
----------
.. [1] Tu, R. et al. "Guaranteed Approximation Bounds for Mixed-Precision Neural
   Operators", ICLR 2024, arXiv:2307.15034 (targets: up to 50% less memory, up to
   58% more throughput).
"""
import contextlib
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from neuralop.models import FNO, TFNO

from ..data.cli import finite_seconds
from ..layers.autocast_scope import get_autocast_scope, set_autocast_scope
from ..layers.path_report import model_product_paths
from ..layers.product_paths import choice_device_type, force_device_choices
from ..models.mixed_precision_models import ignoring_unrecorded_precision
from ..models.pointwise_tiles import describe_pointwise_tiles, set_pointwise_tiles
from ..layers.spectral_conv import MixedPrecisionSpectralConv
from ..optim.factory import create_optimizer
from ..peak_memory import PeakTensorBytes
from ..layers.precision_switch import set_precision, set_spectral_weight_dtype
from ..run_setup import RunSetupError
from ..train_report import to_jsonable
from ..vocabulary import OneLineErrorParser, scope_on_device
from .cufft_float16_standin import emulate_float16_cufft
from .report import (DEFAULT_DOC, add_output_arguments, check_docs_checkout, checkout_root,
                     default_output_dir, header, markdown_table, refuse_partial_docs_update, shown_command,
                     update_section, write_results)
from .spectral import Variant

# (arch, hidden channels, resolution); 768 is the non-power-of-2 size
SIZES = [("FNO", 64, 256), ("FNO", 128, 256), ("FNO", 64, 512), ("FNO", 64, 768), ("FNO", 64, 1024),
         ("TFNO", 64, 256), ("TFNO", 64, 512), ("TFNO", 64, 1024)]
# as SIZES: FNO at a power of two and not (768's float32 FFT fallback, upstream's 16-bit crashes),
# TFNO at powers of two only (its float16-FFT path with the rebuilt weight)
DRY_SIZES = [("FNO", 8, 16), ("FNO", 8, 12), ("TFNO", 8, 16)]
# the targets are at 1024^2: measured first, so a spent budget skips smaller sizes
MEASURE_FIRST = 1024
# variants profiled kernel by kernel at the largest FNO size: where the time goes
PROFILED = ("upstream full", "upstream mixed + tanh", "ours mixed fp16 + tanh + autocast",
            "ours half fp16 + tanh + autocast")
BATCH, DRY_BATCH = 4, 1
MODES, DRY_MODES = 32, 4
WARMUP, STEPS = 2, 5
LIMIT_S = 480  # the whole campaign, gpu.sh's venv and installs included (an H200 needs ~100 s in all)
# what the budget leaves of LIMIT_S: the variant already started when the budget runs out (tens
# of seconds at 1024^2 on a slow GPU) and writing the results
END_MARGIN_S = 45
#: the time budget, counted from the campaign's start (gpu.sh's, else bench gpu's): no variant starts after it
BUDGET_S = LIMIT_S - END_MARGIN_S
#: set by gpu.sh (epoch seconds of its start): the campaign's start, its venv, installs and imports included
START_ENV = "NEURALOP_MP_GPU_START"
#: the CUDA tests' result where the package is installed, not a checkout
INSTALLED_SKIP = "skipped (installed package: the tests are not shipped; run from a checkout)"
MAX_LISTED_FAILURES = 10  # failing CUDA tests listed in gpu.md (gpu.json and gpu_cuda_tests.txt keep all)


@dataclass(frozen=True)
class GpuVariant(Variant):
    """A spectral benchmark row plus the optimizer and spectral weight storage (float16 by default on CUDA)."""

    half_dtype: str = "float16"
    optimizer: str = "adamw"
    weight_dtype: str = "complex64"


VARIANTS = [
    GpuVariant("upstream full", False, "full"),
    GpuVariant("upstream mixed + tanh", False, "mixed", stabilizer="tanh"),
    GpuVariant("upstream half + tanh", False, "half", stabilizer="tanh"),
    GpuVariant("upstream + autocast fp16", False, "full", autocast=torch.float16),
    GpuVariant("ours mixed fp16 + tanh + autocast", True, "mixed", "float16", "tanh", torch.float16),
    GpuVariant("ours half fp16 + tanh + autocast", True, "half", "float16", "tanh", torch.float16),
    GpuVariant("ours mixed bf16 + autocast", True, "mixed", "bfloat16", None, torch.bfloat16),
    GpuVariant("ours half bf16 + autocast", True, "half", "bfloat16", None, torch.bfloat16),
    GpuVariant("ours mixed fp16 + tanh + autocast, complex32 weights, TensorGRaD", True, "mixed", "float16", "tanh",
               torch.float16, optimizer="tensorgrad", weight_dtype="complex32"),
]


def build(arch, hidden, variant, modes, device):
    cls = FNO if arch == "FNO" else TFNO
    kwargs = dict(n_modes=(modes, modes), in_channels=1, out_channels=1, hidden_channels=hidden, n_layers=4)
    if variant.ours:
        model = cls(conv_module=MixedPrecisionSpectralConv, **kwargs)
        with ignoring_unrecorded_precision():  # upstream's class, as upstream's rows; never saved
            set_precision(model, variant.mode, half_dtype=variant.half_dtype, stabilizer=variant.stabilizer)
            if variant.weight_dtype != "complex64":
                set_spectral_weight_dtype(model, variant.weight_dtype)
            # "auto": the whole model on CUDA; resolved at every forward from the tensor's device,
            # so where another device's choices are forced (the dry run) that device's is set
            scope = variant.autocast_scope
            if choice_device_type(device) != torch.device(device).type:
                scope = scope_on_device(scope, choice_device_type(device))
            set_autocast_scope(model, scope)
        set_pointwise_tiles(model)  # as the plugin's models do (tiles act on CPU choices only)
    else:
        model = cls(fno_block_precision=variant.mode, stabilizer=variant.stabilizer, **kwargs)
    model = model.to(device)
    optimizer = create_optimizer(model, {"optimizer": variant.optimizer, "learning_rate": 1e-4})
    return model, optimizer


@contextlib.contextmanager
def gpu_choices_on_cpu(enabled=True):
    """The dry run's setting (``enabled``; else nothing changes): a GPU's choices forced
    (``force_device_choices("cuda")``) and cuFFT's float16 transforms stood in for
    (:func:`~.cufft_float16_standin.emulate_float16_cufft`)."""
    if not enabled:
        yield
        return
    with force_device_choices("cuda"), emulate_float16_cufft():
        yield


def path_fields(model):
    """What a row records of how our model ran its last step: ``product path`` (the distinct
    spectral product paths of its layers, "KERNEL in DTYPE, FFT in DTYPE", joined by "; "),
    ``pointwise`` (:func:`~neuralop_mp.models.pointwise_tiles.describe_pointwise_tiles`) and
    ``autocast scope`` (where autocast acts on the device the choices are made for).
    Nothing for upstream's model."""
    paths = [p for p in model_product_paths(model) if p["kernel"] is not None]
    if not paths:
        return {}
    lines = dict.fromkeys(f"{p['kernel']} in {p['compute_dtype']}, FFT in {p['fft']}" for p in paths)
    device = choice_device_type(next(model.parameters()).device)
    return {"product path": "; ".join(lines), "pointwise": describe_pointwise_tiles(model),
            "autocast scope": scope_on_device(get_autocast_scope(model), device)}


def start_budget_s(environ=None, now=None):
    """The campaign's time budget from ``now``: :data:`BUDGET_S` less the seconds since the
    campaign started, at least 0. The start is :data:`START_ENV` (gpu.sh's start, epoch seconds),
    else ``now`` (``bench gpu`` run without gpu.sh: the campaign starts here). Raises ``ValueError``
    naming a value that is not a number."""
    environ = os.environ if environ is None else environ
    now = time.time() if now is None else now
    started = environ.get(START_ENV, "").strip()
    try:
        started_at = float(started) if started else now
    except ValueError:
        raise ValueError(f"{START_ENV}={started!r} is not a time in epoch seconds (gpu.sh sets it to date +%s)") \
            from None
    return max(0, round(BUDGET_S - (now - started_at)))  # whole seconds: the rows' notes name it


class _Timer:
    """CUDA events on a GPU, perf_counter elsewhere (the dry run)."""

    def __init__(self, cuda):
        self.cuda = cuda

    def __enter__(self):
        if self.cuda:
            self.start, self.end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            self.end.record()
            self.end.synchronize()
            self.seconds = self.start.elapsed_time(self.end) / 1e3
        else:
            self.seconds = time.perf_counter() - self.t0
        return False


def _step(model, optimizer, x, variant, device_type, after=None):
    """One training step; ``after(phase)`` is called at the end of each phase ("forward",
    with the output still alive, "backward", "optimizer step")."""
    after = after or (lambda phase: None)
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(device_type, dtype=variant.autocast or torch.float32, enabled=variant.autocast is not None):
        out = model(x)
    after("forward")
    out.float().square().mean().backward()
    del out
    after("backward")
    optimizer.step()
    after("optimizer step")


def _phase_memory(model, optimizer, x, variant, device_type):
    """One more training step, split into its phases: the bytes the forward leaves
    allocated (what backward needs: saved activations and the output) and the phase that
    reaches the step's highest allocation. On a GPU from the CUDA allocator's counters; on
    a CPU (the dry run) from the tensors themselves
    (:class:`~neuralop_mp.peak_memory.PeakTensorBytes`)."""
    marks = {}  # phase -> (bytes alive at its end, its peak)
    # the last step's gradients go first: on a GPU the counters start from what is allocated,
    # and the step's own zero_grad would free them inside the meter, taking them off the forward
    optimizer.zero_grad(set_to_none=True)
    # parameters and optimizer state exist before: their in-place updates allocate nothing
    with PeakTensorBytes(alive=[list(model.parameters()), optimizer.state], device=x.device) as meter:
        def after(phase):
            marks[phase] = (meter.live_bytes, meter.peak_so_far)
            meter.restart_peak()

        _step(model, optimizer, x, variant, device_type, after)
    return {"kept by forward MiB": marks["forward"][0] / 2**20, "peak in": max(marks, key=lambda m: marks[m][1])}


def measure(arch, hidden, res, variant, batch, modes, device, steps=STEPS, warmup=WARMUP):
    """One row: peak CUDA memory and median step time of ``variant`` at this size."""
    cuda = device.type == "cuda"
    row = dict(model=arch, hidden=hidden, res=res, variant=variant.name, batch=batch)
    model = optimizer = None
    # what the previous row left in reference cycles is freed before this row's counters start
    gc.collect()
    try:
        if cuda:
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        torch.manual_seed(0)
        model, optimizer = build(arch, hidden, variant, modes, device)
        x = torch.randn(batch, 1, res, res, device=device)
        for _ in range(warmup):
            _step(model, optimizer, x, variant, device.type)
        times = []
        for _ in range(steps):
            with _Timer(cuda) as timer:
                _step(model, optimizer, x, variant, device.type)
            times.append(timer.seconds)
        row["step ms"] = 1e3 * statistics.median(times)
        row.update(path_fields(model))
        if cuda:
            row["peak MiB"] = torch.cuda.max_memory_allocated() / 2**20
    except Exception as exc:  # upstream's half modes at non-power-of-2 sizes, or on CPU
        message = str(exc).strip().splitlines()[0][:100] if str(exc).strip() else ""
        row["note"] = f"crashes: {type(exc).__name__}: {message}"
        row["failed"] = "run"
    else:
        try:  # one more step, after the measured ones: a failure here only loses its columns
            row.update(_phase_memory(model, optimizer, x, variant, device.type))
        except Exception as exc:
            row["note"] = f"phase split failed: {type(exc).__name__}: {str(exc).strip()[:80]}"
            row["failed"] = "phase split"
    finally:
        del model, optimizer
    return row


def add_ratios(rows):
    """Time and memory relative to upstream full and to upstream mixed of the same size."""
    for ref_name, tag in (("upstream full", "up. full"), ("upstream mixed + tanh", "up. mixed")):
        base = {(r["model"], r["hidden"], r["res"]): r for r in rows if r["variant"] == ref_name}
        for r in rows:
            b = base.get((r["model"], r["hidden"], r["res"]))
            if b is None:
                continue
            if "step ms" in r and "step ms" in b:
                r[f"speed-up vs {tag}"] = b["step ms"] / r["step ms"]
            if "peak MiB" in r and "peak MiB" in b:
                r[f"memory / {tag}"] = r["peak MiB"] / b["peak MiB"]
    return rows


def unexpected_failures(rows, cuda_tests):
    """What should fail the campaign: a crash or a failed phase split of one of our rows or of
    upstream full (the reference of every ratio), and CUDA tests that did not all pass.
    Upstream's own 16-bit modes crashing (cuFFT at sizes that are not powers of two, or
    anything on a CPU) is what the table reports, not a failure of the campaign."""
    failures = [f"{r['model']} {r['hidden']} {r['res']}^2 {r['variant']}: {r['note']}" for r in rows
                if (r["variant"].startswith("ours") or r["variant"] == "upstream full") and r.get("failed")]
    if not (cuda_tests.startswith("skipped") or cuda_tests.startswith("exit code 0:")):
        failures.append(f"CUDA tests: {cuda_tests}")
    return failures


def run_cuda_tests(dry_run, timeout_s=150, output=None):
    """``pytest -q -k cuda`` from the checkout; returns ``(result, failures)``.

    ``result`` is a one-line summary; ``failures`` the ``FAILED``/``ERROR`` lines of
    pytest's short summary, each naming a failing test and its reason (:func:`failed_tests`;
    from a timeout's partial output too). ``output``: a file that gets pytest's whole
    output, for a person to read (the failures come from the output in hand, not from it).
    A dry run, and an installed package (no checkout around it: :data:`INSTALLED_SKIP`), run
    nothing: ``result`` then starts with "skipped".
    """
    if dry_run:
        return "skipped (dry run / quick)", []
    # from the repository root (its pytest settings and test folders) wherever the campaign was
    # started; a plain install ships no tests (pyproject.toml lists no tests package), where
    # pytest would find none and exit 5: said as a skip, not counted as a failure
    root = checkout_root()
    if root is None:
        return INSTALLED_SKIP, []
    # -rfEs: the summary lists failures, errors (and skips) whatever the pytest settings say
    command = [sys.executable, "-m", "pytest", "-q", "-rfEs", "-k", "cuda", "-p", "no:cacheprovider"]
    # a wide "terminal": pytest trims each summary line's reason to the terminal's width
    env = dict(os.environ, COLUMNS="400")
    env.pop(START_ENV, None)  # the tests' own campaigns (dry runs) get the whole default budget
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=root, env=env)
    except subprocess.TimeoutExpired as timeout:
        _write_test_output(output, timeout.stdout, timeout.stderr, f"timed out after {timeout_s} s")
        return f"timed out after {timeout_s} s", failed_tests(_text(timeout.stdout))
    _write_test_output(output, done.stdout, done.stderr, f"exit code {done.returncode}")
    lines = [line for line in done.stdout.strip().splitlines() if line.strip()]
    result = f"exit code {done.returncode}: {lines[-1] if lines else done.stderr.strip()[-200:]}"
    return result, failed_tests(done.stdout)


def _text(stream):
    """A captured stream as text: a timeout's partial output comes as bytes even in text mode."""
    if isinstance(stream, bytes):
        return stream.decode(errors="replace")
    return stream or ""


def _write_test_output(path, stdout, stderr, status):
    if path is None:
        return
    text = _text(stdout) + (f"\n--- stderr ---\n{_text(stderr)}" if _text(stderr).strip() else "")
    Path(path).write_text(f"{text.rstrip()}\n--- {status} ---\n")


def failed_tests(output):
    """The ``FAILED``/``ERROR`` lines of pytest's short summary in ``output`` (its text)."""
    return [line.strip() for line in output.splitlines() if line.startswith(("FAILED ", "ERROR "))]


# how to_jsonable writes a non-finite float (strict JSON has no NaN or Infinity)
_NON_FINITE = {"nan": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def read_rows(path):
    """The rows of a ``gpu_rows.jsonl`` (what a killed campaign measured before it stopped), as
    measured: a non-finite number, written as the string "nan", "inf" or "-inf"
    (:func:`~neuralop_mp.train_report.to_jsonable`), is a float again."""
    with open(path) as lines:
        rows = [json.loads(line) for line in lines if line.strip()]
    return [{key: _NON_FINITE.get(value, value) if isinstance(value, str) else value for key, value in row.items()}
            for row in rows]


# what plot_memory draws: the first column of these any FNO row holds a number of, its axis label and title
PLOTTED = (("peak MiB", "peak CUDA memory of a training step (MiB)", "peak memory vs resolution"),
           ("kept by forward MiB", "kept by the forward for backward (MiB)", "kept by forward (no CUDA peak)"))


def plot_memory(rows, path):
    """Memory against resolution, one line per variant (FNO, its fewest channels): the peak CUDA
    memory, or where no row has one (the dry run on CPU) what the forward keeps for backward,
    the axis saying which. Returns the column drawn; None, writing no file, where no FNO row
    holds a number of either."""
    fno = [r for r in rows if r["model"] == "FNO"]
    column = next((c for c in PLOTTED if any(_finite(r.get(c[0])) for r in fno)), None)
    if column is None:
        return None
    key, ylabel, what = column
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    hidden = min(r["hidden"] for r in fno)
    for variant in dict.fromkeys(r["variant"] for r in rows):
        points = sorted((r["res"], r[key]) for r in fno if r["variant"] == variant
                        and r["hidden"] == hidden and _finite(r.get(key)))
        if points:
            ax.plot(*zip(*points), marker="o", label=variant)
    ax.set_xlabel("resolution (N for N x N)")
    ax.set_ylabel(ylabel)
    ax.set_yscale("log")
    ax.set_title(f"FNO 2D, 4 layers, {hidden} channels: {what}")
    if ax.lines:
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return key


def _finite(value):
    """A number a log axis can show: a finite one (rows read back may hold "nan"/"inf" strings)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def _plan(tiny, archs=None):
    """``(sizes, batch, modes)`` of the campaign, or of its tiny version (dry run, quick);
    ``archs``: only the sizes of these models (default all)."""
    sizes, batch, modes = (DRY_SIZES, DRY_BATCH, DRY_MODES) if tiny else (SIZES, BATCH, MODES)
    return [s for s in sizes if archs is None or s[0] in archs], batch, modes


def _measure_rows(sizes, batch, modes, device, steps, warmup, start, budget_s, rows, rows_file):
    """Measure each (size, variant) into ``rows`` (and ``rows_file``, as it goes), the
    :data:`MEASURE_FIRST` size first, skipping what would start after ``budget_s``."""
    for arch, hidden, res in sorted(sizes, key=lambda size: size[2] != MEASURE_FIRST):
        for variant in VARIANTS:
            if time.perf_counter() - start > budget_s:
                row = dict(model=arch, hidden=hidden, res=res, variant=variant.name, batch=batch,
                           note=f"skipped: time budget of {budget_s} s spent")
            else:
                row = measure(arch, hidden, res, variant, batch, modes, device, steps, warmup)
                print({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            rows.append(row)
            if rows_file is not None:
                # strict JSON, as every JSON file of the package: a NaN/inf timing as "nan"/"inf"
                rows_file.write(json.dumps(to_jsonable(row), allow_nan=False) + "\n")
                rows_file.flush()


def run(dry_run=False, quick=False, budget_s=BUDGET_S, archs=None, out=None):
    """Run the campaign; returns (markdown body, data dict, rows).

    ``quick``: tiny sizes, no test run, on CUDA; ``dry_run``: the same on CPU;
    ``archs``: only these models (e.g. ``["TFNO"]``; default all); ``out``: a folder
    that gets ``gpu_cuda_tests.txt`` and ``gpu_rows.jsonl`` as the campaign goes.
    """
    if not dry_run and not torch.cuda.is_available():
        raise RuntimeError("neuralop-mp bench gpu needs a CUDA device; on a CPU use --dry-run to check the script.")
    device = torch.device("cpu" if dry_run else "cuda")
    tiny = dry_run or quick
    sizes, batch, modes = _plan(tiny, archs)
    steps, warmup = (1, 1) if tiny else (STEPS, WARMUP)
    start = time.perf_counter()
    folder = Path(out) if out is not None else None
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    tests_file = folder / "gpu_cuda_tests.txt" if folder is not None else None
    if tests_file is not None:
        tests_file.unlink(missing_ok=True)  # an earlier campaign's, in the same folder
    tests, failing = run_cuda_tests(tiny, output=tests_file)
    print(f"CUDA tests: {tests}" + "".join(f"\n  {line}" for line in failing), flush=True)
    rows = []
    # each row goes to disk as soon as it exists: an outer timeout killing the process keeps them
    rows_file = open(folder / "gpu_rows.jsonl", "w") if folder is not None else None
    try:
        # the dry run: a GPU's choices and cuFFT's float16 stand-in, for the rows (not the CUDA tests)
        with gpu_choices_on_cpu(dry_run):
            _measure_rows(sizes, batch, modes, device, steps, warmup, start, budget_s, rows, rows_file)
    finally:
        if rows_file is not None:
            rows_file.close()
    rows.sort(key=lambda r: sizes.index((r["model"], r["hidden"], r["res"])))  # tables in size order
    add_ratios(rows)
    columns = ["model", "hidden", "res", "variant", "step ms", "speed-up vs up. full", "speed-up vs up. mixed",
               "peak MiB", "memory / up. full", "memory / up. mixed", "kept by forward MiB", "peak in", "note"]
    # the sizes this campaign ran that are no power of two (768 in the full campaign, 12 in the tiny one)
    odd = sorted({res for _, _, res in sizes if res & (res - 1)})
    odd_text = (f"{' and '.join(map(str, odd))} {'is' if len(odd) == 1 else 'are'} not a power of two: our \"half\" "
                "runs its FFTs in fp32 there, cuFFT half elsewhere. " if odd else "")
    shown = failing[:MAX_LISTED_FAILURES]
    listed = "".join(f"- `{line[:300]}`\n" for line in shown)
    if len(failing) > len(shown):
        listed += f"- ... {len(failing) - len(shown)} more in `gpu_cuda_tests.txt`\n"
    body = (
        f"CUDA tests (`pytest -k cuda`): {tests}.\n\n" + (listed + "\n" if listed else "") +
        f"FNO/TFNO 2D, 4 layers, {modes}x{modes} modes, batch {batch}; {warmup} warm-up step(s), median of "
        f"{steps} timed step(s) ({'perf_counter: dry run' if dry_run else 'CUDA events'}); peak = `torch.cuda.max_memory_allocated` of the training step "
        "(reset before each variant; parameters, gradients and optimizer state included"
        + ("; blank in this dry run: no CUDA" if dry_run else "") + "); every row but the "
        "TensorGRaD one steps AdamW; \"kept by forward\" = what one more step's forward leaves allocated "
        "for backward (saved activations and output; on a CPU counted from the tensors), \"peak in\" = the phase "
        f"of that step with the highest allocation. {odd_text}"
        f"Wall time: {time.perf_counter() - start:.0f} s.\n\n"
        + markdown_table(rows, columns) + "\n"
    )
    data = dict(rows=rows, cuda_tests=tests, cuda_test_failures=failing, dry_run=dry_run, tiny=tiny, batch=batch,
                modes=modes, archs=sorted(set(archs)) if archs else None)
    return body, data, rows


def profile_cases(rows, sizes):
    """What ``--profile`` profiles: ``[(arch, hidden, res, [variant names])]``.

    The :data:`PROFILED` variants at the largest size of FNO (of the one model in
    ``sizes`` when ``--arch`` leaves FNO out); upstream full and ours mixed (bf16 and fp16)
    at the size where ours mixed bf16 compares worst with upstream full in ``rows``; and
    ours mixed fp16 with AdamW and with TensorGRaD at that model's smallest size, where
    the optimizer step weighs most.
    """
    arch = "FNO" if any(s[0] == "FNO" for s in sizes) else sizes[0][0]
    own = [s for s in sizes if s[0] == arch]
    largest = max(own, key=lambda s: (s[2], -s[1]))
    smallest = min(own, key=lambda s: (s[2], s[1]))
    cases = [(*largest, list(PROFILED))]
    ratios = [(r["speed-up vs up. full"], (r["model"], r["hidden"], r["res"])) for r in rows
              if r["variant"] == "ours mixed bf16 + autocast" and "speed-up vs up. full" in r]
    if ratios:
        worst = min(ratios)[1]
        cases.append((*worst, ["upstream full", "ours mixed bf16 + autocast", "ours mixed fp16 + tanh + autocast"]))
    tensorgrad = next(v.name for v in VARIANTS if v.optimizer == "tensorgrad")
    cases.append((*smallest, ["ours mixed fp16 + tanh + autocast", tensorgrad]))
    return cases


def profile_table(rows, dry_run=False, quick=False, top=25, start=None, budget_s=None, archs=None):
    """Kernel-level time of one training step of each variant of :func:`profile_cases`,
    from ``torch.profiler``: text tables, one per (size, variant).

    ``start`` (a ``time.perf_counter()`` value) and ``budget_s``: a case that would start
    after the budget is spent is skipped, and its part says so (the campaign's time limit
    holds with ``--profile`` too); ``archs``: the models the campaign measured.
    """
    from torch.profiler import ProfilerActivity, profile

    device = torch.device("cpu" if dry_run else "cuda")
    sizes, batch, modes = _plan(dry_run or quick, archs)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sort_by = "cuda_time_total" if device.type == "cuda" else "cpu_time_total"
    by_name = {v.name: v for v in VARIANTS}
    parts = []
    for arch, hidden, res, names in profile_cases(rows, sizes):
        for variant in (by_name[name] for name in names):
            title = f"== {variant.name}: {arch} {hidden} channels, {res}^2, batch {batch}\n"
            if start is not None and budget_s is not None and time.perf_counter() - start > budget_s:
                parts.append(title + f"skipped: time budget of {budget_s} s spent\n")
                print(f"profile skipped (time budget of {budget_s} s spent): {variant.name}, {arch} {hidden} "
                      f"channels, {res}^2", flush=True)
                continue
            model = optimizer = None
            try:
                torch.manual_seed(0)
                with gpu_choices_on_cpu(dry_run):  # build too: the autocast scope is chosen there
                    model, optimizer = build(arch, hidden, variant, modes, device)
                x = torch.randn(batch, 1, res, res, device=device)
                with gpu_choices_on_cpu(dry_run):  # the dry run's, as its rows
                    _step(model, optimizer, x, variant, device.type)  # warm-up: plans, handles, allocator
                    with profile(activities=activities) as prof:
                        _step(model, optimizer, x, variant, device.type)
                        if device.type == "cuda":
                            torch.cuda.synchronize()
                events = prof.key_averages()
                calls = sum(e.count for e in events if e.key.startswith("aten::"))
                table = f"aten calls: {calls}\n" + events.table(sort_by=sort_by, row_limit=top)
            except Exception as exc:  # upstream's half modes on CPU (the dry run)
                table = f"crashes: {type(exc).__name__}: {str(exc).strip()[:200]}"
            finally:
                del model, optimizer
            parts.append(f"{title}{table}\n")
    return "\n".join(parts)


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--dry-run", action="store_true",
                        help="every variant at a tiny size on CPU with a GPU's choices (cuFFT's float16 transforms stood in "
                             "for), CUDA calls skipped (checks the script)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, no test run (on a machine without CUDA: the dry run)")
    parser.add_argument("--budget-s", type=finite_seconds, default=None,
                        help=f"stop starting variants after this many seconds (default: {LIMIT_S} s less "
                             f"{END_MARGIN_S} s, less the time since ${START_ENV}, gpu.sh's start, where set)")
    parser.add_argument("--arch", action="append", choices=sorted({s[0] for s in SIZES}),
                        help="only this model (repeat for several; default: all)")
    parser.add_argument("--profile", action="store_true",
                        help="also write gpu_profile.txt: torch.profiler tables of one training step of "
                             "several variants at the largest size, the size where ours compares worst, "
                             "and the smallest (AdamW vs TensorGRaD)")
    parser.add_argument("--apply", metavar="DIR",
                        help="run nothing: put DIR/gpu.md, written by a campaign on another machine (the GPU's, "
                             "whose copy of the docs does not come back), into docs/benchmarks.md's GPU section")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    # a campaign of some models only would leave the others' rows out of the docs' whole GPU table (a tiny
    # run's --update-docs is said to write nothing, below: gpu.sh passes it to its dry run too)
    refuse_partial_docs_update(parser, "gpu", args, {"--arch": args.arch and not (args.dry_run or args.quick)})
    if args.apply is not None:
        try:
            # an installed package: no docs/ to put the table in
            check_docs_checkout("--apply", instead="edit the table into the checkout's docs by hand")
        except RunSetupError as error:
            print(f"neuralop-mp bench gpu: error: {error}", file=sys.stderr)
            return 2
        table = Path(args.apply) / "gpu.md"
        if not table.is_file():
            # a campaign killed before its end leaves only the rows it measured
            killed = (" (only gpu_rows.jsonl: the campaign stopped before its end; its rows are one JSON "
                      "object a line)") if (Path(args.apply) / "gpu_rows.jsonl").is_file() else ""
            print(f"neuralop-mp bench gpu: error: --apply {args.apply}: no gpu.md there{killed}", file=sys.stderr)
            return 2
        text = table.read_text()
        record = table.with_suffix(".json")
        recorded = json.loads(record.read_text()) if record.is_file() else {}
        if recorded.get("tiny", True):
            # what --update-docs refuses too: tiny sizes are a check of the script, not a measurement
            print(f"neuralop-mp bench gpu: error: --apply {args.apply}: {record.name} is missing or records a dry "
                  "run or quick campaign (tiny sizes); the docs take a full campaign's table only", file=sys.stderr)
            return 2
        if recorded.get("archs"):  # --update-docs refuses --arch too (a campaign before it was recorded: all)
            print(f"neuralop-mp bench gpu: error: --apply {args.apply}: {record.name} records a campaign of "
                  f"{', '.join(recorded['archs'])} only (--arch); the docs' GPU table takes a campaign of every "
                  "model: copy its rows by hand", file=sys.stderr)
            return 2
        try:
            update_section("gpu", text, DEFAULT_DOC)
        except ValueError as error:  # the docs' section or notes markers are broken: nothing written
            print(f"neuralop-mp bench gpu: error: --apply {args.apply}: {error}", file=sys.stderr)
            return 2
        print(f"updated the GPU section of {DEFAULT_DOC} from {table} (its hand-written notes kept: edit them "
              "to match the new table)")
        return 0
    dry_run = args.dry_run or (args.quick and not torch.cuda.is_available())
    if args.budget_s is None:
        try:  # after the imports: they count against what gpu.sh's start leaves
            args.budget_s = start_budget_s()
        except ValueError as error:
            print(f"neuralop-mp bench gpu: error: {error}", file=sys.stderr)
            return 2
    start = time.perf_counter()
    folder = Path(args.out) if args.out else default_output_dir("gpu")
    try:
        body, data, rows = run(dry_run=dry_run, quick=args.quick, budget_s=args.budget_s, archs=args.arch,
                               out=folder)
    except RuntimeError as error:
        print(f"neuralop-mp bench gpu: error: {error}", file=sys.stderr)
        return 2
    tiny = dry_run or args.quick
    title = "GPU campaign" + (" (dry run on CPU: tiny sizes, no CUDA)" if dry_run else " (quick: tiny sizes)" if tiny else "")
    command = shown_command("neuralop-mp bench gpu", argv)
    if dry_run and "--dry-run" not in command:  # --quick without CUDA runs the dry run
        command += " --dry-run"
    text = header(title, command) + "\n" + body
    print(text)
    folder = write_results("gpu", text, data, out=folder, update_docs=args.update_docs and not tiny)
    if args.update_docs and tiny:  # gpu.sh passes --update-docs to its dry run too: said, not refused
        print(f"neuralop-mp bench gpu: docs/benchmarks.md not updated: a {'dry' if dry_run else 'quick'} run's "
              "tiny sizes are no measurement.", file=sys.stderr)
    plotted = plot_memory(rows, Path(folder) / "gpu_memory.png")
    if plotted is None:  # every FNO row crashed, or none was asked for (--arch TFNO)
        print("neuralop-mp bench gpu: gpu_memory.png not written: no FNO row holds a memory figure", file=sys.stderr)
    elif plotted != "peak MiB":
        print(f"gpu_memory.png shows {plotted!r}: no row has a CUDA peak", flush=True)
    if args.profile:
        (Path(folder) / "gpu_profile.txt").write_text(
            profile_table(rows, dry_run=dry_run, quick=args.quick, start=start, budget_s=args.budget_s,
                          archs=args.arch))
        print(f"wrote {Path(folder) / 'gpu_profile.txt'}")
    failures = unexpected_failures(rows, data["cuda_tests"])
    if failures:  # the results are written all the same: what ran is worth reading
        print("neuralop-mp bench gpu: failed:\n  " + "\n  ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
