"""The int4 package's own reference: what its graph should give if int4 cost nothing but the weights' rounding.

`convert --precision int4` checks the new graph against this rather than against the fp32 source. The source's
logits differ from any int4 graph's by the quantization error of the weights themselves (absmax/7 steps per
block), which on small or random models is as large as the logits' spread, so no fixed tolerance separates a
correct int4 graph from a broken one there. The round trip removes that term: the same fused graph in fp32, with
each quantized weight replaced by dequantize(quantize(w)), run on onnxruntime's CPU provider. What is left between
it and the int4 graph is the arithmetic of MatMulNBits and of the activation type: the tolerances of check.py.
Written to reference/roundtrip.json (+ roundtrip_logits_<i>.bin); reference.json (the source's) is untouched.
"""
from __future__ import annotations

import copy
import json
import os
import sys
import tempfile

import numpy as np

from .decoder_graph import DecoderSpec, DecoderWeights
from .fused_graph import FusedOptions, build_fused_decoder, dequantize_int4, quantize_weights
from .onnx_utils import save_model

QUANTIZED_PARTS = ("q", "k", "v", "o", "gate", "up", "down")


def rounded_weights(w: DecoderWeights, block: int, zero_points: bool = False) -> DecoderWeights:
    """A copy of w whose linear weights (and head) went through int4 and back, exactly as the graph stores them."""
    def rt(x: np.ndarray) -> np.ndarray:                     # [K, N] -> [K, N]
        packed, scale, zp = quantize_weights(x, block, zero_points)
        return np.ascontiguousarray(dequantize_int4(packed, scale, x.shape[0], zp).astype(np.float32))
    out = copy.deepcopy(w)
    for layer in out.layers:
        for part in QUANTIZED_PARTS:
            setattr(layer, part, rt(getattr(layer, part)))
    out.lm_head = rt(w.lm_head)
    return out


def _greedy_with_margins(sess, dec: dict, ids: list[int], steps: int):
    """Prefill logits, greedy tokens and each step's best-minus-second margin of a fused fp32 graph."""
    past = {f"past_key_values.{i}.{kv}": np.zeros((1, dec["num_kv_heads"], dec["context_length"], dec["head_dim"]), np.float32)
            for i in range(dec["num_layers"]) for kv in ("key", "value")}
    from .sampling_head import default_feeds
    head = default_feeds(sess, dec["vocab_size"])   # a --device-sampling graph's head inputs
    feed, total, tokens, margins, first = list(ids), 0, [], [], None
    while True:
        total += len(feed)
        outs = sess.run(None, dict(past, input_ids=np.array([feed], np.int64),
                                   seqlens_k=np.array([total - 1], np.int32), total_sequence_length=np.array(total, np.int32), **head))
        if first is None:
            first = outs[0][0]
        for j, o in enumerate(sess.get_outputs()[1:]):
            if o.name.startswith("present"):
                past[o.name.replace("present", "past_key_values")] = outs[j + 1]
        if len(tokens) == steps:
            return first, tokens, margins
        row = outs[0][0, -1].astype(np.float32)
        top2 = np.partition(row, -2)[-2:]
        tokens.append(int(np.argmax(row)))
        margins.append(float(top2[1] - top2[0]))
        feed = [tokens[-1]]


def write_roundtrip_reference(out: str, spec: DecoderSpec, w: DecoderWeights, opt: FusedOptions, dec: dict) -> dict:
    """Runs the round-trip fp32 graph on the prompts of out/reference/reference.json and writes roundtrip.json."""
    import onnxruntime as ort
    ref_dir = os.path.join(out, "reference")
    with open(os.path.join(ref_dir, "reference.json"), encoding="utf-8") as f:
        src = json.load(f)
    fp32 = FusedOptions(precision="fp32", last_logits=opt.last_logits)
    dec32 = dict(dec, kv_dtype="float32")
    doc = {"format_version": 1, "quantized_reference": {
               "method": "the fused graph in fp32 with every int4 weight replaced by dequantize(quantize(w)), onnxruntime CPU",
               "block_size": opt.block_size, "accuracy_level": opt.accuracy_level, "zero_points": opt.int4_zero_points},
           "prompts": []}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "roundtrip.onnx")
        save_model(build_fused_decoder(spec, rounded_weights(w, opt.block_size, opt.int4_zero_points), fp32), path)
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        # Chameleon's and Seamless' references hold images, captions and audio rather than text prompts: the round
        # trip then has no prompts to run (it was a KeyError that stopped `convert --precision int4` of a Chameleon package)
        for i, p in enumerate(src.get("prompts", [])):
            first, tokens, margins = _greedy_with_margins(sess, dec32, p["ids"], len(p["greedy"]))
            name = f"roundtrip_logits_{i}.bin"
            first.astype("<f4").tofile(os.path.join(ref_dir, name))
            doc["prompts"].append({"text": p["text"], "ids": p["ids"], "logits_file": name, "logits_shape": list(first.shape),
                                   "greedy": tokens, "greedy_margins": margins, "greedy_min_margin": min(margins) if margins else None})
    if not doc["prompts"]:
        doc["note"] = "the source's references hold no text prompts (Chameleon / Seamless): nothing to round-trip"
        print("convert: int4 round trip: the references hold no text prompts; roundtrip.json lists none", file=sys.stderr)
    with open(os.path.join(ref_dir, "roundtrip.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    return doc
