"""Benchmark: optimizer-state memory, step time and total training memory of TensorGRaD.

Run ``python -m neuralop_mp.bench.optimizer`` (``--quick`` skips the large model and
the accuracy run). It compares, on FNO models from small to FNO_Large2d-like
(128 channels, 64 x 64 modes):

- torch's ``AdamW``; upstream ``neuralop.training.AdamW`` dense and with its
  Tensor-GaLore projector (rank 0.25, tensorly convention, on the spectral weights);
- ours: ``tensorgrad`` (5% random-k + Tucker core 25%) with fp32 and bf16 states,
  ``galore`` (low-rank only), ``sparse`` (sparse only).

State bytes and step times come from steps on random gradients (no forward pass), so
the large model fits a CPU run. Total training memory adds parameters, gradients and
the bytes autograd saves for backward (:class:`~neuralop_mp.SavedTensorBytes`)
measured on a forward pass of the model with the mixed-precision spectral layer. A
short Darcy run (16 x 16) compares final test errors. Results go to the "optimizer"
section of docs/benchmarks.md.
"""
import argparse
import statistics
import sys
import time

import torch
from neuralop.models import FNO

from ..memory import SavedTensorBytes
from .report import header, markdown_table, update_section

SIZES = {
    # name: (hidden channels, modes per dim, layers, resolution, batch) for activations
    "small": (32, 16, 4, 64, 8),
    "medium": (64, 32, 4, 128, 4),
    "large2d": (128, 64, 2, 128, 2),  # 2 layers keep the CPU run short; ratios do not depend on depth
}
OPTIMIZERS = ("torch_adamw", "upstream_adamw", "upstream_galore", "tensorgrad", "tensorgrad_bf16", "galore", "sparse")


def build_fno(size, conv_module=None):
    hidden, modes, layers, _, _ = SIZES[size]
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
    cfg = {"optimizer": kind, "learning_rate": lr, "tensorgrad_update_proj_gap": update_proj_gap,
           "tensorgrad_scale": scale, "tensorgrad_state_dtype": "bfloat16" if name.endswith("bf16") else "float32"}
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
    result = dict(size=size, optimizer=name, params_MB=params / 2**20, state_MB=state_bytes(optimizer) / 2**20,
                  first_step_s=times[0], step_s=statistics.median(times[1:]) if n_steps > 1 else times[0])
    del optimizer, model
    return result


def activation_bytes(size, precision):
    """Bytes saved for backward in one forward pass at the size's batch / resolution."""
    from .. import MixedPrecisionSpectralConv, set_precision

    torch.manual_seed(0)
    _, _, _, res, batch = SIZES[size]
    model = build_fno(size, conv_module=MixedPrecisionSpectralConv)
    set_precision(model, precision)
    x = torch.randn(batch, 1, res, res)
    with SavedTensorBytes(exclude=model.parameters()) as meter:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision != "full"):
            model(x)
    return meter.bytes


def total_memory_rows(size, states):
    """Training memory: params + grads + optimizer state + activations (MB)."""
    model = build_fno(size)
    spectral = sum(p.numel() for n, p in model.named_parameters() if "convs" in n and p.is_complex())
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    act_full, act_mixed = activation_bytes(size, "full"), activation_bytes(size, "mixed")
    baseline = params + params + states["torch_adamw"] + act_full
    # the paper's half recipe stores spectral weights and their gradients in complex32 (4 bytes)
    params_half = params - spectral * 4
    rows = []
    for label, p_bytes, state_key, act in (
        ("AdamW, full precision (baseline)", params, "torch_adamw", act_full),
        ("TensorGRaD fp32 states, mixed layer", params, "tensorgrad", act_mixed),
        ("TensorGRaD bf16 states, mixed layer", params, "tensorgrad_bf16", act_mixed),
        ("TensorGRaD fp32 states, mixed layer, complex32 spectral weights+grads", params_half, "tensorgrad", act_mixed),
        ("TensorGRaD bf16 states, mixed layer, complex32 spectral weights+grads", params_half, "tensorgrad_bf16",
         act_mixed),
    ):
        total = 2 * p_bytes + states[state_key] + act
        rows.append({"setup": label, "params+grads_MB": 2 * p_bytes / 2**20, "state_MB": states[state_key] / 2**20,
                     "activations_MB": act / 2**20, "total_MB": total / 2**20, "vs_baseline": total / baseline})
    return rows


def darcy_accuracy(names, epochs=8, lr=5e-3, scale=4.0):
    """Final 16x16 Darcy test relative L2 after ``epochs`` (500 train / 100 test samples)."""
    import os
    import tempfile

    from neuralop.losses import LpLoss

    try:
        from ..data import load_darcy
    except ImportError:  # the data module is not in this checkout: use upstream's loader directly
        load_darcy = _upstream_darcy_loaders

    root = os.environ.get("NEURALOP_MP_DATA") or tempfile.mkdtemp(prefix="neuralop_mp_bench_")
    loss_fn = LpLoss(d=2, p=2)
    rows = []
    for name in names:
        torch.manual_seed(0)
        train, tests, processor = load_darcy(root, n_train=500, n_tests=(100,), batch_size=32, test_batch_sizes=(100,),
                                             train_resolution=16, test_resolutions=(16,), progress=False)
        model = FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24, n_layers=3)
        optimizer = make_optimizer(name, model, lr=lr, update_proj_gap=10, scale=scale)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train))
        torch.manual_seed(1)
        start = time.perf_counter()
        for _ in range(epochs):
            for batch in train:
                batch = processor.preprocess(batch)
                optimizer.zero_grad()
                loss_fn(model(batch["x"]), batch["y"]).backward()
                optimizer.step()
                schedule.step()
        error, count = 0.0, 0
        with torch.no_grad():
            for batch in tests[16]:
                batch = processor.preprocess(batch)
                out, batch = processor.postprocess(model(batch["x"]), batch)
                error += loss_fn(out, batch["y"]).item()
                count += batch["y"].shape[0]
        rows.append({"optimizer": name, "test_rel_L2": error / count, "train_s": time.perf_counter() - start})
    return rows


def _upstream_darcy_loaders(root, n_train, n_tests, batch_size, test_batch_sizes, train_resolution,
                            test_resolutions, progress=False):
    from neuralop.data.datasets.darcy import DarcyDataset

    from ..data.darcy import generate_darcy

    generate_darcy(root, resolutions=(train_resolution,), n_train=n_train, n_test=max(n_tests), progress=progress)
    ds = DarcyDataset(root, n_train=n_train, n_tests=list(n_tests), batch_size=batch_size,
                      test_batch_sizes=list(test_batch_sizes), train_resolution=train_resolution,
                      test_resolutions=list(test_resolutions), download=False)
    train = torch.utils.data.DataLoader(ds.train_db, batch_size=batch_size, shuffle=True)
    tests = {r: torch.utils.data.DataLoader(ds.test_dbs[r], batch_size=b)
             for r, b in zip(test_resolutions, test_batch_sizes)}
    return train, tests, ds.data_processor


def main(argv=None):
    torch.set_num_threads(1)  # a shared 2-core box: one thread avoids oversubscription stalls
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the large model and the accuracy run")
    parser.add_argument("--no-write", action="store_true", help="print only, do not update docs/benchmarks.md")
    args = parser.parse_args(argv)
    sizes = ["small", "medium"] if args.quick else list(SIZES)

    state_rows, memory_rows = [], []
    for size in sizes:
        per_size = {}
        for name in OPTIMIZERS:
            if size == "large2d" and name == "upstream_galore":
                continue  # tensorly's 10-iteration Tucker of 34M-entry weights takes minutes on CPU
            row = measure_optimizer(size, name)
            per_size[name] = row["state_MB"] * 2**20
            state_rows.append(row)
            print(f"{size:8s} {name:16s} state {row['state_MB']:9.1f} MB  step {row['step_s']:.3f} s", flush=True)
        for row in state_rows:
            if row["size"] == size:
                row["state_vs_adamw"] = row["state_MB"] * 2**20 / per_size["torch_adamw"]
        memory_rows += [dict(r, size=size) for r in total_memory_rows(size, per_size)]
    for row in memory_rows:
        print(f"{row['size']:8s} {row['setup']:72s} total {row['total_MB']:9.1f} MB  x{row['vs_baseline']:.3f}")

    accuracy_rows = []
    if not args.quick:
        accuracy_rows = darcy_accuracy(["torch_adamw", "upstream_adamw", "tensorgrad", "tensorgrad_bf16", "galore",
                                        "sparse"])
        for row in accuracy_rows:
            print(f"darcy16 {row['optimizer']:16s} rel L2 {row['test_rel_L2']:.4f}  ({row['train_s']:.1f} s)")

    command = "python -m neuralop_mp.bench.optimizer" + (" --quick" if args.quick else "")
    body = [header("Optimizer state and training memory (TensorGRaD)", command)]
    body.append("Sizes (hidden, modes, layers, activation resolution, batch): "
                + "; ".join(f"{k} = {v}" for k, v in SIZES.items() if k in sizes) + ".\n")
    body.append("### Optimizer state after 3 steps on random gradients\n")
    body.append(markdown_table(state_rows, ["size", "optimizer", "params_MB", "state_MB", "state_vs_adamw",
                                            "first_step_s", "step_s"]))
    body.append("\n### Training memory: params + grads + optimizer state + saved activations\n")
    body.append(markdown_table(memory_rows, ["size", "setup", "params+grads_MB", "state_MB", "activations_MB",
                                             "total_MB", "vs_baseline"]))
    if accuracy_rows:
        body.append("\n### Darcy 16x16, 500 train / 100 test, FNO hidden 24, 3 layers, 8 epochs, lr 5e-3, "
                    "cosine schedule, gap 10, TensorGRaD scale 4 (no weight decay)\n")
        body.append(markdown_table(accuracy_rows, ["optimizer", "test_rel_L2", "train_s"]))
    text = "\n".join(body)
    if not args.no_write:
        update_section("optimizer", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
