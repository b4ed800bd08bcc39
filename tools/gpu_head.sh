#!/usr/bin/env bash
# Our sampling-head op (omm.OmmSamplingHead, src/OnnxMultimodal.Kernels/sampling_head.cu, issue 16) on the GPU machine:
#   tools/gpu_head.sh start           (first part call; returns at once) in the background: build the kernels, run
#                                     check_sampling_head.py, export Llama-7B int4 (block 128) and Chameleon-7B int4 with the
#                                     standard sampling head and their custom-op variants (tools/gpu_prep.sh), then the
#                                     -ommfs variants: -ommf with the head rewritten to our op (weights hard-linked); then
#                                     Seamless-large int4 (PREP_SET=speech) and cham-int4-vq16 (the fp16 VQ encoder)
#   tools/gpu_head.sh final PARTS OUT (last call) unpack the bundle; the Cuda tests of the op and of the standard head; the
#                                     7B text bench (greedy and sampled) and text->image at 7B shapes, -ommf vs -ommfs
#   tools/gpu_head.sh attention PARTS OUT (last call, instead of final) decode attention by cuDNN's flash attention (the
#                                     default) vs ONNX Runtime's XQA (--xqa) on the 7B runs; image->text TTFT by VQ
#                                     encoder, preprocessing; speech with the encoder's graph; Cuda tests
#   tools/gpu_head.sh trace PARTS OUT (last call, instead of final) per-kernel GPU time (CUPTI, tools/kernel_trace) of the
#                                     7B text decode steps (154-token prompt + 128 tokens, CUDA graph; -ommf and -ommfs)
#                                     and of the text->image request (-ommfs)
# Work dir /tmp/omm-head (kept while the machine is warm). ZSTD as in tools/gpu_env.sh.
set -uo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/omm-head; mkdir -p "$work"
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
# The last call's common start (final, trace, attention): OUT, the bundle unpacked into $work/omm (TESTS_DLL: a test
# assembly built after the bundle, with the same library API, replaces the bundled one), start's background work
# awaited and logged, the card named.
begin_call() {
  parts=$1; out=$2; mkdir -p "$out"
  source "$repo/tools/gpu_env.sh"
  unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
  [ -n "${TESTS_DLL:-}" ] && cp "$TESTS_DLL" "$work/omm/OnnxMultimodal.Tests.dll" && log "tests from $TESTS_DLL"
  OMM=$work/omm/omm
  for i in $(seq 1 90); do grep -q "start done" "$work/status" 2>/dev/null && break; sleep 5; done
  log "$(tr '\n' ' ' 2>/dev/null < "$work/status")"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
}
case ${1:-} in
  start)
    rm -f "$work/status"
    rm -rf "$work/src" && mkdir -p "$work/src" && cp -r "$repo/onnx-export" "$repo/tools" "$repo/src" "$work/src/" 2>/dev/null
    mkdir -p "$work/src/wav" && cp "$repo"/onnx-export/omm_export/audio/*_16k.wav "$work/src/wav/"   # gpu_prep's 10 s clip
    (cd "$work" && NO_PREP=${NO_PREP:-0} PREP_SETS=${PREP_SETS:-text7b cham7b speech} CHECKS=${CHECKS:-sampling_head qk_norm swiglu group_norm} setsid bash -c '
      source src/tools/gpu_env.sh
      bash src/src/OnnxMultimodal.Kernels/build.sh kb > build.log 2>&1; echo "build rc=$?" >> status
      for c in $CHECKS; do   # each kernel against torch on this GPU: check_<c>.py
        (cd src/src/OnnxMultimodal.Kernels && timeout 300 python3 check_$c.py '"$work"'/kb/libomm_int4.so '"$work"'/$c-check.json > '"$work"'/$c-check.log 2>&1); echo "$c check rc=$?" >> status
      done
      if [ "${NO_PREP:-0}" = 1 ]; then echo "start done" >> status; exit 0; fi   # kernels and checks only (the Cuda tests need no 7B package)
      for set in $PREP_SETS; do   # text7b cham7b speech cham16
        rm -f models/prep.done; PREP_SET=$set bash src/tools/gpu_prep.sh '"$work"'/src '"$work"'/models >> prep.out 2>&1; echo "prep $set rc=$?" >> status
      done
      for p in 7b-int4-b128 cham-int4; do
        [ -d models/$p-ommf ] || continue
        from=models/$p-ommf; to=models/$p-ommfs; mkdir -p $to
        for f in $from/*; do case $(basename $f) in decoder.onnx|multimodal.json) ;; decoder.onnx.data) ln -f $(readlink -f $f) $to/ ;; *) ln -sf $(readlink -f $f) $to/ ;; esac; done
        (cd src/onnx-export && python3 - ../../$from ../../$to <<PY
import json, os, sys
import onnx
sys.path.insert(0, ".")
from omm_export.custom_ops import use_omm_sampling_head
src, dst = sys.argv[1:3]
model = onnx.load(os.path.join(src, "decoder.onnx"), load_external_data=False)
print("sampling op", dst, use_omm_sampling_head(model))
onnx.save(model, os.path.join(dst, "decoder.onnx"))
man = json.load(open(os.path.join(src, "multimodal.json")))
json.dump(man, open(os.path.join(dst, "multimodal.json"), "w"), indent=1)
PY
        ) >> prep.out 2>&1; echo "ommfs $p rc=$?" >> status
      done
      pv() { python3 src/tools/package_variant.py "$@" >> prep.out 2>&1; local rc=$?; echo "variant $(basename $2) rc=$rc" >> status; }
      [ -d models/cham-int4-ommfs ] && pv models/cham-int4-ommfs models/cham-int4-ommfsq --qk-norm   # + the qk-norm as OmmQkvHeadNorm
      if [ -f models/cham-int4/multimodal.json ]; then
        pv models/cham-int4 models/cham-int4-vq16 --image-encoder-fp16   # the fp16 VQ encoder as the component
        pv models/cham-int4 models/cham-int4-q --qk-norm                 # + the qk-norm as one op (prefill and decode)
        pv models/cham-int4 models/cham-int4-gn --group-norm             # the image encoder GroupNorms as OmmGroupNorm
        if [ -f models/cham-fp16/multimodal.json ]; then                 # + the fp16 decoder running the prompt (prefill_decoder)
          pv models/cham-fp16 models/cham-fp16-q --qk-norm
          pv models/cham-int4 models/cham-int4-mixed --prefill ../cham-fp16/decoder.onnx
          pv models/cham-int4-q models/cham-int4-q-mixed --prefill ../cham-fp16-q/decoder.onnx
          pv models/cham-int4-q models/cham-int4-q-mixed-gn --prefill ../cham-fp16-q/decoder.onnx --group-norm
          pv models/cham-fp16 models/cham-fp16-e --elementwise           # + each MLP SiLU·up as OmmSwiGlu (both decoders)
          pv models/cham-int4 models/cham-int4-e-mixed --elementwise --group-norm --prefill ../cham-fp16-e/decoder.onnx
        fi
      fi
      [ -f models/7b-fp16/multimodal.json ] && pv models/7b-fp16 models/7b-fp16-e --elementwise   # Llama: SiLU·up as OmmSwiGlu
      echo "start done" >> status
    ' > /dev/null 2>&1 &)
    echo "started in $work" ;;
  final)
    begin_call "$2" "$3"
    cp "$work"/*-check.log "$work"/*-check.json "$work/build.log" "$out/" 2>/dev/null
    for c in "$work"/*-check.log; do log "$(basename "$c" .log): $(grep -E 'cases|us a call|FAIL' "$c" | head -5 | tr -s ' ' | tr '\n' ';')"; done
    env OMM_REPO_ROOT=$repo OMM_KERNELS_DIR=$work/kb timeout 300 "$work/omm/OnnxMultimodal.Tests" \
      --filter "FullyQualifiedName~DeviceSamplingCudaTests|FullyQualifiedName~QkNormOpCudaTests" --output detailed > "$out/cuda-tests.log" 2>&1
    log "cuda tests (op + standard head): rc=$? $(grep -aE 'Passed!|Failed!|Total tests|Passed:|Failed:|Skipped:' "$out/cuda-tests.log" | tr -s ' ' | tr '\n' ' ')"
    m=$work/models; lib="--custom-op-library $work/kb/libomm_kernels.so"
    for round in $( [ "${SKIP_TEXT:-0}" = 1 ] || echo 1 2); do
      for v in 7b-int4-b128-ommf 7b-int4-b128-ommfs; do
        [ -f "$m/$v/multimodal.json" ] || { log "text $v: no package"; continue; }
        bench_text "$v-greedy-r$round" --model "$m/$v" $lib
        bench_text "$v-sampled-r$round" --model "$m/$v" $lib --sampled
      done
    done
    for v in ${IMAGINE:-cham-int4-ommf cham-int4-ommfs}; do
      [ -f "$m/$v/multimodal.json" ] || { log "imagine $v: no package"; continue; }
      t0=$SECONDS
      timeout 150 "$OMM" profile --provider cuda --op-classes false --model "$m/$v" --cuda-graph --task imagine $lib \
        --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/profile-imagine-$v" > "$out/profile-imagine-$v.log" 2>&1
      log "imagine 7b $v: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|decode|per token|TPOT' "$out/profile-imagine-$v.log" | head -4 | tr -s ' ' | tr '\n' ';')"
      mv "$out/profile-imagine-$v" "$out/profile-imagine-$v-$SECONDS" 2>/dev/null   # a package named twice keeps both
    done ;;
  trace)
    begin_call "$2" "$3"
    PACKAGES="7b-int4-b128-ommf 7b-int4-b128-ommfs" MODES=graph KERN=$work/kb/libomm_kernels.so PROMPT_TOKENS=154 NEW_TOKENS=128 \
      BUDGET_S=400 MAX_GZ_MB=1 bash "$repo/tools/gpu_kernel_times.sh" "$OMM" "$work/models" "$out/text" > "$out/text-trace.log" 2>&1
    log "text traces: rc=$? $(grep -E 'summary' "$out/text/kernel-times.txt" | tr -s ' ' | tr '\n' ';')"
    bash "$repo/tools/kernel_trace/build.sh" "$work/trace-lib" > "$out/kernel-trace-build.log" 2>&1 || { log "tracer build failed"; exit 1; }
    v=cham-int4-ommfs; tsv=$work/trace-$v.tsv; rm -f "$tsv"; t0=$SECONDS
    CUDA_INJECTION64_PATH=$work/trace-lib/libkernel_trace.so KERNEL_TRACE_OUT=$tsv timeout 200 "$OMM" profile --provider cuda \
      --op-classes false --model "$work/models/$v" --cuda-graph --task imagine --custom-op-library "$work/kb/libomm_kernels.so" \
      --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/profile-$v" > "$out/profile-$v.log" 2>&1
    log "traced imagine $v: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end' "$out/profile-$v.log" | head -1)"
    # 3 requests (omm profile's warm-up, measured and NVML-sampled runs) of 1023 guided steps each
    python3 "$repo/tools/kernel_trace/summarize.py" "$tsv" --labels "$v" --per-step 3069 --vocab 65536 --block-size 32 --top 40 \
      --json "$out/kernel-times-$v.json" > "$out/kernel-times-$v.txt" 2>&1
    log "  summary rc=$?: $(sed -n 1,4p "$out/kernel-times-$v.txt" | tr '\n' ' ')"
    rm -f "$tsv" ;;
  attention)
    # Decode attention: cuDNN's flash attention (our default on Hopper) against ONNX Runtime's XQA (--xqa) on the 7B text
    # bench (two rounds) and text->image; image->text TTFT by VQ encoder (below); then the Cuda tests of decode
    # attention, of the speech encoder's capture, of the decode loop (CudaTests), of device sampling and of the qk-norm op.
    # RUN picks the parts (default all but capbench): text imagine caption capbench speech image trace tests torch; CAPTIONS,
    # CAPBENCH and TRACES the caption requests (PACKAGE:FLAGS words), TEST_FILTER the Cuda tests
    begin_call "$2" "$3"
    want() { [[ " ${RUN:-text imagine caption speech image trace tests torch} " == *" $1 "* ]]; }
    cp "$work"/*-check.log "$work"/*-check.json "$work/build.log" "$out/" 2>/dev/null
    for c in "$work"/*-check.log; do log "$(basename "$c" .log): $(grep -E 'cases|FAIL' "$c" | head -5 | tr -s ' ' | tr '\n' ';')"; done
    m=$work/models; lib="--custom-op-library $work/kb/libomm_kernels.so"
    python3 -c "from PIL import Image; Image.new('RGB', (640, 512), (90, 140, 200)).save('$work/photo.png')"
    want text && for round in 1 2; do
      for x in flash xqa; do
        flag=$([ $x = xqa ] && echo --xqa)
        bench_text "ommfs-greedy-$x-r$round" --model "$m/7b-int4-b128-ommfs" $lib $flag
        [ $round = 1 ] && bench_text "ommfs-sampled-$x-r$round" --model "$m/7b-int4-b128-ommfs" $lib --sampled $flag
      done
    done
    # the fp16 text rows: Llama-7B fp16 + CUDA graph, 154-token prompt + 358 tokens (TTFT and ms/token), stock and with
    # SiLU·up as our op; then PyTorch's static-KV loop in the same call, eager and compiled (reduce-overhead), step and
    # prompt pass (torch_decode.py --sections static,compile,prefill)
    want text16 && for round in 1 2; do
      for v in 7b-fp16 7b-fp16-e; do
        [ -f "$m/$v/multimodal.json" ] || { log "text $v: no package"; continue; }
        flag=; grep -q custom_op_domains "$m/$v/multimodal.json" && flag=$lib
        bench_text "$v-r$round" --model "$m/$v" $flag
      done
    done
    if want text16; then
      t0=$SECONDS; (cd "$repo/onnx-export" && PYTHONUNBUFFERED=1 timeout 300 python3 bench/torch_decode.py --preset 7b --prompt-tokens 154 \
        --new-tokens 358 --sections static,compile,prefill > "$out/torch-7b-fp16.json" 2> "$out/torch-7b-fp16.err")
      log "torch 7b fp16 (static, reduce-overhead): rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-7b-fp16.json")"
    fi
    # per-kernel GPU time of the fp16 step (CUPTI): 154-token prompt + 128 tokens, CUDA graph, with OmmSwiGlu
    if want text16trace; then
      PACKAGES="7b-fp16-e" MODES=graph KERN=$work/kb/libomm_kernels.so PROMPT_TOKENS=154 NEW_TOKENS=128 BUDGET_S=200 MAX_GZ_MB=1 \
        bash "$repo/tools/gpu_kernel_times.sh" "$OMM" "$m" "$out/text16" > "$out/text16-trace.log" 2>&1
      log "fp16 text trace: rc=$? $(grep -aE 'summary|kernel time' "$out/text16/kernel-times.txt" | head -3 | tr -s ' ' | tr '\n' ';')"
    fi
    want imagine && for x in flash xqa; do
      flag=$([ $x = xqa ] && echo --xqa); v=cham-int4-ommfsq; t0=$SECONDS
      timeout 150 "$OMM" profile --provider cuda --op-classes false --model "$m/$v" --cuda-graph --task imagine $lib $flag \
        --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/imagine-$x" > "$out/imagine-$x.log" 2>&1
      log "imagine $v $x: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|\| decode' "$out/imagine-$x.log" | head -2 | tr -s ' ' | tr '\n' ';')"
    done
    # image->text TTFT: the fp32 VQ encoder, the same on TF32 tensor cores (--tf32), the fp16 encoder (cham-int4-vq16);
    # then preprocessing alone (omm bench image) on the 640x512 PNG and a 1600x1200 JPEG; then per-kernel times of the
    # fp32 and fp16 encoder requests (CUPTI)
    # CAPTIONS: PACKAGE:FLAGS words (flags joined by commas), e.g. cham-int4:--tf32
    want caption && for spec in ${CAPTIONS:-cham-int4: cham-int4:--tf32 cham-int4-vq16:}; do
      v=${spec%%:*}; flag=$(echo "${spec#*:}" | tr ',' ' '); x=$v$(echo "$flag" | tr -d ' -')
      [ -f "$m/$v/multimodal.json" ] || { log "caption $v: no package"; continue; }
      grep -q custom_op_domains "$m/$v/multimodal.json" && flag="$flag $lib"
      timeout 90 "$OMM" profile --provider cuda --op-classes false --model "$m/$v" --cuda-graph \
        --task caption $flag --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30 --out "$out/caption-$x" > "$out/caption-$x.log" 2>&1
      log "caption $v ${spec#*:}: rc=$? $(grep -aE 'time to first token|\| (preprocess|encode|prefill|first token|decode) ' "$out/caption-$x.log" | tr -s ' ' | tr '\n' ';')"
    done
    # speech->text, the best speech package: the decoder's CUDA graph alone, then with the encoder's (captured at a
    # length's second request: two warm-up requests)
    want speech && for x in plain encoder-graph; do
      flag=$([ $x = encoder-graph ] && echo --encoder-graph)
      timeout 120 "$OMM" profile --provider cuda --op-classes false --model "$m/seamless-int4-mha-e16" --cuda-graph $flag --task transcribe \
        --audio "$m/speech_10s.wav" --max-tokens 35 --warmup 2 --out "$out/transcribe-$x" > "$out/transcribe-$x.log" 2>&1
      log "transcribe $x: rc=$? $(grep -aE 'time to first token|\| (preprocess|encode|prefill|first token|decode) ' "$out/transcribe-$x.log" | tr -s ' ' | tr '\n' ';')"
    done
    # whole caption requests, TTFT p50 of 10 after 3 warm-ups (omm bench --task caption); CAPBENCH as CAPTIONS
    want capbench && for spec in ${CAPBENCH:-cham-int4:--tf32}; do
      v=${spec%%:*}; flag=$(echo "${spec#*:}" | tr ',' ' '); x=$v$(echo "$flag" | tr -d ' -')
      [ -f "$m/$v/multimodal.json" ] || { log "capbench $v: no package"; continue; }
      grep -q custom_op_domains "$m/$v/multimodal.json" && flag="$flag $lib"
      timeout 120 "$OMM" bench --provider cuda --model "$m/$v" --cuda-graph --task caption --image "$work/photo.png" $flag \
        --new-tokens 8 --runs 10 --warmup 3 --json "$out/capbench-$x.json" > "$out/capbench-$x.log" 2>&1
      log "capbench $v ${spec#*:}: rc=$? $(python3 -c "import json,sys; r=json.load(open(sys.argv[1]))['results'][0]; print('TTFT p50', r['ttft_ms_p50'], 'ms; end to end p50', r['end_to_end_ms_p50'])" "$out/capbench-$x.json" 2>&1 | tail -1)"
    done
    want image && python3 -c "
from PIL import Image
import numpy as np
g = np.random.default_rng(1); y, x = np.mgrid[0:1200, 0:1600]
a = np.stack([x * 255 // 1600, y * 255 // 1200, (x + y) % 256], -1) + g.integers(-20, 20, (1200, 1600, 3))
Image.fromarray(np.clip(a, 0, 255).astype(np.uint8)).save('$work/photo.jpg', quality=90)"
    want image && for img in photo.png photo.jpg; do
      "$OMM" bench image --image "$work/$img" --size 512 --runs 50 --json "$out/image-$img.json" > "$out/image-$img.log" 2>&1
      log "bench image $img: rc=$? $(grep -aE 'x[0-9]+ ->' "$out/image-$img.log" | tr -s ' ')"
    done
    if want trace; then bash "$repo/tools/kernel_trace/build.sh" "$work/trace-lib" > "$out/kernel-trace-build.log" 2>&1 || log "tracer build failed"; fi
    want trace && for spec in ${TRACES:-cham-int4: cham-int4-vq16:}; do   # gzipped traces come back (each request's phases read from them)
      v=${spec%%:*}; flag=$(echo "${spec#*:}" | tr ',' ' '); x=$v$(echo "$flag" | tr -d ' -'); tsv=$work/trace-caption-$x.tsv; rm -f "$tsv"
      [ -f "$m/$v/multimodal.json" ] || continue
      grep -q custom_op_domains "$m/$v/multimodal.json" && flag="$flag $lib"
      CUDA_INJECTION64_PATH=$work/trace-lib/libkernel_trace.so KERNEL_TRACE_OUT=$tsv timeout 90 "$OMM" profile --provider cuda $flag \
        --op-classes false --model "$m/$v" --cuda-graph --task caption --image "$work/photo.png" --prompt "What is in this image?" \
        --max-tokens 30 --out "$out/caption-traced-$x" > "$out/caption-traced-$x.log" 2>&1
      rc=$?
      python3 "$repo/tools/kernel_trace/summarize.py" "$tsv" --labels "caption-$x" --top 40 --json "$out/kernel-times-caption-$x.json" \
        > "$out/kernel-times-caption-$x.txt" 2>&1
      log "traced caption $x: rc=$rc, summary rc=$? $(sed -n 1,3p "$out/kernel-times-caption-$x.txt" | tr '\n' ' ')"; gzip -c "$tsv" > "$out/trace-caption-$x.tsv.gz"; rm -f "$tsv"
    done
    want tests && for last in "" "-last"; do   # the CUDA-only fixtures the Cuda tests need and the repository does not carry (as gpu_final.sh)
      [ -f "$repo/models/tiny-chameleon-fp16$last/multimodal.json" ] && continue
      (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from ../models/tiny-chameleon --out ../models/tiny-chameleon-fp16$last \
         --graph fused --precision fp16 --link-components ${last:+--last-logits}) >> "$out/fixtures.log" 2>&1
      log "fixture tiny-chameleon-fp16$last: rc=$?"
    done
    if want tests; then
      env OMM_REPO_ROOT=$repo OMM_KERNELS_DIR=$work/kb timeout 240 "$work/omm/OnnxMultimodal.Tests" \
        --filter "${TEST_FILTER:-FullyQualifiedName~DecodeAttentionCudaTests|FullyQualifiedName~EncoderGraphCudaTests|FullyQualifiedName~OnnxMultimodal.Tests.CudaTests|FullyQualifiedName~DeviceSamplingCudaTests|FullyQualifiedName~QkNormOpCudaTests}" \
        --output detailed > "$out/cuda-tests.log" 2>&1
      log "cuda tests: rc=$? $(grep -aE 'Passed!|Failed!|Total tests|Passed:|Failed:|Skipped:|  (total|failed|succeeded|skipped):' "$out/cuda-tests.log" | tr -s ' ' | tr '\n' ' ')"
    fi
    # PyTorch's image->text in the same call: transformers eager with the whole model in fp16 (VQ encode + prefill)
    if want torch; then
      t0=$SECONDS; (cd "$repo/onnx-export" && timeout 240 python3 bench/torch_tasks.py --task caption --compile-modes none > "$out/torch-caption.json" 2> "$out/torch-caption.err")
      log "torch caption (eager): rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-caption.json")"
    fi ;;
  *) echo "usage: tools/gpu_head.sh start | final PARTS OUT | trace PARTS OUT | attention PARTS OUT"; exit 2 ;;
esac
