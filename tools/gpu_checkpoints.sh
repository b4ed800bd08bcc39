#!/usr/bin/env bash
# Proof on checkpoints we did not write by hand (issue 12): builds Hugging Face checkpoints that copy real
# models' config.json fields (onnx-export/proof/make_checkpoints.py), exports each with
# `omm_export <family> --checkpoint DIR --check`, converts the Llama ones to fused fp16 / int4 with
# `convert --check`, exports int4 with its own round-trip reference, checks that unsupported configs are
# refused by name, and proves that --check fails on a damaged graph (omm_export.selftest_check).
#   tools/gpu_checkpoints.sh OUT_DIR [TOKENIZERS_DIR]
# TOKENIZERS_DIR (default .carry/tok): llama2/ and llama3/ with tokenizer.json + tokenizer_config.json
# (tools/fetch_proof_tokenizers.sh writes them). Needs python3 with torch, transformers, onnx, onnxruntime.
# Checkpoints and packages are built under OMM_PROOF_WORK (default /tmp/omm-proof-work: ~250 MB, logits
# files included). Into OUT_DIR go: logs/<step>.log per step, summary.json (each step: expected outcome,
# exit code, seconds, ok), commit/models/proof-*/ (the small packages to commit: no tokenizer.json, no
# logits files), cuda/<name>/ (the fused fp16 and int4 Llama packages for RealCheckpointCudaTests via
# OMM_PROOF_PACKAGES, ~40 MB), and the checkpoints' <name>.json notes. A failed step does not stop the
# next family. Exit 0 only when every step came out as expected.
set -uo pipefail
out=${1:?usage: tools/gpu_checkpoints.sh OUT_DIR [TOKENIZERS_DIR]}
repo=$(cd "$(dirname "$0")/.." && pwd)
tok=${2:-$repo/.carry/tok}
work=${OMM_PROOF_WORK:-/tmp/omm-proof-work}
mkdir -p "$out/logs" "$out/commit/models" "$out/cuda" "$work/packages"
out=$(cd "$out" && pwd)
work=$(cd "$work" && pwd)
ck=$work/checkpoints
pk=$work/packages
results=$out/logs/steps.tsv
: > "$results"
cd "$repo/onnx-export" || exit 1
export PYTHONPATH=$repo/onnx-export${PYTHONPATH:+:$PYTHONPATH}

# step NAME EXPECT(pass|refuse:WORD) COMMAND...: runs COMMAND, logs it, records whether it came out as expected
# (pass: exit 0; refuse:WORD: exit non-zero and WORD in the log).
step() {
  local name=$1 expect=$2; shift 2
  local log=$out/logs/$name.log t0 rc ok
  t0=$(date +%s)
  echo "== $name ($expect): $*"
  { echo "\$ $*"; "$@"; } > "$log" 2>&1
  rc=$?
  case $expect in
    pass) [ $rc -eq 0 ] && ok=true || ok=false ;;
    refuse:*) [ $rc -ne 0 ] && grep -q -- "${expect#refuse:}" "$log" && ok=true || ok=false ;;
  esac
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$expect" "$rc" "$(( $(date +%s) - t0 ))" "$ok" >> "$results"
  echo "   -> exit $rc, ok=$ok ($(( $(date +%s) - t0 )) s); $(tail -n 2 "$log" | tr '\n' ' ' | cut -c1-300)"
  [ "$ok" = true ]
}
omm() { python3 -m omm_export "$@"; }

python3 -c "import torch, transformers, onnx, onnxruntime, tokenizers; print('torch', torch.__version__, 'transformers', transformers.__version__, 'onnx', onnx.__version__, 'onnxruntime', onnxruntime.__version__, 'tokenizers', tokenizers.__version__)" | tee "$out/versions.txt"

# 0. Config reading (plain Python): real configs accepted, unsupported fields refused by name.
step hf_config pass python3 proof/test_hf_config.py

# 1. --check fails on a damaged graph (and passes on the intact one).
step selftest_check pass python3 -m omm_export.selftest_check --work "$work/selftest"

# 2. The checkpoints (each one is built even when another fails; a missing one fails its exports below).
step make_checkpoints pass python3 proof/make_checkpoints.py --out "$ck" --tokenizers "$tok"

# 3. Llama family: fp32 reference, fused fp16 and int4 by convert (checked against the fp32 references),
#    int4 exported with its own round-trip reference (fp16 activations, as CUDA runs it).
for name in codellama-7b llama-3.2-1b-instruct; do
  if step "$name.fp32" pass omm llama --checkpoint "$ck/$name" --context-length 256 --out "$pk/$name" --check; then
    step "$name.fused-fp16" pass omm convert --from "$pk/$name" --out "$pk/$name-fused-fp16" --graph fused --precision fp16 --check
    step "$name.fused-int4-convert" pass omm convert --from "$pk/$name" --out "$pk/$name-fused-int4" --graph fused --precision int4 --int4-activation fp16 --check
  fi
  step "$name.int4-own-reference" pass omm llama --checkpoint "$ck/$name" --context-length 256 --graph fused --precision int4 \
       --int4-activation fp16 --accuracy-level 1 --out "$pk/$name-int4" --check
done
for name in llama-bias-linear llama-dynamic; do
  step "$name.fp32" pass omm llama --checkpoint "$ck/$name" --out "$pk/$name" --check &&
    step "$name.fused-fp16" pass omm convert --from "$pk/$name" --out "$pk/$name-fused-fp16" --graph fused --precision fp16 --check
done
step llama-sliding-window.refused refuse:sliding_window omm llama --checkpoint "$ck/llama-sliding-window" --out "$pk/refused-sw"
step llama-yarn.refused refuse:yarn omm llama --checkpoint "$ck/llama-yarn" --out "$pk/refused-yarn"

# 4. Chameleon and Seamless from their real configs' fields.
step chameleon-7b.fp32 pass omm chameleon --checkpoint "$ck/chameleon-7b" --context-length 512 --out "$pk/chameleon-7b" --check &&
  step chameleon-7b.fused-fp16 pass omm convert --from "$pk/chameleon-7b" --out "$pk/chameleon-7b-fused-fp16" --graph fused --precision fp16 --check
step seamless-m4t-v2-large.fp32 pass omm seamless --checkpoint "$ck/seamless-m4t-v2-large" --out "$pk/seamless-m4t-v2-large" --check

# 5. The packages to commit: the two Llama fp32 packages without tokenizer.json (the tests copy the npm
#    file in) and without the logits files (the C# tests compare token ids).
for pair in codellama-7b:proof-codellama-7b llama-3.2-1b-instruct:proof-llama-3.2-1b; do
  src=$pk/${pair%%:*}; dst=$out/commit/models/${pair#*:}
  if [ -f "$src/reference/reference.json" ]; then
    rm -rf "$dst"; mkdir -p "$dst"
    cp -r "$src"/. "$dst"/
    rm -f "$dst/tokenizer.json" "$dst"/reference/logits_*.bin
  fi
done
for name in codellama-7b-fused-fp16 codellama-7b-int4 llama-3.2-1b-instruct-fused-fp16 llama-3.2-1b-instruct-int4; do
  [ -f "$pk/$name/reference/reference.json" ] && { rm -rf "$out/cuda/$name"; cp -r "$pk/$name" "$out/cuda/$name"; }
done
cp "$ck"/*.json "$out/" 2>/dev/null
du -sh "$out"/commit/models/* 2>/dev/null | tee "$out/commit/sizes.txt"
du -sh "$pk"/* "$out"/cuda/* 2>/dev/null > "$out/package_sizes.txt"

python3 - "$results" "$out/summary.json" <<'EOF'
import json, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
steps = [{"step": r[0], "expect": r[1], "exit": int(r[2]), "seconds": int(r[3]), "ok": r[4] == "true"} for r in rows]
summary = {"ok": all(s["ok"] for s in steps) and bool(steps), "failed": [s["step"] for s in steps if not s["ok"]], "steps": steps}
json.dump(summary, open(sys.argv[2], "w"), indent=1)
print(json.dumps({"ok": summary["ok"], "failed": summary["failed"]}))
sys.exit(0 if summary["ok"] else 1)
EOF
