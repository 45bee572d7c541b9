"""``neuralop-mp diagnose`` refuses, by the option typed, a working resolution N at or above its dataset's
smallest grid that the dataset's generator refuses (Navier-Stokes: powers of 2), where the load would
generate it: it said the generator's "Invalid Navier-Stokes resolution=12", naming no option. The rule
is the one table's (data.loaders.CHECK_RESOLUTION, worded by RESOLUTION_RULES); files already in the
data root at that size (the user's own) are left to the load."""
import pytest
import torch

from neuralop_mp.cli import main
from neuralop_mp.data import loaders
from neuralop_mp.diagnose import cli as diagnose_cli

from .test_diagnose_size_refusals import SMALL, _error_line

NS_RULE = "allowed values for the navier_stokes data: powers of 2 >= 8 (the working resolution N; the test inputs " \
          "are generated at 2N)."


@pytest.mark.parametrize("args, flag, value", [
    (["navier_stokes", "--resolution", "12"], "--resolution", 12),
    (["darcy", "--data", "navier_stokes", "--resolution", "24"], "--resolution", 24),
    (["navier_stokes", "--data.train_resolution", "12"], "data.train_resolution", 12),
    (["navier_stokes", "--recipe-table", "--resolutions", "16,12", "--archs", "FNOConfig"], "--resolutions", 12),
], ids=["resolution", "data-option", "config-key", "recipe-table"])
def test_a_size_the_generator_refuses_is_refused_by_the_option_typed(tmp_path, capsys, no_work, args, flag, value):
    root = tmp_path / "data"
    assert main(["diagnose", *args, "--n-samples", "2", "--data.data_root", str(root),
                 "--out", str(tmp_path / "out")]) == 2
    assert _error_line(capsys.readouterr().err) == f"Invalid {flag}={value}; {NS_RULE}"
    assert not (tmp_path / "out").exists() and not root.exists()


def test_the_generators_sizes_are_taken(tmp_path, no_work):
    """16 (and its 32) pass the check, and the diagnosis goes on to load its data (no_work stops it)."""
    with pytest.raises(AssertionError, match="the diagnosis started its work"):
        main(["diagnose", "navier_stokes", "--resolution", "16", *SMALL, "--data.data_root", str(tmp_path),
              "--out", str(tmp_path / "out")])


def _users_own_file(path, res):
    torch.save({"x": torch.randn(2, 1, res, res), "y": torch.randn(2, 1, res, res)}, path)


def test_files_already_there_are_left_to_the_load(tmp_path):
    for name, res in (("nsforcing_train_12.pt", 12), ("nsforcing_test_24.pt", 24)):
        _users_own_file(tmp_path / name, res)
    assert diagnose_cli._check_resolution("load_navier_stokes", 12, "--resolution", tmp_path) == 12
    (tmp_path / "nsforcing_test_24.pt").unlink()  # the load would generate the test file at 24: refused
    with pytest.raises(ValueError, match=r"^Invalid --resolution=12; allowed values for the navier_stokes data"):
        diagnose_cli._check_resolution("load_navier_stokes", 12, "--resolution", tmp_path)


def test_an_unreadable_file_there_counts_as_one_the_load_generates(tmp_path):
    """A truncated file at 24 is no file the load reads: it would generate one there (as
    loaders.ensure_files decides, one rule: generated_from_scratch), so 12 is refused by the option
    typed, not later by the generator's message."""
    _users_own_file(tmp_path / "nsforcing_train_12.pt", 12)
    _users_own_file(tmp_path / "nsforcing_test_24.pt", 24)
    data = (tmp_path / "nsforcing_test_24.pt").read_bytes()
    (tmp_path / "nsforcing_test_24.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"^Invalid --resolution=12; allowed values for the navier_stokes data"):
        diagnose_cli._check_resolution("load_navier_stokes", 12, "--resolution", tmp_path)
    assert loaders.generated_from_scratch(tmp_path, "nsforcing", [(12, "train"), (24, "test")]) == [(24, "test")]


def _multiples_of_5(res):
    if res % 5:
        raise ValueError(f"Invalid resolution={res}; allowed values: multiples of 5.")
    return res


def test_the_rule_is_the_generators_check_in_the_one_table(tmp_path, monkeypatch):
    monkeypatch.setitem(loaders.CHECK_RESOLUTION, "nsforcing", lambda res: res)  # a generator taking any size
    assert diagnose_cli._check_resolution("load_navier_stokes", 12, "--resolution", tmp_path) == 12
    monkeypatch.setitem(loaders.RESOLUTION_RULES, "nsforcing", (8, "multiples of 5"))
    monkeypatch.setitem(loaders.CHECK_RESOLUTION, "nsforcing", _multiples_of_5)
    assert diagnose_cli._check_resolution("load_navier_stokes", 10, "--resolution", tmp_path) == 10
    with pytest.raises(ValueError, match=r"^Invalid --resolution=12; allowed values for the navier_stokes data: "
                                         r"multiples of 5 \(the working"):
        diagnose_cli._check_resolution("load_navier_stokes", 12, "--resolution", tmp_path)
