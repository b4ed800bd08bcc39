#!/usr/bin/env python3
"""A variant of an exported package for GPU measurements, sharing its weights: the decoder's external data as a hard link
(ONNX Runtime refuses external data whose resolved path leaves the model folder), every other file as a symbolic link.
  python3 tools/package_variant.py FROM TO [--qk-norm] [--prefill ../OTHER/decoder.onnx] [--image-encoder-fp16]
--qk-norm: Chameleon's per-head q/k norm as one omm.OmmQkvHeadNorm node (custom_ops.fuse_qk_norm; the package then needs
  the custom-op library); --prefill: a prefill_decoder component (a sibling package's decoder runs the prompt);
--image-encoder-fp16: the image encoder the export wrote beside the fp32 one (omm_export chameleon --image-encoder-fp16)."""
import argparse
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(here, "..", "onnx-export"))

ap = argparse.ArgumentParser()
ap.add_argument("source")
ap.add_argument("target")
ap.add_argument("--qk-norm", action="store_true")
ap.add_argument("--prefill")
ap.add_argument("--image-encoder-fp16", action="store_true")
a = ap.parse_args()
os.makedirs(a.target, exist_ok=True)
rewritten = {"multimodal.json"} | ({"decoder.onnx"} if a.qk_norm else set())
for name in os.listdir(a.source):
    src, dst = os.path.realpath(os.path.join(a.source, name)), os.path.join(a.target, name)
    if name in rewritten or os.path.lexists(dst):
        continue
    if name == "decoder.onnx.data":
        os.link(src, dst)
    else:
        os.symlink(src, dst)
with open(os.path.join(a.source, "multimodal.json"), encoding="utf-8") as f:
    manifest = json.load(f)
if a.qk_norm:
    import onnx
    from omm_export.custom_ops import OMM_DOMAIN, fuse_qk_norm
    model = onnx.load(os.path.join(a.source, "decoder.onnx"), load_external_data=False)
    done = fuse_qk_norm(model)
    if not done["fused"]:
        sys.exit(f"package_variant: nothing fused in {a.source}: {done}")
    out = os.path.join(a.target, "decoder.onnx")
    if os.path.lexists(out):
        os.unlink(out)   # a link left by an earlier run: saving through it would overwrite the source's graph
    onnx.save(model, out)
    domains = manifest["decoder"].setdefault("custom_op_domains", [])
    if OMM_DOMAIN not in domains:
        domains.append(OMM_DOMAIN)
    print("qk-norm", a.target, done)
if a.prefill:
    manifest["components"]["prefill_decoder"] = a.prefill
if a.image_encoder_fp16:
    entry = manifest.get("image_encoder", {}).get("fp16")
    if entry is None:
        sys.exit(f"package_variant: {a.source} has no fp16 image encoder (omm_export chameleon --image-encoder-fp16)")
    manifest["components"]["image_encoder"] = entry["file"]
    print("image encoder fp16", a.target, entry)
with open(os.path.join(a.target, "multimodal.json"), "w", encoding="utf-8") as f:
    json.dump(manifest, f, indent=1)
