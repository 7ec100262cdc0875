#!/usr/bin/env bash
# One lent-GPU session: versions, the kernel benchmark (accuracy check first, then the table), then
# the kernel tests on CUDA. Run from the repository root on a CUDA machine whose python3 has torch
# and triton; logs go to $OUT (or ./gpu_logs). Fits one 10-minute call on an H100 (2026-11-27:
# ~150 s of Triton compilation, ~310 s for the table, ~100 s for the tests).
#   SWEEP=1 also tries launch shapes first; BENCH_BUDGET / BENCH_TIMEOUT / TEST_TIMEOUT in seconds.
set -u
out=${OUT:-gpu_logs}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
if [ ! -e nphmkit/kernels ]; then  # the layout an install gives, without pip; removed on exit
  ln -s ../kernels nphmkit/kernels && trap 'rm -f nphmkit/kernels' EXIT
fi
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
sweep=(); [ "${SWEEP:-0}" = 1 ] && sweep=(--sweep)
timeout "${BENCH_TIMEOUT:-440}" python3 benchmarks/bench_kernels.py "${sweep[@]}" --repeats 2 \
  --budget-s "${BENCH_BUDGET:-330}" "$@" 2>&1 | tee "$out/bench.txt"
timeout "${TEST_TIMEOUT:-110}" python3 -m pytest tests/kernels -q -x -p no:cacheprovider 2>&1 | tail -15 | tee "$out/pytest.txt"
