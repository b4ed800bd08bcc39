#!/usr/bin/env bash
# Background exports for the closing benchmark call, started (setsid) by the first part-transfer call so the
# model exports overlap the transfers: the 7B-shape int4 text packages (block 32 and 128, sampling head; each also
# with our int4 GEMV custom op), the 7B Chameleon int4 package with the sampling head and last-position logits,
# and Seamless-large with its fp16 / int4 fused variants, plus the 10 s test WAV.
#   setsid bash tools/gpu_prep.sh SRC_COPY MODELS_DIR &      (SRC_COPY: a copy of onnx-export/ and the tiny-seamless WAVs)
# Writes MODELS_DIR/prep.log and, when done, MODELS_DIR/prep.done.
set -uo pipefail
src=$1; m=$2; mkdir -p "$m"
log() { echo "$(date +%T) $*" >> "$m/prep.log"; }
ex() { local name=$1; shift; [ -f "$m/$name/multimodal.json" ] && return 0; local t0=$SECONDS
  (cd "$src/onnx-export" && python3 -m omm_export "$@" --out "$m/$name") >> "$m/export.log" 2>&1
  log "export $name: rc=$? in $((SECONDS - t0)) s, $(du -sh "$m/$name" 2>/dev/null | cut -f1)"; }
omm_variant() {   # a copy of an int4 package whose MatMulNBits nodes run as omm.OmmMatMulInt4 (weights shared by a hard link);
                  # with a second argument "fused", -ommf: also Split + SiLU + Mul folded into the gate_up projection (OmmMatMulInt4SwiGlu)
  local from=$m/$1 to=$m/$1-omm${2:+f}
  [ -f "$to/multimodal.json" ] && return 0
  # the weights file as a hard link: ONNX Runtime refuses external data whose resolved path leaves the model folder
  mkdir -p "$to"; for f in "$from"/*; do case $(basename "$f") in decoder.onnx|multimodal.json) ;; decoder.onnx.data) ln -f "$f" "$to/" ;; *) ln -sf "$f" "$to/" ;; esac; done
  (cd "$src/onnx-export" && python3 - "$from" "$to" "${2:-}" <<'PY'
import json, os, sys
import onnx
sys.path.insert(0, ".")
from omm_export.custom_ops import OMM_DOMAIN, fuse_silu_mul, use_omm_int4
src, dst, mode = sys.argv[1:4]
model = onnx.load(os.path.join(src, "decoder.onnx"), load_external_data=False)   # the weights stay in decoder.onnx.data (linked)
done = use_omm_int4(model)
if mode == "fused":
    done["silu_mul"] = fuse_silu_mul(model)
    if not done["silu_mul"]["fused"]:
        sys.exit(f"nothing fused in {src}: {done}")   # an -ommf that equals -omm must not be benched as fused
onnx.save(model, os.path.join(dst, "decoder.onnx"))
man = json.load(open(os.path.join(src, "multimodal.json")))
man["decoder"]["custom_op_domains"] = [OMM_DOMAIN]
json.dump(man, open(os.path.join(dst, "multimodal.json"), "w"), indent=1)
print("omm variant", dst, done)
PY
  ) >> "$m/export.log" 2>&1
  log "omm variant $1 ${2:-}: rc=$?"; }
log "prep start"
python3 - "$m/speech_10s.wav" "$src/wav" <<'PY' >> "$m/export.log" 2>&1
import sys, wave
frames = b""
for name in ["robot_16k.wav", "fox_16k.wav", "sky_16k.wav"] * 3:
    with wave.open(f"{sys.argv[2]}/{name}") as w:
        frames += w.readframes(w.getnframes())
frames = frames[: 16000 * 2 * 10]
with wave.open(sys.argv[1], "wb") as w:
    w.setnchannels(1); w.setsampwidth(2); w.setframerate(16000); w.writeframes(frames)
print("speech_10s.wav", len(frames) / 32000, "s")
PY
i4=(--graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --no-reference)
stock_prefill() {   # -ommfp: the -ommf package whose prompts run on the stock graph (manifest prefill_decoder
                    # ../$1/decoder.onnx: our kernel does a long prompt 8 rows per pass, the stock path as one GEMM)
  local from=$m/$1-ommf to=$m/$1-ommfp
  [ -f "$to/multimodal.json" ] && return 0
  mkdir -p "$to"; for f in "$from"/*; do [ "$(basename "$f")" = multimodal.json ] || ln -f "$f" "$to/" 2>/dev/null || ln -sf "$f" "$to/"; done
  python3 - "$from/multimodal.json" "$to/multimodal.json" "../$1/decoder.onnx" <<'PY'
import json, sys
man = json.load(open(sys.argv[1])); man["components"]["prefill_decoder"] = sys.argv[3]
json.dump(man, open(sys.argv[2], "w"), indent=1)
PY
  log "stock-prefill variant $1: rc=$?"; }
if [ "${PREP_SET:-all}" = text7b ]; then   # only the 7B text packages and their custom-op variants
  for bs in 32 128; do
    ex 7b-int4-b$bs llama --preset 7b "${i4[@]}" --block-size $bs --device-sampling
    omm_variant 7b-int4-b$bs; omm_variant 7b-int4-b$bs fused; stock_prefill 7b-int4-b$bs
  done
  log "prep done"; touch "$m/prep.done"; exit 0
fi
if [ "${PREP_SET:-all}" = cham7b ]; then   # only the 7B Chameleon int4 package and its custom-op variants (text->image)
  ex cham-int4 chameleon --preset 7b "${i4[@]}" --block-size 32 --last-logits --device-sampling --image-encoder-fp16
  omm_variant cham-int4; omm_variant cham-int4 fused
  log "prep done"; touch "$m/prep.done"; exit 0
fi
speech_int4() {   # Seamless-large and its int4 + MultiHeadAttention cross-attention + fp16 encoder variant (the best speech rung)
  ex seamless-large seamless --preset large --no-reference
  local v=seamless-int4-mha-e16; [ -f "$m/$v/multimodal.json" ] && return 0; local t0=$SECONDS
  (cd "$src/onnx-export" && python3 -m omm_export convert --from "$m/seamless-large" --out "$m/$v" --graph fused --precision int4 \
    --int4-activation fp16 --accuracy-level 0 --block-size 32 --cross-mha --encoder-precision fp16 --link-components) >> "$m/export.log" 2>&1
  log "convert $v: rc=$? in $((SECONDS - t0)) s"; }
if [ "${PREP_SET:-all}" = speech ]; then speech_int4; log "prep done"; touch "$m/prep.done"; exit 0; fi
if [ "${PREP_SET:-all}" = text16 ]; then   # Llama-7B with fp16 weights, last-position logits and the sampling head (the fp16 rows)
  ex 7b-fp16 llama --preset 7b --graph fused --precision fp16 --last-logits --device-sampling --no-reference
  log "prep done"; touch "$m/prep.done"; exit 0
fi
if [ "${PREP_SET:-all}" = cham16 ]; then   # Chameleon-7B with fp16 weights and last-position logits (a prefill decoder beside int4)
  ex cham-fp16 chameleon --preset 7b --graph fused --precision fp16 --last-logits --device-sampling --no-reference
  log "prep done"; touch "$m/prep.done"; exit 0
fi
ex 7b-int4-b128 llama --preset 7b "${i4[@]}" --block-size 128 --device-sampling; omm_variant 7b-int4-b128
ex 7b-int4-b32 llama --preset 7b "${i4[@]}" --block-size 32 --device-sampling; omm_variant 7b-int4-b32; omm_variant 7b-int4-b32 fused
ex cham-int4 chameleon --preset 7b "${i4[@]}" --block-size 32 --last-logits --device-sampling --image-encoder-fp16
ex seamless-large seamless --preset large --no-reference
for spec in "seamless-fp16-mha-e16:--precision fp16 --cross-mha --encoder-precision fp16" \
            "seamless-int4-mha-e16:--precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --cross-mha --encoder-precision fp16"; do
  v=${spec%%:*}; [ -f "$m/$v/multimodal.json" ] && continue; t0=$SECONDS
  (cd "$src/onnx-export" && python3 -m omm_export convert --from "$m/seamless-large" --out "$m/$v" --graph fused ${spec#*:} --link-components) >> "$m/export.log" 2>&1
  log "convert $v: rc=$? in $((SECONDS - t0)) s"
done
log "prep done"; touch "$m/prep.done"
