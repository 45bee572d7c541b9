"""The built-in loaders train and test on the very contents ``ensure_files`` checked and a run
records, never on a second open of the paths: on an untouched data root their datasets and
fitted normalizers are exactly what upstream's dataset classes read from the same files, and a
file replaced on disk between the check and the build (a concurrent run regenerating it with
another seed) changes nothing that was loaded."""
import os
import shutil

from neuralop.data.datasets.burgers import Burgers1dTimeDataProcessor, Burgers1dTimeDataset
from neuralop.data.datasets.darcy import DarcyDataset
from neuralop.data.datasets.navier_stokes import NavierStokesDataset
from neuralop.data.datasets.pt_dataset import PTDataset
import pytest
import torch
from torch.utils.data import RandomSampler, SequentialSampler

from neuralop_mp.data import generate_burgers, generate_darcy, generate_navier_stokes, load_burgers, load_darcy
from neuralop_mp.data import load_navier_stokes
import neuralop_mp.data.loaders as loaders
from neuralop_mp.data.cache import data_file

NS_T_FINAL = 0.05  # a few solver steps: the tests compare tensors, not physics


def _generate(name, root, resolutions, n_train, n_test, seed=0):
    """Write the dataset ``name``'s files of ``seed`` at ``resolutions`` into ``root``."""
    common = dict(resolutions=resolutions, n_train=n_train, n_test=n_test, seed=seed, progress=False)
    if name == "navier_stokes":
        generate_navier_stokes(root, t_final=NS_T_FINAL, **common)
    else:
        {"darcy": generate_darcy, "burgers": generate_burgers}[name](root, **common)


def _upstream_burgers_other_resolution(root, **layout):
    """What the loader built at resolutions upstream's Burgers1dTimeDataset refuses: its
    PTDataset reading (both sides encoded) and its processor."""
    dataset = PTDataset(root_dir=root, dataset_name="burgers", encode_input=True, encode_output=True, **layout)
    processor = dataset.data_processor
    dataset._data_processor = Burgers1dTimeDataProcessor(processor.in_normalizer, processor.out_normalizer)
    return dataset


# (dataset, loader, loader's own arguments, the upstream reading of the same files)
CASES = {
    "darcy_upstream_resolutions": (
        "darcy", load_darcy, dict(train_resolution=16, test_resolutions=(16, 32)),
        lambda root, **layout: DarcyDataset(root_dir=root, download=False, **layout)),
    "darcy_other_resolutions_input_encoded": (
        "darcy", load_darcy, dict(train_resolution=8, test_resolutions=(12, 8), encode_input=True,
                                  encode_output=False),
        lambda root, **layout: PTDataset(root_dir=root, dataset_name="darcy", **layout)),
    "navier_stokes_upstream_resolution": (
        "navier_stokes", load_navier_stokes, dict(train_resolution=128, test_resolutions=(128,)),
        lambda root, **layout: NavierStokesDataset(root_dir=root, download=False, **layout)),
    "navier_stokes_other_resolutions": (
        "navier_stokes", load_navier_stokes, dict(train_resolution=16, test_resolutions=(8, 16), encode_input=True),
        lambda root, **layout: PTDataset(root_dir=root, dataset_name="nsforcing", **layout)),
    "burgers_upstream_resolution": (
        "burgers", load_burgers, dict(train_resolution=16, test_resolutions=(16,)),
        lambda root, **layout: Burgers1dTimeDataset(root_dir=root, **layout)),
    "burgers_other_resolutions": (
        "burgers", load_burgers, dict(train_resolution=16, test_resolutions=(32, 16)),
        _upstream_burgers_other_resolution),
}


def _stacked(dataset):
    """Every sample of ``dataset`` stacked, per key."""
    samples = [dataset[i] for i in range(len(dataset))]
    return {key: torch.stack([sample[key] for sample in samples]) for key in samples[0]}


def _assert_same_samples(got, expected):
    got, expected = _stacked(got), _stacked(expected)
    assert list(got) == list(expected)  # the sample dict's keys
    for key in expected:
        assert got[key].dtype == expected[key].dtype, key
        assert torch.equal(got[key], expected[key]), key  # exact: the same samples, not close ones


def _assert_same_normalizer(got, expected):
    if expected is None:
        assert got is None
        return
    assert type(got) is type(expected) and got.dim == expected.dim and got.eps == expected.eps
    assert got.n_elements == expected.n_elements
    for stat in ("mean", "std", "squared_mean"):
        assert getattr(got, stat).dtype == getattr(expected, stat).dtype, stat
        assert torch.equal(getattr(got, stat), getattr(expected, stat)), stat  # the same tensors: exact


@pytest.mark.parametrize("case", list(CASES))
def test_an_untouched_root_loads_what_upstreams_classes_read_from_its_files(tmp_path, case):
    name, loader, args, upstream = CASES[case]
    n_train, n_tests, batch_size = 5, [3] * len(args["test_resolutions"]), 2
    test_batch_sizes = [2, 3][:len(n_tests)]
    resolutions = sorted({args["train_resolution"], *args["test_resolutions"]})
    # more samples in each file than loaded: the first n are taken
    _generate(name, tmp_path, resolutions, n_train + 2, max(n_tests) + 1)
    train, tests, processor = loader(tmp_path, n_train=n_train, n_tests=n_tests, batch_size=batch_size,
                                     test_batch_sizes=test_batch_sizes, progress=False, **args)
    expected = upstream(tmp_path, **dict(args, n_train=n_train, n_tests=n_tests, batch_size=batch_size,
                                         test_batch_sizes=test_batch_sizes,
                                         test_resolutions=list(args["test_resolutions"])))

    _assert_same_samples(train.dataset, expected.train_db)
    assert list(tests) == list(expected.test_dbs) == list(args["test_resolutions"])
    for res in tests:
        _assert_same_samples(tests[res].dataset, expected.test_dbs[res])
    assert type(processor) is type(expected.data_processor)
    _assert_same_normalizer(processor.in_normalizer, expected.data_processor.in_normalizer)
    _assert_same_normalizer(processor.out_normalizer, expected.data_processor.out_normalizer)
    # the processors transform a batch alike (Burgers': x repeated along the times of y)
    batch = next(iter(tests[args["test_resolutions"][0]]))
    got = processor.preprocess({k: v.clone() for k, v in batch.items()})
    want = expected.data_processor.preprocess({k: v.clone() for k, v in batch.items()})
    assert list(got) == list(want) and all(torch.equal(got[k], want[k]) for k in want)
    # the DataLoader settings: shuffled training batches, ordered test batches, in process
    assert train.batch_size == batch_size and isinstance(train.sampler, RandomSampler)
    assert train.num_workers == 0 and not train.drop_last
    for res, test_batch_size in zip(args["test_resolutions"], test_batch_sizes):
        assert tests[res].batch_size == test_batch_size and isinstance(tests[res].sampler, SequentialSampler)
        assert tests[res].num_workers == 0 and not tests[res].drop_last


RACES = {"darcy": (load_darcy, 16, (16,)), "navier_stokes": (load_navier_stokes, 8, (8,)),
         "burgers": (load_burgers, 16, (16,))}


@pytest.mark.parametrize("name", list(RACES))
def test_a_file_replaced_after_the_check_does_not_change_what_was_loaded(tmp_path, monkeypatch, name):
    loader, train_res, test_resolutions = RACES[name]
    root, other_seed = tmp_path / "shared", tmp_path / "other_seed"
    for folder, seed in ((root, 0), (other_seed, 1)):
        _generate(name, folder, sorted({train_res, *test_resolutions}), 4, 3, seed=seed)
    prefix = loaders.LOADER_FILES[loader.__name__][0]
    paths = [data_file(root, prefix, "train", train_res)] + [data_file(root, prefix, "test", r)
                                                              for r in test_resolutions]
    checked = {path: torch.load(path, weights_only=True) for path in paths}  # seed 0's contents
    real_ensure_files = loaders.ensure_files

    def then_another_run_regenerates(*args, **kwargs):
        stored = real_ensure_files(*args, **kwargs)
        # the other run's generator writes a temporary file and renames it over the path, as cache.py does
        for path in paths:
            shutil.copyfile(other_seed / path.name, path.with_name(path.name + ".other"))
            os.replace(path.with_name(path.name + ".other"), path)
        return stored

    monkeypatch.setattr(loaders, "ensure_files", then_another_run_regenerates)
    train, tests, processor = loader(root, n_train=4, n_tests=[3] * len(test_resolutions), batch_size=2,
                                     test_batch_sizes=[3] * len(test_resolutions), train_resolution=train_res,
                                     test_resolutions=test_resolutions, progress=False)
    assert all(torch.load(path, weights_only=True)["meta"]["seed"] == 1 for path in paths)  # the race happened
    # what the run records: the seed-0 files it checked
    assert [f["record"]["seed"] for f in train.data_files] == [0] * len(paths)

    def samples(path, n):
        return checked[path]["x"][:n].float().unsqueeze(1), checked[path]["y"][:n].unsqueeze(1)

    x_train, y_train = samples(paths[0], 4)
    loaded = _stacked(train.dataset)
    assert torch.equal(loaded["x"], x_train) and torch.equal(loaded["y"], y_train)
    for path, res in zip(paths[1:], test_resolutions):
        x_test, y_test = samples(path, 3)
        loaded = _stacked(tests[res].dataset)
        assert torch.equal(loaded["x"], x_test) and torch.equal(loaded["y"], y_test)
    # the output normalizer was fitted on the checked training labels: their float64 statistics
    # over every axis but the channel one, to float32 rounding
    reference = y_train.double()
    dims = [axis for axis in range(reference.ndim) if axis != 1]
    torch.testing.assert_close(processor.out_normalizer.mean.double(), reference.mean(dim=dims, keepdim=True),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(processor.out_normalizer.std.double(), reference.std(dim=dims, keepdim=True),
                               rtol=1e-5, atol=1e-6)
