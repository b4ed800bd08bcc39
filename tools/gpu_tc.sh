#!/usr/bin/env bash
# The tensor-core int4 GEMV tiles (int4_gemv.cu, issue 16) on the GPU machine, in two parts so the work overlaps the
# bundle's part transfers:
#   tools/gpu_tc.sh start          (first part call; returns at once) in the background: build the kernels, run the
#                                  whole micro-benchmark (every tile, every check) while the GPU is otherwise idle, then
#                                  export Chameleon-7B int4 and its custom-op variants (tools/gpu_prep.sh, PREP_SET=cham7b)
#   tools/gpu_tc.sh final PARTS OUT   (last call) unpack the bundle, wait for the above, then text->image at 7B shapes
#                                  (1024 guided 2-row steps + VQ decode, CUDA graph, token chosen on the device) with
#                                  stock MatMulNBits, our GEMV (OmmMatMulInt4) and our GEMV with the SwiGLU fusion
#   tools/gpu_tc.sh shapes PARTS OUT  the trained shapes world's C# tests on CUDA with this checkout's fused graph
#   tools/gpu_tc.sh trace PARTS OUT   (last call, instead of final; start with TC_BENCH=0) per-kernel GPU time of that
#                                  request, stock and ours + SwiGLU, under tools/kernel_trace
# Work dir /tmp/omm-tc (kept while the machine is warm). ZSTD as in tools/gpu_env.sh.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/omm-tc; mkdir -p "$work"
case ${1:-} in
  start)
    rm -f "$work/status"   # a second start on a warm machine must not find the first one's "prep rc"
    rm -rf "$work/src" && mkdir -p "$work/src" && cp -r "$repo/onnx-export" "$repo/tools" "$repo/src" "$work/src/" 2>/dev/null
    mkdir -p "$work/src/wav"
    (cd "$work" && setsid bash -c '
      source src/tools/gpu_env.sh
      bash src/src/OnnxMultimodal.Kernels/build.sh kb > build.log 2>&1; echo "build rc=$?" >> status
      if [ "${TC_BENCH:-1}" = 1 ]; then
        (cd src/src/OnnxMultimodal.Kernels && timeout 300 python3 bench_int4_gemv.py '"$work"'/kb/libomm_int4.so '"$work"'/int4_gemv.json > '"$work"'/bench.log 2>&1); echo "bench rc=$?" >> status
      fi
      PREP_SET=cham7b bash src/tools/gpu_prep.sh '"$work"'/src '"$work"'/models > prep.out 2>&1; echo "prep rc=$?" >> status
    ' > /dev/null 2>&1 &)
    echo "started in $work" ;;
  final)
    parts=$2; out=$3; mkdir -p "$out"
    source "$repo/tools/gpu_env.sh"
    log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
    unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
    OMM=$work/omm/omm
    for i in $(seq 1 60); do grep -q "prep rc" "$work/status" 2>/dev/null && break; sleep 5; done
    log "$(tr '\n' ' ' 2>/dev/null < "$work/status"); prep: $(tr '\n' ';' < "$work/models/prep.log" 2>/dev/null)"
    cp "$work/bench.log" "$work/build.log" "$out/" 2>/dev/null; gzip -c "$work/int4_gemv.json" > "$out/int4_gemv.json.gz" 2>/dev/null
    grep -E '^(device|correctness|tile rule|M=)' "$work/bench.log" | cut -c1-400 | while read -r line; do log "  $line"; done
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
    m=$work/models
    for v in cham-int4 cham-int4-omm cham-int4-ommf; do
      [ -f "$m/$v/multimodal.json" ] || { log "imagine $v: no package"; continue; }
      lib=""; [ "$v" = cham-int4 ] || lib="--custom-op-library $work/kb/libomm_kernels.so"
      t0=$SECONDS
      timeout 150 "$OMM" profile --provider cuda --op-classes false --model "$m/$v" --cuda-graph --task imagine $lib \
        --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/profile-imagine-$v" > "$out/profile-imagine-$v.log" 2>&1
      log "imagine 7b $v: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|decode|per token|TPOT' "$out/profile-imagine-$v.log" | head -4 | tr -s ' ' | tr '\n' ';')"
    done ;;
  shapes)   # the trained shapes world on CUDA (fp16; int4 block 32, fp16 activations) converted here with this checkout's
            # fused graph from the carried training-run package (.carry/pack/trained-fp32.tar.zst), with the committed
            # image decoder and guidance settings, as tools/gpu_final.sh step 3 does: the C# TrainedShapes tests
    parts=$2; out=$3; mkdir -p "$out"
    source "$repo/tools/gpu_env.sh"
    log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
    unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
    rm -rf "$work/tsrc" && mkdir -p "$work/tsrc" && ${ZSTD:-zstd} -dc "$repo/.carry/pack/trained-fp32.tar.zst" | tar -C "$work/tsrc" -xf - || { log "no trained-fp32 carry"; exit 1; }
    for prec in fp16 int4; do
      d=$work/shapes-$prec; rm -rf "$d"; extra=""; [ $prec = int4 ] && extra="--int4-activation fp16 --block-size 32"
      (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from "$work/tsrc/shapes-fp32" --out "$d" --graph fused --precision $prec $extra) >> "$out/convert.log" 2>&1
      log "convert shapes $prec: rc=$?"
      cmp -s "$repo/models/shapes/image_encoder.onnx" "$d/image_encoder.onnx" && cp "$repo/models/shapes/image_decoder.onnx" "$d/"
      python3 -c "import json,sys; g=json.load(open(sys.argv[1]))['guidance']; m=json.load(open(sys.argv[2])); m['guidance']=g; json.dump(m, open(sys.argv[2],'w'), indent=2)" \
        "$repo/models/shapes/multimodal.json" "$d/multimodal.json"
      env OMM_REPO_ROOT=$repo OMM_TRAINED_PROVIDER=cuda OMM_TRAINED_SHAPES=$d timeout 200 "$work/omm/OnnxMultimodal.Tests" \
        --filter "FullyQualifiedName~TrainedShapes" --output detailed > "$out/trained-shapes-$prec.log" 2>&1
      log "trained shapes $prec on CUDA: rc=$? $(grep -aoE '[a-z][a-z ()/,-]*: [0-9]+/[0-9]+ = [0-9.]+ ?%' "$out/trained-shapes-$prec.log" | sort -u | tr '\n' ';')"
    done ;;
  trace)   # per-kernel GPU time of the text->image request (stock vs our GEMV + SwiGLU), tools/kernel_trace (CUPTI)
    parts=$2; out=$3; mkdir -p "$out"
    source "$repo/tools/gpu_env.sh"
    log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
    unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
    OMM=$work/omm/omm
    bash "$repo/tools/kernel_trace/build.sh" "$work/trace-lib" > "$out/kernel-trace-build.log" 2>&1 || { log "tracer build failed"; exit 1; }
    for i in $(seq 1 60); do grep -q "prep rc" "$work/status" 2>/dev/null && break; sleep 5; done
    log "$(tr '\n' ' ' 2>/dev/null < "$work/status")"
    m=$work/models
    for v in cham-int4-ommf cham-int4; do
      [ -f "$m/$v/multimodal.json" ] || { log "trace $v: no package"; continue; }
      lib=""; [ "$v" = cham-int4 ] || lib="--custom-op-library $work/kb/libomm_kernels.so"
      tsv=$work/trace-$v.tsv; rm -f "$tsv"; t0=$SECONDS
      CUDA_INJECTION64_PATH=$work/trace-lib/libkernel_trace.so KERNEL_TRACE_OUT=$tsv timeout 200 "$OMM" profile --provider cuda \
        --op-classes false --model "$m/$v" --cuda-graph --task imagine $lib --prompt "A photo of a mountain lake at sunrise with a small red boat" \
        --warmup 1 --out "$out/profile-$v" > "$out/profile-$v.log" 2>&1
      log "traced imagine $v: rc=$? in $((SECONDS - t0)) s, $(wc -l 2>/dev/null < "$tsv") trace lines: $(grep -aiE 'end to end' "$out/profile-$v.log" | head -1)"
      # 3 requests (omm profile's warm-up, measured and NVML-sampled runs) of 1023 guided steps each (the first token
      # comes from the prompt's pass)
      python3 "$repo/tools/kernel_trace/summarize.py" "$tsv" --labels "$v" --per-step 3069 --vocab 65536 --block-size 32 --top 40 \
        --json "$out/kernel-times-$v.json" > "$out/kernel-times-$v.txt" 2>&1
      log "  summary rc=$?: $(sed -n 1,4p "$out/kernel-times-$v.txt" | tr '\n' ' ')"
      rm -f "$tsv"
    done ;;
  *) echo "usage: tools/gpu_tc.sh start | final PARTS OUT | shapes PARTS OUT | trace PARTS OUT"; exit 2 ;;
esac
