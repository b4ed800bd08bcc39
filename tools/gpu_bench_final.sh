#!/usr/bin/env bash
# The closing benchmark call (after tools/gpu_final.sh on the same warm machine, with tools/gpu_prep.sh's models):
#   1. text, Llama-7B shapes, 154-token prompt + 358 tokens, CUDA graph: int4 MatMulNBits block 128 and 32 with the
#      logits to the host, + the next token chosen on the device (sampling head; greedy and sampled), + our int4 GEMV
#      custom op; then PyTorch's best int4 loop (tinygemm Linears, group 128, static KV, torch.compile
#      reduce-overhead) and the card's copy bandwidth, in the same call
#   2. text->image and image->text, Chameleon-7B shapes int4 + graph + sampling head: profiles (device vs host choice)
#   3. speech->text, Seamless-large: the transcribe ladder (fast fbank, encoder graph rungs) and a profile
#   4. filter banks of 10 s
#   tools/gpu_bench_final.sh WORK MODELS OUT     (WORK: gpu_final.sh's /tmp/omm-final, with omm/ and kern/)
set -uo pipefail
work=$1; m=$2; out=$3; mkdir -p "$out"
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/tools/gpu_env.sh"
OMM=$work/omm/omm; KERN=$work/kern/libomm_kernels.so
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
for _ in $(seq 1 60); do [ -f "$m/prep.done" ] && break; sleep 5; done
log "prep: $(tail -1 "$m/prep.log" 2>/dev/null); $(grep -c 'rc=0' "$m/prep.log") steps ok"; cp "$m/prep.log" "$out/" 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# 1. text 7B
pk=$m/7b-int4-b128
if [ -d "$pk" ]; then
  bench_text b128-host --model "$pk" --host-token-choice
  bench_text b128-device --model "$pk"
  bench_text b128-device-omm --model "$pk-omm" --custom-op-library "$KERN"
  bench_text b128-host-sampled --model "$pk" --host-token-choice --sampled
  bench_text b128-device-sampled --model "$pk" --sampled
fi
pk=$m/7b-int4-b32
if [ -d "$pk" ]; then
  bench_text b32-device --model "$pk"
  bench_text b32-device-omm --model "$pk-omm" --custom-op-library "$KERN"
  [ -d "$pk-ommf" ] && bench_text b32-device-ommf --model "$pk-ommf" --custom-op-library "$KERN"
  # per-kernel GPU time (CUPTI activity records, no counters): stock MatMulNBits, our GEMV, our GEMV + SiLU·up fusion
  t0=$SECONDS; KERN=$KERN MODES=${TRACE_MODES:-graph} BUDGET_S=150 timeout 240 bash "$repo/tools/gpu_kernel_times.sh" "$OMM" "$m" "$out/kernel-times" \
    > "$out/kernel-times.log" 2>&1
  log "kernel times: rc=$? in $((SECONDS - t0)) s"
fi
rm -rf "$m"/7b-int4-*
t0=$SECONDS
(cd "$repo/onnx-export" && PYTHONUNBUFFERED=1 timeout 200 python3 bench/torch_decode.py --preset 7b --prompt-tokens 154 --new-tokens 358 \
   --sections int4 --int4-group 128 --compile-modes reduce-overhead > "$out/torch-7b-int4-g128.json" 2> "$out/torch-7b-int4-g128.err")
log "torch 7b int4 group 128: rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-7b-int4-g128.json")"

# 2. Chameleon-7B int4: imagine (1024 guided steps), device vs host token choice, and caption
if [ -d "$m/cham-int4" ]; then
  python3 -c "from PIL import Image; Image.new('RGB', (640, 512), (90, 140, 200)).save('$work/photo.png')" 2>/dev/null
  for choice in device host; do
    flag=""; [ $choice = host ] && flag=--host-token-choice
    t0=$SECONDS; timeout 90 "$OMM" profile --provider cuda --op-classes false --model "$m/cham-int4" --cuda-graph $flag --task imagine \
      --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/profile-imagine-$choice" > "$out/profile-imagine-$choice.log" 2>&1
    log "imagine 7b int4 $choice: rc=$? in $((SECONDS - t0)) s"
  done
  t0=$SECONDS; timeout 60 "$OMM" profile --provider cuda --op-classes false --model "$m/cham-int4" --cuda-graph --task caption --image "$work/photo.png" \
    --prompt "What is in this image?" --max-tokens 30 --out "$out/profile-caption" > "$out/profile-caption.log" 2>&1
  log "caption 7b int4: rc=$? in $((SECONDS - t0)) s"
  rm -rf "$m/cham-int4"
fi

# 3. speech, Seamless-large
if [ -d "$m/seamless-int4-mha-e16" ]; then
  t0=$SECONDS; timeout 150 "$OMM" bench --ladder --task transcribe --provider cuda --model "$m/seamless-large" --fp16-model "$m/seamless-fp16-mha-e16" \
    --int4-model "$m/seamless-int4-mha-e16" --audio "$m/speech_10s.wav" --new-tokens 35 --runs 3 --warmup 2 --json "$out/ladder-transcribe.json" > "$out/ladder-transcribe.log" 2>&1
  log "ladder transcribe: rc=$? in $((SECONDS - t0)) s"; grep -a "│" "$out/ladder-transcribe.log" | tee -a "$out/summary.txt"
  t0=$SECONDS; timeout 60 "$OMM" profile --provider cuda --op-classes false --model "$m/seamless-int4-mha-e16" --cuda-graph --encoder-graph --task transcribe \
    --audio "$m/speech_10s.wav" --max-tokens 35 --out "$out/profile-transcribe-int4-encgraph" > "$out/profile-transcribe.log" 2>&1
  log "profile transcribe int4 + encoder graph: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|TTFT|encode|prefill' "$out/profile-transcribe.log" | head -5 | tr '\n' ';')"
fi

# 4. fbank (the soak runs in gpu_final.sh)
timeout 60 "$OMM" bench fbank --runs 200 --json "$out/fbank-10s.json" > "$out/fbank.log" 2>&1; log "fbank: rc=$?"
