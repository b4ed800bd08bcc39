#!/usr/bin/env bash
# Builds a self-contained `omm` for a machine without .NET: linux-x64, ONNX Runtime's CUDA 13 natives,
# the tiny models. Optionally compresses and splits it into parts of a given size.
#   tools/bundle.sh OUT_DIR [--cpu] [--parts SIZE]        e.g. tools/bundle.sh .bundle --parts 40M
# The GPU machine needs the CUDA 13 runtime, cuBLAS and cuDNN 9 on LD_LIBRARY_PATH, e.g.
#   export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$CUDNN_LIB:$LD_LIBRARY_PATH
set -euo pipefail
out=${1:?usage: tools/bundle.sh OUT_DIR [--cpu] [--parts SIZE]}; shift
gpu=true; parts=""
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) gpu=false ;;
    --parts) parts=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out/omm"
dotnet publish "$root/src/OnnxMultimodal.Cli" -c Release -r linux-x64 --self-contained -p:OmmGpu=$gpu -o "$out/omm" -v quiet
rm -f "$out/omm/"*.pdb "$out/omm/"*.xml
echo "bundle: $(du -sh "$out/omm" | cut -f1) in $out/omm (run $out/omm/omm info)"
if [ -n "$parts" ]; then
  rm -f "$out"/omm.tar.zst.part-*
  tar -C "$out" -cf - omm | zstd -T0 -10 -q -c | split -b "$parts" - "$out/omm.tar.zst.part-"
  ls -la "$out"/omm.tar.zst.part-*
  echo "reassemble: cat omm.tar.zst.part-* | zstd -d | tar -xf -"
fi
