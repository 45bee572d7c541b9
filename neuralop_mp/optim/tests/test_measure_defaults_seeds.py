"""A measured run's seed reaches TensorGRaD's own random streams (random-k draws, stochastic
rounding), so that a sweep over seeds samples them too."""
import pytest
import torch

from neuralop_mp.optim.measure_defaults import train_and_test


class _Identity:
    """The processor interface ``fit_and_test`` uses, doing nothing."""

    def preprocess(self, batch):
        return batch

    def postprocess(self, out, batch):
        return out, batch


def _loaders():
    generator = torch.Generator().manual_seed(123)
    samples = [{"x": torch.randn(1, 16, 16, generator=generator), "y": torch.randn(1, 16, 16, generator=generator)}
               for _ in range(4)]
    loader = torch.utils.data.DataLoader(samples, batch_size=2)
    return loader, loader, _Identity()


def _compressed(optimizer):
    return [p for p, s in optimizer.state.items() if bool(s["compressed"])]


@pytest.mark.parametrize("half", [False, True])
def test_the_run_seed_changes_the_random_k_draws(half):
    """Default TensorGRaD keeps random-k sparse entries: two seeds must not draw the same ones."""
    indices = []
    for seed in (0, 1):
        _, optimizer = train_and_test(_loaders(), {"optimizer": "tensorgrad"}, seed, epochs=1, half=half)
        assert [g["seed"] for g in optimizer.param_groups if g["compress"]] == [seed]
        compressed = _compressed(optimizer)
        assert len(compressed) == 3
        indices.append([optimizer.state[p]["sparse_basis_indices"].clone() for p in compressed])
    assert all(not torch.equal(a, b) for a, b in zip(*indices))


def test_a_variant_that_sets_its_own_seed_keeps_it():
    """``--variants seed=5``: every run seed draws group seed 5's indices; AdamW takes no seed."""
    indices = []
    for seed in (0, 1):
        _, optimizer = train_and_test(_loaders(), {"optimizer": "tensorgrad", "tensorgrad_seed": 5}, seed, epochs=1)
        assert [g["seed"] for g in optimizer.param_groups if g["compress"]] == [5]
        indices.append([optimizer.state[p]["sparse_basis_indices"].clone() for p in _compressed(optimizer)])
    assert all(torch.equal(a, b) for a, b in zip(*indices))
    _, adamw = train_and_test(_loaders(), {"optimizer": "adamw"}, 1, epochs=1)
    assert isinstance(adamw, torch.optim.AdamW)
