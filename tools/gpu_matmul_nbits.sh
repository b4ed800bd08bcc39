#!/usr/bin/env bash
# Per-kernel time of ONNX Runtime's MatMulNBits (CUDA) against our OmmMatMulInt4 at the Llama-7B shapes, inside real
# decode steps of the C# bundle (the Python onnxruntime on the GPU machine has no CUDA provider). Written without a GPU:
# not yet run. Needs the bundle's `omm`, libomm_kernels.so (tools/gpu_kernels.sh) and Nsight Compute (`ncu`).
#   1. models: a synthetic Llama-7B fp16 reference package (torch, as tools/gpu_characterize.sh exports it), converted
#      twice to fused int4 (fp16 activations, block $BLOCK): stock MatMulNBits and --custom-ops omm
#   2. ncu on `omm run` of each (greedy, 24 tokens, no CUDA graph): every kernel of decode steps after the prompt, with
#      gpu__time_duration and dram__bytes_read; ncu flushes the caches before each kernel, so every call streams its
#      weights from HBM, as the micro-benchmark's rotating copies do
#   3. a table: per package, kernel name and 7B shape (recognised by the bytes it read), median us, GB/s, calls
#   tools/gpu_matmul_nbits.sh OMM_BINARY KERNELS_DIR OUT_DIR        (BLOCK=32 by default; MODELS=/tmp/omm-gpu/models)
# Writes OUT_DIR/matmul_nbits.txt (the table), OUT_DIR/ncu-<package>.csv and OUT_DIR/matmul_nbits.log.
set -uo pipefail
omm=${1:?usage: tools/gpu_matmul_nbits.sh OMM_BINARY KERNELS_DIR OUT_DIR}; kern=${2:?}; out=${3:?}
mkdir -p "$out"; out=$(cd "$out" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
block=${BLOCK:-32}; m=${MODELS:-/tmp/omm-gpu/models}; mkdir -p "$m"
log() { echo "$(date +%T) $*" | tee -a "$out/matmul_nbits.log"; }
ncu_bin=$(command -v ncu || ls /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
[ -n "$ncu_bin" ] || { log "ncu not found: nothing measured"; exit 2; }
[ -f "$kern/libomm_kernels.so" ] || { log "$kern/libomm_kernels.so missing (run tools/gpu_kernels.sh first)"; exit 2; }

if [ ! -f "$m/7b-ref16/multimodal.json" ]; then
  (cd "$repo/onnx-export" && timeout 900 python3 -m omm_export llama --preset 7b --precision fp16 --no-reference --out "$m/7b-ref16") >> "$out/matmul_nbits.log" 2>&1
  log "export 7b-ref16: rc=$?"
fi
for v in "7b-int4-b$block" "7b-int4-b$block-omm --custom-ops omm"; do
  set -- $v; name=$1; shift
  [ -f "$m/$name/multimodal.json" ] && continue
  (cd "$repo/onnx-export" && timeout 1200 python3 -m omm_export convert --from "$m/7b-ref16" --out "$m/$name" --graph fused \
     --precision int4 --int4-activation fp16 --accuracy-level 0 --block-size "$block" "$@") >> "$out/matmul_nbits.log" 2>&1
  log "convert $name: rc=$?"
done

# The prompt's forward pass and the first decode steps are skipped (a fused 7B step runs a few hundred kernels).
for name in "7b-int4-b$block" "7b-int4-b$block-omm"; do
  timeout 900 "$ncu_bin" --target-processes all --launch-skip 3000 --launch-count 1500 \
    --metrics gpu__time_duration.sum,dram__bytes_read.sum --print-units base --csv \
    "$omm" run "Once upon a time" --model "$m/$name" --provider cuda --max-tokens 24 --ignore-eos \
    --custom-op-library "$kern/libomm_kernels.so" > "$out/ncu-$name.csv" 2>> "$out/matmul_nbits.log"
  log "ncu $name: rc=$? $(grep -c gpu__time_duration "$out/ncu-$name.csv") kernels"
done

python3 - "$block" "$out" "7b-int4-b$block" "7b-int4-b$block-omm" > "$out/matmul_nbits.txt" 2>> "$out/matmul_nbits.log" <<'PY'
import csv, os, statistics, sys
block, out, names = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
shapes = {"qkv": (4096, 12288), "o": (4096, 4096), "gate_up": (4096, 22016), "down": (11008, 4096), "lm_head": (4096, 32000)}
weight = {s: n * k // 2 + 2 * n * (k // block) for s, (k, n) in shapes.items()}
scale = {"nsecond": 1e-9, "usecond": 1e-6, "msecond": 1e-3, "second": 1.0, "byte": 1.0, "Kbyte": 1e3, "Mbyte": 1e6, "Gbyte": 1e9}
print(f"block {block}; weight bytes per shape: " + ", ".join(f"{s} {b / 1e6:.1f} MB" for s, b in weight.items()))
print(f"{'package':22} {'kernel':48} {'shape':8} {'calls':>5} {'median us':>9} {'GB/s':>6}")
for name in names:
    path = os.path.join(out, f"ncu-{name}.csv")
    lines = [l for l in open(path, errors="replace") if l.startswith('"')] if os.path.exists(path) else []
    launches = {}
    for row in csv.DictReader(lines):
        v = row.get("Metric Value", "").replace(",", "")
        try:
            value = float(v) * scale.get(row.get("Metric Unit", ""), 1.0)
        except ValueError:
            continue
        launches.setdefault(row["ID"], {"kernel": row["Kernel Name"].split("(")[0][:48]})[row["Metric Name"]] = value
    groups = {}
    for l in launches.values():
        t, b = l.get("gpu__time_duration.sum"), l.get("dram__bytes_read.sum")
        if t is None or b is None:
            continue
        s = min(weight, key=lambda s: abs(weight[s] - b))
        if abs(weight[s] - b) > 0.05 * weight[s]:
            continue   # not a weight-streaming call of a 7B shape (norms, attention, a prefill GEMM...)
        groups.setdefault((l["kernel"], s), []).append(t)
    if not groups:
        print(f"{name:22} (no 7B-shape kernels found in {path})")
    # whatever the shape match missed (e.g. a stock path that dequantizes to fp16 first): the kernels by total time
    total = {}
    for l in launches.values():
        if "gpu__time_duration.sum" in l:
            e = total.setdefault(l["kernel"], [0.0, 0, []])
            e[0] += l["gpu__time_duration.sum"]; e[1] += 1; e[2].append(l.get("dram__bytes_read.sum", 0.0))
    for kernel, (t, c, bs) in sorted(total.items(), key=lambda kv: -kv[1][0])[:8]:
        print(f"{name:22} top: {kernel:43} {c:5} calls, {t * 1e6 / c:8.2f} us mean, median {statistics.median(bs) / 1e6:7.2f} MB read")
    for (kernel, s), ts in sorted(groups.items(), key=lambda kv: list(shapes).index(kv[0][1])):
        t = statistics.median(ts)
        print(f"{name:22} {kernel:48} {s:8} {len(ts):5} {t * 1e6:9.2f} {weight[s] / t / 1e9:6.0f}")
PY
log "table: rc=$?"; cat "$out/matmul_nbits.txt"
