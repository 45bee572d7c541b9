"""The benchmarks from a plain (non-editable) install: no checkout around the package.

After ``pip install CHECKOUT`` the package's parent folder is site-packages: it has no
docs/ for ``--update-docs`` or ``bench gpu --apply`` to rewrite (they created a stray
``site-packages/docs/benchmarks.md``), and no tests for the GPU campaign to run (pyproject.toml
ships no ``tests`` package: pytest found none, exit 5, counted as a failing campaign).

The installed package is faked: the packages pyproject.toml lists, copied into a temporary
``site-packages`` as a wheel lays them out (``configs/`` as ``neuralop_mp/configs``), and the
real commands run from there in a subprocess, that copy first on ``PYTHONPATH``.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from neuralop_mp.bench import report

REPO_ROOT = Path(__file__).resolve().parents[3]


def _wheel_layout(site):
    """Copy what a wheel of the checkout holds into ``site``: each listed package's own .py files."""
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    setup = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    for package in setup["packages"]:
        source = REPO_ROOT / setup["package-dir"].get(package, package.replace(".", "/"))
        target = site.joinpath(*package.split("."))
        target.mkdir(parents=True)
        for module in source.glob("*.py"):
            shutil.copy2(module, target / module.name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """``run(code)``: run ``code`` in a fresh interpreter whose ``neuralop_mp`` is the installed copy."""
    root = tmp_path_factory.mktemp("installed")
    site = root / "site-packages"
    _wheel_layout(site)
    work = root / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]))

    def run(code):
        prelude = ("import neuralop_mp, pathlib, sys\n"
                   f"assert pathlib.Path(neuralop_mp.__file__).parent == pathlib.Path({str(site / 'neuralop_mp')!r}), "
                   "neuralop_mp.__file__\n")
        return subprocess.run([sys.executable, "-c", prelude + code], cwd=work, env=env, capture_output=True,
                              text=True, timeout=600)

    run.site, run.work = site, work
    return run


def test_the_checkout_is_told_from_an_installed_package(tmp_path):
    assert report.checkout_root() == REPO_ROOT
    assert report.checkout_root(tmp_path) is None  # site-packages: no pyproject.toml
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "another-project"\n')
    assert report.checkout_root(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "neuralop-mp"\n')
    assert report.checkout_root(tmp_path) == tmp_path
    # in the checkout the flag parses as before
    parser = report.add_output_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["--update-docs"]).update_docs is True and parser.parse_args([]).update_docs is False


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_update_docs_is_refused_before_measuring_without_a_checkout(installed):
    out = installed.work / "results"
    done = installed("from neuralop_mp import cli\n"
                     f"sys.exit(cli.main(['bench', 'spectral', '--quick', '--threads', '1', '--update-docs', "
                     f"'--out', {str(out)!r}]))\n")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    [line] = [line for line in done.stderr.splitlines() if "error:" in line]  # one line, no traceback
    assert "--update-docs" in line and "installed package" in line and str(installed.site / "neuralop_mp") in line
    assert "Traceback" not in done.stderr
    assert not out.exists()  # refused before the benchmark ran
    assert not (installed.site / "docs").exists()


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_applying_a_gpu_table_is_refused_without_a_checkout(installed):
    campaign = installed.work / "from-the-gpu"
    campaign.mkdir()
    (campaign / "gpu.md").write_text("## GPU campaign\n\nnew table\n")
    (campaign / "gpu.json").write_text(json.dumps({"tiny": False}))
    done = installed(f"from neuralop_mp import cli\nsys.exit(cli.main(['bench', 'gpu', '--apply', {str(campaign)!r}]))\n")
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "--apply" in done.stderr and "installed package" in done.stderr and "Traceback" not in done.stderr
    assert not (installed.site / "docs").exists()


@pytest.mark.slow  # starts Python interpreters of its own: the end-to-end tier (pyproject.toml)
def test_the_gpu_campaigns_cuda_tests_are_skipped_not_failed_without_a_checkout(installed):
    done = installed("import json\nfrom neuralop_mp.bench import gpu\n"
                     "result, failures = gpu.run_cuda_tests(dry_run=False)\n"
                     "print(json.dumps([result, failures, gpu.unexpected_failures([], result)]))\n")
    assert done.returncode == 0, done.stderr[-2000:]
    result, failures, unexpected = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == "skipped (installed package: the tests are not shipped; run from a checkout)"
    assert failures == [] and unexpected == []

