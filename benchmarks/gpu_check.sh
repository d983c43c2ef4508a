#!/usr/bin/env bash
# The GPU check (issue 22) on the device machine, in one call from the repository root:
#
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=540)
#
# Installs the carried wheels (.whl/, made by scripts/fetch_gpu_wheels.sh) that the machine's
# python3 lacks, then runs `python -m benchmarks.gpu_check` (8 minutes at most; arguments are
# passed on, e.g. --quick). Results land in $OUT (default ./gpu_check_out).
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
SITE=${GPU_CHECK_SITE:-/tmp/site}
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$SITE" .whl/*.whl || echo "gpu_check.sh: installing .whl/ failed; going on" >&2
fi
export PYTHONPATH="$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
export OUT
"$PYTHON" -m benchmarks.gpu_check "$@" 2>&1 | tee "$OUT/run.log"
