"""Shared helpers of the optimizer tests: seeded tensors and lockstep stepping."""
import torch


def random_tensor(shape, complex_=True, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=dtype)
    if complex_:
        x = torch.complex(x, torch.randn(shape, generator=g, dtype=dtype))
    return x


def low_rank_tensor(shape, ranks, complex_=True, seed=0):
    """An exactly Tucker-(ranks) tensor in double precision, with its factors."""
    core = random_tensor(ranks, complex_, seed)
    factors = []
    for k, (d, r) in enumerate(zip(shape, ranks)):
        q, _ = torch.linalg.qr(random_tensor((d, r), complex_, seed + 1 + k))
        factors.append(q)
    full = core
    for k, u in enumerate(factors):
        full = torch.tensordot(full, u, dims=([k], [1])).movedim(-1, k)
    return full, factors


def run_steps(optimizer, params, grads_per_step):
    """Assign each step's gradients (cast to the param dtype and device) and step."""
    for grads in grads_per_step:
        for p, g in zip(params, grads):
            p.grad = g.to(device=p.device, dtype=p.dtype).clone()
        optimizer.step()


def force_compression(monkeypatch):
    """Route every eligible parameter to compressed moments, whether or not that saves
    memory (a full rank or a full sparse support never does): the tests that check the
    compressed path's arithmetic against AdamW at full support need it taken."""
    from neuralop_mp.optim import tensorgrad

    monkeypatch.setattr(tensorgrad, "compression_saves_memory", lambda param, group, projector: True)
