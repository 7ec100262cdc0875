#!/usr/bin/env bash
# One lent-GPU session: versions, the kernel benchmark (accuracy check of each design first, a
# launch-shape sweep of the registers design, a profile of one call per design at 2^20 points (where
# the time goes: kernels, glue, launch gaps), then the table with both designs side by side), then
# the kernel tests on CUDA. Run from the repository root on a CUDA machine whose python3 has torch
# and triton; logs go to $OUT (or ./gpu_logs). Sized for one 10-minute call on an H100 (2026-11-27,
# scratch design alone: ~150 s of Triton compilation, ~310 s for the table, ~100 s for the tests);
# the budget stops the table early rather than losing the tests.
#   DESIGNS=registers (or scratch) times one design; SWEEP=registers,scratch | none picks the sweeps;
#   PRECISION=tf32,tf32x3,ieee (default tf32,tf32x3: the scratch design's ieee figures are recorded, and the
#   registers design's ieee kernels compile to spilling FMA code for minutes: benchmarks/compile_kernels.py);
#   BENCH_BUDGET / BENCH_TIMEOUT / TEST_TIMEOUT in seconds; extra arguments go to bench_kernels.py.
# Before spending GPU time, walk the same steps on the CPU: TRITON_INTERPRET=1 python
# benchmarks/bench_kernels.py --smoke --sweep
set -u
out=${OUT:-gpu_logs}; mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv | tee "$out/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$out/gpu.txt"
if [ ! -e nphmkit/kernels ]; then  # the layout an install gives, without pip; removed on exit
  ln -s ../kernels nphmkit/kernels && trap 'rm -f nphmkit/kernels' EXIT
fi
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
sweep=(--sweep "${SWEEP:-registers}"); [ "${SWEEP:-registers}" = none ] && sweep=()
timeout "${BENCH_TIMEOUT:-420}" python3 benchmarks/bench_kernels.py --designs "${DESIGNS:-registers,scratch}" \
  --precision "${PRECISION:-tf32,tf32x3}" "${sweep[@]}" --profile 20 --repeats 2 --budget-s "${BENCH_BUDGET:-300}" "$@" \
  2>&1 | tee "$out/bench.txt"
# test_registers.py is for the interpreter (in ieee the registers kernels compile to FMA code for minutes)
timeout "${TEST_TIMEOUT:-160}" python3 -m pytest tests/kernels/test_triton.py -q -x -p no:cacheprovider \
  2>&1 | tail -15 | tee "$out/pytest.txt"
