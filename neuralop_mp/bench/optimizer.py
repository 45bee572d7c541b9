"""Benchmark: optimizer-state memory, step time and total training memory of TensorGRaD.

Run ``neuralop-mp bench optimizer [--out DIR] [--update-docs]`` (``--quick``: the
tiny model only, no accuracy run). It compares, on FNO models from small to FNO_Large2d-like
(128 channels, 64 x 64 modes):

- torch's ``AdamW``; upstream ``neuralop.training.AdamW`` dense and with its
  Tensor-GaLore projector (rank 0.25, tensorly convention, on the spectral weights);
- ours: ``tensorgrad`` (5% random-k + Tucker core 25%) with fp32 and bf16 states,
  ``galore`` (low-rank only), ``sparse`` (sparse only).

State bytes and step times come from steps on random gradients (no forward pass), so
the large model fits a CPU run. Total training memory is measured on one real training
step of each setup in :data:`TRAINING_SETUPS`: parameters, gradients, optimizer state
and the bytes autograd saves for backward (:class:`~neuralop_mp.SavedTensorBytes`),
from AdamW in full precision (the baseline) to TensorGRaD with the mixed-precision layer
and complex32 spectral weights (the half recipe). A short Darcy run (16 x 16) compares
final test errors, in full precision and with the half recipe. Results go to the
"optimizer" section of docs/benchmarks.md.
"""
import statistics
import sys
import time

import torch
from neuralop.models import FNO

from ..vocabulary import OneLineErrorParser
from ..memory import SavedTensorBytes
from .cli import data_root_errors, threads_type
from .report import (add_output_arguments, header, markdown_table, refuse_partial_docs_update, shown_command,
                     write_results)
from .tiny_training import fit_and_test

SIZES = {
    # name: (hidden channels, modes per dim, layers, resolution, batch) for activations
    "small": (32, 16, 4, 64, 8),
    "medium": (64, 32, 4, 128, 4),
    "large2d": (128, 64, 2, 128, 2),  # 2 layers keep the CPU run short; ratios do not depend on depth
}
OPTIMIZERS = ("torch_adamw", "upstream_adamw", "upstream_galore", "tensorgrad", "tensorgrad_bf16", "galore", "sparse")
# (size, optimizer) pairs of the state table left out, and why: said under the table
SKIPPED_STATE_ROWS = {
    ("large2d", "upstream_galore"): "tensorly's 10-iteration Tucker decomposition of its 34M-entry spectral "
                                    "weights takes minutes on a CPU",
}


# (hidden, modes, layers, resolution, batch) of --quick: checks the benchmark runs, in seconds
QUICK_SIZE = (8, 6, 2, 16, 2)


def size_dims(size):
    """The (hidden, modes, layers, resolution, batch) of a size name: one of :data:`SIZES`, or
    "quick" (:data:`QUICK_SIZE`, kept out of SIZES: it is no ``--sizes`` choice)."""
    return QUICK_SIZE if size == "quick" else SIZES[size]


def build_fno(size, conv_module=None):
    hidden, modes, layers, _, _ = size_dims(size)
    kwargs = {} if conv_module is None else {"conv_module": conv_module}
    return FNO(n_modes=(modes, modes), in_channels=1, out_channels=1, hidden_channels=hidden,
               n_layers=layers, **kwargs)


def make_optimizer(name, model, lr=1e-3, update_proj_gap=100, scale=1.0):
    """One of ``OPTIMIZERS`` for ``model``."""
    from ..optim import create_optimizer
    from ..optim.param_groups import spectral_parameters

    if name == "torch_adamw":
        return torch.optim.AdamW(model.parameters(), lr=lr)
    if name.startswith("upstream"):
        from neuralop.training import AdamW as UpstreamAdamW

        if name == "upstream_adamw":
            return UpstreamAdamW(model.parameters(), lr=lr)
        ids = {id(p) for p in spectral_parameters(model)}
        spectral = [p for p in model.parameters() if id(p) in ids]
        regular = [p for p in model.parameters() if id(p) not in ids]
        return UpstreamAdamW(regular, lr=lr, galore_params=spectral, galore_rank=0.25,
                             galore_update_proj_gap=update_proj_gap)
    kind = {"tensorgrad_bf16": "tensorgrad"}.get(name, name)
    cfg = {"optimizer": kind, "learning_rate": lr}
    if kind != "adamw":  # AdamW reads no TensorGRaD setting (create_optimizer refuses one)
        cfg.update(tensorgrad_update_proj_gap=update_proj_gap, tensorgrad_scale=scale,
                   tensorgrad_state_dtype="bfloat16" if name.endswith("bf16") else "float32")
    return create_optimizer(model, cfg)


def _tensor_bytes(obj, seen):
    """Bytes of the tensors in ``obj`` (nested containers and upstream's projector objects)."""
    if isinstance(obj, torch.Tensor):
        key = (obj.untyped_storage().data_ptr(), obj.dtype, obj.shape)
        if key in seen:
            return 0
        seen.add(key)
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v, seen) for v in obj)
    if hasattr(obj, "proj_tensor"):  # upstream's TensorGaLoreProjector keeps its factors here
        return _tensor_bytes(obj.proj_tensor, seen)
    return 0


def state_bytes(optimizer):
    seen = set()
    return sum(_tensor_bytes(s, seen) for s in optimizer.state.values())


def measure_optimizer(size, name, n_steps=3):
    """State bytes after ``n_steps`` steps on random gradients and the median step time."""
    torch.manual_seed(0)
    model = build_fno(size)
    optimizer = make_optimizer(name, model)
    times = []
    for _ in range(n_steps):
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        start = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - start)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    result = dict(size=size, optimizer=name, params_MiB=params / 2**20, state_MiB=state_bytes(optimizer) / 2**20,
                  first_step_s=times[0], step_s=statistics.median(times[1:]) if n_steps > 1 else times[0])
    del optimizer, model
    return result


# Training setups of the memory table: (spectral layer precision or None for upstream's
# layer, autocast bf16, spectral weight storage, optimizer[, update in backward, recompute])
#: the setup every ratio of the memory table is taken against, where it is measured
BASELINE_SETUP = "AdamW, full precision (baseline)"
TRAINING_SETUPS = {
    BASELINE_SETUP: (None, False, "complex64", "torch_adamw"),
    "AdamW, upstream layer + bf16 autocast": (None, True, "complex64", "torch_adamw"),
    "TensorGRaD fp32 states, mixed layer": ("mixed", True, "complex64", "tensorgrad"),
    "TensorGRaD bf16 states, mixed layer": ("mixed", True, "complex64", "tensorgrad_bf16"),
    "AdamW, mixed layer, complex32 spectral weights": ("mixed", True, "complex32", "adamw"),
    "TensorGRaD fp32 states, mixed layer, complex32 spectral weights": ("mixed", True, "complex32", "tensorgrad"),
    "TensorGRaD bf16 states, mixed layer, complex32 spectral weights": ("mixed", True, "complex32",
                                                                        "tensorgrad_bf16"),
    "... + update in backward": ("mixed", True, "complex32", "tensorgrad_bf16", True),
    "... + update in backward + recompute fourier": ("mixed", True, "complex32", "tensorgrad_bf16", True,
                                                     "fourier"),
    "... + update in backward + recompute block": ("mixed", True, "complex32", "tensorgrad_bf16", True, "block"),
}


def training_step_memory(size, precision, autocast, weight_dtype, optimizer_name, update_in_backward=False,
                         recompute="none", *, peak_tensors=0, label=""):
    """Bytes of one real training step: params, grads, optimizer state after the step,
    what autograd saved for backward, at the size's batch and resolution, and the peak of
    live tensor bytes during the step (:class:`~neuralop_mp.peak_memory.PeakTensorBytes`).
    ``peak_tensors > 0`` prints that many of the largest tensors alive at the peak, under
    ``label`` (the setup's name)."""
    from .. import MixedPrecisionSpectralConv, set_precision, set_spectral_weight_dtype
    from ..models.mixed_precision_models import ignoring_unrecorded_precision
    from ..models.recompute import set_recompute
    from ..optim.update_in_backward import enable_update_in_backward
    from ..peak_memory import PeakTensorBytes

    torch.manual_seed(0)
    _, _, _, res, batch = size_dims(size)
    model = build_fno(size, conv_module=MixedPrecisionSpectralConv if precision else None)
    if precision:
        with ignoring_unrecorded_precision():  # never saved
            set_precision(model, precision, half_dtype="bfloat16")
            set_spectral_weight_dtype(model, weight_dtype)
    set_recompute(model, recompute)
    optimizer = make_optimizer(optimizer_name, model)
    if update_in_backward:
        enable_update_in_backward(optimizer)
    x = torch.randn(batch, 1, res, res)
    with PeakTensorBytes(alive=[list(model.parameters()), x], describe=peak_tensors > 0) as peak:
        with SavedTensorBytes(exclude=model.parameters()) as meter:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(x).float().square().mean()
        loss.backward()
        grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
        optimizer.step()
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    if peak_tensors > 0:
        print(f"{size} {label}: at the peak, besides the parameters ({params / 2**20:.1f} MiB) and the input:")
        for nbytes, op, shape, dtype in peak.peak_tensors[:peak_tensors]:
            print(f"  {nbytes / 2**20:9.1f} MiB  {dtype:10s} {str(shape):24s} {op}")
        rest = sum(row[0] for row in peak.peak_tensors[peak_tensors:])
        print(f"  {rest / 2**20:9.1f} MiB  in {max(0, len(peak.peak_tensors) - peak_tensors)} smaller tensors")
    return params, grads, state_bytes(optimizer), meter.bytes, peak.peak_bytes


def baseline_of(setups):
    """The setup the ratios of ``setups`` (labels of :data:`TRAINING_SETUPS`) are taken against:
    :data:`BASELINE_SETUP` where it is one of them, else the first.

    Raises
    ------
    ValueError
        Naming a setup given twice (its row would be measured and shown twice) or an unknown one.
    """
    setups = list(setups)
    unknown = [label for label in setups if label not in TRAINING_SETUPS]
    if unknown:
        raise ValueError(f"unknown training setup {unknown[0]!r}; allowed: {', '.join(map(repr, TRAINING_SETUPS))}")
    repeated = next((label for i, label in enumerate(setups) if label in setups[:i]), None)
    if repeated is not None:
        number = list(TRAINING_SETUPS).index(repeated)
        raise ValueError(f"setup {number} ({repeated!r}) is given twice; name each setup once")
    if not setups:
        raise ValueError("no training setup given")
    return BASELINE_SETUP if BASELINE_SETUP in setups else setups[0]


def total_memory_rows(size, setups=None, peak_tensors=0):
    """Training memory of each :data:`TRAINING_SETUPS` entry (or of ``setups``, in their order),
    measured (MiB), and its ratio to the baseline (:func:`baseline_of`: AdamW in full precision
    where it is among them, else the first); ``peak_tensors``: see :func:`training_step_memory`."""
    labels = list(setups or TRAINING_SETUPS)
    baseline_label = baseline_of(labels)
    measured = {}
    # the baseline first, so that every progress line can show its ratios; the rows keep the given order
    for label in [baseline_label] + [label for label in labels if label != baseline_label]:
        params, grads, state, activations, peak = training_step_memory(size, *TRAINING_SETUPS[label],
                                                                       peak_tensors=peak_tensors, label=label)
        total = params + grads + state + activations
        measured[label] = (params, grads, state, activations, peak, total)
        base_total, base_peak = measured[baseline_label][5], measured[baseline_label][4]  # measured first
        print(f"{size:8s} {label:66s} total {total / 2**20:9.1f} MiB  x{total / base_total:.3f}  "
              f"peak {peak / 2**20:9.1f} MiB  x{peak / base_peak:.3f}", flush=True)
    rows = []
    for label in labels:
        params, grads, state, activations, peak, total = measured[label]
        rows.append({"setup": label, "params+grads_MiB": (params + grads) / 2**20, "state_MiB": state / 2**20,
                     "activations_MiB": activations / 2**20, "total_MiB": total / 2**20,
                     "vs_baseline": total / base_total, "peak_MiB": peak / 2**20,
                     "peak_vs_baseline": peak / base_peak})
    return rows


# rows of the accuracy table: optimizer, and whether the model runs the half recipe
# (mixed layer in bf16 + autocast, complex32 spectral weights and gradients)
ACCURACY_RUNS = [("torch_adamw", False), ("upstream_adamw", False), ("upstream_galore", False),
                 ("tensorgrad", False), ("tensorgrad_bf16", False), ("galore", False), ("sparse", False),
                 ("adamw", True), ("tensorgrad", True), ("tensorgrad_bf16", True)]


def darcy_accuracy(runs, epochs=8, lr=5e-3, scale=4.0):
    """Final 16x16 Darcy test relative L2 after ``epochs`` (500 train / 100 test samples)."""
    import os
    import tempfile

    from .. import MixedPrecisionSpectralConv, set_precision, set_spectral_weight_dtype
    from ..data import load_darcy
    from ..models.mixed_precision_models import ignoring_unrecorded_precision

    from ..data.cache import DATA_ROOT_ENV, default_data_root

    # the data root the other commands use where NEURALOP_MP_DATA is set (a blank one refused by the
    # one rule, default_data_root), else a temporary folder: the benchmark leaves no cache behind
    root = default_data_root() if DATA_ROOT_ENV in os.environ else tempfile.mkdtemp(prefix="neuralop_mp_bench_")
    train, tests, processor = load_darcy(root, n_train=500, n_tests=(100,), batch_size=32, test_batch_sizes=(100,),
                                         train_resolution=16, test_resolutions=(16,), progress=False)
    rows = []
    for name, half in runs:
        torch.manual_seed(0)
        kwargs = {"conv_module": MixedPrecisionSpectralConv} if half else {}
        model = FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24, n_layers=3, **kwargs)
        if half:
            with ignoring_unrecorded_precision():  # never saved
                set_precision(model, "mixed", half_dtype="bfloat16")
                set_spectral_weight_dtype(model, "complex32")
        optimizer = make_optimizer(name, model, lr=lr, update_proj_gap=10, scale=scale)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train))
        torch.manual_seed(1)
        error, train_s = fit_and_test(model, optimizer, schedule, train, tests[16], processor, epochs, autocast=half)
        rows.append({"optimizer": name, "weights": "complex32, mixed layer" if half else "complex64, full",
                     "test_rel_L2": error, "train_s": train_s})
        print(f"darcy16 {name:16s} half={half!s:5s} rel L2 {error:.4f}  ({train_s:.1f} s)", flush=True)
    return rows


def main(argv=None):
    parser = OneLineErrorParser(prog="neuralop-mp bench optimizer", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tiny model only, no accuracy run (seconds); --sizes given as well replace the tiny "
                             "model")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), help="only these sizes (default: all)")
    parser.add_argument("--memory-only", action="store_true",
                        help="only the training-memory rows (no state-after-3-steps rows, no accuracy run)")
    labels = list(TRAINING_SETUPS)
    parser.add_argument("--setups", nargs="+", type=int, choices=range(len(labels)), metavar="N",
                        help="only these rows of the training-memory table, by number, each once (the ratios "
                             "are to setup 0 where it is named, else to the first one named, which the table "
                             "then says; default: all): "
                             + "; ".join(f"{i} = {label}" for i, label in enumerate(labels)))
    parser.add_argument("--peak-tensors", type=int, default=0, metavar="N",
                        help="print the N largest tensors alive at each training-memory row's peak "
                             "(what to free to lower it; CPU only)")
    parser.add_argument("--threads", type=threads_type, default=1, metavar="N|auto",
                        help="torch intra-op threads; auto: the CPUs other processes leave idle (default 1: one "
                             "thread avoids oversubscription stalls on a shared 2-core machine)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.peak_tensors < 0:
        parser.error(f"--peak-tensors must be >= 0, got {args.peak_tensors}")
    if args.setups is not None:
        try:
            baseline_of([labels[i] for i in args.setups])
        except ValueError as error:  # a setup given twice
            parser.error(f"argument --setups: {error}")
    refuse_partial_docs_update(parser, "optimizer", args, {"--quick": args.quick, "--sizes": args.sizes,
                                                           "--memory-only": args.memory_only,
                                                           "--setups": args.setups is not None})
    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with data_root_errors(parser):  # an unwritable data root (darcy_accuracy): a one-line error
            return _run(args, argv)
    finally:
        torch.set_num_threads(threads_before)


def _run(args, argv):
    """The benchmark of :func:`main`'s parsed ``args``."""
    # sizes given win over --quick's tiny model
    sizes = args.sizes or (["quick"] if args.quick else list(SIZES))
    dims = {k: size_dims(k) for k in (*SIZES, "quick") if k in sizes}  # what the report shows, in SIZES' order

    setups = list(TRAINING_SETUPS) if args.setups is None else [list(TRAINING_SETUPS)[i] for i in args.setups]
    state_rows, memory_rows = [], []
    for size in sizes:
        per_size = {}
        for name in () if args.memory_only else OPTIMIZERS:
            if (size, name) in SKIPPED_STATE_ROWS:  # said under the table
                continue
            row = measure_optimizer(size, name)
            per_size[name] = row["state_MiB"] * 2**20
            state_rows.append(row)
            print(f"{size:8s} {name:16s} state {row['state_MiB']:9.1f} MiB  step {row['step_s']:.3f} s", flush=True)
        for row in state_rows:
            if row["size"] == size:
                row["state_vs_adamw"] = row["state_MiB"] * 2**20 / per_size["torch_adamw"]
        memory_rows += [dict(r, size=size) for r in total_memory_rows(size, setups, args.peak_tensors)]

    accuracy_rows = []
    if not (args.quick or args.memory_only):
        accuracy_rows = darcy_accuracy(ACCURACY_RUNS)

    command = shown_command("neuralop-mp bench optimizer", argv)
    body = [header("Optimizer state and training memory (TensorGRaD)", command)]
    body.append("Sizes (hidden, modes, layers, activation resolution, batch): "
                + "; ".join(f"{k} = {v}" for k, v in dims.items()) + ".\n")
    # the state rows left out at the sizes measured (none with --memory-only: no state table at all)
    skipped = [(size, name, why) for (size, name), why in SKIPPED_STATE_ROWS.items() if size in sizes and state_rows]
    if state_rows:  # none with --memory-only: no empty table
        body.append("### Optimizer state after 3 steps on random gradients\n")
        body.append(markdown_table(state_rows, ["size", "optimizer", "params_MiB", "state_MiB", "state_vs_adamw",
                                                "first_step_s", "step_s"]))
        body += [f"\n`{name}` at {size} is left out: {why}." for size, name, why in skipped]
    body.append("\n### Training memory: params + grads + optimizer state + saved activations\n")
    body.append("Measured on one real training step of each setup (forward at the size's batch and "
                "resolution, backward, optimizer step): bytes of the parameters, of their gradients, of the "
                "optimizer state after the step, and of the tensors autograd saved for backward. "
                "\"mixed layer\": our spectral layer with its product in bfloat16, the rest under bf16 "
                "autocast. \"complex32 spectral weights\": the spectral weights, and so their gradients, "
                "stored in complex32 (`model.spectral_weight_dtype`). \"AdamW\" with complex32 weights is the "
                "factory's `adamw`, i.e. AdamW with fp32 moments.\n")
    body.append("MiB: 2^20 bytes. `peak_MiB`: the peak of live tensor bytes during that step (forward, backward with the "
                "in-backward updates where enabled, optimizer step), measured as the section \"Peak of live tensor bytes during a training step\" below describes; "
                "`grads` there are those held after backward (none with update in backward).\n")
    baseline = baseline_of(setups)
    if baseline != BASELINE_SETUP:
        body.append(f"`vs_baseline` and `peak_vs_baseline` are ratios to setup {list(TRAINING_SETUPS).index(baseline)}, "
                    f"\"{baseline}\", the first one given: setup 0, \"{BASELINE_SETUP}\", was not measured.\n")
    body.append(markdown_table(memory_rows, ["size", "setup", "params+grads_MiB", "state_MiB", "activations_MiB",
                                             "total_MiB", "vs_baseline", "peak_MiB", "peak_vs_baseline"]))
    if accuracy_rows:
        body.append("\n### Darcy 16x16, 500 train / 100 test, FNO hidden 24, 3 layers, 8 epochs, lr 5e-3, "
                    "cosine schedule, gap 10, TensorGRaD scale 4 (no weight decay)\n")
        body.append(markdown_table(accuracy_rows, ["optimizer", "weights", "test_rel_L2", "train_s"]))
    text = "\n".join(body)
    print(text)
    data = dict(sizes=dims, optimizer_state=state_rows, baseline_setup=baseline,
                skipped_state_rows=[f"{name} at {size}: {why}" for size, name, why in skipped],
                training_memory=memory_rows, accuracy=accuracy_rows, threads=torch.get_num_threads())
    write_results("optimizer", text, data, out=args.out, update_docs=args.update_docs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
