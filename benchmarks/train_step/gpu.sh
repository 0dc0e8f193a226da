#!/usr/bin/env bash
# The paper-scale step-time suite on one CUDA GPU (about 5-8 min on an H100); log next to gpu.json.
# Usage: benchmarks/train_step/gpu.sh [gpu.py flags]   (CPU smoke test: benchmarks/train_step/gpu.sh --tiny)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$HERE/../.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
export PYTORCH_CUDA_ALLOC_CONF=${PYTORCH_CUDA_ALLOC_CONF:-expandable_segments:True}  # less fragmentation near OOM
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-PASSIVE}  # the CPU --tiny run on a shared machine
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
"$PYTHON" "$HERE/gpu.py" "$@" 2>&1 | tee "$HERE/gpu.log"
