#!/usr/bin/env bash
# The one prepared run for a GPU machine: build, GPU tests, compute-sanitizer, kernel benchmark.
#
#   OUT=/some/dir bash benchmarks/device_suite.sh        # results into $OUT (else benchmarks/results/device_<date>)
#
# Made for the H200 machine (torch 2.11 cu130, triton 3.6, Python 3.12, no network) and sized to
# finish in about 8 minutes: every step has its own time limit, a failing step does not stop the
# ones after it, and a short table is printed last. Python packages it lacks (SpikingJelly, for
# the peer rows) can travel as wheels in .whl/ (see the device tool's README); they are installed
# into /tmp/site first.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device_$(date +%Y-%m-%d)}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
SUMMARY=()

step() {  # step NAME LIMIT_S CMD...: runs CMD with a time limit, output into $OUT/NAME.log
  local name=$1 limit=$2
  shift 2
  local start=$SECONDS
  echo "== $name (limit ${limit}s)"
  timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  tail -n 4 "$OUT/$name.log"
  SUMMARY+=("$(printf '%-18s rc=%-4s %4ss' "$name" "$rc" "$((SECONDS - start))")")
  return $rc
}

if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

{
  date -u
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
  "$PY" -c "import triton; print('triton', triton.__version__)" 2>&1
  "$PY" -c "import spikingjelly; from importlib.metadata import version; print('spikingjelly', version('spikingjelly'))" 2>&1 | tail -1
  nvcc --version | tail -1
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

# Build in place (editable), so that the tests import the built package from this checkout.
step build 300 env SLTT_KERNELS_FORCE_CUDA=1 "$PY" -m pip install --no-build-isolation --no-deps -v -e .
"$PY" -c "import sltt_kernels; print(sltt_kernels.available_backends())" | tee -a "$OUT/env.txt"

# GPU tests: every case parametrised with the cuda (or triton) backend, and tests/test_cuda.py.
step tests_gpu 240 env SLTT_KERNELS_REQUIRE_EXTENSION=1 "$PY" -m pytest -q -p no:cacheprovider tests/ \
  -k "cuda or triton" --junitxml="$OUT/tests_gpu.xml"

if command -v compute-sanitizer >/dev/null 2>&1; then
  step memcheck 120 compute-sanitizer --tool memcheck --error-exitcode 1 "$PY" benchmarks/sanitizer_case.py
  step racecheck 120 compute-sanitizer --tool racecheck --error-exitcode 1 "$PY" benchmarks/sanitizer_case.py
else
  SUMMARY+=("compute-sanitizer  not found")
fi

step bench_kernels 240 "$PY" benchmarks/kernels.py --device cuda --out "$OUT" --repeats 20 --no-plot
step bench_memory_time 240 "$PY" benchmarks/memory_time.py --device cuda --out "$OUT" --no-plot

echo
echo "== kernel benchmark (full table in $OUT/bench_kernels.log, numbers in $OUT/kernels_cuda.json)"
sed -n '/^ *T  /,$p' "$OUT/bench_kernels.log" | grep -E "^ *T  |^ *-|  (cuda|triton|reference|spikingjelly) " | head -60
echo
echo "== memory and time (full table in $OUT/bench_memory_time.log)"
sed -n '/^## Table S2 layout/,/^$/p' "$OUT/bench_memory_time.log"
echo
echo "== steps"
printf '%s\n' "${SUMMARY[@]}"
echo "results in $OUT"
