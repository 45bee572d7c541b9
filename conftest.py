"""Repository-wide pytest setup: never write into the user's home or the working directory; the test-tier
rule checked (a default-tier test that starts the package in an interpreter of its own fails)."""
import collections.abc
import functools
import gc
import os
import re
import shlex
import signal
import subprocess
import sys

import pytest
import torch

# A shell without job control starts a background command (`bash .ci/run &`) with SIGINT ignored,
# and Python keeps it ignored: the Ctrl-C tests (in-process, and the processes they start, which
# inherit it) would then see no Ctrl-C at all. The suite runs with SIGINT's own handling.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_finish(session):
    """Take what collection made (torch, neuraloperator, every test module and item, alive for
    the whole session) out of the garbage collector's sweeps.

    A full collection walks every tracked object: the GPU campaign's ``gc.collect()`` before each
    row took 0.19 s a call in a session of its test file alone (cProfile, 29 calls of one dry run),
    and test_bench_cli.py (its allocator case left out) ran in 52 s with this instead of 74 s.
    Objects made after this point are collected as before.
    """
    gc.collect()
    gc.freeze()


@pytest.fixture(scope="session", autouse=True)
def _isolated_data_root(tmp_path_factory):
    # Generated datasets go to a per-session temporary folder unless the caller chose one; under
    # pytest-xdist, a chosen one gets a subfolder per worker: two workers generating one file
    # with different settings would otherwise meet in the same folder.
    if "NEURALOP_MP_DATA" not in os.environ:
        os.environ["NEURALOP_MP_DATA"] = str(tmp_path_factory.mktemp("neuralop_mp_data"))
    elif os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ["NEURALOP_MP_DATA"] = os.path.join(os.environ["NEURALOP_MP_DATA"], os.environ["PYTEST_XDIST_WORKER"])
    yield


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Every test runs on tiny tensors: one intra-op thread.

    A second thread gains nothing at these sizes, and when the 2-core runner is busy
    the two OpenMP threads spin-wait on each other (tiny FFTs and training steps were
    measured 10-1000x slower that way).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class _FakeGlibc:
    """Takes mallopt calls without changing malloc: in-process tests see the allocator code run
    as on glibc while the test session's own malloc stays as it is."""

    calls = []

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return 1


@pytest.fixture(autouse=True)
def _cpu_allocator_untouched(monkeypatch):
    """`train` and `bench spectral` keep freed memory by default, for the whole process; the tests
    call them in-process, so the setting is faked there (tests/test_cpu_allocator.py checks the
    real one in fresh interpreters)."""
    from neuralop_mp import cpu_allocator

    monkeypatch.setattr(cpu_allocator, "_glibc", lambda: _FakeGlibc())
    monkeypatch.setattr(cpu_allocator, "_state", {"mode": "system", "detail": "malloc as the system configures it"})
    yield


# --- The test-tier rule, checked ---------------------------------------------------------------
# A test that starts the package in a Python interpreter of its own pays about 2.5 s of imports
# (torch, neuraloperator) before it does anything: it belongs to the end-to-end tier (`slow`,
# pyproject.toml), which the default tier's time would otherwise hide it in. Process starts are
# recorded while a test's setup, call or teardown runs, and the phase fails after it returns (not
# from inside Popen, where a test that catches exceptions would hide it). Cheap helper interpreters
# (pip, venv, a zencfg-only check, a pytest of one tiny file, forked ranks) stay allowed: they do
# not name the package.
# Not seen: grandchildren (a shell script's own commands) and os.exec* (it would replace pytest).

# neuralop_mp, its console script neuralop-mp, upstream's neuralop (not neuraloperator: the folder
# of upstream's copied scripts), neuralop_mp_... modules; not test_neuralop_... temporary folders
_PACKAGE_NAME = re.compile(r"\bneuralop(?![A-Za-z0-9])")
_LAUNCHER = re.compile(r"\btorchrun\b|\btorch\.distributed\.(?:run|launch)\b")
_LAUNCHER_PROGRAMS = {"neuralop-mp", "torchrun"}
_SHELLS = {"sh", "bash", "dash", "zsh"}
_PYTHON = re.compile(r"python(?:\d+(?:\.\d+)*)?$")
_HELPER_MODULES = {"pip", "venv", "ensurepip"}  # cheap helpers whatever their arguments name
_SCRIPT_READ_LIMIT = 1 << 20  # bytes of a started script searched for the package's name
_REPOSITORY = os.path.dirname(os.path.realpath(__file__))

# one list per test phase running (nested: pytester's in-process sessions push their own)
_watching = []


def _text(arg):
    return os.fsdecode(arg) if isinstance(arg, (str, bytes, os.PathLike)) else str(arg)


def _names_package(texts):
    return any(_PACKAGE_NAME.search(text) or _LAUNCHER.search(text) for text in texts)


def _script_names_package(path):
    try:
        with open(path, "rb") as file:
            return _names_package([file.read(_SCRIPT_READ_LIMIT).decode("utf-8", "replace")])
    except OSError:  # not a file (yet): its path alone decides
        return False


def _collects_repository_tests(args, cwd, env):
    # pytest collects the paths among its arguments (PYTEST_ADDOPTS's too), else its folder: the
    # repository's own tests import the package (a pytest of one tiny file elsewhere does not)
    base = _text(cwd) if cwd is not None else os.getcwd()
    try:
        args = [*args, *shlex.split((os.environ if env is None else env).get("PYTEST_ADDOPTS", ""))]
    except (AttributeError, TypeError, ValueError):  # an environment or options pytest would refuse
        pass
    paths = [os.path.join(base, arg) for arg in args if not arg.startswith("-")]
    paths = [path for path in paths if os.path.exists(path)] or [base]  # -k cuda: no path
    return any(os.path.commonpath([os.path.realpath(path), _REPOSITORY]) == _REPOSITORY for path in paths)


def package_start(args, executable=None, shell=False, cwd=None, env=None):
    """Whether a process started with these ``subprocess.Popen`` arguments runs the package
    (or upstream's neuralop, or torchrun) in a Python interpreter of its own.

    Parameters
    ----------
    args : str, bytes, os.PathLike or sequence of them
        The command, as ``Popen`` takes it.
    executable : str, optional
        ``Popen``'s ``executable``: the program run instead of ``args[0]``.
    shell : bool
        ``Popen``'s ``shell``: ``args`` is a shell command line.
    cwd : str or os.PathLike, optional
        ``Popen``'s ``cwd``: where a started pytest collects when given no path.
    env : mapping, optional
        ``Popen``'s ``env`` (None: this process's): a started pytest's ``PYTEST_ADDOPTS``.

    Returns
    -------
    bool
        True for ``neuralop-mp`` and ``torchrun``; a Python interpreter whose ``-m`` module,
        ``-c`` code, script (path or text) or arguments name the package (``-m pip``/``venv``
        never do), or a ``-m pytest`` that collects this repository's tests; a shell whose
        command line names the package. False for anything else.
    """
    if isinstance(args, (str, bytes, os.PathLike)):
        argv = [_text(args)]
    elif isinstance(args, collections.abc.Sequence):  # an iterator is left alone: reading it would use it up
        argv = [_text(arg) for arg in args]
    else:
        return False
    if not argv:
        return False
    if shell:
        return _names_package(argv)
    program = os.path.basename(_text(executable) if executable is not None else argv[0])
    if program in _LAUNCHER_PROGRAMS:
        return True
    if program in _SHELLS:
        return _names_package(argv[1:])
    if not _PYTHON.match(program):
        return False
    i = 1
    while i < len(argv):  # the interpreter's own options, up to what it runs
        arg = argv[i]
        if arg[:2] in ("-m", "-c"):
            target = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            rest = argv[i + (1 if arg[2:] else 2):]
            module = target.split(".")[0] if arg[:2] == "-m" else None
            if module in _HELPER_MODULES:
                return False
            if module == "pytest" and _collects_repository_tests(rest, cwd, env):
                return True
            return _names_package([target, *rest])
        if arg in ("-W", "-X"):
            i += 2
        elif arg.startswith("-") and arg != "-":
            i += 1
        else:  # a script: its path, its arguments or its text
            return _names_package(argv[i:]) or _script_names_package(arg)
    return False  # an interactive or stdin interpreter


def _record_start(args, executable=None, shell=False, cwd=None, env=None):
    if _watching and package_start(args, executable, shell, cwd, env):
        _watching[-1].append(args if isinstance(args, (str, bytes, os.PathLike)) else list(args))  # as started


def _watch(original, record):
    @functools.wraps(original)
    def watched(*args, **kwargs):
        if _watching:  # outside a test phase: nothing but the call
            record(*args, **kwargs)
        return original(*args, **kwargs)

    return watched


def _install_watchers():
    # wraps the original even when this module is imported again: one record per start
    def popen_init(self, args, *rest, **kwargs):
        _record_start(args, kwargs.get("executable", rest[1] if len(rest) > 1 else None),
                      kwargs.get("shell", rest[7] if len(rest) > 7 else False),
                      kwargs.get("cwd", rest[8] if len(rest) > 8 else None),
                      kwargs.get("env", rest[9] if len(rest) > 9 else None))

    init = subprocess.Popen.__init__
    subprocess.Popen.__init__ = _watch(getattr(init, "__wrapped__", init), popen_init)
    for name in ("posix_spawn", "posix_spawnp"):  # subprocess uses posix_spawn in some cases
        spawn = getattr(os, name, None)
        if spawn is not None:
            setattr(os, name, _watch(getattr(spawn, "__wrapped__", spawn),
                                     lambda path, argv, env, *rest, **kwargs: _record_start(argv, path, env=env)))


_install_watchers()


def _shown(command, limit=160):
    argv = [command] if isinstance(command, (str, bytes, os.PathLike)) else list(command)
    words = [_text(arg) for arg in argv]
    if words and words[0] == sys.executable:
        words[0] = "python"
    line = " ".join(shlex.quote(" ".join(word.split())) for word in words)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def tier_message(nodeid, commands):
    """The one line a default-tier test that started the package fails with."""
    shown = "; ".join(dict.fromkeys(_shown(command) for command in commands))  # posix_spawn: once
    return (f"{nodeid} started the package in a Python interpreter of its own ({shown}): mark it "
            "@pytest.mark.slow (the end-to-end tier, pyproject.toml) or test in-process through "
            "neuralop_mp.cli.main([...]); a justified exception: @pytest.mark.allow_package_subprocess(\"why\")")


def _watched_phase(item):
    started = []
    _watching.append(started)
    try:
        result = yield
    finally:
        _watching.pop()
    if started and item.get_closest_marker("slow") is None:
        allowed = item.get_closest_marker("allow_package_subprocess")
        if allowed is None:
            pytest.fail(tier_message(item.nodeid, started), pytrace=False)
        if not (allowed.args and str(allowed.args[0]).strip()):
            pytest.fail(f"{item.nodeid}: @pytest.mark.allow_package_subprocess needs the reason, "
                        "e.g. @pytest.mark.allow_package_subprocess(\"why\")", pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item):
    return (yield from _watched_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    return (yield from _watched_phase(item))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    return (yield from _watched_phase(item))
