#!/usr/bin/env bash
# One GPU session, as run on the device machine (no .NET there): reassemble the bundle made by
# tools/bundle.sh, export the GPU model variants with onnx-export, check tokens on CUDA against the
# references and the CPU, then the decode ladder. Results (JSON + logs) go to OUT_DIR.
#   tools/gpu_session.sh PARTS_DIR OUT_DIR [ZSTD]
set -uo pipefail
parts=$1; out=$2; zstd_bin=${3:-zstd}
repo=$(cd "$(dirname "$0")/.." && pwd)
work=/tmp/omm-gpu; mkdir -p "$work" "$out"
[ -x "$work/omm/omm" ] || { cat "$parts"/omm.tar.zst.part-* | "$zstd_bin" -d --long=27 | tar -C "$work" -xf - || exit 1; }
site=$(python3 -c "import site; print(site.getsitepackages()[0])")
export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
OMM=$work/omm/omm
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
"$OMM" info --model "$repo/models/tiny-llama" 2>&1 | tail -9 | tee "$out/info.txt"

# GPU model variants: fp16 and int4 with fp16 activations (GroupQueryAttention on CUDA is fp16/bf16 only).
cd "$repo/onnx-export"
m=$work/models; mkdir -p "$m"
[ -d "$m/tiny-int4" ] || python3 -m omm_export llama --preset tiny --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --out "$m/tiny-int4" > "$out/export.log" 2>&1
if [ "${OMM_MID:-1}" = 1 ]; then
  [ -d "$m/1b-ref" ] || python3 -m omm_export llama --preset 1b --no-reference --out "$m/1b-ref" >> "$out/export.log" 2>&1
  [ -d "$m/1b-fp16" ] || python3 -m omm_export llama --preset 1b --graph fused --precision fp16 --no-reference --out "$m/1b-fp16" >> "$out/export.log" 2>&1
  [ -d "$m/1b-int4" ] || python3 -m omm_export llama --preset 1b --graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32 --no-reference --out "$m/1b-int4" >> "$out/export.log" 2>&1
fi
cd "$repo"

# Correctness on CUDA: token ids of each configuration (compared by tools/gpu_compare.py).
ids() { "$OMM" run "The quick brown fox" --max-tokens 32 --ignore-eos --print-ids "$@" 2>&1 >/dev/null | grep '^{' ; }
{
  echo "{\"name\": \"ref-fp32-cpu\", \"ids\": $(ids --model models/tiny-llama --provider cpu)}"
  echo "{\"name\": \"ref-fp32-cuda\", \"ids\": $(ids --model models/tiny-llama --provider cuda)}"
  echo "{\"name\": \"fp16-cuda-device\", \"ids\": $(ids --model models/tiny-llama-fp16 --provider cuda)}"
  echo "{\"name\": \"fp16-cuda-graph\", \"ids\": $(ids --model models/tiny-llama-fp16 --provider cuda --cuda-graph)}"
  echo "{\"name\": \"int4-cuda-device\", \"ids\": $(ids --model "$m/tiny-int4" --provider cuda)}"
  echo "{\"name\": \"int4-cuda-graph\", \"ids\": $(ids --model "$m/tiny-int4" --provider cuda --cuda-graph)}"
} > "$out/tokens.jsonl" 2> "$out/tokens.err"
"$OMM" caption --image models/tiny-chameleon/reference/shapes.png --provider cuda --max-tokens 8 > "$out/caption_cuda.txt" 2>&1
"$OMM" transcribe --audio models/tiny-seamless/reference/robot_16k.wav --provider cuda --max-tokens 8 > "$out/transcribe_cuda.txt" 2>&1

# Decode ladder: ms/token of 200 forced tokens after a 32-token prompt (tiny) / 128-token prompt (1B).
bench() { name=$1; shift; "$OMM" bench --engine ort --provider cuda --runs 5 --warmup 2 --label "$name" --json "$out/bench-$name.json" "$@" > "$out/bench-$name.log" 2>&1; tail -1 "$out/bench-$name.log" >/dev/null; }
bench tiny-ref-fp32-plain --model models/tiny-llama --prompt-tokens 32 --new-tokens 200
bench tiny-fp16-device --model models/tiny-llama-fp16 --prompt-tokens 32 --new-tokens 200
bench tiny-fp16-graph --model models/tiny-llama-fp16 --cuda-graph --prompt-tokens 32 --new-tokens 200
bench tiny-int4-device --model "$m/tiny-int4" --prompt-tokens 32 --new-tokens 200
bench tiny-int4-graph --model "$m/tiny-int4" --cuda-graph --prompt-tokens 32 --new-tokens 200
if [ -d "$m/1b-fp16" ]; then
  "$OMM" bench --ladder --provider cuda --model "$m/1b-ref" --fp16-model "$m/1b-fp16" --int4-model "$m/1b-int4" --prompt-tokens 128 --new-tokens 256 --runs 5 --json "$out/ladder-1b.json" > "$out/ladder-1b.log" 2>&1 || true
  (cd onnx-export && PYTHONUNBUFFERED=1 timeout 400 python3 bench/torch_decode.py --preset 1b --prompt-tokens 128 --new-tokens 256 > "$out/torch-1b.json" 2> "$out/torch-1b.err")
  bench 1b-int4-device --model "$m/1b-int4" --prompt-tokens 128 --new-tokens 256
fi
# Device memory across 500 back-to-back generations (graph replay): used MiB before and after.
"$OMM" bench --engine ort --provider cuda --cuda-graph --model models/tiny-llama-fp16 --runs 500 --warmup 5 --new-tokens 16 --prompt-tokens 8 > "$out/bench-500.log" 2>&1 &
pid=$!
while kill -0 $pid 2>/dev/null; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader | grep "^$pid" >> "$out/mem.txt"; sleep 0.5; done
ls "$out"
