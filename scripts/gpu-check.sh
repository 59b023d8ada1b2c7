#!/usr/bin/env bash
# The speed options on a CUDA GPU: s/step, TFLOP/s and MFU of each option against the baseline, on an
# A14B-shaped transformer (real width and heads, 4 of the 40 blocks, random weights, 480P tokens).
# The cfg2 row (CFG parallelism, one pass per GPU) needs 2 GPUs; with one it says so.
# First, the initial noise: `noise = "cpu"` against "device" (bench/gpu_noise.py); then peak memory
# and s/step of `offload` none, experts and blocks (bench/offload_gpu.py); then the cold start from
# local disk, GB/s of a stream read, one rank and a gang of 2 (bench/load.py).
# Under 10 minutes on an H100/H200. Record its tables in docs/performance.md.
#
#   scripts/gpu-check.sh            # on a host with a CUDA GPU
#   scripts/gpu-check.sh --cpu      # dry run with tiny shapes on the CPU (part of the test suite)
#   scripts/gpu-check.sh --blocks 8 # further arguments go to bench/gpu_step.py
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

if [ "${1:-}" = "--cpu" ]; then
  shift
  timeout 60 "$PY" bench/gpu_noise.py --smoke-cpu
  timeout 60 "$PY" bench/offload_gpu.py --smoke-cpu
  exec timeout 300 "$PY" bench/gpu_step.py --smoke-cpu --options all --iters 2 --cache-steps 4 "$@"
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv
fi
"$PY" -c "import torch, diffusers; print('torch', torch.__version__, 'diffusers', diffusers.__version__)"
"$PY" -c "import torchao; print('torchao', torchao.__version__)" 2>/dev/null || echo "torchao: not installed (fp8 is reported as refused)"
timeout 45 "$PY" bench/gpu_noise.py
timeout 75 "$PY" bench/offload_gpu.py --blocks 4 --steps 8 || echo "offload_gpu: did not finish"
timeout 120 "$PY" bench/load.py --gb 8 --repeats 1 || echo "load: did not finish"
exec timeout 350 "$PY" bench/gpu_step.py --blocks 4 --size '832*480' --frames 81 --iters 5 --options all "$@"
