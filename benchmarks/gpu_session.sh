#!/usr/bin/env bash
# One lent-GPU session: versions, the kernel benchmark (checks first), then the kernel tests on CUDA.
# Run from the repository root on a CUDA machine whose python3 has torch and triton; logs go to $OUT (or ./gpu_logs).
set -u
out=${OUT:-gpu_logs}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
[ -e nphmkit/kernels ] || ln -s ../kernels nphmkit/kernels  # the layout an install gives, without pip
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
timeout "${BENCH_TIMEOUT:-400}" python3 benchmarks/bench_kernels.py --sweep --budget-s "${BENCH_BUDGET:-240}" "$@" 2>&1 | tee "$out/bench.txt"
timeout "${TEST_TIMEOUT:-110}" python3 -m pytest tests/kernels -q -x -p no:cacheprovider 2>&1 | tail -15 | tee "$out/pytest.txt"
