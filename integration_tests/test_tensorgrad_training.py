"""End to end: an FNO trained on Darcy flow with TensorGRaD ends as accurate as with AdamW,
in full precision and with the half recipe (complex32 spectral weights and gradients, the
spectral product in bfloat16, the rest under autocast)."""
import pytest
import torch
from neuralop.losses import LpLoss
from neuralop.models import FNO

import neuralop_mp
from neuralop_mp.optim import TensorGRaD

EPOCHS = 8
LR = 5e-3
WD = 1e-4
MODEL = dict(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24, n_layers=3)


def _model(half):
    if not half:
        return FNO(**MODEL)
    model = FNO(conv_module=neuralop_mp.MixedPrecisionSpectralConv, **MODEL)
    neuralop_mp.set_precision(model, "mixed", half_dtype="bfloat16")
    neuralop_mp.set_spectral_weight_dtype(model, "complex32")
    return model


def _train(optimizer_factory, loaders, half=False):
    """Plain training loop; returns the final 16x16 test relative L2 error and the optimizer."""
    train_loader, test_loaders, processor = loaders
    torch.manual_seed(0)
    model = _model(half)
    optimizer = optimizer_factory(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * len(train_loader))
    loss_fn = LpLoss(d=2, p=2)
    torch.manual_seed(1)  # same shuffling for every run
    for _ in range(EPOCHS):
        model.train()
        for batch in train_loader:
            batch = processor.preprocess(batch)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                out = model(batch["x"])
            loss_fn(out.float(), batch["y"]).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    error, count = 0.0, 0
    with torch.no_grad():
        for batch in test_loaders[16]:
            batch = processor.preprocess(batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=half):
                out = model(batch["x"])
            out, batch = processor.postprocess(out.float(), batch)
            error += loss_fn(out, batch["y"]).item()
            count += batch["y"].shape[0]
    return error / count, optimizer


def _tensorgrad(model):
    spectral = [p for n, p in model.named_parameters() if ".convs." in n and p.numel() >= 1000]
    ids = {id(p) for p in spectral}
    rest = [p for p in model.parameters() if id(p) not in ids]
    # defaults (5% random-k, then a Tucker core of 25% of the entries) with a small
    # gap so bases refresh 12 times; scale 4 compensates, in a short run, for
    # updates confined to the compressed subspace
    return TensorGRaD([{"params": spectral}, {"params": rest, "compress": False}], lr=LR, weight_decay=WD,
                      update_proj_gap=10, scale=4.0)


@pytest.fixture(scope="module")
def loaders(darcy_root):
    from neuralop_mp.data import load_darcy

    return load_darcy(darcy_root, n_train=500, n_tests=(100,), batch_size=32, test_batch_sizes=(100,),
                      train_resolution=16, test_resolutions=(16,), progress=False, generate=False)


@pytest.fixture(scope="module")
def adamw_error(loaders):
    """torch's AdamW on the full-precision model: the baseline of both comparisons."""
    error, _ = _train(lambda m: torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=WD), loaders)
    assert error < 0.2  # the comparisons are between trained models
    return error


def test_tensorgrad_matches_adamw_on_darcy(loaders, adamw_error):
    tensorgrad_error, optimizer = _train(_tensorgrad, loaders)
    compressed = [p for p, s in optimizer.state.items() if bool(s["compressed"])]
    assert len(compressed) == 3 and all("sparse_exp_avg" in optimizer.state[p] for p in compressed)
    assert optimizer.memory_report()["state_ratio"] < 0.6
    assert tensorgrad_error <= 1.03 * adamw_error, (tensorgrad_error, adamw_error)


def test_half_recipe_matches_full_precision_adamw_on_darcy(loaders, adamw_error):
    """Measured over seeds 0-1 (2026-12-02): +2.3% and -0.6% vs AdamW in full precision,
    while AdamW itself moved by 4% between seeds; 5% is the bound."""
    half_error, optimizer = _train(_tensorgrad, loaders, half=True)
    spectral = [p for p, s in optimizer.state.items() if bool(s["compressed"])]
    assert len(spectral) == 3
    assert all(p.dtype == torch.complex32 and p.grad.dtype == torch.complex32 for p in spectral)
    assert all(optimizer.state[p]["low_rank_exp_avg"].dtype == torch.float32 for p in spectral)
    assert half_error <= 1.05 * adamw_error, (half_error, adamw_error)
