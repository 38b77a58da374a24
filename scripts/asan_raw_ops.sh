#!/usr/bin/env bash
# Builds the CPU ops with AddressSanitizer (in a scratch copy, so the normal build is untouched)
# and runs the raw-op, family, kernel, C++-list (which calls the fast sigmoid through the raw ops)
# and input-affine (in_scale/in_shift read in place through strides) tests against it. .ci/run runs it after the suite; by hand:
#
#   bash scripts/asan_raw_ops.sh            # about two minutes on 2 cores
#
# Needs the environment the README installs (torch, pytest, hypothesis) and gcc's libasan.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d /tmp/sltt-asan.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
cp -r csrc sltt_kernels setup.py pyproject.toml README.md tests "$WORK"/
rm -f "$WORK"/sltt_kernels/*.so "$WORK"/sltt_kernels/_build_info.json
# -O1 in this scratch copy: the instrumentation, not the optimiser, is what the run checks, and
# -O3 under ASan took 471 s of CI's 2 cores (the kernels' results do not depend on the level:
# no fast-math, fp contraction off, fma written out)
sed -i 's/cxx = \["-O3", /cxx = ["-O1", /' "$WORK/sltt_kernels/_build_facts.py"
grep -q 'cxx = \["-O1", ' "$WORK/sltt_kernels/_build_facts.py" || { echo "error: could not lower -O3 for the ASan build"; exit 1; }
cd "$WORK"
start=$SECONDS
# the CPU ops only (a CI that forces the CUDA build for the main install must not force it here)
unset SLTT_KERNELS_FORCE_CUDA SLTT_KERNELS_EXPECT_CUDA_BUILD
CFLAGS="-fsanitize=address -fno-omit-frame-pointer" LDFLAGS="-fsanitize=address" \
  SLTT_KERNELS_NO_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" python setup.py -q build_ext --inplace >build.log 2>&1 \
  || { tail -30 build.log; exit 1; }
echo "asan build: $((SECONDS - start)) s"
# the library must really be instrumented, or the run below proves nothing
SO=$(ls "$WORK"/sltt_kernels/_C*.so)
# (the symbols go to a file first: with pipefail, `nm | grep -q` fails when grep stops reading
# early and nm dies of SIGPIPE, which a larger symbol table made happen)
nm -D "$SO" > "$WORK/symbols.txt"
grep -q __asan_report "$WORK/symbols.txt" || { echo "error: $SO is not built with AddressSanitizer"; exit 1; }
# libstdc++ is preloaded with libasan: python itself does not link it, and ASan's __cxa_throw
# interceptor needs the real one at start-up, or the first C++ exception (a refused argument)
# aborts. torch's own allocations are not instrumented; leaks at exit are the interpreter's.
export LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so)"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1"
export SLTT_KERNELS_REQUIRE_EXTENSION=1 PYTHONPATH="$WORK"
cd /tmp
python -m pytest -q -p no:cacheprovider -x \
  "$WORK/tests/kernels/test_raw_ops.py" "$WORK/tests/ops/test_errors.py" "$WORK/tests/kernels/test_spike_state.py" \
  "$WORK/tests/kernels/test_kernels.py" "$WORK/tests/kernels/test_csrc_lists.py" \
  "$WORK/tests/kernels/test_input_affine.py" -k "not triton" "$@"
echo "asan run: $((SECONDS - start)) s in all (sources from $ROOT)"
