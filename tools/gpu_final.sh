#!/usr/bin/env bash
# The closing GPU check of a session, in one call on the GPU machine (no .NET there): the self-contained
# bundle's Cuda test category (tools/bundle.sh --tests), with everything those tests look for made here first:
#   - our kernels and custom-op library + the tiny packages CustomOpsCudaTests compares (tools/gpu_kernels.sh --quick)
#   - the proof packages' fused fp16 and int4 variants, converted from the committed fp32 proof packages
#     (int4 with its own round-trip reference; fp16 gets the fp32 graph's prefill logits for its error bound)
#   - the trained default models' semantic tests on CUDA (fp16; speech also int4)
#   (the benchmarks follow in tools/gpu_bench_final.sh, on the same warm machine, with tools/gpu_prep.sh's models)
#   tools/gpu_final.sh PARTS_DIR OUT_DIR
# Carried, compressed (zstd is not on the GPU machine: carry .carry/zstd and set ZSTD): .carry/pack/tok.tar.zst
# (the real llama2/llama3 tokenizers of tools/fetch_proof_tokenizers.sh) and .carry/pack/trained-fp32.tar.zst (the
# training run's fp32 code and shapes packages, from which the CUDA fp16/int4 variants are converted here).
set -uo pipefail
parts=$1; out=$2; mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/omm-final; mkdir -p "$work"
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
source "$repo/tools/gpu_env.sh"
unpack_bundle "$parts" "$work" || { log "bundle: could not unpack"; exit 1; }
OMM=$work/omm/omm
[ -d "$repo/.carry/tok/llama2" ] || { [ -f "$repo/.carry/pack/tok.tar.zst" ] && ${ZSTD:-zstd} -dc "$repo/.carry/pack/tok.tar.zst" | tar -C "$repo/.carry" -xf -; }
tsrc=$work/trained-src; mkdir -p "$tsrc"
if [ -f "$repo/.carry/pack/trained-fp32.tar.zst" ] && [ ! -d "$tsrc/shapes-fp32" ]; then
  ${ZSTD:-zstd} -dc "$repo/.carry/pack/trained-fp32.tar.zst" | tar -C "$tsrc" -xf -
  log "trained fp32 packages unpacked: rc=$? ($(ls "$tsrc" | tr '\n' ' '))"
else
  log "trained fp32 packages: $(ls -la "$repo/.carry/pack" 2>&1 | tr '\n' ' ')"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"

# 0. the CUDA-only fixtures that are not committed (size): tiny-chameleon's fused fp16 decoders, as convert writes them
for last in "" "-last"; do
  [ -f "$repo/models/tiny-chameleon-fp16$last/multimodal.json" ] && continue
  (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from ../models/tiny-chameleon --out ../models/tiny-chameleon-fp16$last \
     --graph fused --precision fp16 --link-components ${last:+--last-logits}) >> "$out/fixtures.log" 2>&1
  log "fixture tiny-chameleon-fp16$last: rc=$?"
done

# 1. kernels + custom-op packages: the full micro-benchmark (every tile, every correctness check; ~40 s)
# (an earlier call on the same warm machine may have run it into $work/kern already)
if [ ! -f "$work/kern/libomm_kernels.so" ]; then
  timeout 300 bash "$repo/tools/gpu_kernels.sh" "$work/kern" ${KERNELS_QUICK:+--quick} > "$out/kernels.log" 2>&1
  log "kernels: rc=$? $(tail -1 "$work/kern/summary.txt" 2>/dev/null)"
  mkdir -p "$out/kern"; cp "$work/kern/"*.log "$work/kern/"*.json "$work/kern/summary.txt" "$out/kern/" 2>/dev/null
fi
[ -f "$work/kern/packages.tar" ] && tar -xf "$work/kern/packages.tar" -C "$work/kern"

# 1b. the trained code model in int4 (fp16 activations, block 32), stock MatMulNBits, our custom op and our custom op
#     with Split + SiLU + Mul fused into the gate_up projection (omm-fused), for CustomOpsCudaTests' token/logit comparison on a model with real margins
#     (OMM_CODE_INT4_PACKAGES)
for v in "code-int4h" "code-int4h-omm --custom-ops omm" "code-int4h-ommf --custom-ops omm-fused"; do
  set -- $v; name=$1; shift
  (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from ../models/code --out "$work/code-int4/$name" \
     --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 "$@") >> "$out/code-int4.log" 2>&1
  log "code $name: rc=$? $(grep -a -o OmmMatMulInt4 "$work/code-int4/$name/decoder.onnx" 2>/dev/null | wc -l) OmmMatMulInt4 names"
done

# 2. proof packages: fused fp16 and int4 (fp16 activations) from the committed fp32 ones
mkdir -p "$work/proof"
for pair in "proof-codellama-7b codellama-7b" "proof-llama-3.2-1b llama-3.2-1b-instruct"; do
  set -- $pair; src=$repo/models/$1; name=$2
  (cd "$repo/onnx-export" &&
   timeout 120 python3 -m omm_export convert --from "$src" --out "$work/proof/$name-fused-fp16" --graph fused --precision fp16 &&
   timeout 120 python3 -m omm_export convert --from "$src" --out "$work/proof/$name-int4" --graph fused --precision int4 \
     --int4-activation fp16 --accuracy-level 0 --block-size 32 --check &&
   timeout 60 python3 - "$src" "$work/proof/$name-fused-fp16" <<'PY'
# the committed fp32 package carries no logits files (size): the fp16 test's error bound needs max|logit| of each
# prompt's prefill, so write the fp32 graph's prefill logits (onnxruntime CPU; fp32 = PyTorch within 1e-4)
import json, os, sys
import numpy as np
import onnxruntime as ort
from omm_export.reference import ort_greedy
src, dst = sys.argv[1], sys.argv[2]
man = json.load(open(os.path.join(src, "multimodal.json")))
doc = json.load(open(os.path.join(src, "reference", "reference.json")))
sess = ort.InferenceSession(os.path.join(src, man["components"]["decoder"]), providers=["CPUExecutionProvider"])
for i, p in enumerate(doc["prompts"]):
    first, tokens = ort_greedy(sess, man["decoder"], p["ids"], len(p["greedy"]))
    assert tokens == p["greedy"], f"fp32 graph on ORT CPU disagrees with PyTorch on prompt {i}"
    name = p.get("logits_file") or f"logits_{i}.bin"
    first.astype("<f4").tofile(os.path.join(dst, "reference", name))
    p["logits_file"], p["logits_shape"] = name, list(first.shape)
json.dump(doc, open(os.path.join(dst, "reference", "reference.json"), "w"), indent=1, ensure_ascii=False)
print("prefill logits written for", len(doc["prompts"]), "prompts")
PY
  ) >> "$out/proof.log" 2>&1
  rc=$?
  kind=llama3; [ "$1" = proof-codellama-7b ] && kind=llama2
  for v in fused-fp16 int4; do   # the committed package ships without the real tokenizer (size): carried in .carry/tok
    [ -f "$repo/.carry/tok/$kind/tokenizer.json" ] && cp "$repo/.carry/tok/$kind/"tokenizer*.json "$work/proof/$name-$v/" 2>/dev/null
  done
  log "proof $name: rc=$rc"
done

# 3. the trained default models on CUDA (the C# semantic tests with OMM_TRAINED_PROVIDER=cuda): code fp16 (committed),
#    shapes fp16 (carried: .carry/trained/shapes-fp16, from the training run's extras), speech fp16 and int4 (fp16
#    activations) converted here from the committed fp32 package. The committed int4 shapes package has fp32
#    activations, which CUDA's GroupQueryAttention does not take.
#    Where the training run's fp32 packages are carried (.carry/pack/trained-fp32.tar.zst), shapes and code are
#    converted here too: fp16, and int4 (fp16 activations) at block 32 and 128, so every precision runs on CUDA.
tr=$work/trained; mkdir -p "$tr"
cv() { (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert "$@") >> "$out/trained-convert.log" 2>&1 || { log "convert failed: $*"; return 1; }; }
cv --from ../models/speech --out "$tr/speech-fp16" --graph fused --precision fp16
cv --from ../models/speech --out "$tr/speech-int4" --graph fused --precision int4 --int4-activation fp16 --block-size 32
shapes16=$repo/.carry/trained/shapes-fp16; shapes4=$shapes16; code4=$repo/models/code; code4b=$repo/models/code
if [ -d "$tsrc/shapes-fp32" ]; then
  cv --from "$tsrc/shapes-fp32" --out "$tr/shapes-fp16" --graph fused --precision fp16 && shapes16=$tr/shapes-fp16
  cv --from "$tsrc/shapes-fp32" --out "$tr/shapes-int4" --graph fused --precision int4 --int4-activation fp16 --block-size 32 && shapes4=$tr/shapes-int4
fi
if [ -d "$tsrc/code-fp32" ]; then
  cv --from "$tsrc/code-fp32" --out "$tr/code-int4-b32" --graph fused --precision int4 --int4-activation fp16 --block-size 32 && code4=$tr/code-int4-b32
  cv --from "$tsrc/code-fp32" --out "$tr/code-int4-b128" --graph fused --precision int4 --int4-activation fp16 --block-size 128 && code4b=$tr/code-int4-b128
fi
# a carried shapes package keeps the training run's imagine settings; the committed manifest's (chosen later on
# the selection prompts) go into the packages CUDA runs, so CUDA runs what the CPU tests run. A carried package outside
# $tr (the fallback above) is copied into $tr first, so the carry itself is never edited.
for var in shapes16 shapes4; do
  d=${!var}
  case $d in "$tr"/*) ;; *) [ -d "$d" ] && { rm -rf "$tr/$(basename "$d")-carried"; cp -r "$d" "$tr/$(basename "$d")-carried"; d=$tr/$(basename "$d")-carried; printf -v "$var" '%s' "$d"; } ;; esac
  [ -f "$d/multimodal.json" ] || continue
  # the committed image decoder too, where the package shares the committed VQ (the same encoder bytes): a decoder
  # polished after training (onnx-export/train/polish_vq_decoder.py) then runs on CUDA as on the CPU. A package from
  # another run keeps its own graphs (its language model's codes belong to its own VQ).
  if cmp -s "$repo/models/shapes/image_encoder.onnx" "$d/image_encoder.onnx"; then
    cmp -s "$repo/models/shapes/image_decoder.onnx" "$d/image_decoder.onnx" || { cp "$repo/models/shapes/image_decoder.onnx" "$d/"; log "committed image decoder copied into $d"; }
  else
    log "$d: its VQ encoder is not the committed one; its own image graphs kept"
  fi
  python3 - "$repo/models/shapes/multimodal.json" "$d/multimodal.json" <<'PY' || log "guidance patch failed: $d"
import json, sys
g = json.load(open(sys.argv[1]))["guidance"]
man = json.load(open(sys.argv[2])); man["guidance"] = g
json.dump(man, open(sys.argv[2], "w"), indent=2)
PY
done
log "trained variants converted: $(ls "$tr" | tr '\n' ' ')"
trained() {   # name, then VAR=dir settings
  local name=$1; shift
  env OMM_REPO_ROOT=$repo OMM_TRAINED_PROVIDER=cuda "$@" timeout 240 "$work/omm/OnnxMultimodal.Tests" --filter "FullyQualifiedName~Trained" --output detailed > "$out/trained-$name.log" 2>&1
  log "trained $name on CUDA: rc=$? $(grep -aoE '[a-z][a-z ()/-]*: [0-9]+/[0-9]+ = [0-9.]+ %|held-out perplexity[^;]*' "$out/trained-$name.log" | sort -u | tr '\n' ';')"
}
trained fp16 OMM_TRAINED_SHAPES=$shapes16 OMM_TRAINED_SPEECH=$tr/speech-fp16
trained int4 OMM_TRAINED_SHAPES=$shapes4 OMM_TRAINED_SPEECH=$tr/speech-int4 OMM_TRAINED_CODE=$code4
trained int4-b128 OMM_TRAINED_CODE=$code4b OMM_TRAINED_SHAPES=$shapes4 OMM_TRAINED_SPEECH=$tr/speech-int4
# the code model in int4 with zero points at block 128 (convert --int4-zero-points), the int4 setting that keeps its
# perplexity bound on CUDA (docs/trained-models.md)
if [ -d "$tsrc/code-fp32" ] && cv --from "$tsrc/code-fp32" --out "$tr/code-int4-b128-zp" --graph fused --precision int4 --int4-activation fp16 \
     --block-size 128 --int4-zero-points; then
  trained int4-b128-zp OMM_TRAINED_CODE=$tr/code-int4-b128-zp OMM_TRAINED_SHAPES=$shapes4 OMM_TRAINED_SPEECH=$tr/speech-int4
fi

# 4. the Cuda category (the proof tests need the real tokenizers: npm is not here, so they come from .carry/tok,
#    made by tools/fetch_proof_tokenizers.sh; without it those tests are skipped with the reason)
for kind in llama2 llama3; do
  [ -f "$repo/.carry/tok/$kind/tokenizer.json" ] || continue
  mkdir -p "$repo/tests/.cache/tokenizers/$kind/package/models" && cp "$repo/.carry/tok/$kind/"tokenizer*.json "$repo/tests/.cache/tokenizers/$kind/package/models/"
done
export OMM_REPO_ROOT=$repo OMM_KERNELS_DIR=$work/kern OMM_PROOF_PACKAGES=$work/proof OMM_CODE_INT4_PACKAGES=$work/code-int4
t0=$SECONDS
timeout 300 "$work/omm/OnnxMultimodal.Tests" --filter "TestCategory=Cuda" --output detailed > "$out/cuda-tests.log" 2>&1
log "cuda tests: rc=$? in $((SECONDS - t0)) s: $(grep -E 'total:|failed:|succeeded:|skipped:' "$out/cuda-tests.log" | tr -d ' \n')"
grep -E "^\s*(Failed|Skipped) " "$out/cuda-tests.log" | head -40 | tee -a "$out/summary.txt"

# 5. a soak on CUDA (issue 13): text, caption, imagine, transcribe at concurrency 4 with cancellation and reloads,
#    host and device memory sampled (bounded so the call keeps its time)
t0=$SECONDS
timeout ${SOAK_SECONDS:-100} "$OMM" soak -n ${SOAK_N:-1000} -c 4 --reload-every 250 --interval 100 --provider cuda,cpu --models "$repo/models" \
  --json "$out/soak-cuda.json" > "$out/soak.log" 2>&1
log "soak cuda: rc=$? in $((SECONDS - t0)) s: $(tail -3 "$out/soak.log" | tr '\n' ';')"
