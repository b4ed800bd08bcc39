#!/usr/bin/env bash
# A short GPU call for one kernel lever (after the bundle's parts are on the machine and tools/gpu_prep.sh with
# PREP_SET=text7b has been started): builds the kernels (full micro-benchmark and checks), converts the trained code
# model three ways (stock, omm, omm-fused), runs the custom-op Cuda tests, then benches the 7B packages stock, omm,
# omm-fused and omm-fused with a stock prefill decoder (-ommfp) with the CUDA graph (same call, same card) and traces
# their kernels (tools/gpu_kernel_times.sh).
#   [BLOCKS="32 128"] [ROUNDS=2] [TRACE=0] [KERNELS_QUICK=1] tools/gpu_fused_check.sh PARTS_DIR MODELS_DIR OUT_DIR
set -uo pipefail
parts=$1; m=$2; out=$3; mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd); work=/tmp/omm-final; mkdir -p "$work"
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
source "$repo/tools/gpu_env.sh"
unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
OMM=$work/omm/omm; KERN=$work/kern/libomm_kernels.so
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
rm -rf "$work/kern"
quick=(); [ "${KERNELS_QUICK:-0}" = 1 ] && quick=(--quick)
timeout 300 bash "$repo/tools/gpu_kernels.sh" "$work/kern" "${quick[@]}" > "$out/kernels.log" 2>&1
log "kernels: rc=$? $(tail -1 "$work/kern/summary.txt" 2>/dev/null)"
mkdir -p "$out/kern"; cp "$work/kern/"*.log "$work/kern/"*.json "$work/kern/summary.txt" "$out/kern/" 2>/dev/null
[ -f "$work/kern/packages.tar" ] && tar -xf "$work/kern/packages.tar" -C "$work/kern"
for v in "code-int4h" "code-int4h-omm --custom-ops omm" "code-int4h-ommf --custom-ops omm-fused"; do
  set -- $v; name=$1; shift
  rm -rf "$work/code-int4/$name"
  (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from ../models/code --out "$work/code-int4/$name" \
     --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 "$@") >> "$out/code-int4.log" 2>&1
  log "code $name: rc=$?"
done
export OMM_REPO_ROOT=$repo OMM_KERNELS_DIR=$work/kern OMM_CODE_INT4_PACKAGES=$work/code-int4
timeout 200 "$work/omm/OnnxMultimodal.Tests" --filter "FullyQualifiedName~CustomOpsCudaTests" --output detailed > "$out/cuda-tests.log" 2>&1
log "custom-op cuda tests: rc=$? $(grep -E 'total:|failed:|succeeded:|skipped:' "$out/cuda-tests.log" | tr -d ' \n')"
grep -E "^\s*(Failed|Skipped) " "$out/cuda-tests.log" | head -20 | tee -a "$out/summary.txt"
for _ in $(seq 1 60); do [ -f "$m/prep.done" ] && break; sleep 5; done
log "prep: $(tail -3 "$m/prep.log" 2>/dev/null | tr '\n' ';')"
for bs in ${BLOCKS:-32}; do
  pk=$m/7b-int4-b$bs
  for round in $(seq 1 ${ROUNDS:-2}); do   # interleaved rounds, so a drift of the card shows
    bench_text b$bs-device-r$round --model "$pk"
    bench_text b$bs-device-omm-r$round --model "$pk-omm" --custom-op-library "$KERN"
    [ -d "$pk-ommf" ] && bench_text b$bs-device-ommf-r$round --model "$pk-ommf" --custom-op-library "$KERN"
    [ -d "$pk-ommfp" ] && bench_text b$bs-device-ommfp-r$round --model "$pk-ommfp" --custom-op-library "$KERN"
  done
done
[ "${TRACE:-1}" = 1 ] || exit 0
KERN=$KERN MODES=graph BUDGET_S=120 timeout 200 bash "$repo/tools/gpu_kernel_times.sh" "$OMM" "$m" "$out/kernel-times" > "$out/kernel-times.log" 2>&1
log "kernel times: rc=$?"
sed -n '/^== decode GEMV/,$p' "$out/kernel-times/kernel-times.txt" 2>/dev/null | tee -a "$out/summary.txt"
