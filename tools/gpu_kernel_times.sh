#!/usr/bin/env bash
# Per-kernel GPU time of int4 decode at the Llama-7B shapes (issue 16: our int4 GEMV against MatMulNBits) without
# performance counters (docs/kernels.md, "Per-kernel time without counters"): builds tools/kernel_trace, runs
# `omm bench` (1 warm-up + 1 run, $PROMPT_TOKENS-token prompt, $NEW_TOKENS tokens) on each package, with and without
# the CUDA graph, under the tracer, and summarises each trace and each mode's packages side by side.
#   tools/gpu_kernel_times.sh OMM MODELS OUT
#     OMM: the bundle's omm (gpu_final.sh: /tmp/omm-final/omm/omm); MODELS: gpu_prep.sh's folder (run before
#     gpu_bench_final.sh, which deletes 7b-int4-*); OUT: results
#   Env: PACKAGES (7b-int4-b32 7b-int4-b32-omm 7b-int4-b32-ommf; missing ones skipped), MODES (graph nograph),
#   KERN (libomm_kernels.so for packages whose manifest has custom_op_domains; default OMM/../../kern/, else built
#   here), PROMPT_TOKENS (16), NEW_TOKENS (64), MAX_GZ_MB (20 per trace), BUDGET_S (210: no run starts after it).
# OUT: kernel-times.txt (log + side-by-side tables), kernel-times-PKG-MODE.{txt,json,tsv.gz}, bench-PKG-MODE.{log,json},
#   kernel-times-compare-MODE.{txt,json}, kernel-trace-build.log.
set -uo pipefail
omm=${1:?usage: tools/gpu_kernel_times.sh OMM MODELS OUT}; m=${2:?usage: tools/gpu_kernel_times.sh OMM MODELS OUT}
out=${3:?usage: tools/gpu_kernel_times.sh OMM MODELS OUT}
mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
source "$repo/tools/gpu_env.sh"
packages=${PACKAGES:-7b-int4-b32 7b-int4-b32-omm 7b-int4-b32-ommf}
modes=${MODES:-graph nograph}
prompt=${PROMPT_TOKENS:-16}; new=${NEW_TOKENS:-64}; warmup=1; runs=1
max_gz=$(( ${MAX_GZ_MB:-20} * 1048576 )); budget=${BUDGET_S:-210}
summ=$repo/tools/kernel_trace/summarize.py
work=/tmp/omm-kernel-trace; rm -rf "$work"; mkdir -p "$work"   # a warm machine keeps /tmp: never reuse an old trace
log() { echo "$(date +%T) $*" | tee -a "$out/kernel-times.txt"; }
[ -x "$omm" ] || { log "omm not found at $omm"; exit 2; }
log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"

bash "$repo/tools/kernel_trace/build.sh" "$work/lib" > "$out/kernel-trace-build.log" 2>&1 ||
  { log "tracer build failed: $(tail -5 "$out/kernel-trace-build.log" | tr '\n' ' ')"; exit 1; }
tracer=$work/lib/libkernel_trace.so
log "tracer: $(grep -E '^CUPTI' "$out/kernel-trace-build.log"); loads $(ldd "$tracer" | grep -o 'libcupti[^ ]* => [^ ]*')"

kern=${KERN:-$(dirname "$(dirname "$omm")")/kern/libomm_kernels.so}
need_kern=0
for pkg in $packages; do grep -qs custom_op_domains "$m/$pkg/multimodal.json" && need_kern=1; done
if [ $need_kern = 1 ] && [ ! -f "$kern" ]; then
  bash "$repo/src/OnnxMultimodal.Kernels/build.sh" "$work/kern" > "$out/kernels-build.log" 2>&1
  log "custom-op library not at $kern: built here, rc=$?"
  kern=$work/kern/libomm_kernels.so
fi

steps=$(( (warmup + runs) * (new - 1) ))   # the first token of a run comes from the prompt's pass
for mode in $modes; do
  for pkg in $packages; do
    d=$m/$pkg
    [ -f "$d/multimodal.json" ] || { log "$pkg: not in $m, skipped"; continue; }
    (( SECONDS < budget )) || { log "$pkg $mode: skipped, past the time budget of $budget s"; continue; }
    lib=()
    if grep -qs custom_op_domains "$d/multimodal.json"; then
      [ -f "$kern" ] || { log "$pkg: needs libomm_kernels.so, none at $kern: skipped"; continue; }
      lib=(--custom-op-library "$kern")
    fi
    graph=(); [ "$mode" = graph ] && graph=(--cuda-graph)
    bs=$(echo "$pkg" | grep -oE -- '-b[0-9]+' | head -1 | tr -dc 0-9); bs=${bs:-32}
    name=$pkg-$mode; tsv=$work/$name.tsv; t0=$SECONDS
    CUDA_INJECTION64_PATH=$tracer KERNEL_TRACE_OUT=$tsv timeout 150 "$omm" bench --engine ort --provider cuda "${graph[@]}" \
      --prompt-tokens "$prompt" --new-tokens "$new" --runs $runs --warmup $warmup --model "$d" "${lib[@]}" \
      --label "$name" --json "$out/bench-$name.json" > "$out/bench-$name.log" 2>&1
    rc=$?
    log "$name: rc=$rc in $((SECONDS - t0)) s; $( [ -f "$tsv" ] && wc -l < "$tsv" || echo 0) trace lines, $(tail -1 "$tsv" 2>/dev/null); traced bench: $(grep -a '│ ort' "$out/bench-$name.log" | head -1 | tr -s ' ')"
    grep -a 'kernel_trace:' "$out/bench-$name.log" | head -3 | while read -r line; do log "  $line"; done
    [ -s "$tsv" ] || continue
    python3 "$summ" "$tsv" --labels "$name" --per-step $steps --block-size "$bs" --decode-only \
      --json "$out/kernel-times-$name.json" > "$out/kernel-times-$name.txt" 2>&1
    log "  summary: rc=$? $(sed -n 2,3p "$out/kernel-times-$name.txt" | tr '\n' ' ')"
    gzip -c "$tsv" > "$work/$name.tsv.gz" && rm -f "$tsv"
    if [ "$(stat -c %s "$work/$name.tsv.gz")" -le $max_gz ]; then cp "$work/$name.tsv.gz" "$out/kernel-times-$name.tsv.gz"
    else log "  $name.tsv.gz is over ${MAX_GZ_MB:-20} MB: not kept"; fi
  done
  # side by side: the decode GEMV medians and per-step totals of every package in this mode
  gz=(); labels=()
  for pkg in $packages; do [ -f "$work/$pkg-$mode.tsv.gz" ] && { gz+=("$work/$pkg-$mode.tsv.gz"); labels+=("$pkg"); }; done
  if [ ${#gz[@]} -ge 2 ]; then
    bs=$(echo "${labels[0]}" | grep -oE -- '-b[0-9]+' | head -1 | tr -dc 0-9)
    python3 "$summ" "${gz[@]}" --labels "$(IFS=,; echo "${labels[*]}")" --per-step $steps --block-size "${bs:-32}" --decode-only \
      --json "$out/kernel-times-compare-$mode.json" > "$out/kernel-times-compare-$mode.txt" 2>&1
    log "compare $mode: rc=$?"
    sed -n '/^== decode GEMV/,$p' "$out/kernel-times-compare-$mode.txt" | tee -a "$out/kernel-times.txt"
  fi
done
rm -rf "$work"
log "done in $SECONDS s"
