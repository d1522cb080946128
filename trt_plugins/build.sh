#!/usr/bin/env bash
# Build the ActionVOS MSDA TensorRT plugin: trt_plugins/msda/build/libactionvos_msda_plugin.so
#
#   bash trt_plugins/build.sh
#
# Environment (all optional):
#   TENSORRT_INCLUDE_DIR  directory with NvInferRuntime.h        TENSORRT_ROOT  TensorRT install root
#   CUDA_ARCHS            CMAKE_CUDA_ARCHITECTURES to narrow the build, e.g. "86;90" (default: every real
#                         architecture the nvcc supports from sm_75 up, plus PTX of the newest; see CMakeLists.txt)
#   CUDACXX               nvcc to use (default: nvcc on PATH, else /usr/local/cuda/bin/nvcc)
#   CUDART                static (default: the CUDA runtime is linked into the library) or shared (needs
#                         libcudart.so.<nvcc major> at run time)
#   ACTIONVOS_CUDA_CHECK  off: skip the CUDA version check below
#   BUILD_DIR             build directory (default trt_plugins/msda/build)
#   JOBS                  parallel jobs (default: number of CPUs)
# Header choice: TENSORRT_INCLUDE_DIR / TENSORRT_ROOT if given, else installed TensorRT headers (system
# include dirs, e.g. JetPack's /usr/include/aarch64-linux-gnu), else the Apache-2.0 TensorRT 10.14 headers
# of the PyPI package kernel-lens 2.0.1, downloaded once into third_party/ (build-time only).
# CUDA version check (actionvos/export/cuda_compat.py): nvcc's CUDA major must equal the CUDA major of the installed
# TensorRT (when known: tensorrt-cuNN wheels, libnvinfer Debian packages, tarball paths) and must not exceed what the
# installed driver supports (when a driver is present); otherwise one line names both versions and the fix.
# Exit status: 0 built (last line: the library path); 77 a prerequisite is missing (no nvcc / no headers);
# 1 a CUDA version mismatch (one line); anything else: the build failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SRC="$ROOT/trt_plugins/msda"
BUILD_DIR="${BUILD_DIR:-$SRC/build}"
CUDA_ARCHS="${CUDA_ARCHS:-}"
CUDART="${CUDART:-static}"
JOBS="${JOBS:-$(nproc 2>/dev/null || echo 2)}"
KL_VERSION="2.0.1"
KL_DIR="$ROOT/third_party/kernel-lens-$KL_VERSION"

die_missing() { echo "build.sh: $*" >&2; exit 77; }

# --- nvcc ---------------------------------------------------------------------------------------------------
if [[ -z "${CUDACXX:-}" ]]; then
  if command -v nvcc >/dev/null 2>&1; then CUDACXX="$(command -v nvcc)";
  elif [[ -x /usr/local/cuda/bin/nvcc ]]; then CUDACXX=/usr/local/cuda/bin/nvcc;
  else die_missing "nvcc not found (install the CUDA toolkit or set CUDACXX)"; fi
fi
export CUDACXX
command -v cmake >/dev/null 2>&1 || die_missing "cmake not found"

# --- TensorRT headers ---------------------------------------------------------------------------------------
have_system_headers() {
  local d
  for d in /usr/include /usr/include/*-linux-gnu /usr/local/TensorRT/include; do
    [[ -f "$d/NvInferRuntime.h" ]] && return 0
  done
  return 1
}

fetch_kernel_lens() {
  if [[ ! -f "$KL_DIR/include/tensorrt/NvInferRuntime.h" ]]; then
    echo "build.sh: fetching TensorRT headers (kernel-lens==$KL_VERSION) into $KL_DIR" >&2
    local tmp; tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps "kernel-lens==$KL_VERSION" -d "$tmp" >&2 \
      || { rm -rf "$tmp"; die_missing "cannot download kernel-lens==$KL_VERSION (set TENSORRT_INCLUDE_DIR)"; }
    mkdir -p "$KL_DIR/include"
    python3 - "$tmp" "$KL_DIR/include" <<'EOF'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "kernel_lens-*.whl"))[0]
prefix = "kernel_lens/include/tensorrt/"
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith(prefix) and not name.endswith("/"):
            dst = os.path.join(sys.argv[2], "tensorrt", name[len(prefix):])
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            with open(dst, "wb") as f:
                f.write(z.read(name))
EOF
    rm -rf "$tmp"
  fi
  echo "$KL_DIR/include/tensorrt"
}

CMAKE_ARGS=(-DCMAKE_BUILD_TYPE=Release "-DCMAKE_CUDA_COMPILER=$CUDACXX" "-DCUDART=$CUDART")
case "$CUDART" in static|shared) ;; *) echo "build.sh: CUDART=$CUDART: use static or shared" >&2; exit 2;; esac
if [[ -n "$CUDA_ARCHS" ]]; then
  CMAKE_ARGS+=("-DCMAKE_CUDA_ARCHITECTURES=$CUDA_ARCHS")
else
  CMAKE_ARGS=(-UCMAKE_CUDA_ARCHITECTURES "${CMAKE_ARGS[@]}")  # drop a cached narrower list: CMakeLists.txt recomputes
fi
CHECK_ARGS=(--nvcc "$CUDACXX")
if [[ -n "${TENSORRT_INCLUDE_DIR:-}" ]]; then
  CMAKE_ARGS+=("-DTENSORRT_INCLUDE_DIR=$TENSORRT_INCLUDE_DIR"); CHECK_ARGS+=(--trt-include "$TENSORRT_INCLUDE_DIR")
elif [[ -n "${TENSORRT_ROOT:-}" ]]; then
  CMAKE_ARGS+=("-DTENSORRT_ROOT=$TENSORRT_ROOT"); CHECK_ARGS+=(--trt-root "$TENSORRT_ROOT")
elif ! have_system_headers; then
  KL_INC="$(fetch_kernel_lens)"
  CMAKE_ARGS+=("-DTENSORRT_INCLUDE_DIR=$KL_INC"); CHECK_ARGS+=(--trt-include "$KL_INC")
fi

# --- CUDA versions: nvcc vs TensorRT vs driver (one line and exit 1 on a mismatch) ----------------------------
python3 "$ROOT/actionvos/export/cuda_compat.py" check-build "${CHECK_ARGS[@]}" || exit 1

# --- configure + build --------------------------------------------------------------------------------------
GEN=()
if [[ ! -f "$BUILD_DIR/CMakeCache.txt" ]] && command -v ninja >/dev/null 2>&1; then GEN=(-G Ninja); fi
cmake -S "$SRC" -B "$BUILD_DIR" "${GEN[@]}" "${CMAKE_ARGS[@]}" >&2
cmake --build "$BUILD_DIR" --parallel "$JOBS" >&2

LIB="$BUILD_DIR/libactionvos_msda_plugin.so"
[[ -f "$LIB" ]] || { echo "build.sh: build finished but $LIB is missing" >&2; exit 1; }
echo "$LIB"
