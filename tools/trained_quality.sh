#!/usr/bin/env bash
# Measures the trained models' bars on CPU for every precision a GPU training run produced: unpacks the
# run's *-extra.tar.xz (fp32 / fp16 / int4 packages; reference folders skipped), then runs the C# trained-model
# tests once with the committed packages and once per variant set (OMM_TRAINED_CODE/SHAPES/SPEECH), and prints
# each test's measured line (accuracy, perplexity) for docs/trained-models.md. Test failures are expected
# where a bar is not met; this script reports, it does not gate.
#
# usage: tools/trained_quality.sh GPU_OUT_DIR   (holding code/code-extra.tar.xz, shapes/…, speech/…)
set -uo pipefail
src=${1:?usage: tools/trained_quality.sh GPU_OUT_DIR}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for s in code shapes speech; do
  tar xJf "$src/$s/$s-extra.tar.xz" -C "$work" --exclude='*/reference/*' packages || echo "no $s extras" >&2
done
p=$work/packages
cd "$repo" && dotnet build tests/OnnxMultimodal.Tests -c Release -v q --nologo > /dev/null || exit 1
measure() {   # name, then VAR=dir settings (a missing dir leaves the committed package)
  local name=$1; shift
  local envs=()
  for kv in "$@"; do [ -e "${kv#*=}" ] && envs+=("$kv"); done
  echo "== $name: ${envs[*]:-committed packages}"
  env "${envs[@]}" dotnet test tests/OnnxMultimodal.Tests -c Release --no-build --filter "FullyQualifiedName~Trained" \
      --logger "console;verbosity=detailed" 2>&1 | grep -E "^[a-z].*: [0-9]+/[0-9]+ = |^held-out perplexity|^\s+(Passed|Failed) " | grep -v "^  [^ PF]"
}
measure committed
measure fp32 OMM_TRAINED_CODE=$p/code-fp32 OMM_TRAINED_SHAPES=$p/shapes-fp32 OMM_TRAINED_SPEECH=$p/speech-fp32
measure fp16 OMM_TRAINED_SPEECH=$p/speech-fp16
measure int4-b32 OMM_TRAINED_CODE=$p/code-int4-b32 OMM_TRAINED_SHAPES=$p/shapes-int4-b32 OMM_TRAINED_SPEECH=$p/speech-int4-b32
measure int4-b128 OMM_TRAINED_CODE=$p/code-int4-b128 OMM_TRAINED_SHAPES=$p/shapes-int4-b128 OMM_TRAINED_SPEECH=$p/speech-int4-b128
