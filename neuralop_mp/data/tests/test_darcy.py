"""Darcy solver (manufactured solution, second order) and the dataset files upstream reads."""
import math
import os

import numpy as np
import pytest
import torch
from neuralop.data.datasets.darcy import DarcyDataset

from neuralop_mp.data import darcy as darcy_module
from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.darcy import darcy_matrix, permeability, solve_darcy, vertex_grid


def manufactured_problem(resolution):
    """u* = sin(pi x) sin(pi y), smooth a in [0.5, 1.5], f = -div(a grad u*) analytically."""
    x = vertex_grid(resolution)
    X, Y = np.meshgrid(x, x, indexing="ij")
    pi = math.pi
    a = 1 + 0.5 * np.sin(2 * pi * X) * np.cos(pi * Y)
    a_x = pi * np.cos(2 * pi * X) * np.cos(pi * Y)
    a_y = -0.5 * pi * np.sin(2 * pi * X) * np.sin(pi * Y)
    u = np.sin(pi * X) * np.sin(pi * Y)
    u_x = pi * np.cos(pi * X) * np.sin(pi * Y)
    u_y = pi * np.sin(pi * X) * np.cos(pi * Y)
    f = -(a * (-2 * pi**2 * u) + a_x * u_x + a_y * u_y)
    return a, f, u


@pytest.mark.parametrize("face_average", ["harmonic", "arithmetic"])
def test_error_falls_at_second_order_under_refinement(face_average):
    errors = []
    for res in (17, 33, 65):  # h = 1/16, 1/32, 1/64
        a, f, u_exact = manufactured_problem(res)
        errors.append(np.abs(solve_darcy(a, f, face_average) - u_exact).max())
    orders = [math.log2(errors[i] / errors[i + 1]) for i in range(2)]
    assert all(1.8 <= p <= 2.2 for p in orders), orders
    assert errors[-1] < 1e-3


def test_matrix_is_symmetric_positive_definite_for_a_rough_coefficient():
    a = permeability([1], 12)[0].numpy()
    A = darcy_matrix(a).toarray()
    np.testing.assert_allclose(A, A.T, rtol=0, atol=1e-12)
    assert np.linalg.eigvalsh(A).min() > 0


def test_bad_face_average_and_resolution_are_rejected():
    with pytest.raises(ValueError, match=r"face_average='geometric'.*'harmonic', 'arithmetic'"):
        solve_darcy(np.ones((8, 8)), 1.0, "geometric")
    with pytest.raises(ValueError, match=r"resolution=3; allowed values: integers >= 4"):
        generate_darcy(None, resolutions=(3,), n_train=1, n_test=1, progress=False)


def test_files_have_upstreams_layout_and_physics(tmp_path):
    paths = generate_darcy(tmp_path, resolutions=(16,), n_train=6, n_test=3, progress=False)
    assert paths == {16: (tmp_path / "darcy_train_16.pt", tmp_path / "darcy_test_16.pt")}
    data = torch.load(paths[16][0])
    assert data["x"].shape == data["y"].shape == (6, 16, 16)
    assert data["x"].dtype == data["y"].dtype == torch.float32
    assert set(data["x"].unique().tolist()) == {3.0, 12.0}
    y = data["y"]
    assert y[:, 0].abs().max() == 0 and y[:, -1].abs().max() == 0 and y[:, :, 0].abs().max() == 0
    assert (y[:, 1:-1, 1:-1] > 0).all()  # maximum principle: f = 1 > 0


def test_determinism_seed_and_resolution_consistency(tmp_path):
    first = generate_darcy(tmp_path / "a", resolutions=(16, 31), n_train=8, n_test=2, seed=1, progress=False)
    again = generate_darcy(tmp_path / "b", resolutions=(16,), n_train=4, n_test=2, seed=1, progress=False)
    other = generate_darcy(tmp_path / "c", resolutions=(16,), n_train=4, n_test=2, seed=2, progress=False)
    load = lambda p: torch.load(p)  # noqa: E731
    x1, x_again, x_other = load(first[16][0])["x"], load(again[16][0])["x"], load(other[16][0])["x"]
    torch.testing.assert_close(x1[:4], x_again, rtol=0, atol=0)  # sample i does not depend on n
    assert not torch.equal(x1[:4], x_other)
    assert not torch.equal(load(first[16][1])["x"], x1[:2])  # test samples differ from train samples
    # Sample i is the same field at every resolution: 31-point grid contains the 16-point one.
    x31 = load(first[31][0])["x"]
    assert (x31[:, ::2, ::2] == x1).float().mean() > 0.99


def test_cache_hit_skips_and_changed_settings_regenerate(tmp_path, monkeypatch):
    generate_darcy(tmp_path, resolutions=(8,), n_train=5, n_test=2, progress=False)
    stamp = os.stat(tmp_path / "darcy_train_8.pt").st_mtime_ns

    def no_solve(*args, **kwargs):
        raise AssertionError("cache hit must not solve")

    monkeypatch.setattr(darcy_module, "solve_darcy", no_solve)
    generate_darcy(tmp_path, resolutions=(8,), n_train=3, n_test=2, progress=False)  # fewer: still a hit
    assert os.stat(tmp_path / "darcy_train_8.pt").st_mtime_ns == stamp
    monkeypatch.undo()
    generate_darcy(tmp_path, resolutions=(8,), n_train=5, n_test=2, seed=7, progress=False)
    assert torch.load(tmp_path / "darcy_train_8.pt")["meta"]["seed"] == 7
    generate_darcy(tmp_path, resolutions=(8,), n_train=5, n_test=2, seed=7, progress=False, overwrite=True)
    assert os.stat(tmp_path / "darcy_train_8.pt").st_mtime_ns != stamp


def test_foreign_file_is_never_replaced_silently(tmp_path):
    torch.save({"x": torch.rand(2, 8, 8), "y": torch.rand(2, 8, 8)}, tmp_path / "darcy_train_8.pt")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False)
    generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False, overwrite=True)
    assert "meta" in torch.load(tmp_path / "darcy_train_8.pt")


def test_upstream_darcy_dataset_reads_generated_files(tmp_path):
    generate_darcy(tmp_path, resolutions=(16, 32), n_train=20, n_test=5, progress=False)
    dataset = DarcyDataset(root_dir=tmp_path, n_train=20, n_tests=[5, 5], batch_size=4, test_batch_sizes=[5, 5],
                           train_resolution=16, test_resolutions=[16, 32], download=False)
    sample = dataset.train_db[0]
    assert sample["x"].shape == sample["y"].shape == (1, 16, 16)
    assert dataset.test_dbs[32][0]["x"].shape == (1, 32, 32)
    batch = {k: torch.stack([dataset.train_db[i][k] for i in range(20)]) for k in ("x", "y")}
    encoded = dataset.data_processor.preprocess(dict(batch))["y"]
    assert encoded.mean().abs() < 1e-4 and (encoded.std() - 1).abs() < 0.05  # output normalizer fitted


def test_load_darcy_generates_then_reads_and_any_resolution_works(tmp_path):
    train, tests, processor = load_darcy(tmp_path, n_train=12, n_tests=(4, 4), batch_size=6, test_batch_sizes=(4, 2),
                                         train_resolution=16, test_resolutions=(16, 24), progress=False)
    assert sorted(tests) == [16, 24]  # 24 is not an upstream resolution: read all the same
    assert next(iter(train))["x"].shape == (6, 1, 16, 16)
    assert next(iter(tests[24]))["y"].shape == (2, 1, 24, 24)
    assert processor.out_normalizer is not None
    assert not (tmp_path / "darcy_train_24.pt").exists()  # only the files the loader needs


def test_load_darcy_without_generation_names_missing_files_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        load_darcy(tmp_path, n_train=4, n_tests=(2,), test_batch_sizes=(2,), test_resolutions=(16,), generate=False)
    message = str(info.value)
    assert "darcy_train_16.pt" in message and "darcy_test_16.pt" in message
    assert "neuralop-mp data darcy" in message and "--res 16" in message
