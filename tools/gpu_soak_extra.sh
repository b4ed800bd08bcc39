#!/usr/bin/env bash
# A follow-up GPU call on a fresh machine (the bundle's parts already in PARTS_DIR): the shapes model converted to
# int4 with fp16 activations and its semantic tests on CUDA, then a 10,000-request CUDA soak.
#   tools/gpu_soak_extra.sh PARTS_DIR OUT_DIR      (carry .carry/zstd and .carry/pack; ZSTD as for gpu_final.sh)
set -uo pipefail
parts=$1; out=$2; mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd); work=/tmp/omm-final; mkdir -p "$work"
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
source "$repo/tools/gpu_env.sh"
unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
tsrc=$work/trained-src; mkdir -p "$tsrc"
[ -d "$tsrc/shapes-fp32" ] || ${ZSTD:-zstd} -dc "$repo/.carry/pack/trained-fp32.tar.zst" | tar -C "$tsrc" -xf -
(cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from "$tsrc/shapes-fp32" --out "$work/shapes-int4" --graph fused \
   --precision int4 --int4-activation fp16 --block-size 32) > "$out/convert.log" 2>&1
log "shapes int4 (fp16 activations, block 32): rc=$?"
env OMM_REPO_ROOT=$repo OMM_TRAINED_PROVIDER=cuda OMM_TRAINED_SHAPES=$work/shapes-int4 timeout 200 "$work/omm/OnnxMultimodal.Tests" \
  --filter "FullyQualifiedName~TrainedShapes" --output detailed > "$out/trained-shapes-int4.log" 2>&1
log "trained shapes int4 on CUDA: rc=$? $(grep -aoE '[a-z][a-z ()/-]*: [0-9]+/[0-9]+ = [0-9.]+ %' "$out/trained-shapes-int4.log" | sort -u | tr '\n' ';')"
t0=$SECONDS
timeout ${SOAK_SECONDS:-300} "$work/omm/omm" soak -n ${SOAK_N:-10000} -c 4 --reload-every 500 --interval 500 --provider cuda,cpu --models "$repo/models" \
  --json "$out/soak-cuda-10k.json" > "$out/soak.log" 2>&1
log "soak cuda: rc=$? in $((SECONDS - t0)) s: $(grep -a 'requests in' "$out/soak.log")"
