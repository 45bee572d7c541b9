"""Measure TensorGRaD settings against AdamW on the built-in Darcy and Navier-Stokes tasks.

``python -m neuralop_mp.optim.measure_defaults --tasks darcy ns --seeds 0 1 2``
trains the same small FNO with torch's AdamW and with the factory's TensorGRaD
(default settings, overridden only by the ``--variants``) for every seed (which
also seeds TensorGRaD's random-k draws and stochastic rounding), and
prints the mean and spread of the test relative L2 error per setting and the
ratio of means to AdamW's. The numbers in docs/tensorgrad.md come from it.

Sizes are the integration test's: 300 training samples at 16x16, 100 test
samples, batch 32, FNO with 8x8 modes, 24 channels, 3 layers, lr 5e-3, weight
decay 1e-4, cosine schedule over ``--epochs``.
"""
import argparse
import json
import statistics
import tempfile
import time

import torch

MODEL = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24, n_layers=3)
N_TRAIN, N_TEST, BATCH, LR, WD = 300, 100, 32, 5e-3, 1e-4


def load_task(task, root, seed=0):
    """``(train_loader, test_loader, processor)`` of a built-in task at 16x16, generated into ``root``."""
    from neuralop_mp.data import load_darcy, load_navier_stokes

    load = {"darcy": load_darcy, "ns": load_navier_stokes}[task]
    train, tests, processor = load(root, n_train=N_TRAIN, n_tests=(N_TEST,), batch_size=BATCH,
                                   test_batch_sizes=(N_TEST,), train_resolution=16, test_resolutions=(16,),
                                   progress=False, generate=True, seed=seed)
    return train, tests[16], processor


def build_model(half=False):
    """The FNO; ``half``: the half recipe (complex32 spectral weights, their product in
    bfloat16 in ``MixedPrecisionSpectralConv``, the rest under bfloat16 autocast)."""
    from neuralop.models import FNO

    import neuralop_mp

    if not half:
        return FNO(**MODEL)
    from ..models.mixed_precision_models import ignoring_unrecorded_precision

    model = FNO(conv_module=neuralop_mp.MixedPrecisionSpectralConv, **MODEL)
    with ignoring_unrecorded_precision():  # a measurement's model, never saved
        neuralop_mp.set_precision(model, "mixed", half_dtype="bfloat16")
        neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    return model


def train_and_test(loaders, opt_config, seed, epochs, half=False, lr=LR):
    """Train a fresh FNO (seeded) with the optimizer ``opt_config`` describes.

    ``seed`` seeds torch (the model's initial weights, the data order) and, unless
    ``opt_config`` sets ``tensorgrad_seed`` itself, TensorGRaD's group ``seed`` (its random-k
    draws and stochastic rounding), so that a sweep over seeds samples those streams too.

    Returns the test relative L2 error and the optimizer.
    """
    from neuralop_mp.bench.tiny_training import fit_and_test
    from neuralop_mp.optim import create_optimizer
    from neuralop_mp.optim.factory import setting_readers

    train_loader, test_loader, processor = loaders
    torch.manual_seed(seed)
    model = build_model(half)
    config = {"learning_rate": lr, "weight_decay": WD, **opt_config}
    # AdamW (also the factory's default kind) refuses TensorGRaD settings; kinds are read in any case
    if str(config.get("optimizer", "adamw")).lower() in setting_readers():
        config.setdefault("tensorgrad_seed", seed)
    optimizer = create_optimizer(model, config)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * len(train_loader))
    error, _ = fit_and_test(model, optimizer, schedule, train_loader, test_loader, processor, epochs, autocast=half)
    return error, optimizer


def parse_variant(text):
    """``"scale=2,adam_convention=neuralop"`` -> TensorGRaD factory fields; ``"adamw"`` -> AdamW."""
    if text == "adamw":
        return {"optimizer": "adamw"}
    config = {"optimizer": "tensorgrad"}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            pass
        config[f"tensorgrad_{key}"] = value
    return config


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--tasks", nargs="+", default=["darcy", "ns"], choices=["darcy", "ns"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variants", nargs="+", default=["adamw", "", "adam_convention=neuralop"],
                        help="'adamw', or comma-separated TensorGRaD fields ('' = all defaults)")
    parser.add_argument("--data-root", default=None, help="data folder (default: a temporary one)")
    parser.add_argument("--lr", type=float, default=LR)
    parser.add_argument("--half", action="store_true", help="TensorGRaD variants use the half recipe")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    root = args.data_root or tempfile.mkdtemp(prefix="tensorgrad_measure_")
    results = {}
    for task in args.tasks:
        loaders = load_task(task, root)
        for variant in args.variants:
            errors = []
            for seed in args.seeds:
                start = time.perf_counter()
                half = args.half and variant != "adamw"
                errors.append(train_and_test(loaders, parse_variant(variant), seed, args.epochs, half, args.lr)[0])
                print(f"{task} {variant or 'defaults'!r} seed {seed}: {errors[-1]:.4f} "
                      f"({time.perf_counter() - start:.1f} s)", flush=True)
            results[(task, variant)] = errors
    print("\ntask | setting | mean test L2 | std over seeds | min..max | mean / AdamW mean")
    for (task, variant), errors in results.items():
        mean = statistics.mean(errors)
        std = statistics.stdev(errors) if len(errors) > 1 else 0.0
        base = results.get((task, "adamw"))
        ratio = mean / statistics.mean(base) if base else float("nan")
        print(f"{task} | {variant or 'defaults'} | {mean:.4f} | {std:.4f} | {min(errors):.4f}..{max(errors):.4f} "
              f"| {ratio:.3f}")
    return results


if __name__ == "__main__":
    main()
