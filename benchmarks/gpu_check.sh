#!/usr/bin/env bash
# GPU check of the engine, for a machine with CUDA (a few minutes; the steps are time-boxed
# to 9 minutes in all):
#   1. the tests marked `gpu` (CUDA round trip, CUDA training steps),
#   2. bench_engine.py at the default size (shipped model + 128x128 reference) and at the
#      paper's size (512x512, L=7, K=32, width 512): latency, throughput, peak GPU memory.
# Uses whichever python already has a CUDA torch (PYTHON=... to choose; nothing is downloaded).
# With $OUT set, the log (gpu_check.log) and the JSON figures are also written there.
#
#   bash benchmarks/gpu_check.sh            # or: PYTHON=/path/to/python bash benchmarks/...
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
JSON_DIR="${OUT:-/tmp}"

pick_python() {
    local candidate
    for candidate in "${PYTHON:-}" .venv/bin/python python3 python; do
        [[ -n "$candidate" ]] || continue
        if "$candidate" -c "import torch, sys; sys.exit(not torch.cuda.is_available())" \
            2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

check() {
    local py status=0
    if ! py=$(pick_python); then
        echo "gpu_check: no python with a CUDA-enabled torch found (set PYTHON=...)"
        return 1
    fi
    echo "== python: $py"
    "$py" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda,
'cuDNN', torch.backends.cudnn.version(), torch.cuda.get_device_name(0))"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

    # The package itself, dependencies untouched; the source tree on PYTHONPATH is enough
    # if the editable install cannot be built offline.
    "$py" -m pip install -q -e . --no-deps --no-build-isolation >/dev/null 2>&1 \
        || echo "note: pip install -e . failed; using the source tree"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

    echo "== tests marked gpu"
    if "$py" -c "import pytest, numpy, safetensors" 2>/dev/null; then
        timeout 150 "$py" -m pytest -m gpu tests/test_flow.py -q -rs -p no:cacheprovider \
            || status=1
    else
        echo "skipped: this python lacks pytest, numpy or safetensors"
        status=1
    fi

    echo "== benchmark: default size"
    timeout 90 "$py" benchmarks/bench_engine.py --device cuda --configs default,reference \
        --json "$JSON_DIR/bench_gpu_default.json" || status=1

    echo "== benchmark: paper size (512x512, L=7, K=32, width 512)"
    timeout 300 "$py" benchmarks/bench_engine.py --device cuda --configs paper --runs 20 \
        --json "$JSON_DIR/bench_gpu_paper.json" || status=1

    echo "== gpu_check finished with status $status"
    return "$status"
}

if [[ -n "${OUT:-}" ]]; then
    mkdir -p "$OUT"
    check 2>&1 | tee "$OUT/gpu_check.log"
    exit "${PIPESTATUS[0]}"
fi
check
