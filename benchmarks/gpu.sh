#!/usr/bin/env bash
# The GPU campaign in one call, on a CUDA machine (about 2 minutes on an H200, at most 8):
#   bash benchmarks/gpu.sh OUT_DIR [--update-docs]
# (on a lent machine whose files do not come back but OUT_DIR: run it without --update-docs,
#  then here: neuralop-mp bench gpu --apply OUT_DIR)
# runs the CUDA tests and the spectral + optimizer GPU rows (FNO/TFNO 2D at 256-1024^2),
# and writes gpu.md, gpu.json and gpu_memory.png into OUT_DIR (and, as it goes, gpu_cuda_tests.txt:
# the tests' whole output, and gpu_rows.jsonl: each row once measured, kept if the run is killed).
# On a machine without CUDA,
#   bash benchmarks/gpu.sh OUT_DIR --dry-run
# walks every variant at a tiny size on CPU (what CI checks).
# On a node without a package index (its Python has a CUDA torch but not neuraloperator, zencfg,
# wandb, ...), with DIR from `bash benchmarks/wheelhouse.sh DIR --python-version X.Y` made online:
#   bash benchmarks/gpu.sh OUT_DIR --wheelhouse DIR [other flags]
# runs the campaign in a throw-away venv that sees the node's packages (its torch), with DIR's
# wheels installed over them and this checkout installed editable (the CUDA tests import
# neuralop_mp.configs, which only the editable install maps to configs/). Without --wheelhouse,
# a Python that cannot import neuraloperator, zencfg or tensorly is refused up front (exit 2).
# The campaign's 8 minutes count from this script's start (NEURALOP_MP_GPU_START, epoch seconds;
# one set by the caller is kept): the venv, installs and imports come out of its time budget.
set -euo pipefail
cd "$(dirname "$0")/.."
usage="usage: bash benchmarks/gpu.sh OUT_DIR [--wheelhouse DIR] [--dry-run] [--update-docs] [other flags of neuralop-mp bench gpu]"
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "$usage" >&2
  exit 2
fi
out=$1
shift
export NEURALOP_MP_GPU_START=${NEURALOP_MP_GPU_START:-$(date +%s)}
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
wheelhouse=
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --wheelhouse) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; wheelhouse=$2; shift 2 ;;
    --wheelhouse=*) wheelhouse=${1#*=}; shift ;;
    *) args+=("$1"); shift ;;
  esac
done
if [ -n "$wheelhouse" ]; then
  wheels=()
  pip_wheel=
  for wheel in "$wheelhouse"/*.whl; do
    [ -f "$wheel" ] || continue
    case ${wheel##*/} in
      pip-*) pip_wheel=$wheel ;;
    esac
    wheels+=("$wheel")
  done
  if [ ${#wheels[@]} -eq 0 ]; then
    echo "gpu.sh: error: --wheelhouse $wheelhouse: no wheels there" \
      "(make them online: bash benchmarks/wheelhouse.sh DIR)" >&2
    exit 2
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  venv=$tmp/venv
  echo "gpu.sh: installing $wheelhouse into the venv $venv (on $PYTHON's packages)"
  # --without-pip: no ensurepip needed (Debian's python3 lacks it without python3-venv)
  "$PYTHON" -m venv --without-pip --system-site-packages "$venv"
  # the node's packages stay visible, after the venv's own, even where $PYTHON is itself a
  # venv or has a user site (--system-site-packages sees neither)
  "$PYTHON" -c 'import sys; print("\n".join(p for p in sys.path[1:] if p))' \
    > "$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')/node_packages.pth"
  pip=("$venv/bin/python" -m pip)
  [ -z "$pip_wheel" ] || pip=("$venv/bin/python" "$pip_wheel/pip")  # pip runs from its own wheel
  "${pip[@]}" install --disable-pip-version-check --no-index --find-links "$wheelhouse" "${wheels[@]}"
  "${pip[@]}" install --disable-pip-version-check --no-index --find-links "$wheelhouse" --no-build-isolation -e .
  PYTHON=$venv/bin/python
else
  # the node's Python may have torch but not the rest: one line naming --wheelhouse, not a traceback
  # (found, not imported: importing them here would spend seconds of the campaign's 8 minutes twice)
  missing=$("$PYTHON" -c '
import importlib.util
print(" ".join(name for name in ("neuralop", "zencfg", "tensorly") if importlib.util.find_spec(name) is None))
' 2>/dev/null) || missing="neuralop zencfg tensorly (it did not run)"
  if [ -n "$missing" ]; then
    echo "gpu.sh: error: $PYTHON cannot import $missing; make the wheels where there is a package index" \
      "(bash benchmarks/wheelhouse.sh DIR) and run: bash benchmarks/gpu.sh $out --wheelhouse DIR" >&2
    exit 2
  fi
fi
"$PYTHON" -m neuralop_mp.cli bench gpu --out "$out" ${args[@]+"${args[@]}"}
