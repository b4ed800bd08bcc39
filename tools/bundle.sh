#!/usr/bin/env bash
# Builds a self-contained `omm` for a machine without .NET: linux-x64, ONNX Runtime's CUDA 13 natives,
# the tiny models. Optionally adds the NUnit suite as a standalone executable (OnnxMultimodal.Tests, run
# with OMM_REPO_ROOT=<checkout> --filter TestCategory=Cuda) and compresses and splits it into parts.
#   tools/bundle.sh OUT_DIR [--cpu] [--tests] [--parts SIZE]      e.g. tools/bundle.sh .bundle --tests --parts 35M
# (each part plus the tracked tree, ~24 MiB, must stay under the 64 MiB a device call carries)
# The GPU machine needs the CUDA 13 runtime, cuBLAS and cuDNN 9 on LD_LIBRARY_PATH, e.g.
#   export LD_LIBRARY_PATH=/usr/local/cuda-13.0/targets/x86_64-linux/lib:$CUDNN_LIB:$LD_LIBRARY_PATH
set -euo pipefail
out=${1:?usage: tools/bundle.sh OUT_DIR [--cpu] [--parts SIZE]}; shift
gpu=true; parts=""; tests=false
while [ $# -gt 0 ]; do
  case "$1" in
    --cpu) gpu=false ;;
    --tests) tests=true ;;
    --parts) parts=$2; shift ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
root=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$out/omm"
dotnet publish "$root/src/OnnxMultimodal.Cli" -c Release -r linux-x64 --self-contained -p:OmmGpu=$gpu -o "$out/omm" -v quiet
if $tests; then   # same runtime and natives: the suite shares the folder
  dotnet publish "$root/tests/OnnxMultimodal.Tests" -c Release -r linux-x64 --self-contained -p:OmmGpu=$gpu -p:OmmTestExe=true -o "$out/omm" -v quiet
fi
rm -f "$out/omm/"*.pdb "$out/omm/"*.xml
rm -rf "$out/omm/models"   # the CLI's copies of the committed models: on the GPU machine the checkout has them (OMM_REPO_ROOT, --model)
echo "bundle: $(du -sh "$out/omm" | cut -f1) in $out/omm (run $out/omm/omm info)"
if [ -n "$parts" ]; then
  rm -f "$out"/omm.tar.zst.part-*
  tar -C "$out" -cf - omm | zstd -T0 -19 --long=27 -q -c | split -b "$parts" - "$out/omm.tar.zst.part-"
  ls -la "$out"/omm.tar.zst.part-*
  echo "reassemble: cat omm.tar.zst.part-* | zstd -d --long=27 | tar -xf -"
fi
