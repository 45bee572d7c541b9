"""Upstream's loaders read local files without the network while the plugin is enabled."""
import pytest
import torch
from neuralop.data.datasets import (
    load_darcy_flow_small,
    load_mini_burgers_1dtime,
    load_navier_stokes_pt,
)
from neuralop.data.datasets import darcy as upstream_darcy
from neuralop.data.datasets import web_utils

import neuralop_mp
from neuralop_mp.runner.offline import OfflineDataError

from .conftest import write_pt_pair

DARCY_KWARGS = dict(n_train=6, n_tests=[4, 3], batch_size=3, test_batch_sizes=[2, 3], test_resolutions=[16, 32],
                    encode_output=False)


@pytest.fixture
def darcy_dir(tmp_path):
    root = tmp_path / "darcy"
    root.mkdir()
    train16 = write_pt_pair(root, "darcy", 16, n=8, x_shape=(16, 16), y_shape=(16, 16), seed=1)
    write_pt_pair(root, "darcy", 32, n=8, x_shape=(32, 32), y_shape=(32, 32), seed=2)
    return root, train16


def test_upstream_loader_calls_the_network_even_when_files_are_present(darcy_dir, no_network):
    # control: proves the socket block below would catch a network call
    root, _ = darcy_dir
    with pytest.raises(Exception):
        load_darcy_flow_small(data_root=root, **DARCY_KWARGS)
    assert no_network, "upstream made no network attempt: this test no longer shows anything"


def test_present_files_are_read_with_no_network_call(darcy_dir, no_network, fake_parts):
    root, train16 = darcy_dir
    with neuralop_mp.enabled() as report:
        train_loader, test_loaders, _ = load_darcy_flow_small(data_root=root, **DARCY_KWARGS)
        batch = next(iter(train_loader))
    assert no_network == []
    # the loader returns the file's samples (channel dim added by upstream's PTDataset)
    torch.testing.assert_close(batch["x"][:, 0], train16["x"][:3], rtol=0, atol=0)
    torch.testing.assert_close(batch["y"][:, 0], train16["y"][:3], rtol=0, atol=0)
    assert len(train_loader.dataset) == 6
    assert {r: len(l.dataset) for r, l in test_loaders.items()} == {16: 4, 32: 3}
    assert next(iter(test_loaders[32]))["x"].shape == (3, 1, 32, 32)
    (entry,) = report.datasets
    assert entry["dataset"] == "darcy" and entry["download_requested"] is True
    assert sorted(p.rsplit("/", 1)[1] for p in entry["files"]) == [
        "darcy_test_16.pt", "darcy_test_32.pt", "darcy_train_16.pt"]


def test_data_root_points_the_scripts_folder_elsewhere(darcy_dir, no_network, fake_parts, tmp_path):
    root, train16 = darcy_dir
    with neuralop_mp.enabled(data_root=root):
        train_loader, _, _ = load_darcy_flow_small(data_root=tmp_path / "the_scripts_folder", **DARCY_KWARGS)
    torch.testing.assert_close(next(iter(train_loader))["x"][:, 0], train16["x"][:3], rtol=0, atol=0)
    assert not (tmp_path / "the_scripts_folder").exists()


def test_missing_files_name_themselves_and_the_generate_command(no_network, fake_parts, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    write_pt_pair(empty, "darcy", 16, n=4, x_shape=(16, 16), y_shape=(16, 16), seed=0)
    with neuralop_mp.enabled(data_root=empty):
        with pytest.raises(OfflineDataError) as info:
            load_darcy_flow_small(data_root="unused", **DARCY_KWARGS)
    message = str(info.value)
    assert "darcy_test_32.pt not found in" in message and "darcy_train_16.pt" not in message
    # the missing file alone, with the samples the script asks for (a default-sized file stopped it
    # again, at "holds N samples")
    assert f"neuralop-mp data darcy --root {empty} --res 32 --n-train 0 --n-test 3\n" in message
    assert no_network == []


def test_navier_stokes_reads_any_resolution_present(tmp_path, no_network, fake_parts):
    # upstream only accepts 128 and 1024 (what Zenodo hosts); offline, 16 is fine
    train = write_pt_pair(tmp_path, "nsforcing", 16, n=5, x_shape=(16, 16), y_shape=(16, 16), seed=3)
    with neuralop_mp.enabled(data_root=tmp_path) as report:
        loader, tests, _ = load_navier_stokes_pt(
            n_train=4, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=16,
            test_resolutions=[16], encode_input=False, encode_output=False,
        )
        batch = next(iter(loader))
    torch.testing.assert_close(batch["y"][:, 0], train["y"][:2], rtol=0, atol=0)
    assert report.datasets[0]["dataset"] == "navier_stokes"
    assert no_network == []
    with neuralop_mp.enabled(data_root=tmp_path / "nowhere"):
        with pytest.raises(OfflineDataError, match=r"neuralop-mp data navier_stokes --root \S+ --res 16 --n-train 4 --n-test 2\n"):
            load_navier_stokes_pt(n_train=4, n_tests=[2], batch_size=2, test_batch_sizes=[2],
                                  train_resolution=16, test_resolutions=[16])


def test_burgers_data_root_and_missing_files(tmp_path, fake_parts):
    write_pt_pair(tmp_path, "burgers", 16, n=6, x_shape=(16,), y_shape=(5, 16), seed=4)
    with neuralop_mp.enabled(data_root=tmp_path) as report:
        loader, tests, processor = load_mini_burgers_1dtime(
            data_path="somewhere/else", n_train=4, n_test=2, batch_size=2, test_batch_size=2)
        batch = next(iter(loader))
    assert batch["y"].shape == (2, 1, 5, 16) and report.datasets[0]["dataset"] == "burgers"
    with neuralop_mp.enabled():
        with pytest.raises(OfflineDataError, match=r"burgers_train_16\.pt, burgers_test_16\.pt not found"):
            load_mini_burgers_1dtime(data_path=tmp_path / "none", n_train=4, n_test=2, batch_size=2,
                                     test_batch_size=2)


def test_download_helpers_refuse_while_enabled_and_come_back_after(fake_parts, no_network, tmp_path):
    original = web_utils.download_from_zenodo_record
    with neuralop_mp.enabled():
        for fn in (web_utils.download_from_zenodo_record, upstream_darcy.download_from_zenodo_record):
            with pytest.raises(OfflineDataError, match="never downloads"):
                fn(record_id="12784353", root=tmp_path)
    assert no_network == []
    assert web_utils.download_from_zenodo_record is original
    assert upstream_darcy.download_from_zenodo_record is original
    assert upstream_darcy.DarcyDataset.__init__.__module__ == "neuralop.data.datasets.darcy"


def test_a_blocked_download_shows_its_whole_call_and_which_datasets_can_be_generated(fake_parts, no_network,
                                                                                    tmp_path):
    with neuralop_mp.enabled():
        with pytest.raises(OfflineDataError) as info:
            web_utils.download_from_zenodo_record("mhd", record_id="12784353", root=tmp_path)
    message = str(info.value)
    assert f"download_from_zenodo_record('mhd', record_id='12784353', root={tmp_path!r}) was called" in message
    assert "`neuralop-mp data` generates darcy, navier_stokes, burgers" in message
    assert "any other dataset must be downloaded without the plugin" in message
    assert no_network == []


def test_files_holding_fewer_samples_than_asked_are_noted_with_the_command_for_more(darcy_dir, no_network,
                                                                                   fake_parts, tmp_path):
    root, _ = darcy_dir  # 8 samples in each file
    with neuralop_mp.enabled(data_root=root) as report:
        train_loader, test_loaders, _ = load_darcy_flow_small(
            data_root="unused", **{**DARCY_KWARGS, "n_train": 20, "n_tests": [4, 30]})
    # upstream takes what the file holds
    assert len(train_loader.dataset) == 8 and len(test_loaders[32].dataset) == 8
    assert report.notes == [
        f"darcy_train_16.pt in {root} holds 8 samples but the script asked for 20 (training on 8); generate more "
        f"with `neuralop-mp data darcy --root {root} --res 16 --n-train 20 --n-test 0`.",
        f"darcy_test_32.pt in {root} holds 8 samples but the script asked for 30 (testing on 8); generate more "
        f"with `neuralop-mp data darcy --root {root} --res 32 --n-train 0 --n-test 30`.",
    ]
    # a dataset whose class reads the files itself (Burgers), and one with enough samples: no note
    write_pt_pair(tmp_path, "burgers", 16, n=6, x_shape=(16,), y_shape=(5, 16), seed=4)
    with neuralop_mp.enabled(data_root=tmp_path) as report:
        load_mini_burgers_1dtime(data_path="x", n_train=10, n_test=2, batch_size=2, test_batch_size=2)
    assert report.notes == [f"burgers_train_16.pt in {tmp_path} holds 6 samples but the script asked for 10 "
                            f"(training on 6); generate more with `neuralop-mp data burgers --root {tmp_path} --res 16 "
                            "--n-train 10 --n-test 0`."]
    with neuralop_mp.enabled(data_root=root) as report:
        load_darcy_flow_small(data_root="unused", **DARCY_KWARGS)
    assert report.notes == []

