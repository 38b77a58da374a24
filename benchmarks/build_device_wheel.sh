#!/usr/bin/env bash
# Builds, here, what the GPU machine would otherwise spend minutes building: a wheel of
# sltt_kernels for that machine (Python 3.12, torch 2.11.0 CUDA 13.0, sm_90), and the wheels of
# the peers the benchmarks compare with (SpikingJelly 2.0.0, loguru, tqdm), into .device_wheels/
# (ignored by git; name it in the device run's carry). benchmarks/device_suite.sh installs the
# wheel when it matches the machine's torch, Python and this checkout's csrc/, and builds only
# when it does not.
#
#   bash benchmarks/build_device_wheel.sh            # about 5-10 minutes on 2 cores, once
#
# Needs: Python 3.12 (pyenv's, python3.12 on PATH, or PYTHON312=...), the CUDA 13 toolkit with
# its headers (CUDA_HOME, default: the folder of nvcc's real path), and PyPI for torch 2.11.0
# (about 0.5 GB, plus its CUDA libraries, which `import torch` needs: about 3 GB) into a cached
# build environment (DEVICE_BUILD_VENV, default ~/.cache/sltt_kernels/device-build-py312-torch2.11.0).
# Exit status: 0 done; 2 a missing tool; 3 torch 2.11.0 for Python 3.12 could not be installed;
# 4 the build failed or the wheel is not what the suite needs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WHEEL_DIR="${WHEEL_DIR:-$ROOT/.device_wheels}"
TORCH_VERSION="${TORCH_VERSION:-2.11.0}"
TORCH_CUDA="${TORCH_CUDA:-13.0}"
ARCH="${TORCH_CUDA_ARCH_LIST:-9.0}"
VENV="${DEVICE_BUILD_VENV:-$HOME/.cache/sltt_kernels/device-build-py312-torch$TORCH_VERSION}"
PIP_TIMEOUT_S="${PIP_TIMEOUT_S:-600}"   # the most spent downloading torch and its libraries

say() { echo "build_device_wheel: $*" >&2; }
fail() { local rc=$1; shift; say "$*"; exit "$rc"; }

# -- Python 3.12
PY312="${PYTHON312:-}"
if [ -z "$PY312" ]; then
  for c in "$(command -v python3.12 || true)" "$HOME"/.pyenv/versions/3.12*/bin/python; do
    # (a pyenv shim is on PATH but may not run: each candidate is tried)
    if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then PY312=$c; break; fi
  done
fi
[ -n "$PY312" ] && "$PY312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null \
  || fail 2 "no Python 3.12 found (set PYTHON312=/path/to/python3.12)"

# -- the CUDA toolkit, found by its headers
if [ -z "${CUDA_HOME:-}" ]; then
  NVCC_REAL=$(readlink -f "$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)")
  # /usr/local/bin/nvcc may be a wrapper script: follow an 'exec .../nvcc' inside it
  if [ -f "$NVCC_REAL" ] && head -c 2 "$NVCC_REAL" | grep -q '#!'; then
    NVCC_REAL=$(grep -oE '/[^ "]*/bin/nvcc' "$NVCC_REAL" | head -1 || true)
  fi
  CUDA_HOME=$(dirname "$(dirname "${NVCC_REAL:-/usr/local/cuda/bin/nvcc}")")
fi
[ -f "$CUDA_HOME/include/cuda_runtime.h" ] && [ -x "$CUDA_HOME/bin/nvcc" ] \
  || fail 2 "CUDA_HOME=$CUDA_HOME has no include/cuda_runtime.h and bin/nvcc (set CUDA_HOME to the CUDA 13 toolkit)"
"$CUDA_HOME/bin/nvcc" --version | grep -q "release ${TORCH_CUDA%%.*}\." \
  || fail 2 "$CUDA_HOME/bin/nvcc is not CUDA ${TORCH_CUDA%%.*}: $("$CUDA_HOME/bin/nvcc" --version | tail -1)"
export CUDA_HOME
say "Python $("$PY312" -V 2>&1) at $PY312; CUDA toolkit $CUDA_HOME"

# -- the build environment: torch 2.11.0 (CUDA 13.0) for Python 3.12
if ! "$VENV/bin/python" -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "installing torch $TORCH_VERSION for Python 3.12 into $VENV (at most ${PIP_TIMEOUT_S}s of downloads)"
  "$PY312" -m venv "$VENV"
  if ! timeout "$PIP_TIMEOUT_S" "$VENV/bin/python" -m pip install -q --only-binary=:all: "torch==$TORCH_VERSION" \
       "setuptools<82" wheel ninja; then
    fail 3 "torch $TORCH_VERSION for Python 3.12 could not be downloaded or installed from PyPI within ${PIP_TIMEOUT_S}s; no wheel was made. Without it the device suite builds on the GPU machine instead."
  fi
fi
TORCH_SEEN=$("$VENV/bin/python" -c "import torch; print(torch.__version__, torch.version.cuda)") \
  || fail 3 "torch in $VENV does not import"
say "build environment: torch $TORCH_SEEN"
[ "${TORCH_SEEN#* }" = "$TORCH_CUDA" ] || fail 3 "torch in $VENV is for CUDA ${TORCH_SEEN#* }, the GPU machine's is $TORCH_CUDA"

# -- our wheel, built from a clean copy of the checkout's files (tracked and untracked, not ignored)
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
git ls-files -z --cached --others --exclude-standard | xargs -0 -I{} cp --parents {} "$SRC/" 2>/dev/null || true
mkdir -p "$WHEEL_DIR/peers"
rm -f "$WHEEL_DIR"/sltt_kernels-*.whl
say "building the wheel for sm_${ARCH/./} (MAX_JOBS=${MAX_JOBS:-2}) ..."
start=$SECONDS
( cd "$SRC" && TORCH_CUDA_ARCH_LIST="$ARCH" SLTT_KERNELS_FORCE_CUDA=1 MAX_JOBS="${MAX_JOBS:-2}" \
    "$VENV/bin/python" -m pip wheel -q --no-build-isolation --no-deps -w "$WHEEL_DIR" . ) \
  || fail 4 "the build failed"
WHEEL=$(ls "$WHEEL_DIR"/sltt_kernels-*-cp312-*.whl 2>/dev/null | head -1)
[ -n "$WHEEL" ] || fail 4 "no cp312 wheel in $WHEEL_DIR"
say "built $(basename "$WHEEL") in $((SECONDS - start)) s"

# -- check it is what the suite will look for
"$VENV/bin/python" - "$WHEEL" <<'EOF' || fail 4 "the wheel is not what the device suite needs"
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = z.namelist()
info = json.loads(z.read("sltt_kernels/_build_info.json"))
print(json.dumps(info, indent=1))
assert info["with_cuda"], info
assert info["python"] == "3.12", info
assert any(n.startswith("sltt_kernels/_C") and n.endswith(".so") for n in names), names
assert "sltt_kernels/_csrc/ops.cpp" in names, "csrc not shipped"
EOF
if command -v cuobjdump >/dev/null 2>&1 || [ -x "$CUDA_HOME/bin/cuobjdump" ]; then
  TMPSO=$(mktemp -d); unzip -q -o "$WHEEL" 'sltt_kernels/_C*.so' -d "$TMPSO"
  say "GPU code in the wheel: $("$CUDA_HOME/bin/cuobjdump" --list-elf "$TMPSO"/sltt_kernels/_C*.so | grep -oE 'sm_[0-9]+a?' | sort -u | tr '\n' ' ')"
  rm -rf "$TMPSO"
fi

# -- the peers' wheels (pure Python), for a machine without network
rm -f "$WHEEL_DIR"/peers/*.whl
"$VENV/bin/python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  -d "$WHEEL_DIR/peers" "spikingjelly==2.0.0" loguru tqdm \
  || fail 4 "could not download the peers' wheels (spikingjelly 2.0.0, loguru, tqdm)"

ls -la "$WHEEL_DIR" "$WHEEL_DIR/peers"
say "done: $(du -sh "$WHEEL_DIR" | cut -f1) in $WHEEL_DIR; carry it with the device run (carry: [\".device_wheels\"])"
