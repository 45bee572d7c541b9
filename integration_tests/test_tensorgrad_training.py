"""End to end: an FNO trained on Darcy flow with TensorGRaD ends as accurate as with AdamW."""
import torch
from neuralop.losses import LpLoss
from neuralop.models import FNO

from neuralop_mp.optim import TensorGRaD

EPOCHS = 8
LR = 5e-3
WD = 1e-4


def _train(optimizer_factory, train_loader, test_loader, processor):
    """Plain training loop; returns the final 16x16 test relative L2 error."""
    torch.manual_seed(0)
    model = FNO(n_modes=(8, 8), in_channels=1, out_channels=1, hidden_channels=24, n_layers=3)
    optimizer = optimizer_factory(model)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * len(train_loader))
    loss_fn = LpLoss(d=2, p=2)
    torch.manual_seed(1)  # same shuffling for both optimizers
    for _ in range(EPOCHS):
        model.train()
        for batch in train_loader:
            batch = processor.preprocess(batch)
            optimizer.zero_grad()
            loss_fn(model(batch["x"]), batch["y"]).backward()
            optimizer.step()
            schedule.step()
    model.eval()
    error, count = 0.0, 0
    with torch.no_grad():
        for batch in test_loader:
            batch = processor.preprocess(batch)
            out, batch = processor.postprocess(model(batch["x"]), batch)
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


def test_tensorgrad_matches_adamw_on_darcy(darcy_root):
    from neuralop_mp.data import load_darcy

    train_loader, test_loaders, processor = load_darcy(
        darcy_root, n_train=500, n_tests=(100,), batch_size=32, test_batch_sizes=(100,),
        train_resolution=16, test_resolutions=(16,), progress=False, generate=False)
    adamw_error, _ = _train(lambda m: torch.optim.AdamW(m.parameters(), lr=LR, weight_decay=WD), train_loader,
                            test_loaders[16], processor)
    tensorgrad_error, optimizer = _train(_tensorgrad, train_loader, test_loaders[16], processor)

    compressed = [p for p, s in optimizer.state.items() if bool(s["compressed"])]
    assert len(compressed) == 3 and all("sparse_exp_avg" in optimizer.state[p] for p in compressed)
    assert optimizer.memory_report()["state_ratio"] < 0.6
    assert adamw_error < 0.2  # the comparison is between trained models
    assert tensorgrad_error <= 1.03 * adamw_error, (tensorgrad_error, adamw_error)
