#!/usr/bin/env bash
# The closing benchmark call (after tools/gpu_final.sh on the same warm machine, with tools/gpu_prep.sh's models):
#   1. text, Llama-7B shapes, 154-token prompt + 358 tokens, CUDA graph: int4 MatMulNBits block 128 and 32 with the
#      logits to the host, + the next token chosen on the device (sampling head; greedy and sampled), + our int4 GEMV
#      custom op; then PyTorch's best int4 loop (tinygemm Linears, group 128 and 32, static KV, torch.compile
#      reduce-overhead) and the card's copy bandwidth, in the same call
#   2. text->image and image->text, Chameleon-7B shapes int4 + graph + sampling head: profiles (device vs host choice)
#   3. speech->text, Seamless-large: the transcribe ladder (fast fbank, encoder graph rungs) and a profile
#   4. filter banks of 10 s, and a CUDA soak (issue 13)
#   tools/gpu_bench_final.sh WORK MODELS OUT     (WORK: gpu_final.sh's /tmp/omm-final, with omm/ and kern/)
set -uo pipefail
work=$1; m=$2; out=$3; mkdir -p "$out"
repo=$(cd "$(dirname "$0")/.." && pwd)
OMM=$work/omm/omm; KERN=$work/kern/libomm_kernels.so
site=$(python3 -c "import site; print(site.getsitepackages()[0])")
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda-13.0/targets/x86_64-linux/lib:$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
for _ in $(seq 1 60); do [ -f "$m/prep.done" ] && break; sleep 5; done
log "prep: $(tail -1 "$m/prep.log" 2>/dev/null); $(grep -c 'rc=0' "$m/prep.log") steps ok"; cp "$m/prep.log" "$out/" 2>/dev/null
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# 1. text 7B
b() { local name=$1; shift; local t0=$SECONDS
  timeout 120 "$OMM" bench --engine ort --provider cuda --cuda-graph --prompt-tokens 154 --new-tokens 358 --runs 3 --warmup 1 \
    --label "$name" --json "$out/text-$name.json" "$@" > "$out/text-$name.log" 2>&1
  log "text $name: rc=$? in $((SECONDS - t0)) s: $(grep -a "│ ort" "$out/text-$name.log" | head -1)"; }
for bs in 128 32; do
  pk=$m/7b-int4-b$bs; [ -d "$pk" ] || { log "no $pk"; continue; }
  b b$bs-host --model "$pk" --host-token-choice
  b b$bs-device --model "$pk"
  b b$bs-device-omm --model "$pk-omm" --custom-op-library "$KERN"
  b b$bs-host-sampled --model "$pk" --host-token-choice --sampled
  b b$bs-device-sampled --model "$pk" --sampled
done
rm -rf "$m"/7b-int4-*
for g in 128 32; do t0=$SECONDS
  (cd "$repo/onnx-export" && PYTHONUNBUFFERED=1 timeout 200 python3 bench/torch_decode.py --preset 7b --prompt-tokens 154 --new-tokens 358 \
     --sections int4 --int4-group $g --compile-modes reduce-overhead > "$out/torch-7b-int4-g$g.json" 2> "$out/torch-7b-int4-g$g.err")
  log "torch 7b int4 group $g: rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-7b-int4-g$g.json")"
done

# 2. Chameleon-7B int4: imagine (1024 guided steps) and caption, device vs host token choice
if [ -d "$m/cham-int4" ]; then
  python3 -c "from PIL import Image; Image.new('RGB', (640, 512), (90, 140, 200)).save('$work/photo.png')" 2>/dev/null
  for choice in device host; do
    flag=""; [ $choice = host ] && flag=--host-token-choice
    t0=$SECONDS; timeout 120 "$OMM" profile --provider cuda --op-classes false --model "$m/cham-int4" --cuda-graph $flag --task imagine \
      --prompt "A photo of a mountain lake at sunrise with a small red boat" --warmup 1 --out "$out/profile-imagine-$choice" > "$out/profile-imagine-$choice.log" 2>&1
    log "imagine 7b int4 $choice: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|per token|TTFT' "$out/profile-imagine-$choice.log" | head -3 | tr '\n' ';')"
    t0=$SECONDS; timeout 60 "$OMM" profile --provider cuda --op-classes false --model "$m/cham-int4" --cuda-graph $flag --task caption --image "$work/photo.png" \
      --prompt "What is in this image?" --max-tokens 30 --out "$out/profile-caption-$choice" > "$out/profile-caption-$choice.log" 2>&1
    log "caption 7b int4 $choice: rc=$? in $((SECONDS - t0)) s: $(grep -aiE 'end to end|per token|TTFT' "$out/profile-caption-$choice.log" | head -3 | tr '\n' ';')"
  done
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

# 4. fbank and the CUDA soak
timeout 60 "$OMM" bench fbank --runs 200 --json "$out/fbank-10s.json" > "$out/fbank.log" 2>&1; log "fbank: rc=$? $(tail -3 "$out/fbank.log" | tr '\n' ';')"
t0=$SECONDS; timeout ${SOAK_SECONDS:-150} "$OMM" soak -n ${SOAK_N:-2000} -c 4 --reload-every 500 --interval 250 --provider cuda,cpu --models "$repo/models" --json "$out/soak-cuda.json" > "$out/soak.log" 2>&1
log "soak cuda: rc=$? in $((SECONDS - t0)) s: $(tail -4 "$out/soak.log" | tr '\n' ';')"
