#!/usr/bin/env bash
# Builds the kernel tracer (kernel_trace.cc, a CUDA injection library on CUPTI's Activity API) into
#   OUT_DIR/libkernel_trace.so
# against the CUDA toolkit at $CUDA_HOME (default /usr/local/cuda): CUPTI headers and library from extras/CUPTI
# (or the toolkit's own include/lib64), with an rpath to the CUPTI library so nothing else needs setting.
# The activity record structs are versioned and the newest differs between CUDA 13.x releases: the newest
# CUpti_ActivityKernelN / MemcpyN / MemsetN that cupti_activity.h defines is passed to the compiler. If the memcpy /
# memset records do not compile, the library is built for kernels alone.
#   tools/kernel_trace/build.sh OUT_DIR
# Use: CUDA_INJECTION64_PATH=OUT_DIR/libkernel_trace.so KERNEL_TRACE_OUT=trace.tsv <program>
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: tools/kernel_trace/build.sh OUT_DIR}
mkdir -p "$out"; out=$(cd "$out" && pwd)
cuda=${CUDA_HOME:-/usr/local/cuda}
inc=; lib=
for d in "$cuda/extras/CUPTI/include" "$cuda/include" "$cuda/targets/x86_64-linux/include"; do
  [ -f "$d/cupti.h" ] && { inc=$d; break; }
done
for d in "$cuda/extras/CUPTI/lib64" "$cuda/lib64" "$cuda/targets/x86_64-linux/lib"; do
  ls "$d"/libcupti.so* > /dev/null 2>&1 && { lib=$d; break; }
done
# no CUPTI in the toolkit (the H100 machine's CUDA 13 install has no extras/CUPTI): a pip wheel's copy, e.g. torch's
# nvidia-cuda-cupti (site-packages/nvidia/cu13/{include,lib}), found by searching CUPTI_SEARCH
if [ -z "$inc" ] || [ -z "$lib" ]; then
  # the newest path by version sort (a cu13 wheel before a cu12 one); find's and head's exit codes must not end the script
  h=$({ find ${CUPTI_SEARCH:-/opt /usr/local /usr/lib /usr/include /root} -name cupti.h 2>/dev/null || true; } | sort -V | tail -1)
  if [ -n "$h" ]; then
    l=$({ find "$(dirname "$(dirname "$h")")" -maxdepth 3 -name 'libcupti.so*' 2>/dev/null || true; } | sort -V | tail -1)
    [ -n "$l" ] && { inc=$(dirname "$h"); lib=$(dirname "$l"); }
  fi
fi
[ -n "$inc" ] || { echo "cupti.h not found under $cuda" >&2; exit 2; }
[ -n "$lib" ] || { echo "libcupti.so not found under $cuda" >&2; exit 2; }
# the newest version number of a record struct that cupti_activity.h itself defines ("} CUpti_ActivityKernel10;")
newest() { { grep -ohE "\}[[:space:]]*$1[0-9]+[[:space:]]*;" "$inc/cupti_activity.h" 2>/dev/null || true; } |
             { grep -oE "[0-9]+[[:space:]]*;" || true; } | tr -d ' ;' | sort -n | tail -1; }
defs=()
k=$(newest CUpti_ActivityKernel); c=$(newest CUpti_ActivityMemcpy); s=$(newest CUpti_ActivityMemset)
[ -n "$k" ] && defs+=(-DKT_KERNEL_RECORD=CUpti_ActivityKernel$k)
[ -n "$c" ] && defs+=(-DKT_MEMCPY_RECORD=CUpti_ActivityMemcpy$c)
[ -n "$s" ] && defs+=(-DKT_MEMSET_RECORD=CUpti_ActivityMemset$s)
echo "CUPTI: include $inc, library $lib; records: kernel ${k:-default} memcpy ${c:-default} memset ${s:-default}"
cc=(g++ -O2 -std=c++17 -fPIC -shared -Wall -Wextra -fvisibility=hidden -I"$cuda/include" -I"$inc")
# RPATH, not RUNPATH: the toolkit's libcupti even where LD_LIBRARY_PATH (tools/gpu_env.sh) lists a pip wheel's copy first
# a wheel ships only libcupti.so.N (no unversioned name for -lcupti): link the file itself
cupti_so=$lib/libcupti.so; [ -e "$cupti_so" ] || cupti_so=$(ls "$lib"/libcupti.so.* | sort | head -1)
link=("$cupti_so" -Wl,--disable-new-dtags -Wl,-rpath,"$lib" -pthread)
so=$out/libkernel_trace.so
if ! "${cc[@]}" "${defs[@]}" "$here/kernel_trace.cc" -o "$so" "${link[@]}"; then
  echo "retrying without the memcpy / memset records" >&2
  kdefs=(); [ -n "$k" ] && kdefs+=(-DKT_KERNEL_RECORD=CUpti_ActivityKernel$k)
  "${cc[@]}" "${kdefs[@]}" -DKT_KERNELS_ONLY "$here/kernel_trace.cc" -o "$so" "${link[@]}"
fi
nm -D --defined-only "$so" | grep -q ' InitializeInjection$' || { echo "InitializeInjection is not exported from $so" >&2; exit 1; }
echo "built $so"
