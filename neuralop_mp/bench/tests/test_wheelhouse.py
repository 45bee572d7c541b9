"""benchmarks/wheelhouse.sh and gpu.sh --wheelhouse: wheels for a GPU node without a package index.

Nothing here reaches a package index: downloads read a local folder of handmade wheels.
"""
import json
import subprocess
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

from neuralop_mp.bench import wheelhouse
from neuralop_mp.bench.wheelhouse import WheelhouseError, closure, installed, target_environment

ROOT = Path(__file__).resolve().parents[3]
GPU_SH = ROOT / "benchmarks" / "gpu.sh"


def make_wheel(folder, name="demo_pkg", version="1.0"):
    """A minimal pure-python wheel of the module ``name`` (``VALUE = 1``) in ``folder``."""
    info = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 1\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    path = Path(folder) / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
        archive.writestr(f"{info}/RECORD", "".join(f"{member},,\n" for member in [*files, f"{info}/RECORD"]))
    return path


def test_closure_of_this_environment_leaves_out_torch_and_pins_the_installed_versions():
    dists = installed()
    pins = closure("neuralop-mp", dists, target_environment("3.12"))
    assert not [name for name in pins if name in ("torch", "triton") or name.startswith("nvidia-")]
    # what only torch needs (sympy, networkx, jinja2 here) goes with it
    assert not {"sympy", "networkx", "jinja2", "neuralop-mp"} & set(pins)
    # what the GPU node lacks is in, each at the version installed here
    for name in ("neuraloperator", "tensorly", "tensorly-torch", "zencfg", "pydantic", "pydantic-core",
                 "annotated-types", "typing-inspection", "configmypy", "ruamel-yaml", "wandb", "opt-einsum"):
        assert pins[name] == metadata.version(name), name
    # extras (neuralop's "dev", pytest's "test") and other platforms' requirements (tqdm's colorama) are not
    assert not {"hypothesis", "black", "sphinx", "colorama"} & set(pins)


def test_closure_follows_markers_for_the_target_python_and_leaves_out_what_only_torch_needs():
    dists = {
        "app": ("1.0", ["lib>=1", "win-only; sys_platform == 'win32'", "new; python_version >= '3.12'",
                        "old; python_version < '3.12'", "docs-tool; extra == 'doc'", "torch>=2", "Shared_Name"]),
        "lib": ("1.1", ["app"]),  # back to the root: no loop
        "torch": ("2.5.0", ["only-torch", "shared-name", "nvidia-cublas-cu12; platform_system == 'Linux'"]),
        "only-torch": ("3", []), "shared-name": ("0.5", []), "new": ("2", []), "old": ("1", []),
    }
    assert closure("app", dists, target_environment("3.12")) == {"lib": "1.1", "new": "2", "shared-name": "0.5"}
    assert closure("app", dists, target_environment("3.11")) == {"lib": "1.1", "old": "1", "shared-name": "0.5"}
    # leaving out a package leaves out what only it needs
    assert closure("app", dists, target_environment("3.12"), lambda name: name in ("torch", "lib")) == \
        {"new": "2", "shared-name": "0.5"}
    dists["lib"] = ("1.1", ["ghost>=1"])
    with pytest.raises(WheelhouseError, match="lib requires ghost, which is not installed here"):
        closure("app", dists, target_environment("3.12"))


@pytest.mark.parametrize("order", [["lib[net]", "other"], ["other", "lib[net]"]])
def test_closure_follows_the_extras_a_requirement_asks_for(order):
    """``lib[net]`` brings what lib needs under its extra ``net``, and so on down (the real case:
    opentelemetry-exporter-otlp-proto-http requires opentelemetry-exporter-http-transport[requests],
    whose ``requests`` only that extra brings); extras nobody asks for stay out."""
    dists = {
        "app": ("1.0", [*order, "tool[Fast_Path]; python_version >= '3.12'"]),
        "other": ("1.0", ["lib"]),  # lib without extras as well: walked again for its extra
        "lib": ("2.0", ["transport[requests]; extra == 'net'", "docs-tool; extra == 'doc'"]),
        "transport": ("0.5", ["requests; extra == 'requests'", "urllib3; extra == 'urllib3'"]),
        "tool": ("1.0", ["speedup; extra == 'fast-path'"]),  # extra names compare normalized
        "requests": ("2.3", []), "speedup": ("1", []), "docs-tool": ("1", []), "urllib3": ("2", []),
    }
    assert closure("app", dists, target_environment("3.12")) == {
        "lib": "2.0", "other": "1.0", "requests": "2.3", "speedup": "1", "tool": "1.0", "transport": "0.5"}
    # the extra's requirement keeps its own marker: false for the target, not followed
    assert "speedup" not in closure("app", dists, target_environment("3.11"))
    dists["transport"] = ("0.5", ["ghost; extra == 'requests'"])
    with pytest.raises(WheelhouseError, match="transport requires ghost, which is not installed here"):
        closure("app", dists, target_environment("3.12"))


def test_stale_wheels_are_those_of_other_packages_or_versions(tmp_path):
    for name in ("zencfg-0.7.0-py3-none-any.whl", "ruamel.yaml-0.19.1-py3-none-any.whl",
                 "zencfg-1.0.0-py3-none-any.whl", "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl"):
        (tmp_path / name).touch()
    assert wheelhouse.stale_wheels(tmp_path, {"zencfg": "0.7.0", "ruamel-yaml": "0.19.1"}) == [
        "numpy-2.4.6-cp312-cp312-manylinux_2_28_x86_64.whl", "zencfg-1.0.0-py3-none-any.whl"]


@pytest.mark.parametrize("argv, message", [
    (["--python-version", "3"], "expected MAJOR.MINOR, such as 3.12"),
    (["--python-version", "cp312"], "expected MAJOR.MINOR, such as 3.12"),
    (["--platfrom", "any"], "unrecognized arguments: --platfrom"),
])
def test_bad_flags_fail_with_one_line(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as stop:
        wheelhouse.main([str(tmp_path), *argv])
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_skip_of_a_package_outside_the_closure_names_the_allowed_ones(tmp_path, capsys):
    assert wheelhouse.main([str(tmp_path), "--skip", "sympy"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wheelhouse: error: --skip sympy: not in neuralop-mp's dependency closure; allowed: ")
    assert "zencfg" in err and "\n" not in err


def _fake_downloads(monkeypatch, sizes=None):
    """A download that writes empty (or ``sizes[name]``-byte sparse) wheels; returns the requests."""
    asked = []

    def download(name, version, folder, python_version, platforms):
        asked.append((name, version, python_version, tuple(platforms)))
        path = Path(folder) / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        with open(path, "wb") as file:
            file.truncate((sizes or {}).get(name, 0))
        return path

    monkeypatch.setattr(wheelhouse, "download", download)
    return asked


def test_main_asks_for_the_closure_and_the_tools_for_the_target_and_warns_over_64_mib(tmp_path, monkeypatch,
                                                                                       capsys):
    asked = _fake_downloads(monkeypatch, sizes={"wandb": 40 * 2**20, "scipy": 30 * 2**20})
    assert wheelhouse.main([str(tmp_path), "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
                            "--skip", "SciPy"]) == 0
    names = {name: (version, python, platforms) for name, version, python, platforms in asked}
    assert names["zencfg"] == (metadata.version("zencfg"), "3.12", ("manylinux_2_28_x86_64",))
    assert names["pip"][0] == metadata.version("pip") and "setuptools" in names
    assert "scipy" not in names and "numpy" in names and "torch" not in names  # numpy: others need it too
    # no wheel of neuralop-mp: gpu.sh installs the checkout editable, and every wheel of DIR
    assert "neuralop-mp" not in names and len(asked) == len(set(names))
    assert sorted(wheel.name.split("-")[0] for wheel in tmp_path.glob("*.whl")) == sorted(
        name.replace("-", "_") for name in names)
    out, err = capsys.readouterr()
    assert "total 40.0 MiB" in out and "warning" not in err
    # over 64 MiB: a warning, the wheelhouse made all the same
    for wheel in tmp_path.glob("*.whl"):
        wheel.unlink()
    assert wheelhouse.main([str(tmp_path), "--python-version", "3.12"]) == 0
    out, err = capsys.readouterr()
    assert "total 70.0 MiB" in out and "wheelhouse: warning: over 64 MiB" in err


def test_main_refuses_a_folder_with_wheels_it_would_not_make(tmp_path, monkeypatch, capsys):
    asked = _fake_downloads(monkeypatch)
    (tmp_path / "zencfg-0.1.0-py3-none-any.whl").touch()
    assert wheelhouse.main([str(tmp_path)]) == 1
    assert "zencfg-0.1.0-py3-none-any.whl" in capsys.readouterr().err and not asked


def test_download_names_the_package_pip_has_no_wheel_of(tmp_path):
    index = tmp_path / "index"
    index.mkdir()
    make_wheel(index)
    offline = ["--no-index", "--find-links", str(index)]
    wheel = wheelhouse.download("demo-pkg", "1.0", tmp_path, "3.12", pip_args=offline)
    assert wheel == tmp_path / "demo_pkg-1.0-py3-none-any.whl" and wheel.is_file()
    with pytest.raises(WheelhouseError) as failed:
        wheelhouse.download("demo-pkg", "2.0", tmp_path, "3.12", pip_args=offline)
    message = str(failed.value)
    assert message.startswith("no wheel of demo-pkg==2.0 for CPython 3.12 on manylinux_2_28_x86_64, ")
    assert "demo-pkg==2.0" in message.split(": ", 1)[1] and "\n" not in message


@pytest.mark.parametrize("argv, message", [
    (["--wheelhouse"], "usage: bash benchmarks/gpu.sh OUT_DIR [--wheelhouse DIR]"),
    (["--dry-run", "--wheelhouse", "{empty}"], "--wheelhouse {empty}: no wheels there"),
])
def test_gpu_sh_wheelhouse_flag_errors(tmp_path, argv, message):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [arg.format(empty=empty) for arg in argv]
    done = subprocess.run(["bash", str(GPU_SH), str(tmp_path / "out"), *argv], capture_output=True, text=True)
    assert done.returncode == 2 and message.format(empty=empty) in done.stderr


@pytest.mark.slow
def test_gpu_sh_dry_run_with_a_wheelhouse_runs_in_a_throwaway_venv(tmp_path):
    """The whole gpu.sh --wheelhouse path on CPU (about 40 s): venv, installs, the dry-run campaign."""
    house = tmp_path / "house"
    house.mkdir()
    make_wheel(house)
    out = tmp_path / "out"
    done = subprocess.run(["bash", str(GPU_SH), str(out), "--dry-run", "--wheelhouse", str(house), "--arch", "FNO"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Successfully installed demo-pkg-1.0" in done.stdout
    assert "Successfully installed neuralop-mp-0.1.0" in done.stdout  # the checkout, editable
    assert json.loads((out / "gpu.json").read_text())["dry_run"] is True
    venv = done.stdout.split("into the venv ", 1)[1].split(" ", 1)[0]
    assert venv.startswith("/") and not Path(venv).exists()  # removed at the end
