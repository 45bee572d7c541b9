"""The ``neuralop-mp data`` commands that the offline data of upstream's scripts suggest are the
loaders' (one builder): only the missing files, a split not needed at 0 samples, the files the
script does not read named, the physics of the files present carried. Run as they are, they
write what the script reads."""
import shlex

import pytest
from neuralop.data.datasets.darcy import DarcyDataset

import neuralop_mp
from neuralop_mp.data.cli import main
from neuralop_mp.data.darcy import generate_darcy_split
from neuralop_mp.runner.offline import OfflineDataError

# upstream's train_darcy.py layout (train at one resolution, tests at it and a finer one), small
LAYOUT = dict(n_train=3, n_tests=[2, 1], batch_size=3, test_batch_sizes=[2, 1], train_resolution=8,
              test_resolutions=[8, 10], encode_output=False)


def _command(message):
    (line,) = [line.strip() for line in message.splitlines() if line.strip().startswith("neuralop-mp data ")]
    return line


def test_the_command_names_the_file_the_script_does_not_read_and_writes_what_it_reads(tmp_path, no_network,
                                                                                     fake_parts):
    with neuralop_mp.enabled(data_root=tmp_path):
        with pytest.raises(OfflineDataError) as info:
            DarcyDataset(root_dir="unused", **LAYOUT)
    message = str(info.value)
    command = _command(message)
    assert command == f"neuralop-mp data darcy --root {tmp_path} --res 8 10 --n-train 3 --n-test 2"
    assert (f"It also writes {tmp_path / 'darcy_train_10.pt'} (3 samples), which this load does not read.\n"
            "or point the script at a folder") in message
    assert main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "darcy_test_10.pt", "darcy_test_8.pt", "darcy_train_10.pt", "darcy_train_8.pt"]
    with neuralop_mp.enabled(data_root=tmp_path) as report:
        dataset = DarcyDataset(root_dir="unused", **LAYOUT)
    assert len(dataset.train_db) == 3 and report.notes == [] and no_network == []


def test_a_missing_test_set_is_written_alone_with_the_physics_of_the_files_present(tmp_path, no_network,
                                                                                  fake_parts):
    for split, n in (("train", 3), ("test", 2)):
        generate_darcy_split(tmp_path, 8, split, n, progress=False, face_average="arithmetic")
    with neuralop_mp.enabled(data_root=tmp_path):
        with pytest.raises(OfflineDataError) as info:
            DarcyDataset(root_dir="unused", **LAYOUT)
    message = str(info.value)
    assert "darcy_test_10.pt not found" in message and "also writes" not in message
    command = _command(message)
    assert command == (f"neuralop-mp data darcy --root {tmp_path} --res 10 --n-train 0 --n-test 1 "
                       "--face-average arithmetic")
    assert main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert not (tmp_path / "darcy_train_10.pt").exists()


def test_the_command_for_more_samples_writes_that_file_alone_with_its_physics(tmp_path, no_network, fake_parts):
    generate_darcy_split(tmp_path, 8, "train", 2, progress=False, face_average="arithmetic")
    for res, n in ((8, 2), (10, 1)):
        generate_darcy_split(tmp_path, res, "test", n, progress=False, face_average="arithmetic")
    with neuralop_mp.enabled(data_root=tmp_path) as report:
        DarcyDataset(root_dir="unused", **LAYOUT)
    assert report.notes == [
        f"darcy_train_8.pt in {tmp_path} holds 2 samples but the script asked for 3 (training on 2); generate more "
        f"with `neuralop-mp data darcy --root {tmp_path} --res 8 --n-train 3 --n-test 0 --face-average arithmetic`."]
