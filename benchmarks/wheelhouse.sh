#!/usr/bin/env bash
# Wheels for a GPU node that has no package index, made on a machine that has one:
#   bash benchmarks/wheelhouse.sh DIR [--python-version 3.12] [--platform TAG ...] [--skip NAME ...]
# writes into DIR a wheel of every package neuralop-mp needs at run time (pinned to this
# environment's versions) but torch and its CUDA stack, and pip and setuptools;
# then on the node: bash benchmarks/gpu.sh OUT_DIR --wheelhouse DIR (which installs this checkout editable)
# (paths relative to the repository root; details: neuralop_mp/bench/wheelhouse.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3
exec "$PYTHON" -m neuralop_mp.bench.wheelhouse "$@"
