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
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ] || [[ "$1" == -* ]]; then
  echo "usage: bash benchmarks/gpu.sh OUT_DIR [--dry-run] [--update-docs]" >&2
  exit 2
fi
out=$1
shift
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m neuralop_mp.cli bench gpu --out "$out" "$@"
