#!/usr/bin/env bash
# The one prepared run for a GPU machine, sized to one call: under 8 minutes, installation included.
#
#   bash benchmarks/build_device_wheel.sh                # here, once: .device_wheels/ (carry it)
#   OUT=/some/dir bash benchmarks/device_suite.sh        # there: results into $OUT
#   DRY_RUN=1 bash benchmarks/device_suite.sh            # anywhere: print the plan, run nothing
#
# Made for the H200 machine (Python 3.12, torch 2.11 cu130, triton 3.6, no network). The
# prebuilt wheel in .device_wheels/ is installed when it matches the machine's torch, Python and
# this checkout's csrc/ (benchmarks/device_wheel.py); only without one is the extension built
# there, and then the later steps get less time; if the wheel's library does not load there, the
# suite builds after all, in the time the plan leaves. Steps, fastest and most important first,
# each with its own time limit (they add up to at most 420 s), a failing step not stopping the
# rest (the suite's exit status says whether any failed):
#   setup       install the wheel and the peers' wheels (or build), record the machine, check
#               that the compiled CPU and CUDA ops load (no just-in-time build there, ever)
#   tests_gpu   every backend against the reference on the GPU, the 2^31-element case, the
#               batch norm applied inside the neuron kernel
#   kernels     CUDA, Triton, SpikingJelly, the compiled loop, the copy-bandwidth ceiling (T=6,
#               N=64M, fp32 and bf16, train and inference: four torch.compile compilations)
#   memory_time Table S2 on CUDA (ResNet-18, T=6, the paper's neuron and the rect one, fp16 AMP)
#   sanitizers  compute-sanitizer memcheck and racecheck of benchmarks/sanitizer_case.py
# Results, at most eight files in $OUT: setup.txt, tests_gpu.log, kernels.log, kernels_cuda.json,
# memory_time.log, memory_time_cuda.json, sanitizers.log, summary.txt.
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/device_$(date +%Y-%m-%d)}"
PY="${PYTHON:-python3}"
WHEEL_DIR="${WHEEL_DIR:-.device_wheels}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-16}"
export PYTHONUNBUFFERED=1
# a build there needs the toolkit's folder; nvcc on PATH may be a wrapper script outside it
if [ -z "${CUDA_HOME:-}" ] && command -v nvcc >/dev/null 2>&1; then
  # the nvcc on PATH first, as torch looks for it, then the usual place
  for d in "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")" /usr/local/cuda; do
    if [ -f "$d/include/cuda_runtime.h" ] && [ -x "$d/bin/nvcc" ]; then export CUDA_HOME="$d"; break; fi
  done
fi

# -- the plan: install a matching wheel, else build (and give the later steps less time)
WHEEL=$("$PY" benchmarks/device_wheel.py match "$WHEEL_DIR" 2>/tmp/device_wheel_match.txt)
if [ -n "$WHEEL" ]; then
  PLAN=install
  LIMITS=(setup=30 tests_gpu=120 kernels=100 memory_time=100 sanitizers=70)
  # when the installed library does not load: a build (setup's 30 s spent), then less of the rest
  FALLBACK=(setup=30 build=210 tests_gpu=90 kernels=60 memory_time=30 sanitizers=0)
else
  PLAN=build
  LIMITS=(setup=240 tests_gpu=90 kernels=60 memory_time=30 sanitizers=0)
fi
limit() { local kv; for kv in "${LIMITS[@]}"; do [ "${kv%%=*}" = "$1" ] && echo "${kv#*=}"; done; }
total() { local kv t=0; for kv in "$@"; do t=$((t + ${kv#*=})); done; echo $t; }
TOTAL=$(total "${LIMITS[@]}")
# the steps after setup never start a just-in-time build (the setup step checked the library)
export SLTT_KERNELS_NO_JIT=1

SETUP_INSTALL=("$PY" benchmarks/device_wheel.py install "$WHEEL")
SETUP_BUILD=(env SLTT_KERNELS_FORCE_CUDA=1 "$PY" setup.py build_ext --inplace)
TESTS=(env SLTT_KERNELS_REQUIRE_EXTENSION=1 SLTT_KERNELS_NO_JIT=1 "$PY" -m pytest -q -p no:cacheprovider
       tests/kernels/test_cuda.py tests/kernels/test_triton.py tests/kernels/test_kernels.py tests/ops/test_ops.py
       tests/kernels/test_input_affine.py tests/nn/test_norm_neuron.py -k "cuda or triton")
KERNELS=("$PY" benchmarks/kernels.py --device cuda --T 6 --N 64M --dtype fp32 bf16 --repeats 20
         --out "$OUT" --no-plot --no-csv)
MEMORY=("$PY" benchmarks/memory_time.py --device cuda --T 6 --iters 10 --warmup 3 --out "$OUT" --no-plot --no-csv)
SANITIZE=(compute-sanitizer --error-exitcode 1 "$PY" benchmarks/sanitizer_case.py)

echo "plan: $PLAN${WHEEL:+ $WHEEL}"
[ "$PLAN" = build ] && sed 's/^/  /' /tmp/device_wheel_match.txt
echo "step limits: ${LIMITS[*]}"
echo "TOTAL_LIMIT_S=$TOTAL"
if [ "$PLAN" = install ]; then
  echo "fallback limits: ${FALLBACK[*]}"
  echo "FALLBACK_TOTAL_LIMIT_S=$(total "${FALLBACK[@]}")"
fi
if [ -n "${DRY_RUN:-}" ]; then
  if [ "$PLAN" = install ]; then echo "setup: ${SETUP_INSTALL[*]}"; else echo "setup: ${SETUP_BUILD[*]}"; fi
  echo "tests_gpu: ${TESTS[*]}"
  echo "kernels: ${KERNELS[*]}"
  echo "memory_time: ${MEMORY[*]}"
  echo "sanitizers: ${SANITIZE[*]} (memcheck, then racecheck)"
  exit 0
fi

mkdir -p "$OUT"
# the peers' wheels go into a folder of this run's own: nothing left from an earlier one is imported
SITE=$(mktemp -d /tmp/sltt_site.XXXXXX)
SUMMARY=()
step() {  # step NAME LOG CMD...: CMD under the step's limit, output appended to $OUT/LOG
  local name=$1 log=$2 lim
  shift 2
  STEP_RC=0
  lim=$(limit "$name")
  if [ "${lim:-0}" -le 0 ]; then
    SUMMARY+=("$(printf '%-12s skipped (no time left after a build; bring a wheel: benchmarks/build_device_wheel.sh)' "$name")")
    return 0
  fi
  local start=$SECONDS
  echo "== $name (limit ${lim}s)"
  timeout -k 5 "$lim" "$@" >>"$OUT/$log" 2>&1
  local rc=$?
  tail -n 3 "$OUT/$log"
  SUMMARY+=("$(printf '%-12s rc=%-4s %4ss of %ss' "$name" "$rc" "$((SECONDS - start))" "$lim")")
  [ "$rc" -eq 0 ] || FAILED=1
  STEP_RC=$rc
  return $rc
}

# The setup step, a script of its own so that it runs under the same time limit as the others.
# It takes the install (or build) command as its arguments and everything else from the
# environment (no value is pasted into its text): the command, then the check that the compiled
# CPU and CUDA ops load, both failing with exit status 3 (only that status switches to a build);
# then the peers and the machine's description, which may run out of time without harm.
cat >/tmp/sltt_device_setup.sh <<'EOS'
date -u
echo "plan: $PLAN $WHEEL"
cat /tmp/device_wheel_match.txt
"$@" || exit 3
"$PY" -c "import sltt_kernels; b = sltt_kernels.available_backends(); print(b)
assert b['cpu'] is None and b['cuda'] is None, 'the compiled ops do not load'" || exit 3
if ls "$WHEEL_DIR"/peers/*.whl >/dev/null 2>&1; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" \
    "$WHEEL_DIR"/peers/*.whl && echo "peers installed into $SITE: $(ls "$WHEEL_DIR"/peers | tr '\n' ' ')"
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.mem --format=csv
"$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)"
"$PY" -c "import triton; print('triton', triton.__version__)"
"$PY" -c "from importlib.metadata import version; print('spikingjelly', version('spikingjelly'))"
nvcc --version | tail -1
EOS
export PLAN WHEEL="${WHEEL:-}" WHEEL_DIR SITE PY
# this checkout's package (with the installed or built _C) first, then the peers
export PYTHONPATH="$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
FAILED=0
if [ "$PLAN" = install ]; then
  step setup setup.txt bash /tmp/sltt_device_setup.sh "${SETUP_INSTALL[@]}"
  if [ "$STEP_RC" -eq 3 ]; then
    # the wheel's library does not load here: build after all, in the fallback's limits
    PLAN=install-failed-build
    LIMITS=("${FALLBACK[@]}")
    TOTAL=$(total "${LIMITS[@]}")
    if step build setup.txt bash /tmp/sltt_device_setup.sh "${SETUP_BUILD[@]}"; then
      FAILED=0  # recovered; the summary still shows the setup step's rc=3
    fi
  fi
else
  step setup setup.txt bash /tmp/sltt_device_setup.sh "${SETUP_BUILD[@]}"
fi
step tests_gpu tests_gpu.log "${TESTS[@]}"
step kernels kernels.log "${KERNELS[@]}"
step memory_time memory_time.log "${MEMORY[@]}"
if command -v compute-sanitizer >/dev/null 2>&1; then
  half=$(( $(limit sanitizers) / 2 ))
  LIMITS=("${LIMITS[@]/sanitizers=*/sanitizers=$half}")
  step sanitizers sanitizers.log "${SANITIZE[0]}" --tool memcheck "${SANITIZE[@]:1}"
  step sanitizers sanitizers.log "${SANITIZE[0]}" --tool racecheck "${SANITIZE[@]:1}"
else
  SUMMARY+=("sanitizers   compute-sanitizer not found")
fi

{
  echo "== kernel benchmark (the whole table in kernels.log, numbers in kernels_cuda.json)"
  sed -n '/^ *T  /,/^$/p' "$OUT/kernels.log" | head -60
  echo
  echo "== memory and time (the whole table in memory_time.log)"
  sed -n '/^## Table S2 layout/,/^$/p' "$OUT/memory_time.log"
  echo
  echo "== steps ($PLAN; limits add up to ${TOTAL}s)"
  printf '%s\n' "${SUMMARY[@]}"
} | tee "$OUT/summary.txt"
echo "results in $OUT: $(ls "$OUT" | tr '\n' ' ')"
rm -rf "$SITE"
exit $FAILED
