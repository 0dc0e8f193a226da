#!/usr/bin/env bash
# The paper-scale step-time suite on one CUDA GPU (about 5-8 min on an H100); log next to gpu.json.
# Usage: benchmarks/gpu.sh [gpu.py flags]   (CPU smoke test: benchmarks/gpu.sh --tiny)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python)}
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available())'
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
"$PYTHON" benchmarks/gpu.py "$@" 2>&1 | tee benchmarks/gpu.log
