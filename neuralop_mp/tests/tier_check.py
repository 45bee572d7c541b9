"""The test-tier rule, checked: a default-tier test that starts the package in a Python
interpreter of its own fails, naming the command (a pytest plugin; the root conftest.py loads it).

A test that starts the package in a Python interpreter of its own pays about 2.5 s of imports
(torch, neuraloperator) before it does anything: it belongs to the end-to-end tier (`slow`,
pyproject.toml), which the default tier's time would otherwise hide it in. Process starts are
recorded while a test's setup, call or teardown runs, and the phase fails after it returns (not
from inside Popen, where a test that catches exceptions would hide it). Cheap helper interpreters
(pip, venv, a zencfg-only check, a pytest of one tiny file, forked ranks) stay allowed: they do
not name the package.
Where files live says nothing: the checkout, the folder holding it and the temporary roots are
taken out of the texts matched, so `bash /home/runner/work/neuralop-mp/neuralop-mp/benchmarks/gpu.sh`
is no start of the package while `python <checkout>/neuralop_mp/cli.py` still is.
Not seen: grandchildren (a shell script's own commands) and os.exec* (it would replace pytest).
"""
import collections.abc
import functools
import os
import re
import shlex
import subprocess
import sys
import tempfile

import pytest

# neuralop_mp, its console script neuralop-mp, upstream's neuralop (not neuraloperator: the folder
# of upstream's copied scripts), neuralop_mp_... modules; not test_neuralop_... temporary folders
_PACKAGE_NAME = re.compile(r"\bneuralop(?![A-Za-z0-9])")
_LAUNCHER = re.compile(r"\btorchrun\b|\btorch\.distributed\.(?:run|launch)\b")
_LAUNCHER_PROGRAMS = {"neuralop-mp", "torchrun"}
_SHELLS = {"sh", "bash", "dash", "zsh"}
_PYTHON = re.compile(r"python(?:\d+(?:\.\d+)*)?$")
_HELPER_MODULES = {"pip", "venv", "ensurepip"}  # cheap helpers whatever their arguments name
_SCRIPT_READ_LIMIT = 1 << 20  # bytes of a started script searched for the package's name
_REPOSITORY = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # the checkout
# programs that run a command after their own options: judged by that command (`timeout 60 python
# -m neuralop_mp.cli ...`); per program, its options that take a value and its arguments before the command
_WRAPPERS = {
    "timeout": ({"-s", "--signal", "-k", "--kill-after"}, 1),
    "env": ({"-u", "--unset", "-C", "--chdir"}, 0),
    "setsid": (set(), 0),
    "nohup": (set(), 0),
    "nice": ({"-n", "--adjustment"}, 0),
    "time": ({"-f", "--format", "-o", "--output"}, 0),  # /usr/bin/time
    "stdbuf": ({"-i", "-o", "-e"}, 0),
    "taskset": (set(), 1),  # its CPU mask or list (`taskset -c 0 cmd`)
}

# one list per test phase running (nested: pytester's in-process sessions push their own)
_watching = []
# the --basetemp of each session running (pytester's in-process sessions add theirs)
_basetemps = []


def _text(arg):
    return os.fsdecode(arg) if isinstance(arg, (str, bytes, os.PathLike)) else str(arg)


def _places():
    """The folders whose paths say nothing about what a command runs: this checkout, the folder
    holding it (a ../shared beside it), the temporary root (pytest's default basetemp is under
    it, or under PYTEST_DEBUG_TEMPROOT) and each running session's --basetemp."""
    return (_REPOSITORY, os.path.dirname(_REPOSITORY), tempfile.gettempdir(),
            os.environ.get("PYTEST_DEBUG_TEMPROOT"), *_basetemps)


@functools.lru_cache(maxsize=16)
def _places_pattern(places):
    forms = set()
    for place in filter(None, places):
        for form in (os.path.abspath(place), os.path.realpath(place)):  # as given and as resolved
            if os.path.dirname(form) != form:  # never the root: it would take every path's first "/"
                forms.add(form.rstrip(os.sep))
    if not forms:
        return None
    # longest first: the checkout before the folder holding it; a whole folder name only
    # (/home/u/neuralop is not taken out of /home/u/neuralop_mp/cli.py)
    alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    return re.compile(f"(?:{alternatives})(?![\\w.@+~-])")


def _names_it(text):
    if not (_PACKAGE_NAME.search(text) or _LAUNCHER.search(text)):
        return False  # the common case, decided without the places
    places = _places_pattern(_places())
    text = places.sub("", text) if places is not None else text
    return bool(_PACKAGE_NAME.search(text) or _LAUNCHER.search(text))


def _names_package(texts):
    return any(_names_it(text) for text in texts)


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


def _unwrapped(program, args, cwd, env):
    """The command a wrapper (``timeout``, ``env``, ``setsid``, ...) runs, with the folder and
    environment it runs in: ``timeout -s KILL 60 python ...`` -> ``python ...``."""
    valued, before = _WRAPPERS[program]
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if program == "env" and not arg.startswith("-") and "=" in arg:  # NAME=VALUE
            name, _, value = arg.partition("=")
            env = {**(os.environ if env is None else env), name: value}
        elif not arg.startswith("-") or arg == "-":
            break
        i += 2 if arg in valued else 1
    return args[i + before:], cwd, env


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
        command line names the package; a wrapper (``timeout``, ``env``, ``setsid``, ``nohup``,
        ``nice``, ``time``, ``stdbuf``, ``taskset``) whose command does. False for anything else. The checkout's path, its parent folder's
        and the temporary roots' are no name: ``bash <checkout>/benchmarks/gpu.sh`` is False in
        a checkout at ``.../neuralop-mp/neuralop-mp`` too.
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
    if program in _WRAPPERS:
        wrapped, cwd, env = _unwrapped(program, argv[1:], cwd, env)
        return bool(wrapped) and package_start(wrapped, cwd=cwd, env=env)
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
    # os.system runs a shell command line without Popen
    os.system = _watch(getattr(os.system, "__wrapped__", os.system), lambda command: _record_start(command, shell=True))


_install_watchers()


def _basetemp(config):
    basetemp = getattr(config.option, "basetemp", None)  # none without the tmp_path plugin
    return os.fspath(basetemp) if basetemp else None


def pytest_configure(config):
    if _basetemp(config):
        _basetemps.append(_basetemp(config))


def pytest_unconfigure(config):
    if _basetemp(config) in _basetemps:
        _basetemps.remove(_basetemp(config))


def _shown(command, limit=160):
    argv = [command] if isinstance(command, (str, bytes, os.PathLike)) else list(command)
    words = [_text(arg) for arg in argv]
    if words and words[0] == sys.executable:
        words[0] = "python"
    line = " ".join(shlex.quote(" ".join(word.split())) for word in words)
    return line if len(line) <= limit else line[:limit - 3] + "..."


def tier_message(nodeid, commands):
    """The one line a default-tier test that started the package fails with."""
    shown = "; ".join(dict.fromkeys(_shown(command) for command in commands))  # a command started twice: once
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
