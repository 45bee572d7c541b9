"""Wheels for a GPU node without a package index: what neuralop-mp needs, less torch.

``bash benchmarks/wheelhouse.sh DIR [--python-version 3.12] [--platform TAG ...] [--skip NAME ...]``
on a machine with a package index writes into ``DIR``:

- a wheel of every package of neuralop-mp's runtime dependency closure, read from this
  environment's installed metadata (:func:`closure`), each pinned to the version installed
  here, downloaded for the node's CPython and platform (``pip download --no-deps
  --only-binary=:all:``): all but torch and its CUDA stack (torch, triton, ``nvidia-*`` and
  what only they need), which the node has;
- pip and setuptools, so that ``bash benchmarks/gpu.sh OUT --wheelhouse DIR`` installs on a
  node whose Python has no pip or ``ensurepip`` and installs the checkout editable offline.

No wheel of neuralop-mp itself: gpu.sh runs in the checkout and installs it editable (the
CUDA tests import ``neuralop_mp.configs``, which only the editable install maps to configs/).

``--skip NAME`` leaves out a package the node already has, and what only it needs (the
whole closure is about 117 MiB for CPython 3.12, docs/benchmarks.md; scipy, wandb and numpy the most of it).
"""
import argparse
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from ..run_setup import RunSetupError, check_writable

PROJECT = "neuralop-mp"
# the usual manylinux tags, newest first; pure-python wheels ("any") always fit
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "any"]
TOOLS = ["pip", "setuptools"]  # gpu.sh installs with them (see the module docstring)
WARN_BYTES = 64 * 2**20  # the most a lent GPU machine takes along with a working tree


class WheelhouseError(RuntimeError):
    """A wheelhouse cannot be made; the message names the package or folder and why."""


def normalize(name):
    """A distribution name as indexes compare them (PEP 503): ``ruamel.yaml`` -> ``ruamel-yaml``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_torch_stack(name):
    """torch and the CUDA stack its wheels bring (the node's own torch build has them)."""
    name = normalize(name)
    return name in ("torch", "triton") or name.startswith("nvidia-")


def installed():
    """This environment's distributions: ``{normalized name: (version, Requires-Dist lines)}``."""
    found = {}
    for dist in metadata.distributions():
        if not dist.metadata["Name"]:  # a broken install's leftover folder
            continue
        found.setdefault(normalize(dist.metadata["Name"]), (dist.version, dist.requires or []))
    return found


def target_environment(python_version, platforms=PLATFORMS):
    """Marker values (PEP 508) of CPython ``python_version`` ("3.12") on Linux, for the machine of ``platforms``."""
    env = default_environment()
    same = python_version == ".".join(platform.python_version_tuple()[:2])
    env.update(python_version=python_version,
               python_full_version=platform.python_version() if same else python_version + ".0",
               implementation_name="cpython", platform_python_implementation="CPython",
               sys_platform="linux", platform_system="Linux", os_name="posix",
               platform_machine="aarch64" if any("aarch64" in p for p in platforms) else "x86_64")
    return env


def closure(root, dists, env, leave_out=is_torch_stack):
    """Every distribution ``root`` needs at run time, with its installed version.

    Requirements are followed with the extras they ask for: ``lib[x]`` brings what ``lib``
    needs under its extra ``x`` too (``root`` itself is taken without extras).

    Parameters
    ----------
    root : str
        The distribution to start from (not in the result).
    dists : dict
        ``{normalized name: (version, Requires-Dist lines)}``, as :func:`installed` returns.
    env : dict
        Marker values of the target (:func:`target_environment`); requirements whose marker
        is false there, for every extra asked of the distribution (and for none), are not followed.
    leave_out : callable
        Names neither listed nor followed: what only they need is left out too.

    Returns
    -------
    dict
        ``{normalized name: version}``, sorted by name.

    Raises
    ------
    WheelhouseError
        When a needed distribution is not installed here.
    """
    root = normalize(root)
    if root not in dists:
        raise WheelhouseError(f"{root} is not installed here: install it with its dependencies first")
    # (name, extras asked of it): a distribution asked again with other extras is walked again
    start = (root, frozenset())
    found, seen, todo = {}, {start}, [start]
    while todo:
        name, extras = todo.pop()
        # a marker may name an extra ("; extra == 'x'"): it holds for one asked, or for none asked
        environments = [dict(env, extra=extra) for extra in ("", *sorted(extras))]
        for line in dists[name][1]:
            requirement = Requirement(line)
            if requirement.marker and not any(requirement.marker.evaluate(e) for e in environments):
                continue
            needed = normalize(requirement.name)
            if leave_out(needed):
                continue
            if needed not in dists:
                raise WheelhouseError(f"{name} requires {requirement.name}, which is not installed here: "
                                      f"install {PROJECT} with its dependencies first")
            asked = (needed, frozenset(normalize(extra) for extra in requirement.extras))
            if asked in seen:
                continue
            seen.add(asked)
            if needed != root:
                found[needed] = dists[needed][0]
            todo.append(asked)
    return dict(sorted(found.items()))


def download(name, version, folder, python_version, platforms=PLATFORMS, pip_args=()):
    """``pip download`` the wheel of ``name==version`` for CPython ``python_version`` into ``folder``.

    ``pip_args``: more pip options (e.g. ``--no-index --find-links X``). Returns the wheel's path;
    raises :class:`WheelhouseError` naming the package and pip's reason when there is none.
    """
    with tempfile.TemporaryDirectory() as tmp:  # the one wheel pip saves, whatever its file name
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--python-version", python_version, "--implementation", "cp",
                   *(f"--platform={tag}" for tag in platforms), "--dest", tmp, *pip_args, f"{name}=={version}"]
        done = subprocess.run(command, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode or len(wheels) != 1:
            errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR:")]
            reason = errors[0][len("ERROR:"):].strip() if errors else f"pip exited {done.returncode}"
            raise WheelhouseError(f"no wheel of {name}=={version} for CPython {python_version} on "
                                  f"{', '.join(platforms)}: {reason}")
        return Path(shutil.move(wheels[0], Path(folder) / wheels[0].name))


def stale_wheels(folder, pins):
    """Wheels in ``folder`` that are none of ``pins`` ({name: version}): gpu.sh installs every wheel there."""
    wanted = {(normalize(name), version) for name, version in pins.items()}
    return sorted(path.name for path in Path(folder).glob("*.whl")
                  if (normalize(path.name.split("-")[0]), path.name.split("-")[1]) not in wanted)


def _python_version(text):
    if not re.fullmatch(r"3\.\d{1,2}", text):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected MAJOR.MINOR, such as 3.12")
    return text


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="bash benchmarks/wheelhouse.sh", description=__doc__.split("\n")[0],
                                     allow_abbrev=False)
    parser.add_argument("dir", metavar="DIR", help="the folder to write the wheels into (made if missing)")
    parser.add_argument("--python-version", type=_python_version, default="{}.{}".format(*sys.version_info[:2]),
                        help="the node's Python, MAJOR.MINOR (default: this one's)")
    parser.add_argument("--platform", action="append", metavar="TAG",
                        help=f"a platform tag the node takes (repeat; default: {' '.join(PLATFORMS)})")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME",
                        help="leave out this package (the node has it) and what only it needs (repeat)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    platforms = args.platform or PLATFORMS
    skip = {normalize(name) for name in args.skip}
    try:
        folder = check_writable(args.dir, "DIR", what="Wheelhouse folder")
        dists = installed()
        env = target_environment(args.python_version, platforms)
        whole = closure(PROJECT, dists, env)
        unknown = sorted(skip - set(whole) - set(TOOLS))
        if unknown:
            raise WheelhouseError(f"--skip {', '.join(unknown)}: not in {PROJECT}'s dependency closure; allowed: "
                                  f"{', '.join([*whole, *TOOLS])}")
        pins = closure(PROJECT, dists, env, lambda name: is_torch_stack(name) or name in skip)
        pins.update({tool: dists[tool][0] for tool in TOOLS if tool in dists and tool not in skip})
        stale = stale_wheels(folder, pins)
        if stale:
            raise WheelhouseError(f"{folder} holds wheels of other packages or versions ({', '.join(stale)}); "
                                  "gpu.sh installs every wheel there: remove them or choose another DIR")
        print(f"{len(pins)} wheels for CPython {args.python_version} ({', '.join(platforms)}) into {folder}")
        made = [download(name, version, folder, args.python_version, platforms) for name, version in pins.items()]
    except (WheelhouseError, RunSetupError) as error:
        print(f"wheelhouse: error: {error}", file=sys.stderr)
        return 1
    total = sum(path.stat().st_size for path in made)
    for path in sorted(made):
        print(f"{path.stat().st_size / 2**20:8.2f} MiB  {path.name}")
    print(f"total {total / 2**20:.1f} MiB in {len(made)} wheels")
    if total > WARN_BYTES:
        print(f"wheelhouse: warning: over {WARN_BYTES // 2**20} MiB; --skip NAME leaves out a package the node "
              "already has (numpy, scipy, matplotlib, ...) and what only it needs", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
