#!/usr/bin/env bash
# Builds the CUDA kernels (sm_90, CUDA toolkit at $CUDA_HOME, default /usr/local/cuda) into
#   $BUILD/libomm_int4.so      the kernels alone (C entry points; the micro-benchmark and check_sampling_head.py load it
#                              with ctypes): the int4 GEMV (int4_gemv.cu), the sampling head (sampling_head.cu), the
#                              qk-norm (qk_norm.cu), SwiGLU (swiglu.cu), GroupNorm (group_norm.cu)
#   $BUILD/libomm_kernels.so   the same kernels + the ONNX Runtime custom-op library (RegisterCustomOps),
#                              built when the ORT C/C++ headers are found: $ORT_INCLUDE, else ./ort-include
#                              (ignored; copied from the Microsoft.ML.OnnxRuntime NuGet package by
#                              `build.sh --fetch-headers` on a machine that has it), else ~/.nuget/...
#   build.sh [BUILD_DIR] [--fetch-headers]      (BUILD_DIR defaults to ./build, also ignored)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build; fetch=0
for a in "$@"; do case $a in --fetch-headers) fetch=1 ;; *) build=$a ;; esac; done
ort_nuget=${ORT_NUGET_INCLUDE:-$HOME/.nuget/packages/microsoft.ml.onnxruntime/1.31.1/build/native/include}
if [ $fetch = 1 ]; then
  mkdir -p "$here/ort-include"
  cp "$ort_nuget"/onnxruntime_{c_api,cxx_api,cxx_inline,float16,ep_c_api,error_code}.h "$here/ort-include/"
  cp "$(dirname "$(dirname "$(dirname "$ort_nuget")")")/LICENSE" "$here/ort-include/LICENSE" 2>/dev/null || true
  echo "headers copied to $here/ort-include"; exit 0
fi
cuda=${CUDA_HOME:-/usr/local/cuda}
nvcc=$cuda/bin/nvcc
mkdir -p "$build"
arch=${OMM_CUDA_ARCH:-sm_90}
flags=(-O3 -std=c++17 -arch="$arch" -Xcompiler -fPIC -lineinfo)
# 4 row counts x 10 FMA tiles x 3 modes (plain, SiLU-mul, SwiGLU) + 9 tensor-core tiles x 3 modes: --split-compile=0 runs the optimiser on every core (CUDA >= 12);
# an nvcc without it falls back to a plain build.
"$nvcc" "${flags[@]}" --split-compile=0 -c "$here/int4_gemv.cu" -o "$build/int4_gemv.o" -Xptxas -v 2> "$build/ptxas.log" ||
  "$nvcc" "${flags[@]}" -c "$here/int4_gemv.cu" -o "$build/int4_gemv.o" -Xptxas -v 2> "$build/ptxas.log" ||
  { cat "$build/ptxas.log"; exit 1; }
# Registers and local memory (spills) per instantiation, one line each. cuobjdump prints " Function <mangled>:" and
# on the next line "  REG:n STACK:n SHARED:n LOCAL:n ..." (joined here; the phase-2 build grepped the name line alone
# and so printed no numbers); the mangled name carries the template arguments <M, rows, unroll, split, mode>
# (mode 0 plain, 1 SiLU-mul, 2 SwiGLU).
"$cuda/bin/cuobjdump" --dump-resource-usage "$build/int4_gemv.o" 2>/dev/null |
  awk '/Function .*int4_(gemv|mma)_kernelILi/ { fn = $0; if ($0 ~ /REG:/) { print fn; fn = "" }; next }
       fn != "" && /REG:/ { print fn " " $0; fn = "" }' |
  grep -oE 'int4_(gemv|mma)_kernelILi.*' | tr -s ' ' |
  sed -E -e 's/^int4_gemv_kernelILi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)E[^:]*:/  M=\1 rows=\2 unroll=\3 split=\4 mode=\5:/' \
         -e 's/^int4_mma_kernelILi([0-9]+)ELi([0-9]+)ELi([0-9]+)ELi([0-9]+)E[^:]*:/  tensor cores: m16 tiles=\1 unroll=\2 split=\3 mode=\4:/' |
  tee "$build/registers.txt" || true
echo "  spills: $(grep -o '[1-9][0-9]* bytes spill stores' "$build/ptxas.log" | sort -u | tr '\n' ' ')(none if empty)"
"$nvcc" "${flags[@]}" -c "$here/sampling_head.cu" -o "$build/sampling_head.o" -Xptxas -v 2> "$build/ptxas-sampling.log" ||
  { cat "$build/ptxas-sampling.log"; exit 1; }
grep -A1 "head_select\|head_prep" "$build/ptxas-sampling.log" | grep -oE "Used [0-9]+ registers.*|[0-9]+ bytes spill.*" | sed 's/^/  sampling head: /' || true
"$nvcc" "${flags[@]}" -c "$here/qk_norm.cu" -o "$build/qk_norm.o" || exit 1
"$nvcc" "${flags[@]}" -c "$here/swiglu.cu" -o "$build/swiglu.o" || exit 1
"$nvcc" "${flags[@]}" -c "$here/group_norm.cu" -o "$build/group_norm.o" || exit 1
"$nvcc" -shared -arch="$arch" "$build/int4_gemv.o" "$build/sampling_head.o" "$build/qk_norm.o" "$build/swiglu.o" "$build/group_norm.o" -o "$build/libomm_int4.so"
echo "built $build/libomm_int4.so"
ort_inc=${ORT_INCLUDE:-}
for d in "$ort_inc" "$here/ort-include" "$ort_nuget"; do
  if [ -n "$d" ] && [ -f "$d/onnxruntime_cxx_api.h" ]; then ort_inc=$d; break; fi; ort_inc=
done
if [ -z "$ort_inc" ]; then
  echo "ORT headers not found (set ORT_INCLUDE or run build.sh --fetch-headers where the NuGet package is): libomm_kernels.so skipped" >&2
  exit 2
fi
g++ -O2 -std=c++17 -fPIC -Wall -Wextra -I"$ort_inc" -c "$here/matmul_int4_op.cc" -o "$build/matmul_int4_op.o"
g++ -O2 -std=c++17 -fPIC -Wall -Wextra -I"$ort_inc" -c "$here/sampling_head_op.cc" -o "$build/sampling_head_op.o"
g++ -O2 -std=c++17 -fPIC -Wall -Wextra -I"$ort_inc" -c "$here/qk_norm_op.cc" -o "$build/qk_norm_op.o"
g++ -O2 -std=c++17 -fPIC -Wall -Wextra -I"$ort_inc" -c "$here/swiglu_op.cc" -o "$build/swiglu_op.o"
g++ -O2 -std=c++17 -fPIC -Wall -Wextra -I"$ort_inc" -c "$here/group_norm_op.cc" -o "$build/group_norm_op.o"
"$nvcc" -shared -arch="$arch" "$build/int4_gemv.o" "$build/sampling_head.o" "$build/qk_norm.o" "$build/swiglu.o" "$build/group_norm.o" \
  "$build/matmul_int4_op.o" "$build/sampling_head_op.o" "$build/qk_norm_op.o" "$build/swiglu_op.o" "$build/group_norm_op.o" -o "$build/libomm_kernels.so" \
  -Xlinker --exclude-libs=ALL
echo "built $build/libomm_kernels.so"
