"""``neuralop-mp run`` of upstream's real train_darcy.py under zencfg 1.0 names the cause.

neuraloperator 2.0.0's configs fail to load under zencfg 1.0 (``ModelConfig.arch`` has no
default: "1 validation error for FNO_Small2d / arch / Field required"). The run printed that
traceback and a summary saying only that the script "ended with exit status 1 before it built a
model"; its summary now ends with the cause and the fix, the script's traceback kept.

As integration_tests/test_zencfg_versions.py does, the run happens in a subprocess with the
copy of zencfg 1.0.0 that ``bash dev.sh setup`` puts in ``.venv/zencfg-1.0.0`` first on
``PYTHONPATH``; the script is upstream's, unmodified, run from a copy of its ``scripts/``
with tiny sizes and generated data, as integration_tests/test_run_scripts.py runs it.
"""
import json
import os
import subprocess
import sys

import pytest

from .conftest import REPO_ROOT
from .test_run_scripts import TINY_DARCY
from .test_zencfg_versions import ZENCFG_1_DIR, zencfg_1  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow  # every test starts Python interpreters of its own: the end-to-end tier (pyproject.toml)

HINT = ("neuraloperator 2.0.0's configs need zencfg<1.0 (installed: 1.0.0, which requires their field "
        "FNO_Small2d.arch: it has no default): pip install 'zencfg>=0.7,<1.0'")


def test_upstream_darcy_under_zencfg_1_ends_with_the_cause_and_the_fix(zencfg_1, upstream_scripts, darcy_root,
                                                                        tmp_path):
    report = tmp_path / "report.json"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ZENCFG_1_DIR), str(REPO_ROOT),
                                                       os.environ.get("PYTHONPATH", "")]))
    command = [sys.executable, "-m", "neuralop_mp.cli", "run", "train_darcy.py", "--mp.precision", "mixed",
               "--mp.data-root", str(darcy_root), "--mp.report", str(report), "--", "--opt.n_epochs", "1",
               *TINY_DARCY]
    done = subprocess.run(command, cwd=upstream_scripts, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    # the script's own traceback is kept
    assert "1 validation error for FNO_Small2d" in done.stderr and "Field required" in done.stderr
    summary = done.stdout[done.stdout.index("neuralop-mp summary"):].splitlines()
    warnings = [line for line in summary if line.startswith("WARNING: ")]
    assert warnings[0].startswith("WARNING: the script ended with exit status 1 before it built a model")
    assert warnings[-1] == f"WARNING: {HINT}"
    assert HINT in json.loads(report.read_text())["notes"]
