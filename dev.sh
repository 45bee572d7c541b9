#!/usr/bin/env bash
# One entry point for a fresh machine (see README.md):
#   bash dev.sh quickstart [extra train flags]  set up, then train an FNO on built-in Darcy data in mixed precision
#   bash dev.sh test [pytest args]              set up, then run the test suite except its slow end-to-end tier, on every CPU
#   bash dev.sh test --slow | --all [pytest args]   only the slow tier | everything (CI runs both tiers)
#   bash dev.sh setup                           only set up
# Setup creates .venv/, installs the CPU build of torch first when none is present (a bare
# `pip install torch` would pull the multi-GB CUDA build), then this package with its test extra.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
# Elsewhere, point this at PyTorch's CPU wheel index: TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX=${TORCH_INDEX:-}
ZENCFG_ALT=zencfg==1.0.0
ZENCFG_ALT_DIR=zencfg-1.0.0

setup() {
  if [ ! -x "$VENV/bin/python" ]; then
    # the only long silent step (pip runs quietly): say how long it takes before it starts
    echo "[dev.sh] first setup: creating virtual environment $VENV, then torch (CPU, about 200 MB) and this package; about 1-3 minutes"
    "$PYTHON" -m venv "$VENV"
  fi
  local pip=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)
  if ! "$VENV/bin/python" -c "import torch" >/dev/null 2>&1; then
    echo "[dev.sh] installing CPU torch ($TORCH_SPEC; about a minute)"
    if [ -n "$TORCH_INDEX" ]; then
      "${pip[@]}" --index-url "$TORCH_INDEX" "$TORCH_SPEC"
    else
      "${pip[@]}" "$TORCH_SPEC"
    fi
  fi
  if ! "$VENV/bin/python" -c "import neuralop_mp, pytest, xdist" >/dev/null 2>&1 \
     || [ pyproject.toml -nt "$VENV/.neuralop_mp_installed" ]; then
    echo "[dev.sh] installing neuralop-mp and its dependencies"
    "${pip[@]}" -e ".[test]"
    touch "$VENV/.neuralop_mp_installed"
  fi
  # The plugin requires zencfg 0.7 (what neuraloperator 2.0.0's configs need); a copy of
  # zencfg 1.0 beside it lets the tests check our configs under 1.0 as well.
  if [ ! -f "$VENV/$ZENCFG_ALT_DIR/zencfg/__init__.py" ]; then
    echo "[dev.sh] installing $ZENCFG_ALT into $VENV/$ZENCFG_ALT_DIR (for the zencfg 1.0 tests)"
    "${pip[@]}" --no-deps --target "$VENV/$ZENCFG_ALT_DIR" "$ZENCFG_ALT"
  fi
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  setup) setup ;;
  quickstart)
    setup
    exec "$VENV/bin/neuralop-mp" train darcy --model.fno_block_precision mixed "$@" ;;
  test)
    # Tests marked `slow` form the end-to-end tier: those that start the package (or neuraloperator)
    # in a Python interpreter of their own (the command as a shell runs it, signals, closed pipes,
    # fresh imports, older code, torchrun; each pays about 2.5 s of imports before it does
    # anything; cheap helper interpreters such as pip, venv or a zencfg-only check stay in the
    # default tier), multi-seed training comparisons, upstream's own tests, the docs' shell examples. The
    # check in neuralop_mp/tests/tier_check.py (loaded by the root conftest.py) enforces the first part: a default-tier test that starts the package (or torchrun)
    # fails, naming the command (an exception needs @pytest.mark.allow_package_subprocess("why")).
    # The default tier is spread over one worker per CPU (pytest-xdist; `-n 0` after it runs it in
    # this one process); the end-to-end tier runs in one process: its tests time processes,
    # signals and ranks, which workers beside them would skew.
    tier=(-m "not slow" -n auto)
    case "${1:-}" in
      --slow) tier=(-m slow); shift ;;
      --all) tier=(); shift ;;
    esac
    setup
    # pytest exits non-zero on any failure and with 5 when it collected no test.
    exec "$VENV/bin/python" -m pytest -q ${tier[@]+"${tier[@]}"} "$@" ;;
  *)
    echo "usage: bash dev.sh {quickstart|test|setup} [args...]" >&2
    exit 2 ;;
esac
