#!/usr/bin/env bash
# Download into .whl/ (git-ignored) the wheels that benchmarks/gpu_check.sh installs on the GPU
# machine, whose python3 (3.12, x86-64, no network) lacks them. Run here, from anywhere:
#
#   bash scripts/fetch_gpu_wheels.sh
#
# Only ml_collections is needed: train.reproduce's stage configs (read by the check's epoch
# fragments and time estimate) are ConfigDicts. Its requirements absl-py and PyYAML are there
# already. Nothing else the check imports is missing there (tensorboardX, tensorflow-datasets,
# array_record and spaCy are only imported by the training program's data and logging paths).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=("ml_collections==1.1.0")
rm -rf .whl && mkdir -p .whl
"$PYTHON" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .whl "${WHEELS[@]}"
ls -l .whl
git check-ignore -q .whl/ || echo "warning: .whl/ is not git-ignored" >&2
