"""Data files that lie about their contents, are half written or hold inf/NaN are caught
before training, with the path and the sample index in the message."""
import os
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import torch

from neuralop_mp.data import generate_darcy, load_darcy
from neuralop_mp.data.darcy import generate_darcy_split
from neuralop_mp.data.file_checks import (DataFileChecksumError, DataFileError, ForeignDataFileChecksumError,
                                          UnreadableDataFileError, read_data_file)
from neuralop_mp.data.loaders import ensure_files

pytestmark = pytest.mark.reliability

SMALL = dict(n_train=4, n_tests=[2], batch_size=2, test_batch_sizes=[2], train_resolution=8,
             test_resolutions=[8], progress=False)


@pytest.fixture(scope="module")
def darcy8(tmp_path_factory):
    """Darcy files at resolution 8 (4 train, 2 test samples), generated once."""
    root = tmp_path_factory.mktemp("darcy8")
    generate_darcy(root, resolutions=(8,), n_train=4, n_test=2, progress=False)
    return root


def copy_of(darcy8, tmp_path):
    for name in ("darcy_train_8.pt", "darcy_test_8.pt"):
        (tmp_path / name).write_bytes((darcy8 / name).read_bytes())
    return tmp_path


def test_file_with_8x8_arrays_named_16_is_refused_with_the_path(darcy8, tmp_path):
    for split in ("train", "test"):
        (tmp_path / f"darcy_{split}_16.pt").write_bytes((darcy8 / f"darcy_{split}_8.pt").read_bytes())
    with pytest.raises(DataFileError, match=r"darcy_train_16.pt: 'x' has shape \(4, 8, 8\).*declares resolution 16"):
        load_darcy(tmp_path, **dict(SMALL, train_resolution=16, test_resolutions=[16]), generate=False)


def test_nan_in_one_training_target_is_reported_with_its_sample_index(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    data = torch.load(root / "darcy_train_8.pt", weights_only=True)
    data["y"][2, 3, 3] = float("nan")
    torch.save(data, root / "darcy_train_8.pt")
    with pytest.raises(DataFileError, match=r"darcy_train_8.pt: 'y' holds inf/NaN in 1 of the first 4 samples, "
                                            r"at sample indices \[2\]\. One non-finite sample makes the "
                                            r"normalizer NaN"):
        load_darcy(root, **SMALL, generate=False)


def test_inf_in_one_test_input_is_reported_with_its_sample_index(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    data = torch.load(root / "darcy_test_8.pt", weights_only=True)
    data["x"][1, 0, 0] = float("inf")
    torch.save(data, root / "darcy_test_8.pt")
    # the normalizers come from the training file: a test file's bad sample reaches its test errors
    with pytest.raises(DataFileError, match=r"darcy_test_8.pt: 'x' holds inf/NaN .* sample indices \[1\]\. "
                                            r"One non-finite sample makes the test errors at this resolution NaN"):
        load_darcy(root, **SMALL, generate=False)


def test_a_sample_past_the_requested_count_is_not_checked(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    data = torch.load(root / "darcy_train_8.pt", weights_only=True)
    data["y"][3] = float("nan")
    torch.save(data, root / "darcy_train_8.pt")
    train, _, _ = load_darcy(root, **dict(SMALL, n_train=3), generate=False)
    assert len(train.dataset) == 3


def test_partially_written_file_is_regenerated_never_loaded(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    good = (root / "darcy_train_8.pt").read_bytes()
    (root / "darcy_train_8.pt").write_bytes(good[: len(good) // 2])  # an interrupted write/copy
    with pytest.raises(DataFileError, match=r"darcy_train_8.pt is not a readable data file"):
        load_darcy(root, **SMALL, generate=False)
    with pytest.warns(RuntimeWarning, match=r"darcy_train_8.pt cannot be read .* it is regenerated") as caught:
        train, _, _ = load_darcy(root, **SMALL, generate=True)
    assert caught[0].filename == __file__  # the user's call, not a line inside the loaders
    regenerated = torch.load(root / "darcy_train_8.pt", weights_only=True)
    expected = torch.load(darcy8 / "darcy_train_8.pt", weights_only=True)
    assert torch.equal(regenerated["x"], expected["x"]) and torch.equal(regenerated["y"], expected["y"])
    assert len(train.dataset) == 4


def _numpy_pair(path):
    import numpy as np

    rng = np.random.default_rng(3)
    torch.save({"x": rng.random((4, 8, 8), dtype=np.float32), "y": rng.random((4, 8, 8), dtype=np.float32)}, path)


def _legacy_format(path):
    torch.save({"x": torch.rand(4, 8, 8), "y": torch.rand(4, 8, 8)}, path, _use_new_zipfile_serialization=False)


def _numpy_archive(path):
    import numpy as np

    with open(path, "wb") as file:
        np.savez(file, x=np.ones((4, 8, 8)), y=np.ones((4, 8, 8)))


@pytest.mark.parametrize("write", [_numpy_pair, _legacy_format, _numpy_archive])
def test_a_complete_file_of_the_users_that_torch_cannot_read_is_never_replaced(darcy8, tmp_path, write):
    """A user's complete file of numpy arrays (a weights-only load refuses them), in torch's legacy
    format or in numpy's was taken for a partial one: replaced with generated Darcy data, the run
    training on it after a warning. Refused in one line naming the path and the way out; its bytes kept."""
    root = copy_of(darcy8, tmp_path)
    path = root / "darcy_train_8.pt"
    write(path)
    before = path.read_bytes()
    for generate in (True, False):
        with pytest.raises(UnreadableDataFileError, match=r"darcy_train_8.pt is a complete file but not one of "
                                                          r"torch tensors .* not replaced .*torch.from_numpy") as info:
            load_darcy(root, **SMALL, generate=generate)
        assert "\n" not in str(info.value) and "\x1b" not in str(info.value)
        assert path.read_bytes() == before
    with pytest.raises(FileExistsError, match=r"darcy_train_8.pt is a complete file .*overwrite=True"):
        generate_darcy(root, resolutions=(8,), n_train=4, n_test=2, progress=False)
    assert path.read_bytes() == before
    generate_darcy(root, resolutions=(8,), n_train=4, n_test=2, progress=False, overwrite=True)  # told to: replaced
    assert path.read_bytes() == (darcy8 / "darcy_train_8.pt").read_bytes()


def test_an_empty_file_is_partial_and_regenerated(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    (root / "darcy_train_8.pt").write_bytes(b"")  # a copy interrupted before its first byte
    with pytest.warns(RuntimeWarning, match=r"darcy_train_8.pt cannot be read .*truncated.* it is regenerated"):
        load_darcy(root, **SMALL, generate=True)
    assert (root / "darcy_train_8.pt").read_bytes() == (darcy8 / "darcy_train_8.pt").read_bytes()


def test_bytes_overwritten_in_place_are_caught_by_the_checksum_and_regenerated(darcy8, tmp_path):
    """Same size, same archive layout, finite but wrong values in the middle of 'y': the
    memory-mapped load alone reads them; the archive's CRC-32 of the record does not match."""
    root = copy_of(darcy8, tmp_path)
    path = root / "darcy_train_8.pt"
    raw = bytearray(path.read_bytes())
    y = torch.load(path, weights_only=True)["y"]
    # the float32 bytes of y's samples 1-2, found in the archive (stored uncompressed)
    start = bytes(raw).index(y[1].numpy().tobytes())
    raw[start:start + 60] = bytes(range(7, 67))
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError,
                       match=r"darcy_train_8.pt is corrupted: its record .* does not match the checksum") as info:
        load_darcy(root, **SMALL, generate=False)
    assert type(info.value) is DataFileChecksumError  # ours (a generation record): may be regenerated
    assert str(info.value).endswith("Delete it to regenerate it.")
    with pytest.warns(RuntimeWarning, match=r"darcy_train_8.pt cannot be read .* it is regenerated"):
        load_darcy(root, **SMALL, generate=True)
    assert torch.equal(torch.load(path, weights_only=True)["y"], y)


def test_ensure_files_reads_each_file_once_per_call(darcy8, tmp_path, monkeypatch):
    """A file's tensors are loaded, and its checksums read, once per call: not once for its
    information and again for its checks. A file generated in the call is read once, for
    its checks."""
    train, test = tmp_path / "darcy_train_8.pt", tmp_path / "darcy_test_8.pt"
    train.write_bytes((darcy8 / "darcy_train_8.pt").read_bytes())  # test's file is missing: generated
    train, test = Path(os.path.realpath(train)), Path(os.path.realpath(test))
    loads, archives = Counter(), Counter()
    real_load = torch.load

    def counting_load(f, *args, **kwargs):  # counted by the file: a descriptor's name is one of it
        loads[os.path.realpath(f)] += 1
        return real_load(f, *args, **kwargs)

    class CountingZipFile(zipfile.ZipFile):  # the checksums' reader, given the open file
        def __init__(self, file, *args, **kwargs):
            archives[os.path.realpath(getattr(file, "name", file))] += 1
            super().__init__(file, *args, **kwargs)

    monkeypatch.setattr(torch, "load", counting_load)
    monkeypatch.setattr(zipfile, "ZipFile", CountingZipFile)
    needed = [(8, "train", 4), (8, "test", 2)]
    ensure_files(tmp_path, "darcy", needed, generate_darcy_split, "darcy", progress=False)
    assert loads == {str(train): 1, str(test): 1}
    assert archives == {str(train): 1, str(test): 1}  # both new to this process: checked
    loads.clear()
    archives.clear()
    ensure_files(tmp_path, "darcy", needed, generate_darcy_split, "darcy", generate=False, progress=False)
    assert loads == {str(train): 1, str(test): 1}
    assert all(count <= 1 for count in archives.values()), archives


def test_a_file_damaged_in_place_keeping_its_size_and_modification_time_is_caught(darcy8, tmp_path):
    """Checked once in this process, then overwritten in place with the same size and its
    modification time put back (as cp -p or rsync -t do): its checksums are read again."""
    root = copy_of(darcy8, tmp_path)
    load_darcy(root, **SMALL, generate=False)
    path = root / "darcy_train_8.pt"
    stat = path.stat()
    raw = bytearray(path.read_bytes())
    start = bytes(raw).index(torch.load(path, weights_only=True)["y"][1].numpy().tobytes())
    raw[start:start + 60] = bytes(range(7, 67))  # finite values: only the checksum tells
    path.write_bytes(bytes(raw))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
    with pytest.raises(DataFileChecksumError, match=r"darcy_train_8.pt is corrupted"):
        load_darcy(root, **SMALL, generate=False)


def test_a_file_saved_without_checksums_is_read_and_a_damaged_user_file_is_never_replaced(tmp_path):
    """torch writes a CRC of 0 for every record under set_crc32_options(False) and reads such
    files: so do we. A user's own file (no generation record) with a damaged checksum is
    refused even with generate=True, never overwritten with generated data."""
    mine = {"x": torch.full((4, 8, 8), 7.0), "y": torch.full((4, 8, 8), 7.0)}
    torch.serialization.set_crc32_options(False)
    try:
        for split in ("train", "test"):
            torch.save(mine, tmp_path / f"darcy_{split}_8.pt")
    finally:
        torch.serialization.set_crc32_options(True)
    train, _, _ = load_darcy(tmp_path, **SMALL, generate=True)
    assert len(train.dataset) == 4 and "meta" not in torch.load(tmp_path / "darcy_train_8.pt", weights_only=True)
    torch.save(mine, tmp_path / "darcy_train_8.pt")  # with checksums, then damaged in place
    path = tmp_path / "darcy_train_8.pt"
    raw = bytearray(path.read_bytes())
    start = bytes(raw).index(mine["y"][1].numpy().tobytes())
    raw[start:start + 8] = bytes(range(1, 9))
    path.write_bytes(bytes(raw))
    with pytest.raises(ForeignDataFileChecksumError, match=r"darcy_train_8.pt is corrupted") as info:
        load_darcy(tmp_path, **SMALL, generate=True)
    # the user's data: regenerating would replace it with synthetic data, so the message says restore
    assert "not replaced with generated data: restore it from its source" in str(info.value)
    assert "regenerate" not in str(info.value)
    with pytest.raises(FileExistsError, match=r"darcy_train_8.pt is corrupted.*no generation record of neuralop_mp.*overwrite=True"):
        generate_darcy(tmp_path, resolutions=(8,), n_train=4, n_test=2, progress=False)  # neuralop-mp data's path
    assert path.read_bytes() == bytes(raw)  # the user's file is left as it is


def test_a_damaged_file_holding_a_bare_tensor_is_named_not_a_raw_error(tmp_path):
    path = tmp_path / "darcy_train_8.pt"
    values = torch.arange(4096, dtype=torch.float32)
    torch.save(values, path)
    raw = bytearray(path.read_bytes())
    start = bytes(raw).index(values[100:104].numpy().tobytes())
    raw[start] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(DataFileError, match=r"darcy_train_8.pt is corrupted"):
        read_data_file(path)


def test_generation_writes_through_a_temporary_file(tmp_path, monkeypatch):
    """Killed while saving: the final name never holds a partial file, no temporary is left
    (only the lock file of the generation, which stays by design)."""
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):  # f: the temporary file's handle
        real_save(obj, f, *args, **kwargs)
        f.flush()
        f.truncate(100)
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        generate_darcy(tmp_path, resolutions=(8,), n_train=2, n_test=1, progress=False)
    assert [name for name in os.listdir(tmp_path) if not name.endswith(".lock")] == []


def test_sample_count_declared_in_metadata_must_match(darcy8, tmp_path):
    root = copy_of(darcy8, tmp_path)
    data = torch.load(root / "darcy_train_8.pt", weights_only=True)
    data["meta"]["n_samples"] = 40
    torch.save(data, root / "darcy_train_8.pt")
    with pytest.raises(DataFileError, match=r"metadata declares 40 samples but it holds 4"):
        load_darcy(root, **SMALL, generate=False)


@pytest.mark.parametrize("override, message", [
    ({"train_resolution": 0}, r"Invalid train_resolution=0; allowed values: integers >= 2"),
    ({"train_resolution": 1}, r"Invalid train_resolution=1; allowed values: integers >= 2"),
    ({"train_resolution": -16}, r"Invalid train_resolution=-16"),
    ({"test_resolutions": [-8]}, r"Invalid test_resolutions entry=-8"),
    ({"n_train": 0}, r"Invalid n_train=0; allowed values: integers >= 1"),
    ({"n_tests": [0]}, r"Invalid n_tests entry=0; allowed values: integers >= 1"),
    ({"test_resolutions": [], "n_tests": [], "test_batch_sizes": []}, r"test_resolutions is empty"),
])
def test_nonsense_sizes_are_refused_before_any_file_is_touched(tmp_path, override, message):
    with pytest.raises(ValueError, match=message):
        load_darcy(tmp_path / "never", **dict(SMALL, **override))
    assert not (tmp_path / "never").exists()


def test_float_resolution_is_a_type_error(tmp_path):
    with pytest.raises(TypeError, match=r"Invalid train_resolution=16.5"):
        load_darcy(tmp_path, **dict(SMALL, train_resolution=16.5))


def test_load_darcy_regenerates_or_refuses_a_file_of_another_seed(tmp_path):
    """data.seed is not ignored when files of another seed are in the data root (as `neuralop-mp data` compares)."""
    small = dict(n_train=2, n_tests=(2,), batch_size=2, test_batch_sizes=(2,), train_resolution=8,
                 test_resolutions=(8,), progress=False)
    generate_darcy(tmp_path, resolutions=(8,), n_train=4, n_test=2, seed=0, progress=False)  # more than requested
    seed0 = torch.load(tmp_path / "darcy_train_8.pt", weights_only=True)
    with pytest.raises(ValueError) as info:
        load_darcy(tmp_path, **small, seed=1, generate=False)
    message = str(info.value)
    assert "darcy_train_8.pt was generated with seed=0, not the requested seed=1 (data.seed=1" in message, message
    assert "neuralop-mp data darcy --root" in message and "--seed 1 --face-average harmonic --overwrite" in message
    assert torch.load(tmp_path / "darcy_train_8.pt", weights_only=True)["meta"]["seed"] == 0  # left as it was

    with pytest.warns(RuntimeWarning, match=r"darcy_train_8.pt was generated with seed=0, not the requested seed=1: "
                                            r"it is regenerated with seed=1 and 4 samples") as caught:
        train, _, _ = load_darcy(tmp_path, **small, seed=1)
    assert caught[0].filename == __file__  # the user's call, not a line inside the loaders
    regenerated = torch.load(tmp_path / "darcy_train_8.pt", weights_only=True)
    assert regenerated["meta"]["seed"] == 1 and not torch.equal(regenerated["x"][:2], seed0["x"][:2])
    assert regenerated["x"].shape[0] == 4  # the file keeps the samples it held
    assert torch.load(tmp_path / "darcy_test_8.pt", weights_only=True)["meta"]["seed"] == 1
    # the requested seed's file is used as it is: no regeneration
    stamp = os.stat(tmp_path / "darcy_train_8.pt").st_mtime_ns
    load_darcy(tmp_path, **small, seed=1, generate=False)
    assert os.stat(tmp_path / "darcy_train_8.pt").st_mtime_ns == stamp
