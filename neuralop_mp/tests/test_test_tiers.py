"""The test-tier rule, checked by the repository's conftest: a default-tier test that starts the
package in a Python interpreter of its own fails, naming the command; one marked ``slow`` (the
end-to-end tier) and cheap helper interpreters pass.

The checked sessions run in this process (pytester's in-process runs) with the repository's
conftest as their plugin; their commands name the package without importing it, so nothing
heavy starts.
"""
import sys
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

ROOT_CONFTEST = Path(__file__).resolve().parents[2] / "conftest.py"
E = sys.executable


@pytest.fixture
def root_conftest(request):
    module = request.config.pluginmanager.get_plugin(str(ROOT_CONFTEST))
    assert module is not None, f"{ROOT_CONFTEST} is not loaded as a conftest"
    return module


@pytest.fixture
def run_checked(pytester, root_conftest, monkeypatch):
    """Runs a test file in a pytest session of its own (in this process) under the conftest."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist, hypothesis: not needed there
    pytester.makeini("[pytest]\nmarkers =\n    slow: end-to-end\n    allow_package_subprocess(why): exception\n")

    def run(source):
        pytester.makepyfile(test_started=source)
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", plugins=[root_conftest])

    return run


# a fake start of the package: an interpreter that names it and imports nothing
PRELUDE = """
import subprocess, sys
import pytest

PACKAGE = [sys.executable, "-c", "pass", "neuralop_mp.cli", "train"]
"""


def test_an_unmarked_test_that_starts_the_package_fails_naming_itself_the_command_and_the_tier(run_checked):
    result = run_checked(PRELUDE + """
def test_starts_it():
    subprocess.run(PACKAGE, check=True)

def test_hides_it():
    try:  # a test that swallows errors does not hide the rule: it is checked after the test
        subprocess.run(PACKAGE, check=True)
    except Exception:
        pass
""")
    result.assert_outcomes(failed=2)
    out = result.stdout.str()
    line = ("test_started.py::test_starts_it started the package in a Python interpreter of its own "
            "(python -c pass neuralop_mp.cli train): mark it @pytest.mark.slow (the end-to-end tier, "
            "pyproject.toml) or test in-process through neuralop_mp.cli.main([...])")
    assert line in out, out
    assert "test_started.py::test_hides_it started the package" in out, out
    assert "Traceback" not in out and "subprocess.py" not in out, out  # the message alone


def test_marked_slow_or_allowed_with_a_reason_it_passes(run_checked):
    result = run_checked(PRELUDE + """
@pytest.mark.slow
def test_end_to_end():
    subprocess.run(PACKAGE, check=True)

@pytest.mark.parametrize("n", [pytest.param(1, marks=pytest.mark.slow)])
def test_slow_param(n):
    subprocess.run(PACKAGE, check=True)

@pytest.mark.allow_package_subprocess("the start itself is what this checks")
def test_allowed():
    subprocess.run(PACKAGE, check=True)

@pytest.mark.allow_package_subprocess
def test_allowed_without_a_reason():
    subprocess.run(PACKAGE, check=True)
""")
    result.assert_outcomes(passed=3, failed=1)
    assert ("test_started.py::test_allowed_without_a_reason: @pytest.mark.allow_package_subprocess needs the reason"
            in result.stdout.str())


def test_cheap_helper_interpreters_and_other_programs_pass_unmarked(run_checked):
    result = run_checked(PRELUDE + """
def test_pip():
    subprocess.run([sys.executable, "-m", "pip", "--version"], check=True, capture_output=True)

def test_a_plain_interpreter_and_a_program_naming_the_package_folder(tmp_path):
    subprocess.run([sys.executable, "-c", "import sys"], check=True)
    subprocess.run(["echo", "neuralop_mp"], check=True, capture_output=True)
""")
    result.assert_outcomes(passed=2)


def test_a_fixture_that_starts_the_package_fails_the_test_at_setup(run_checked):
    result = run_checked(PRELUDE + """
@pytest.fixture
def started():
    subprocess.run(PACKAGE, check=True)

def test_uses_it(started):
    pass
""")
    result.assert_outcomes(errors=1)
    assert "test_started.py::test_uses_it started the package" in result.stdout.str()


@pytest.mark.parametrize("args, kwargs", [
    ([E, "-m", "neuralop_mp.cli", "train", "darcy"], {}),
    ([E, "-c", "from neuralop_mp.bench import report"], {}),
    ([E, "-u", "-W", "ignore", "-c", "import neuralop"], {}),  # upstream's package
    ([E, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "train_darcy.py"], {}),
    (["/venv/bin/neuralop-mp", "train", "darcy"], {}),
    (["torchrun", "--nproc_per_node", "2", "x.py"], {}),
    ([E, "-m", "pytest", "-p", "neuralop_mp_imported_first"], {}),
    (["bash", "-euo", "pipefail", "-c", "neuralop-mp train darcy --opt.n_epochs 1"], {}),
    ("neuralop-mp train darcy", {"shell": True}),
    (["x", "-c", "import neuralop_mp"], {"executable": E}),
    # bench gpu's CUDA tests: pytest collecting the repository's own tests, which import it
    ([E, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider"], {"cwd": ROOT_CONFTEST.parent}),
    ([E, "-m", "pytest", "-q", "integration_tests"], {"cwd": ROOT_CONFTEST.parent}),
])
def test_what_starts_the_package(root_conftest, args, kwargs):
    assert root_conftest.package_start(args, **kwargs)


@pytest.mark.parametrize("args", [
    [E, "-m", "pip", "download", "--no-deps", "neuralop-mp"],
    [E, "-m", "venv", "--without-pip", "/tmp/bare"],
    [E, "-c", "import sys, zencfg\nsys.path.insert(0, '/tmp/pytest-0/neuraloperator0')"],  # upstream's copied configs
    [E, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)", "--multiprocessing-fork"],
    ["git", "-C", "repo", "archive", "HEAD", "neuralop_mp", "configs"],
    ["bash", "/repo/benchmarks/gpu.sh", "/tmp/out", "--dry-run"],
    [E, "--version"],
])
def test_what_does_not(root_conftest, args):
    assert not root_conftest.package_start(args)


def test_a_pytest_of_a_tiny_file_elsewhere_is_cheap(root_conftest, tmp_path):
    folder = tmp_path / "test_neuralop_mp_tiny0"  # a temporary folder named after its test
    folder.mkdir()
    (folder / "test_one.py").write_text("def test_one():\n    pass\n")
    assert not root_conftest.package_start([E, "-m", "pytest", "-q", "test_one.py"], cwd=folder)
    assert not root_conftest.package_start([E, "-m", "pytest", "-q", "-k", "one"], cwd=folder)
    assert not root_conftest.package_start([E, "-m", "pytest", "-q", str(folder / "test_one.py")],
                                           cwd=ROOT_CONFTEST.parent)
    # bench gpu's CUDA test command pointed at one fake test (test_gpu_campaign_outputs.py)
    campaign = [E, "-m", "pytest", "-q", "-rfEs", "-k", "cuda", "-p", "no:cacheprovider"]
    tiny = {"PYTEST_ADDOPTS": str(folder / "test_one.py")}
    assert not root_conftest.package_start(campaign, cwd=ROOT_CONFTEST.parent, env=tiny)
    assert root_conftest.package_start(campaign, cwd=ROOT_CONFTEST.parent, env={"PYTEST_ADDOPTS": "--collect-only"})


def test_a_script_is_judged_by_its_text(root_conftest, tmp_path):
    driver, plain = tmp_path / "driver.py", tmp_path / "plain.py"
    driver.write_text("import sys\nfrom neuralop_mp.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    plain.write_text("print('hello')\n")
    assert root_conftest.package_start([E, str(driver), "train"])
    assert not root_conftest.package_start([E, str(plain)])
