#!/usr/bin/env bash
# One lent-GPU session, sized for one 10-minute call on a Hopper GPU (H100, H200). Run from the repository root on a
# CUDA machine whose python3 has torch and triton; logs go to $OUT (or ./gpu_logs).
#  1. Warm-up, in parallel: Triton compiles one kernel at a time per process, and compiling every
#     kernel of both designs and precisions one after the other takes minutes (2026-11-27, the
#     scratch design alone: ~150 s; benchmarks/compile_kernels.py lists 10-90 s per kernel). So one
#     process per design and precision runs the benchmark's accuracy check, its sweep and two small
#     sizes (filling Triton's cache with the very kernels the benchmark launches), while the kernel
#     tests run on CUDA beside them (logs: warm-*.txt, pytest.txt).
#  2. The benchmark proper, from a warm cache: accuracy check of each design, a launch-shape sweep
#     of the registers design, a profile of one call per design at 2^20 points (where the time goes:
#     kernels, glue, launch gaps), the table with both designs beside the torch path (tf32 first),
#     and a verdict against the targets (bench.txt). Its budget stops the table early rather than
#     overrunning the call.
#   DESIGNS=registers (or scratch) times one design; SWEEP=registers,scratch | none picks the sweeps;
#   PRECISION=tf32,fp16,tf32x3,ieee (default tf32,fp16,tf32x3, timed in that order: the scratch design's ieee
#   figures are recorded, and the registers design's ieee kernels compile to spilling FMA code for minutes:
#   benchmarks/compile_kernels.py);
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
designs=${DESIGNS:-registers,scratch}; precisions=${PRECISION:-tf32,fp16,tf32x3}; sweeps=${SWEEP:-registers}
start=$(date +%s)
# 1. warm-up: one process per design and precision, and the tests, side by side
# (test_registers.py is for the interpreter: in ieee the registers kernels compile to FMA code for minutes)
timeout "${TEST_TIMEOUT:-240}" python3 -m pytest tests/kernels/test_triton.py -q -p no:cacheprovider \
  > "$out/pytest.log" 2>&1 &
tests=$!
for d in ${designs//,/ }; do
  for p in ${precisions//,/ }; do
    [ "$d" = scratch ] && [ "$p" = fp16 ] && continue  # fp16 is the registers design's mode
    sweep=(); [ "$p" = tf32 ] && [[ ",$sweeps," == *",$d,"* ]] && sweep=(--sweep "$d")
    timeout "${WARM_TIMEOUT:-200}" python3 benchmarks/bench_kernels.py --designs "$d" --precision "$p" \
      "${sweep[@]}" --min-log2 15 --max-log2 16 --repeats 1 > "$out/warm-$d-$p.txt" 2>&1 &
  done
done
wait $(jobs -p | grep -vx "$tests")
cache=${TRITON_CACHE_DIR:-$HOME/.triton/cache}
cubins() { find "$cache" -name '*.cubin' 2>/dev/null | wc -l; }
warm=$(cubins)
echo "warm-up: $(( $(date +%s) - start )) s, $warm compiled kernels in $cache" | tee -a "$out/gpu.txt"
# 2. the benchmark, from a warm cache
sweep=(--sweep "$sweeps"); [ "$sweeps" = none ] && sweep=()
timeout "${BENCH_TIMEOUT:-330}" python3 benchmarks/bench_kernels.py --designs "$designs" --precision "$precisions" \
  "${sweep[@]}" --profile 20 --repeats 2 --budget-s "${BENCH_BUDGET:-220}" "$@" 2>&1 | tee "$out/bench.txt"
echo "kernels compiled during the benchmark (by it, or by tests still running; 0: the warm-up covered it): $(( $(cubins) - warm ))" \
  | tee -a "$out/gpu.txt"
wait "$tests"; echo "tests exit status: $?" >> "$out/pytest.log"
tail -25 "$out/pytest.log" | tee "$out/pytest.txt"
echo "session: $(( $(date +%s) - start )) s" | tee -a "$out/gpu.txt"
