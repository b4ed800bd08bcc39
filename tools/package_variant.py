#!/usr/bin/env python3
"""A variant of an exported package for GPU measurements, sharing its weights: the decoder's external data as a hard link
(ONNX Runtime refuses external data whose resolved path leaves the model folder), every other file as a symbolic link.
  python3 tools/package_variant.py FROM TO [--qk-norm | --elementwise] [--group-norm] [--prefill ../OTHER/decoder.onnx]
                                    [--image-encoder-fp16]
--qk-norm: Chameleon's per-head q/k norm as one omm.OmmQkvHeadNorm node (custom_ops.fuse_qk_norm; the package then needs
  the custom-op library); --elementwise: that and each MLP's SiLU·up as omm.OmmSwiGlu (what convert --custom-ops elementwise
  writes); --group-norm: the image encoder's GroupNorms (+ SiLU) as omm.OmmGroupNorm (custom_ops.fuse_group_norm);
--prefill: a prefill_decoder component (a sibling package's decoder runs the prompt);
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
ap.add_argument("--elementwise", action="store_true")
ap.add_argument("--group-norm", action="store_true")
ap.add_argument("--prefill")
ap.add_argument("--image-encoder-fp16", action="store_true")
a = ap.parse_args()
if a.group_norm and a.image_encoder_fp16:
    sys.exit("package_variant: --group-norm rewrites the fp32 image encoder; --image-encoder-fp16 would replace it (the op is fp32 only)")
os.makedirs(a.target, exist_ok=True)
with open(os.path.join(a.source, "multimodal.json"), encoding="utf-8") as f:
    manifest = json.load(f)
encoder = manifest["components"].get("image_encoder", "image_encoder.onnx")
rewritten = {"multimodal.json"} | ({"decoder.onnx"} if a.qk_norm or a.elementwise else set()) | ({encoder} if a.group_norm else set())
for name in os.listdir(a.source):
    src, dst = os.path.realpath(os.path.join(a.source, name)), os.path.join(a.target, name)
    if name in rewritten or os.path.lexists(dst):
        continue
    if name == "decoder.onnx.data":
        os.link(src, dst)
    else:
        os.symlink(src, dst)


def save(model, name):
    import onnx
    out = os.path.join(a.target, name)
    if os.path.lexists(out):
        os.unlink(out)   # a link left by an earlier run: saving through it would overwrite the source's graph
    onnx.save(model, out)


if a.qk_norm or a.elementwise:
    import onnx
    from omm_export.custom_ops import OMM_DOMAIN, fuse_qk_norm, fuse_swiglu
    model = onnx.load(os.path.join(a.source, "decoder.onnx"), load_external_data=False)
    done = {"qk_norm": fuse_qk_norm(model)} | ({"swiglu": fuse_swiglu(model)} if a.elementwise else {})
    if not any(d["fused"] for d in done.values()):
        sys.exit(f"package_variant: nothing fused in {a.source}: {done}")
    save(model, "decoder.onnx")
    domains = manifest["decoder"].setdefault("custom_op_domains", [])
    if OMM_DOMAIN not in domains:
        domains.append(OMM_DOMAIN)
    print("decoder ops", a.target, done)
if a.group_norm:
    import onnx
    from omm_export.custom_ops import OMM_DOMAIN, fuse_group_norm
    model = onnx.load(os.path.realpath(os.path.join(a.source, encoder)))   # beside its external data, not through a link
    done = fuse_group_norm(model)
    if not done["fused"]:
        sys.exit(f"package_variant: no GroupNorm fused in {a.source}/{encoder}: {done}")
    save(model, encoder)
    manifest.setdefault("image_encoder", {})["custom_op_domains"] = [OMM_DOMAIN]
    print("group norm", a.target, done)
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
