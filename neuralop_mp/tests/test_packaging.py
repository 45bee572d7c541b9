"""The wheel ships every subpackage: pyproject.toml lists packages by hand (configs/ is
mapped into neuralop_mp.configs), so a new subpackage missing from the list would work
in an editable install and be absent from a plain ``pip install``."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _listed_packages():
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["tool"]["setuptools"]["packages"])


def _package_dirs():
    found = {"neuralop_mp.configs"} if (ROOT / "configs" / "__init__.py").exists() else set()
    for init in (ROOT / "neuralop_mp").rglob("__init__.py"):
        parts = init.parent.relative_to(ROOT).parts
        if "tests" not in parts:
            found.add(".".join(parts))
    return found


def test_every_subpackage_is_listed_in_pyproject():
    missing = _package_dirs() - _listed_packages()
    assert not missing, f"subpackages missing from [tool.setuptools] packages in pyproject.toml: {sorted(missing)}"


def test_pyproject_lists_no_package_that_does_not_exist():
    stale = _listed_packages() - _package_dirs()
    assert not stale, f"pyproject.toml lists packages that do not exist: {sorted(stale)}"
