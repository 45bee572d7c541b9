"""The one builder of the ``neuralop-mp data`` advice (``data_command``): resolutions and counts
of the files to write (0 for a split with none, the generator's default for a count not given),
the physics flags, and the files it also writes that the load does not read. The command it
returns, run as it is, writes exactly the files it names."""
import shlex

from neuralop_mp.data.cli import main
from neuralop_mp.data.loaders import generator_defaults
from neuralop_mp.data.loaders import data_command


def test_a_test_set_alone_writes_no_training_file(tmp_path):
    command, also = data_command(tmp_path, "nsforcing", "navier_stokes", reads=[(8, "train"), (16, "test")],
                                 writes=[(16, "test", 5)], physics={"viscosity": 0.002, "dt": 0.01})
    assert command == (f"neuralop-mp data navier_stokes --root {tmp_path} --res 16 --n-train 0 --n-test 5 "
                       "--viscosity 0.002 --dt 0.01")
    assert also == ""


def test_a_count_not_given_is_the_generators_default(tmp_path):
    n_train, n_test = generator_defaults("burgers")["n_train"], generator_defaults("burgers")["n_test"]
    command, _ = data_command(tmp_path, "burgers", "burgers", reads=[(16, "train"), (16, "test")],
                              writes=[(16, "train", None), (16, "test", None)])
    assert command.endswith(f"--res 16 --n-train {n_train} --n-test {n_test}")


def test_both_splits_at_different_resolutions_name_the_unread_files_and_write_exactly_those(tmp_path):
    """Upstream's train_darcy.py layout (train at one resolution, tests at two): one command
    writes a training file at the second test resolution too; the sentence names it, and the
    command run as it is writes the needed files and that one, no other."""
    reads = [(8, "train"), (8, "test"), (10, "test")]
    command, also = data_command(tmp_path, "darcy", "darcy", reads, writes=[(8, "train", 3), (8, "test", 2),
                                                                            (10, "test", 1)])
    assert command == f"neuralop-mp data darcy --root {tmp_path} --res 8 10 --n-train 3 --n-test 2"
    assert also == f"It also writes {tmp_path / 'darcy_train_10.pt'} (3 samples), which this load does not read."
    assert main(shlex.split(command)[2:] + ["--quiet"]) == 0
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == [
        "darcy_test_10.pt", "darcy_test_8.pt", "darcy_train_10.pt", "darcy_train_8.pt"]
    # that file there already: the command replaces it if it records other settings, and says so
    _, also = data_command(tmp_path, "darcy", "darcy", reads, writes=[(8, "train", 3), (10, "test", 1)])
    assert also.endswith(f"; {tmp_path / 'darcy_train_10.pt'} exists: it is replaced if it records other settings.")
