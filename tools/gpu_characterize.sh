#!/usr/bin/env bash
# The characterization session at real shapes, as run on the GPU machine (no .NET there), stage by
# stage so that a cut-off session still leaves every finished stage's results in OUT_DIR:
#   tests     the Cuda NUnit category from the bundle (tools/bundle.sh --tests)
#   llama     text->text, Llama/CodeLlama-7B shapes: exports (reference fp16, fused fp16, fused int4),
#             `omm bench --ladder` (154-token prompt, 358 forced tokens), PyTorch eager/SDPA/compile on
#             the same weights, `omm profile` (timings + GPU busy share; op classes with launch blocking)
#   chameleon image->text and text->image, Chameleon-7B shapes + VQ 512x512: fused fp16 and int4
#   seamless  speech->text, Seamless-large shapes: 10 s of audio to 35 tokens; the fused fp16 / int4
#             seq2seq decoders and encoder levers (omm_export convert: --cross-mha, --encoder-cross,
#             --encoder-precision), the transcribe ladder, a profile per package, PyTorch eager and compiled
#   llama-profile  only the profiles of the llama stage (its exports again if they are gone)
#   task-ladders   `omm bench --ladder --task caption|imagine` at Chameleon-7B shapes, then PyTorch
#             eager / compiled on the same weights (bench/torch_tasks.py), and the int4 package with an
#             fp16 prefill decoder (profile caption-7b-int4-mixed-graph)
#   pagelock       page-locked logits buffers against pageable ones (OMM_PAGEABLE_LOGITS=1): speech fp16/int4,
#             caption and imagine int4 profiles, alternating in one call
#   torch-extra    PyTorch only: torch.compile max-autotune for every task, the compiled speech decoder
#   tools/gpu_characterize.sh PARTS_DIR OUT_DIR ZSTD [STAGES...]
# OMM_QUICK=1 skips the op-class runs and the rungs without a CUDA graph (a repeat of the timings only);
# OMM_TORCH_MODES sets the llama stage's torch.compile modes (default reduce-overhead).
# OMM_SKIP_TORCH=1 skips the PyTorch Chameleon baselines of task-ladders; OMM_SKIP_LADDERS=1 skips its two
# ladders (and the reference export they need), keeping the fp16 / int4 / mixed profiles, which then run
# side by side. OMM_TORCH_EXTRA picks torch-extra's runs as TASK:MODES words, TASK one of speech caption
# imagine 7b (default: all four with reduce-overhead,max-autotune).
set -uo pipefail
parts=$1; out=$2; zstd_bin=$3; shift 3
stages=${*:-tests llama chameleon seamless}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/omm-gpu; m=$work/models; mkdir -p "$work" "$m" "$out"
log() { echo "$(date +%T) $*" | tee -a "$out/progress.log"; }
[ -x "$work/omm/omm" ] || { cat "$parts"/omm.tar.zst.part-* | "$zstd_bin" -d --long=27 | tar -C "$work" -xf - || { log "bundle: reassembly failed"; exit 1; }; }
site=$(python3 -c "import site; print(site.getsitepackages()[0])")
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1 OMM_REPO_ROOT=$repo
OMM=$work/omm/omm
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt"
log "start: stages $stages on $(cat "$out/gpu.txt")"
export_model() { local name=$1; shift; [ -f "$m/$name/multimodal.json" ] && return 0
  local t0=$SECONDS; (cd "$repo/onnx-export" && python3 -m omm_export "$@" --no-reference --out "$m/$name") >> "$out/export.log" 2>&1
  local rc=$?; log "export $name: rc=$rc in $((SECONDS - t0)) s, $(du -sh "$m/$name" 2>/dev/null | cut -f1)"; return $rc; }
profile() { local name=$1; shift; local t0=$SECONDS
  "$OMM" profile --provider cuda --out "$out/profile-$name" --op-classes false "$@" > "$out/profile-$name.log" 2>&1; local rc=$?
  log "profile $name: rc=$rc in $((SECONDS - t0)) s: $(grep -E '"(prompt_tokens|time_to_first_token_ms|ms_per_token_p50|end_to_end_ms|IdleShare|DecodeIdleShare)"' "$out/profile-$name/profile.json" 2>/dev/null | tr -d ' \n')"; }
opclasses() { [ "${OMM_QUICK:-0}" = 1 ] && return 0; local name=$1; shift; local t0=$SECONDS   # kernel-accurate node times: every launch waits for its kernel
  CUDA_LAUNCH_BLOCKING=1 "$OMM" profile --provider cuda --out "$out/opclasses-$name" "$@" > "$out/opclasses-$name.log" 2>&1; local rc=$?
  rm -rf "$out/opclasses-$name/ort"; log "op classes $name: rc=$rc in $((SECONDS - t0)) s"; }
make_wav() {   # 10 s of speech-like audio: the tiny model's reference clips, repeated
  [ -f "$work/speech_10s.wav" ] && return 0
  python3 - "$work/speech_10s.wav" "$repo/models/tiny-seamless/reference" <<'EOF'
import sys, wave
frames, srcs = b"", ["robot_16k.wav", "fox_16k.wav", "sky_16k.wav"]
while len(frames) < 10 * 16000 * 2:
    for s in srcs:
        with wave.open(f"{sys.argv[2]}/{s}") as w:
            frames += w.readframes(w.getnframes()) + b"\0\0" * 1600
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(frames[: 10 * 16000 * 2])
EOF
}
text_prompt=$(printf 'The robot climbed the stairs, cleaned the lamp, and counted the ships that passed. %.0s' 1 2 3 4 5 6 7 8)

for stage in $stages; do case $stage in
tests)
  t0=$SECONDS
  "$work/omm/OnnxMultimodal.Tests" --filter "TestCategory=Cuda" --output detailed > "$out/cuda-tests.log" 2>&1
  log "tests: rc=$? in $((SECONDS - t0)) s: $(grep -E 'total:|failed:|succeeded:' "$out/cuda-tests.log" | tr -d ' \n')"
  ;;
llama)
  export_model 7b-ref16 llama --preset 7b --precision fp16
  export_model 7b-fp16 llama --preset 7b --graph fused --precision fp16
  export_model 7b-int4 llama --preset 7b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32
  t0=$SECONDS
  "$OMM" bench --ladder --provider cuda --model "$m/7b-ref16" --fp16-model "$m/7b-fp16" --int4-model "$m/7b-int4" \
    --prompt-tokens 154 --new-tokens 358 --runs 2 --warmup 1 --json "$out/ladder-7b.json" > "$out/ladder-7b.log" 2>&1
  log "ladder 7b: rc=$? in $((SECONDS - t0)) s: $(grep 'ms/token' "$out/ladder-7b.log" | tr '\n' ';')"
  t0=$SECONDS
  (cd "$repo/onnx-export" && timeout 420 python3 bench/torch_decode.py --preset 7b --prompt-tokens 154 --new-tokens 358 --compile-modes "${OMM_TORCH_MODES:-reduce-overhead}" > "$out/torch-7b.json" 2> "$out/torch-7b.err")
  log "torch 7b: rc=$? in $((SECONDS - t0)) s: $(tr -d ' \n' < "$out/torch-7b.json")"
  ;&
llama-profile)   # (also the end of the llama stage) timings with the GPU's busy share, then op classes
  export_model 7b-fp16 llama --preset 7b --graph fused --precision fp16
  export_model 7b-int4 llama --preset 7b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32
  profile text-7b-int4-graph --model "$m/7b-int4" --cuda-graph --task text --prompt "$text_prompt" --max-tokens 358
  profile text-7b-fp16-graph --model "$m/7b-fp16" --cuda-graph --task text --prompt "$text_prompt" --max-tokens 358
  opclasses text-7b-int4 --model "$m/7b-int4" --task text --prompt "$text_prompt" --max-tokens 64
  rm -rf "$m/7b-ref16" "$m/7b-fp16" "$m/7b-int4"
  ;;
chameleon)
  python3 - "$work/photo.png" <<'EOF'
import sys
from PIL import Image, ImageDraw
im = Image.new("RGB", (640, 512))
d = ImageDraw.Draw(im)
for y in range(512):
    d.line((0, y, 640, y), fill=(40 + y // 4, 90 + y // 6, 200 - y // 4))
d.ellipse((380, 60, 500, 180), fill=(250, 220, 90))
d.polygon([(0, 512), (200, 250), (420, 512)], fill=(70, 110, 60))
d.polygon([(250, 512), (470, 220), (640, 512)], fill=(50, 80, 50))
im.save(sys.argv[1])
EOF
  export_model cham-int4 chameleon --preset 7b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --last-logits
  export_model cham-fp16 chameleon --preset 7b --graph fused --precision fp16 --last-logits
  for v in int4 fp16; do
    profile caption-7b-$v-graph --model "$m/cham-$v" --cuda-graph --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30
    profile imagine-7b-$v-graph --model "$m/cham-$v" --cuda-graph --task imagine --prompt "A photo of a mountain lake at sunrise with a small red boat"
  done
  [ "${OMM_QUICK:-0}" = 1 ] || profile caption-7b-fp16-plain --model "$m/cham-fp16" --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30
  [ "${OMM_QUICK:-0}" = 1 ] || profile imagine-7b-fp16-plain --model "$m/cham-fp16" --task imagine --prompt "A photo of a mountain lake at sunrise with a small red boat"
  opclasses caption-7b-int4 --model "$m/cham-int4" --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30
  rm -rf "$m/cham-int4" "$m/cham-fp16"
  ;;
task-ladders)   # per-task ladders through whole requests (reference fp16 -> device cache -> fused -> CUDA graph -> int4)
  [ -f "$work/photo.png" ] || python3 -c "from PIL import Image; Image.new('RGB', (640, 512), (90, 140, 200)).save('$work/photo.png')"
  [ "${OMM_SKIP_LADDERS:-0}" = 1 ] || export_model cham-ref16 chameleon --preset 7b --precision fp16
  export_model cham-fp16 chameleon --preset 7b --graph fused --precision fp16 --last-logits
  export_model cham-int4 chameleon --preset 7b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --last-logits
  # int4 decode with the fp16 graph for the prompt (prefill_decoder): a package that links both
  python3 - "$m" <<'EOF'
import json, os, sys
m = sys.argv[1]
man = json.load(open(f"{m}/cham-int4/multimodal.json"))
man["components"] = {k: os.path.relpath(os.path.join(m, "cham-int4", v), f"{m}/cham-int4-mixed") for k, v in man["components"].items()}
man["components"]["prefill_decoder"] = "../cham-fp16/decoder.onnx"
os.makedirs(f"{m}/cham-int4-mixed", exist_ok=True)
json.dump(man, open(f"{m}/cham-int4-mixed/multimodal.json", "w"), indent=1)
EOF
  [ "${OMM_SKIP_LADDERS:-0}" = 1 ] || for t in caption imagine; do t0=$SECONDS
    "$OMM" bench --ladder --task $t --provider cuda --model "$m/cham-ref16" --fp16-model "$m/cham-fp16" --int4-model "$m/cham-int4" \
      --image "$work/photo.png" --prompt "$([ $t = caption ] && echo 'What is in this image?' || echo 'A photo of a mountain lake at sunrise')" \
      --new-tokens 30 --runs 1 --warmup $([ $t = caption ] && echo 1 || echo 0) --json "$out/ladder-$t-7b.json" > "$out/ladder-$t-7b.log" 2>&1
    log "ladder $t: rc=$? in $((SECONDS - t0)) s: $(grep 'ms/token' "$out/ladder-$t-7b.log" | tr '\n' ';')"; done
  [ "${OMM_SKIP_LADDERS:-0}" = 1 ] && for v in fp16 int4; do   # the ladder's captured rungs, beside the mixed package
    profile caption-7b-$v-graph --model "$m/cham-$v" --cuda-graph --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30; done
  profile caption-7b-int4-mixed-graph --model "$m/cham-int4-mixed" --cuda-graph --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30
  # `omm imagine`'s own sampling (temperature 1, top-p 0.9): the ladder's greedy choice leaves the host sampler out
  profile imagine-7b-int4-graph-sampled --model "$m/cham-int4" --cuda-graph --task imagine --prompt "A photo of a mountain lake at sunrise" --temperature 1 --top-p 0.9 --seed 1
  rm -rf "$m/cham-ref16" "$m/cham-fp16" "$m/cham-int4" "$m/cham-int4-mixed"
  [ "${OMM_SKIP_TORCH:-0}" = 1 ] || for t in caption imagine; do t0=$SECONDS
    (cd "$repo/onnx-export" && timeout 420 python3 bench/torch_tasks.py --task $t > "$out/torch-$t.json" 2> "$out/torch-$t.err")
    log "torch $t: rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-$t.json")"; done
  ;;
seamless)
  make_wav
  export_model seamless-large seamless --preset large
  # Decoder and encoder levers one at a time: fp16 / int4 decoders (cross K/V written in fp16 by the
  # encoder, the default), MultiHeadAttention cross-attention, the fp16 encoder, and fp16-mha-x32 with
  # the encoder's fp32 cross K/V converted on the host (the path before the fp16 cross outputs).
  i4="--precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32"
  for spec in "fp16:--precision fp16" "int4:$i4" "fp16-mha:--precision fp16 --cross-mha" "fp16-mha-x32:--precision fp16 --cross-mha --encoder-cross fp32" \
              "fp16-mha-e16:--precision fp16 --cross-mha --encoder-precision fp16" "int4-mha-e16:$i4 --cross-mha --encoder-precision fp16"; do
    v=${spec%%:*}; [ -f "$m/seamless-$v/multimodal.json" ] && continue; t0=$SECONDS
    (cd "$repo/onnx-export" && python3 -m omm_export convert --from "$m/seamless-large" --out "$m/seamless-$v" --graph fused ${spec#*:} --link-components) >> "$out/export.log" 2>&1
    log "convert seamless-$v: rc=$? in $((SECONDS - t0)) s, $(du -sh "$m/seamless-$v" | cut -f1)"; done
  t0=$SECONDS
  "$OMM" bench --ladder --task transcribe --provider cuda --model "$m/seamless-large" --fp16-model "$m/seamless-fp16-mha-e16" --int4-model "$m/seamless-int4-mha-e16" \
    --audio "$work/speech_10s.wav" --new-tokens 35 --runs 3 --warmup 1 --json "$out/ladder-transcribe-large.json" > "$out/ladder-transcribe-large.log" 2>&1
  log "ladder transcribe: rc=$? in $((SECONDS - t0)) s: $(grep 'ms/token' "$out/ladder-transcribe-large.log" | tr '\n' ';')"
  for v in fp16 fp16-mha-x32 fp16-mha fp16-mha-e16 int4 int4-mha-e16; do
    profile transcribe-large-$v-graph --model "$m/seamless-$v" --cuda-graph --task transcribe --audio "$work/speech_10s.wav" --max-tokens 35; done
  [ "${OMM_QUICK:-0}" = 1 ] || profile transcribe-large --model "$m/seamless-large" --task transcribe --audio "$work/speech_10s.wav" --max-tokens 35
  opclasses transcribe-large-int4-mha-e16 --model "$m/seamless-int4-mha-e16" --task transcribe --audio "$work/speech_10s.wav" --max-tokens 35
  rm -rf "$m"/seamless-*
  t0=$SECONDS
  (cd "$repo/onnx-export" && timeout 300 python3 bench/torch_tasks.py --task speech --steps 35 --audio "$work/speech_10s.wav" > "$out/torch-speech.json" 2> "$out/torch-speech.err")
  log "torch speech: rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-speech.json")"
  ;;
pagelock)   # page-locked logits buffers against pageable ones (OMM_PAGEABLE_LOGITS=1), same packages, same call
  make_wav
  export_model seamless-large seamless --preset large
  for spec in "fp16-mha-e16:--precision fp16 --cross-mha --encoder-precision fp16" \
              "int4-mha-e16:--precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --cross-mha --encoder-precision fp16"; do
    v=${spec%%:*}; [ -f "$m/seamless-$v/multimodal.json" ] && continue; t0=$SECONDS
    (cd "$repo/onnx-export" && python3 -m omm_export convert --from "$m/seamless-large" --out "$m/seamless-$v" --graph fused ${spec#*:} --link-components) >> "$out/export.log" 2>&1
    log "convert seamless-$v: rc=$? in $((SECONDS - t0)) s"; done
  for round in 1 2; do for v in fp16-mha-e16 int4-mha-e16; do
    OMM_PAGEABLE_LOGITS=1 profile transcribe-$v-pageable-$round --model "$m/seamless-$v" --cuda-graph --task transcribe --audio "$work/speech_10s.wav" --max-tokens 35
    profile transcribe-$v-locked-$round --model "$m/seamless-$v" --cuda-graph --task transcribe --audio "$work/speech_10s.wav" --max-tokens 35; done; done
  rm -rf "$m"/seamless-*
  export_model cham-int4 chameleon --preset 7b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --last-logits
  [ -f "$work/photo.png" ] || python3 -c "from PIL import Image; Image.new('RGB', (640, 512), (90, 140, 200)).save('$work/photo.png')"
  for mode in pageable locked; do e=$([ $mode = pageable ] && echo 1 || echo 0)
    OMM_PAGEABLE_LOGITS=$e profile caption-int4-$mode --model "$m/cham-int4" --cuda-graph --task caption --image "$work/photo.png" --prompt "What is in this image?" --max-tokens 30
    OMM_PAGEABLE_LOGITS=$e profile imagine-int4-$mode --model "$m/cham-int4" --cuda-graph --task imagine --prompt "A photo of a mountain lake at sunrise" --warmup 1; done
  ;;
torch-extra)   # PyTorch baselines not yet run: torch.compile max-autotune (text, caption, imagine) and the
               # static-cache compiled speech decoder. The speech stage's WAV is made here if missing.
  [ -f "$work/speech_10s.wav" ] || python3 -c "
import wave; w = wave.open('$work/speech_10s.wav', 'wb'); w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000)
import math; w.writeframes(b''.join(int(8000 * math.sin(i * 0.05) * math.sin(i * 0.0007)).to_bytes(2, 'little', signed=True) for i in range(160000)))"
  for item in ${OMM_TORCH_EXTRA:-speech:reduce-overhead,max-autotune caption:reduce-overhead,max-autotune imagine:reduce-overhead,max-autotune 7b:reduce-overhead,max-autotune}; do
    t=${item%%:*}; modes=${item#*:}; t0=$SECONDS
    if [ "$t" = 7b ]; then
      (cd "$repo/onnx-export" && timeout 540 python3 bench/torch_decode.py --preset 7b --prompt-tokens 154 --new-tokens 358 \
         --compile-modes "$modes" > "$out/torch-7b-extra.json" 2> "$out/torch-7b-extra.err")
    else
      (cd "$repo/onnx-export" && timeout 540 python3 bench/torch_tasks.py --task "$t" --steps $([ "$t" = speech ] && echo 35 || echo 30) \
         --audio "$work/speech_10s.wav" --compile-modes "$modes" > "$out/torch-$t-extra.json" 2> "$out/torch-$t-extra.err")
    fi
    log "torch $t ($modes): rc=$? in $((SECONDS - t0)) s: $(tail -1 "$out/torch-$t-extra.json" | tr -d '\n')"; done
  ;;
esac; done
log "done"
