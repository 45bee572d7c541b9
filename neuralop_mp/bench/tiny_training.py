"""The small training loop behind the accuracy rows of the benchmarks and measurements.

One loop (optional bfloat16 autocast around the model, the loss in float32, a per-step
scheduler), then the mean relative L2 error on a test loader, so that every accuracy
table compares optimizers and precisions trained the same way.
"""
import time

import torch


def fit_and_test(model, optimizer, scheduler, train_loader, test_loader, processor, epochs, autocast=False):
    """Train ``model`` for ``epochs`` and return ``(test relative L2, training seconds)``.

    Parameters
    ----------
    model, optimizer : torch modules
    scheduler : torch.optim.lr_scheduler.LRScheduler or None
        Stepped after every optimizer step.
    train_loader, test_loader : DataLoader
        Batches of ``{"x", "y"}`` dicts.
    processor : neuralop DataProcessor
        Normalises inputs before the model; its ``postprocess`` undoes the output
        normalisation before the test error is taken.
    epochs : int
    autocast : bool
        Run the model under CPU bfloat16 autocast (the half recipe's other layers).
    """
    from neuralop.losses import LpLoss

    loss_fn = LpLoss(d=2, p=2)
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for batch in train_loader:
            batch = processor.preprocess(batch)
            optimizer.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(batch["x"])
            loss_fn(out.float(), batch["y"]).backward()
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    error, count = 0.0, 0
    with torch.no_grad():
        for batch in test_loader:
            batch = processor.preprocess(batch)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                out = model(batch["x"])
            out, batch = processor.postprocess(out.float(), batch)
            error += loss_fn(out, batch["y"]).item()  # LpLoss sums over the batch
            count += batch["y"].shape[0]
    return error / count, train_seconds
