#!/usr/bin/env bash
# Trains the default models on the GPU machine, exports them with `python -m omm_export ... --checkpoint`,
# evaluates them and packs the results for the trip back.
#
#   [SMOKE=1] bash onnx-export/train/gpu_train.sh OUT_DIR [code] [shapes] [speech]     (default: all three)
#
# Per stage S it writes into OUT_DIR:
#   S.tar.zst        the package to commit (models/S: code = fp16 Llama, shapes = int4-b32 or fp16 Chameleon + fp32 VQ graphs,
#                    speech = fp32 Seamless)
#   S-extra.tar.zst  the other precisions (S-fp32 with references, fp16/int4 variants), the log, eval JSON, pictures
# and eval.json (every stage run in this call). .tar.xz instead of .tar.zst where zstd is missing.
# The speech stage needs the espeak-ng .deb files and the libpcaudio stub in $ESPEAK_DEBS (default .carry/espeak).
# Checkpoints stay in $TRAIN_WORK (default /tmp/omm-train), so a warm machine can re-export without retraining.
# Knobs: CODE_SECONDS, VQ_SECONDS, SHAPES_SECONDS, SPEECH_SECONDS (training wall-clock targets);
# STEPS_CODE / STEPS_VQ / STEPS_SHAPES / STEPS_SPEECH fix the step counts (each run logs the values it chose).
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: [SMOKE=1] $0 OUT_DIR [code] [shapes] [speech]" >&2; exit 2; }
OUT=$(mkdir -p "$1" && cd "$1" && pwd); shift
STAGES=("$@"); [ ${#STAGES[@]} -gt 0 ] || STAGES=(code shapes speech)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
WORK=${TRAIN_WORK:-/tmp/omm-train}
ESPEAK_DEBS=${ESPEAK_DEBS:-$ROOT/.carry/espeak}
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONHASHSEED=0 CUBLAS_WORKSPACE_CONFIG=:4096:8 TOKENIZERS_PARALLELISM=true
mkdir -p "$WORK"
T0=$(date +%s)
echo "gpu_train: stages ${STAGES[*]} SMOKE=${SMOKE:-0} work $WORK out $OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || true
$PY -c 'import torch, transformers, onnx, onnxruntime, tokenizers; print("torch", torch.__version__, "transformers", transformers.__version__, "onnx", onnx.__version__, "ort", onnxruntime.__version__, "tokenizers", tokenizers.__version__)'

if command -v zstd >/dev/null 2>&1; then EXT=tar.zst; PACK=(tar -I "zstd -19 -T0" -cf); else EXT=tar.xz; PACK=(tar -cJf); fi

setup_espeak() {
  local dest=/tmp/espeak lib
  rm -rf "$dest"; mkdir -p "$dest"
  ls "$ESPEAK_DEBS"/*.deb >/dev/null 2>&1 || { echo "no .deb files in $ESPEAK_DEBS (carry .carry/espeak)" >&2; return 1; }
  for f in "$ESPEAK_DEBS"/*.deb; do
    if command -v dpkg >/dev/null 2>&1; then dpkg -x "$f" "$dest"
    else (cd "$dest" && ar x "$f" && tar -xf data.tar.* && rm -f data.tar.* control.tar.* debian-binary); fi
  done
  lib=$dest/usr/lib/x86_64-linux-gnu
  # libpcaudio pulls in ALSA/PulseAudio: a no-sound stub (onnx-export/train/pcaudio_stub.c) stands in for it
  rm -f "$lib"/libpcaudio.so.0*; cp "$ESPEAK_DEBS/stub/libpcaudio.so.0" "$lib/libpcaudio.so.0"
  export LD_LIBRARY_PATH=$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ESPEAK_DATA_PATH=$lib/espeak-ng-data ESPEAK=$dest/usr/bin/espeak-ng
  "$ESPEAK" -v en-us -w "$dest/probe.wav" "a red circle" && echo "espeak-ng ok: $(stat -c %s "$dest/probe.wav") bytes"
}

EVALS=()
for S in "${STAGES[@]}"; do
  case $S in code|shapes|speech) ;; *) echo "unknown stage $S" >&2; exit 2;; esac
  D=$WORK/$S; rm -rf "$D"; mkdir -p "$D"
  [ "$S" = speech ] && setup_espeak
  ts=$(date +%s)
  set +e
  (cd "$HERE" && $PY "train_$S.py" "$D") 2>&1 | tee "$D/log.txt"
  rc=${PIPESTATUS[0]}
  set -e
  echo "gpu_train: stage $S rc=$rc in $(( $(date +%s) - ts )) s" | tee -a "$D/log.txt"
  if [ -d "$D/packages/$S" ]; then
    (cd "$D/packages" && "${PACK[@]}" "$OUT/$S.$EXT" "$S")
    du -sb "$D/packages"/* | sed 's/^/gpu_train: package bytes /'
  fi
  extra=()
  for p in "$D"/packages/*; do [ -d "$p" ] && [ "$(basename "$p")" != "$S" ] && extra+=("packages/$(basename "$p")"); done
  for f in "$D"/*.json "$D"/*.png "$D"/log.txt; do [ -f "$f" ] && extra+=("$(basename "$f")"); done
  (cd "$D" && "${PACK[@]}" "$OUT/$S-extra.$EXT" "${extra[@]}")
  [ -f "$D/$S-eval.json" ] && EVALS+=("$D/$S-eval.json")
  [ "$rc" = 0 ] || echo "gpu_train: stage $S FAILED (rc=$rc); see $S-extra.$EXT/log.txt" >&2
done

$PY - "$OUT/eval.json" "${EVALS[@]}" <<'EOF'
import json, os, sys
doc = {os.path.basename(p).replace("-eval.json", ""): json.load(open(p)) for p in sys.argv[2:]}
json.dump(doc, open(sys.argv[1], "w"), indent=1, ensure_ascii=False)
for k, v in doc.items():
    keys = [x for x in v if x.startswith(("perplexity", "caption_accuracy", "question_accuracy", "imagine", "exact_", "onnxruntime", "greedy", "train_seconds", "total_seconds"))]
    print(k, json.dumps({x: v[x] for x in keys if x != "imagine"} | ({"imagine": {m: v["imagine"][m]["correct"] for m in v["imagine"]}} if "imagine" in v else {}), ensure_ascii=False)[:3000])
EOF
ls -la "$OUT"
# one quality line per stage (the shapes and speech scripts print theirs; code's is read from its eval JSON)
for S in "${STAGES[@]}"; do
  if [ "$S" = code ] && [ -f "$WORK/code/code-eval.json" ]; then
    $PY - "$WORK/code/code-eval.json" <<'EOF2' || true
import json, sys
d = json.load(open(sys.argv[1]))
ppl = " ".join("%s %.2f" % kv for kv in d.get("perplexity", {}).items())
print("SUMMARY code: held-out perplexity %s | %s steps in %s s, total %s s" % (ppl, d.get("steps"), d.get("train_seconds"), d.get("total_seconds")))
EOF2
  else
    grep -h '^SUMMARY' "$WORK/$S/log.txt" 2>/dev/null || echo "SUMMARY $S: no summary (stage failed? see $S-extra)"
  fi
done
echo "gpu_train: done in $(( $(date +%s) - T0 )) s"
