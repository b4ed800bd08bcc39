#!/usr/bin/env bash
# Our CUDA kernels on the GPU machine, in one call (about 2-3 minutes; run it as `tools/gpu_kernels.sh "$OUT"`):
#   1. src/OnnxMultimodal.Kernels/build.sh: libomm_int4.so (kernels) and libomm_kernels.so (+ the ORT
#      custom op; needs the ORT headers: carry src/OnnxMultimodal.Kernels/ort-include, made here by
#      `src/OnnxMultimodal.Kernels/build.sh --fetch-headers`); registers and spills per tile instantiation
#   2. bench_int4_gemv.py: correctness of every tile against a fp32 dequantize+matmul reference, then the int4
#      GEMV micro-benchmark at the Llama-7B shapes, M = 1, 2, 4, block 32 and 128, every tile (1-7 phase 2's,
#      8-10 with 8 columns per warp), vs the copy bandwidth of the same run, PyTorch's tinygemm
#      (aten._weight_int4pack_mm) and cuBLAS fp16; bench.log ends with the best tile per (shape, M)
#      and the SiLU-mul mode (down projection: fused vs the plain GEMV on a precomputed silu(gate) * up)
#   3. tiny-llama converted stock, with --custom-ops omm and with --custom-ops omm-fused (fp16 int4; the SiLU-mul
#      rewrite is checked on CPU first by omm_export.silu_mul_check), and with --next-token (fp32, checked on
#      ORT CPU: next_token = argmax of the last logits over prefill + 3 steps)
#   4. a CPU-only onnxruntime (Python) sanity load of libomm_kernels.so and of a one-node OmmMatMulInt4 graph
#   tools/gpu_kernels.sh OUT_DIR [--quick]
# Writes 7 files to OUT_DIR (no folders), 8 with ncu.log (Nsight Compute, full runs where ncu exists): summary.txt,
# build.log (build + ptxas -v + registers per tile), bench.log (the table, the best tile per (shape, M)),
# int4_gemv.json, checks.log (emulator, exports, next_token check, ORT load),
# libomm_kernels.so, packages.tar (tiny-llama-int4h/, tiny-llama-int4h-omm/, tiny-llama-int4h-ommf/,
# tiny-llama-int4h-next/, tiny-llama-fused-next/).
# For the C# Cuda tests, where .NET and the CUDA ORT are:
#   tar -xf OUT_DIR/packages.tar -C OUT_DIR && OMM_KERNELS_DIR=OUT_DIR dotnet test --filter Category=Cuda
set -uo pipefail
out=${1:?usage: tools/gpu_kernels.sh OUT_DIR [--quick]}; shift
mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
kern=$repo/src/OnnxMultimodal.Kernels
build=/tmp/omm-kernels-build
pkgs=/tmp/omm-kernels-packages
rm -rf "$pkgs" "$build"; mkdir -p "$pkgs"   # a warm machine keeps /tmp: never reuse an old build
site=$(python3 -c "import site; print(site.getsitepackages()[0])" 2>/dev/null)
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:$(ls -d "$site"/nvidia/*/lib "$site"/nvidia/cu13/lib 2>/dev/null | tr '\n' ':')${LD_LIBRARY_PATH:-}
export PYTHONUNBUFFERED=1
log() { echo "$(date +%T) $*" | tee -a "$out/summary.txt"; }
checks=$out/checks.log
log "gpu: $(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem --format=csv,noheader 2>&1); nvcc: $(/usr/local/cuda/bin/nvcc --version 2>&1 | grep -o 'release [0-9.]*')"
python3 "$kern/emulate_int4_gemv.py" > "$checks" 2>&1
log "emulator: rc=$? (split-K chunk coverage, nibble/x pairing, SiLU-mul mode)"
(cd "$repo/onnx-export" && timeout 60 python3 -m omm_export.quant_check) >> "$checks" 2>&1
log "int4 quantizers (symmetric, zero points): rc=$? $(grep -a 'quant_check:' "$checks" | tail -1)"
(cd "$repo/onnx-export" && timeout 120 python3 -m omm_export.silu_mul_check "$repo/models/tiny-llama") >> "$checks" 2>&1
log "silu_mul rewrite check: rc=$? $(grep -a 'silu_mul check:' "$checks" | tail -1)"

start=$(date +%s)
bash "$kern/build.sh" "$build" > "$out/build.log" 2>&1; rc=$?
{ echo "--- ptxas -v"; cat "$build/ptxas.log" 2>/dev/null; } >> "$out/build.log"
log "build: rc=$rc in $(( $(date +%s) - start )) s ($(grep -c built "$out/build.log") libraries); registers (M rows unroll split [s = SiLU-mul mode, g = SwiGLU mode]: REG): $(sed -E 's/ mode=0:/:/; s/ mode=1:/s:/; s/ mode=2:/g:/; s/ *M=([0-9]) rows=([0-9]) unroll=([0-9]) split=([0-9])([sg]?): REG:([0-9]+).*/\1\2\3\4\5:\6/' "$build/registers.txt" 2>/dev/null | tr '\n' ' ')"
log "local memory (spills) per instantiation: $(grep -E 'LOCAL:[1-9]' "$build/registers.txt" 2>/dev/null | sed -E 's/ *(M=[^:]*): .*(LOCAL:[0-9]+).*/\1 \2/' | tr '\n' ';')(none if empty)"
[ -f "$build/libomm_int4.so" ] || { cat "$out/build.log"; exit 1; }
cp "$build/libomm_kernels.so" "$out/" 2>/dev/null

timeout 180 python3 "$kern/bench_int4_gemv.py" "$build/libomm_int4.so" "$out/int4_gemv.json" "$@" > "$out/bench.log" 2>&1; rc=$?
cat "$out/bench.log"
log "bench: rc=$rc (0 = every correctness check passed)"
# share of copy per M: the default tile, the best of phase 2's tiles (1-7) and of the 8-column tiles (8-10); per
# (shape, M) lines follow in bench.log
grep -E '^(M=[0-9]|correctness|tile rule|device)' "$out/bench.log" | cut -c1-400 | while read -r line; do log "  $line"; done

# Why M = 2..4 fall short (full runs only): Nsight Compute on one launch each of qkv M = 1, 2, 4 (default tile) and
# M = 4 with the 8-column tile; occupancy, issue slots, L1 wavefronts per request, stall reasons in ncu.log.
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
case " $* " in
  *" --quick "*) ;;
  *) if [ "${NCU_SECONDS:-90}" = 0 ]; then
       log "ncu: skipped (NCU_SECONDS=0)"
     elif [ -n "$ncu_bin" ]; then
       (cd "$kern" && timeout ${NCU_SECONDS:-90} "$ncu_bin" --kernel-name regex:'int4_(gemv|mma)_kernel' --launch-count 4 --set detailed \
          python3 profile_int4_gemv.py "$build/libomm_int4.so") > "$out/ncu.log" 2>&1
       log "ncu: rc=$? ($(grep -cE 'int4_(gemv|mma)_kernel' "$out/ncu.log") kernel lines in ncu.log; ERR_NVGPUCTRPERM there = no counter access)"
     else
       log "ncu: not on this machine, profile skipped"
     fi ;;
esac

# tiny-llama with fp16 int4 activations, stock and with our op: what tests/.../CustomOpsCudaTests.cs compares
# (dotnet test --filter Category=Cuda with OMM_KERNELS_DIR=OUT_DIR).
i4=(--graph fused --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size 32)
# tiny-llama-int4h-next adds the device token choice (next_token) to the stock fp16 int4 graph, for the Cuda test
# of the engine's next_token path.
# tiny-llama-int4h-ommf (--custom-ops omm-fused) folds each MLP's Split + SiLU + Mul into the gate_up projection.
for variant in "tiny-llama-int4h" "tiny-llama-int4h-omm --custom-ops omm" "tiny-llama-int4h-ommf --custom-ops omm-fused" \
               "tiny-llama-int4h-next --next-token"; do
  set -- $variant; name=$1; shift
  (cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from "$repo/models/tiny-llama" --out "$pkgs/$name" "${i4[@]}" "$@") >> "$checks" 2>&1
  log "export $name: rc=$? $(grep -a -o OmmMatMulInt4 "$pkgs/$name/decoder.onnx" 2>/dev/null | wc -l) OmmMatMulInt4 names in the graph ($(grep -a -o OmmMatMulInt4SwiGlu "$pkgs/$name/decoder.onnx" 2>/dev/null | wc -l) of them OmmMatMulInt4SwiGlu)"
done

# Device token choice, exporter half: --next-token appends ArgMax over the last position's logits. Checked
# here on ORT CPU (fp32 fused graph): prefill + 3 greedy steps, next_token must equal argmax(logits).
(cd "$repo/onnx-export" && timeout 120 python3 -m omm_export convert --from "$repo/models/tiny-llama" --out "$pkgs/tiny-llama-fused-next" \
  --graph fused --precision fp32 --next-token) >> "$checks" 2>&1
log "export tiny-llama-fused-next: rc=$?"
echo "--- next_token check" >> "$checks"
timeout 60 python3 - "$pkgs/tiny-llama-fused-next" > "$pkgs/next_token.log" 2>&1 <<'PY'
import json, os, sys
import numpy as np
import onnxruntime as ort
pkg = sys.argv[1]
m = json.load(open(os.path.join(pkg, "multimodal.json")))
sess = ort.InferenceSession(os.path.join(pkg, m["components"]["decoder"]), providers=["CPUExecutionProvider"])
feeds, max_len = {}, 64
for i in sess.get_inputs():
    if i.name.startswith("past_key_values"):
        feeds[i.name] = np.zeros([1, i.shape[1], max_len, i.shape[3]], np.float16 if "float16" in i.type else np.float32)
names = [o.name for o in sess.get_outputs()]
ids, pos, ok = [1, 17, 42, 5, 9], 0, True
step = np.array([ids], np.int64)
for t in range(4):
    s = step.shape[1]
    feeds.update(input_ids=step, seqlens_k=np.array([pos + s - 1], np.int32), total_sequence_length=np.array(pos + s, np.int32))
    out = dict(zip(names, sess.run(None, feeds)))
    want, got = int(np.argmax(out["logits"][0, -1])), int(out["next_token"].reshape(-1)[0])
    print(f"step {t}: next_token {got}, argmax(logits) {want}, shape {out['next_token'].shape} {out['next_token'].dtype}")
    ok &= want == got and out["next_token"].dtype == np.int64
    for n in names:
        if n.startswith("present."):
            feeds["past_key_values." + n[len("present."):]] = out[n]
    pos += s
    step = np.array([[got]], np.int64)
print("next_token check:", "PASS" if ok else "FAIL")
PY
rc=$?; cat "$pkgs/next_token.log" >> "$checks"
log "next_token: rc=$rc $(tail -n 1 "$pkgs/next_token.log")"

if [ -f "$build/libomm_kernels.so" ]; then
  echo "--- ORT load" >> "$checks"
  timeout 60 python3 - "$build/libomm_kernels.so" > "$pkgs/ort_load.log" 2>&1 <<'PY'
import sys
import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
lib = sys.argv[1]
print("onnxruntime", ort.__version__, ort.get_available_providers())
so = ort.SessionOptions()
so.register_custom_ops_library(lib)
print("register_custom_ops_library: ok")
k, n, bs = 64, 8, 32
node = helper.make_node("OmmMatMulInt4", ["A", "B", "scales"], ["Y"], domain="omm", K=k, N=n, bits=4, block_size=bs)
graph = helper.make_graph([node], "g",
    [helper.make_tensor_value_info("A", TensorProto.FLOAT16, [1, k]),
     helper.make_tensor_value_info("B", TensorProto.UINT8, [n, k // bs, bs // 2]),
     helper.make_tensor_value_info("scales", TensorProto.FLOAT16, [n, k // bs])],
    [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, [1, n])])
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("omm", 1)])
model.ir_version = 10
try:
    ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    print("CPU session created (unexpected: the op is registered for the CUDA EP only)")
except Exception as e:
    # Expected on a CPU-only build: the graph parses, the op is known, no CPU kernel exists.
    print("CPU session refused as expected:", str(e)[:400])
PY
  rc=$?; cat "$pkgs/ort_load.log" >> "$checks"; rm -f "$pkgs/ort_load.log"
  log "ort sanity: rc=$rc $(tail -n 1 "$checks" | cut -c1-200)"
fi
rm -f "$pkgs/next_token.log"
tar -cf "$out/packages.tar" -C "$pkgs" . && log "packages.tar: $(tar -tf "$out/packages.tar" | grep -c /decoder.onnx) packages, $(du -k "$out/packages.tar" | cut -f1) KiB"
log "done; $(ls "$out" | wc -l) files in $out: $(ls "$out" | tr '\n' ' ')"
