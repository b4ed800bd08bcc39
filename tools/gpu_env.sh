# Sourced by the tools/gpu_*.sh scripts on the GPU machine (no .NET there): the CUDA 13 runtime, cuBLAS and cuDNN
# that ONNX Runtime's CUDA provider needs, from the toolkit and torch's pip wheels, on LD_LIBRARY_PATH; and
# unpack_bundle PARTS_DIR WORK_DIR, which reassembles tools/bundle.sh's parts into WORK_DIR/omm once
# bench_text NAME [omm bench args]: the 7B text bench (154 + 358 tokens, CUDA graph, 3 runs) into $out/text-NAME.{json,log},
# logged with the caller's log(); needs OMM and out set
# (ZSTD: the zstd command, e.g. a carried binary: "env LD_LIBRARY_PATH=.carry/zstd .carry/zstd/zstd").
site=$(python3 -c "import site; print(site.getsitepackages()[0])" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:/usr/local/cuda-13.0/targets/x86_64-linux/lib:$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
unpack_bundle() {
  [ -x "$2/omm/omm" ] && return 0
  mkdir -p "$2" && cat "$1"/omm.tar.zst.part-* | ${ZSTD:-zstd} -d --long=27 | tar -C "$2" -xf -
}
bench_text() {
  local name=$1; shift; local t0=$SECONDS rc
  timeout 120 "$OMM" bench --engine ort --provider cuda --cuda-graph --prompt-tokens 154 --new-tokens 358 --runs 3 --warmup 1 \
    --label "$name" --json "$out/text-$name.json" "$@" > "$out/text-$name.log" 2>&1
  rc=$?
  log "text $name: rc=$rc in $((SECONDS - t0)) s: $(grep -a "│ ort" "$out/text-$name.log" | head -1)"
  [ $rc = 0 ] || log "  $(tail -3 "$out/text-$name.log" | tr '\n' ' ')"
}
