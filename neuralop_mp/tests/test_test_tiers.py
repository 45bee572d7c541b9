"""The test-tier rule, checked by :mod:`neuralop_mp.tests.tier_check` (loaded by the repository's
conftest): a default-tier test that starts the package in a Python interpreter of its own fails,
naming the command; one marked ``slow`` (the end-to-end tier) and cheap helper interpreters pass.

The checked sessions run in this process (pytester's in-process runs) with the check as their
plugin; their commands name the package without importing it, so nothing heavy starts.
"""
import sys
from pathlib import Path

import pytest

from neuralop_mp.tests import tier_check

pytest_plugins = ["pytester"]

CHECKOUT = Path(__file__).resolve().parents[2]
E = sys.executable


@pytest.fixture
def plugin(request):
    """The check, as the session loaded it (the root conftest's ``pytest_plugins``)."""
    module = request.config.pluginmanager.get_plugin(tier_check.__name__)
    assert module is tier_check, "neuralop_mp.tests.tier_check is not loaded as a plugin"
    return module


@pytest.fixture
def run_checked(pytester, plugin, monkeypatch):
    """Runs a test file in a pytest session of its own (in this process) under the check."""
    monkeypatch.setenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", "1")  # xdist, hypothesis: not needed there
    pytester.makeini("[pytest]\nmarkers =\n    slow: end-to-end\n    allow_package_subprocess(why): exception\n")

    def run(source, *options):
        pytester.makepyfile(test_started=source)
        return pytester.runpytest_inprocess("-p", "no:cacheprovider", *options, plugins=[plugin])

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
    ([E, "-m", "pytest", "-q", "-k", "cuda", "-p", "no:cacheprovider"], {"cwd": CHECKOUT}),
    ([E, "-m", "pytest", "-q", "integration_tests"], {"cwd": CHECKOUT}),
])
def test_what_starts_the_package(plugin, args, kwargs):
    assert plugin.package_start(args, **kwargs)


@pytest.mark.parametrize("args", [
    [E, "-m", "pip", "download", "--no-deps", "neuralop-mp"],
    [E, "-m", "venv", "--without-pip", "/tmp/bare"],
    [E, "-c", "import sys, zencfg\nsys.path.insert(0, '/tmp/pytest-0/neuraloperator0')"],  # upstream's copied configs
    [E, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=5)", "--multiprocessing-fork"],
    ["git", "-C", "repo", "archive", "HEAD", "neuralop_mp", "configs"],
    ["bash", "/repo/benchmarks/gpu.sh", "/tmp/out", "--dry-run"],
    [E, "--version"],
    [E, "-W", "neuralop", "-c", "pass"],  # -W's value is the interpreter's, not a script naming the package
])
def test_what_does_not(plugin, args):
    assert not plugin.package_start(args)


def test_a_pytest_of_a_tiny_file_elsewhere_is_cheap(plugin, tmp_path):
    folder = tmp_path / "test_neuralop_mp_tiny0"  # a temporary folder named after its test
    folder.mkdir()
    (folder / "test_one.py").write_text("def test_one():\n    pass\n")
    assert not plugin.package_start([E, "-m", "pytest", "-q", "test_one.py"], cwd=folder)
    assert not plugin.package_start([E, "-m", "pytest", "-q", "-k", "one"], cwd=folder)
    assert not plugin.package_start([E, "-m", "pytest", "-q", str(folder / "test_one.py")],
                                           cwd=CHECKOUT)
    # bench gpu's CUDA test command pointed at one fake test (test_gpu_campaign_outputs.py)
    campaign = [E, "-m", "pytest", "-q", "-rfEs", "-k", "cuda", "-p", "no:cacheprovider"]
    tiny = {"PYTEST_ADDOPTS": str(folder / "test_one.py")}
    assert not plugin.package_start(campaign, cwd=CHECKOUT, env=tiny)
    assert plugin.package_start(campaign, cwd=CHECKOUT, env={"PYTEST_ADDOPTS": "--collect-only"})


def test_a_script_is_judged_by_its_text(plugin, tmp_path):
    driver, plain = tmp_path / "driver.py", tmp_path / "plain.py"
    driver.write_text("import sys\nfrom neuralop_mp.cli import main\nsys.exit(main(sys.argv[1:]))\n")
    plain.write_text("print('hello')\n")
    assert plugin.package_start([E, str(driver), "train"])
    assert not plugin.package_start([E, str(plain)])


# --- where files live says nothing ----------------------------------------------------------------
# CI clones into /home/runner/work/neuralop-mp/neuralop-mp: the checkout's path, the folder holding it
# and the temporary roots name the package's folder without starting it.
CI_CHECKOUT = "/home/runner/work/neuralop-mp/neuralop-mp"


@pytest.fixture(params=["this checkout", "a checkout at .../neuralop-mp/neuralop-mp"])
def checkout(request, plugin, monkeypatch):
    """The repository's path: the real one, or a simulated one whose path names the package."""
    if request.param == "this checkout":
        return str(CHECKOUT)
    monkeypatch.setattr(plugin, "_REPOSITORY", CI_CHECKOUT)
    return CI_CHECKOUT


def test_a_script_of_the_checkout_outside_the_package_is_no_start_wherever_it_lives(plugin, checkout):
    beside = str(Path(checkout).parent / "shared" / "upstream" / "run.sh")  # ../shared beside the checkout
    for args, kwargs in [
        (["bash", f"{checkout}/benchmarks/gpu.sh", "/tmp/out", "--dry-run"], {}),
        (f"bash {checkout}/benchmarks/gpu.sh /tmp/out", {"shell": True}),
        (["bash", "-c", f"cd {checkout} && bash {beside}"], {}),
        ([E, f"{checkout}/tools/not_a_file.py", "--out", beside], {}),
        (["timeout", "60", "bash", f"{checkout}/benchmarks/wheelhouse.sh"], {}),
    ]:
        assert not plugin.package_start(args, **kwargs), args


def test_the_package_is_a_start_wherever_the_checkout_lives(plugin, checkout):
    for args, kwargs in [
        ([E, f"{checkout}/neuralop_mp/cli.py", "train", "darcy"], {}),
        ([E, "-m", "neuralop_mp.cli", "train"], {"cwd": checkout}),
        ([f"{checkout}/.venv/bin/neuralop-mp", "train", "darcy"], {}),
        ([E, "-c", "import neuralop_mp"], {}),
        ([E, "-c", f"import sys; sys.path.insert(0, {checkout!r}); import neuralop_mp"], {}),
        (f"cd {checkout} && neuralop-mp bench spectral", {"shell": True}),
    ]:
        assert plugin.package_start(args, **kwargs), args


def test_a_temporary_root_naming_the_package_is_no_name(plugin, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", "/tmp/neuralop-ci")  # TMPDIR=/tmp/neuralop-ci
    script = "/tmp/neuralop-ci/pytest-of-u/pytest-3/test_it0/run.sh"
    assert not plugin.package_start(["bash", script])
    assert not plugin.package_start(f"bash {script} > /tmp/neuralop-ci/log", shell=True)
    assert plugin.package_start([E, "/tmp/neuralop-ci/copy/neuralop_mp/cli.py"])  # the package's own folder


def test_a_basetemp_naming_the_package_is_no_name(run_checked, pytester):
    result = run_checked("""
import subprocess

def test_runs_a_script_of_its_own(tmp_path):
    script = tmp_path / "run.sh"
    script.write_text("exit 0\\n")
    subprocess.run(["bash", str(script)], check=True)
""", f"--basetemp={pytester.path / 'neuralop-mp-basetemp'}")
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize("args", [
    ["timeout", "60", E, "-m", "neuralop_mp.cli", "train"],
    ["timeout", "-s", "KILL", "-k", "5", "--preserve-status", "60", "neuralop-mp", "train"],
    ["env", "OMP_NUM_THREADS=1", "-u", "CUDA_VISIBLE_DEVICES", E, "-c", "import neuralop_mp"],
    ["env", "-i", "PATH=/usr/bin", "--", "torchrun", "--nproc_per_node", "2", "x.py"],
    ["setsid", "-w", E, "-m", "neuralop_mp.cli", "bench", "spectral"],
    ["/usr/bin/timeout", "60", "env", "A=1", "bash", "-c", "neuralop-mp train darcy"],
    ["/usr/bin/time", "-f", "%e", E, "-m", "neuralop_mp.cli", "train"],
    ["stdbuf", "-o", "L", "neuralop-mp", "train"],
    ["taskset", "-c", "0", E, "-c", "import neuralop_mp"],
])
def test_a_wrapped_command_is_judged_by_what_it_wraps(plugin, args):
    assert plugin.package_start(args)


@pytest.mark.parametrize("args", [
    ["timeout", "60", "echo", "neuralop_mp"],
    ["env", "NEURALOP_MP_DATA=/tmp/d", E, "-c", "import sys"],
    ["setsid", "git", "archive", "HEAD", "neuralop_mp"],
    ["timeout", "60", E, "-m", "pip", "download", "neuralop-mp"],
])
def test_a_wrapped_cheap_command_stays_cheap(plugin, args):
    assert not plugin.package_start(args)


def test_env_gives_a_wrapped_pytest_its_options(plugin, tmp_path):
    (tmp_path / "test_one.py").write_text("def test_one():\n    pass\n")
    campaign = [E, "-m", "pytest", "-q", "-k", "cuda"]  # in the repository: collects its tests
    assert plugin.package_start(["env", "A=1", *campaign], cwd=CHECKOUT)
    tiny = f"PYTEST_ADDOPTS={tmp_path / 'test_one.py'}"
    assert not plugin.package_start(["env", tiny, *campaign], cwd=CHECKOUT)


def test_os_system_is_judged_as_a_shell_command_line(run_checked):
    result = run_checked("""
import os

def test_starts_it():
    os.system(": neuralop-mp train darcy")  # the shell's no-op: nothing starts

def test_other():
    os.system(": git status")
""")
    result.assert_outcomes(passed=1, failed=1)
    assert "test_started.py::test_starts_it started the package" in result.stdout.str()
