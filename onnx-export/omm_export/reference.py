"""Golden outputs from the PyTorch model, and a check of the exported graph against them.

reference/reference.json (format_version 1) lists, per prompt: the token ids (bos first), the
first-step logits file (raw little-endian float32, [S, V]), and the greedy tokens produced with the
model's own KV cache (end tokens not honoured, so every step is compared). The seeded sampling run
records each uniform draw; `sampling.py` documents the procedure.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch

from .sampling import SplitMix64, sample_next


def _prompt_ids(tokenizer, text: str) -> list[int]:
    return [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False)["input_ids"]


@torch.no_grad()
def _decode(model, ids: list[int], steps: int, choose) -> tuple[np.ndarray, list[int], list[float]]:
    out = model(input_ids=torch.tensor([ids]), use_cache=True)
    first = out.logits[0].float().numpy()  # [S, V]
    past, logits, tokens, extra = out.past_key_values, out.logits[0, -1], [], []
    for _ in range(steps):
        tok, info = choose(logits.double().numpy(), ids + tokens)
        tokens.append(tok)
        extra.append(info)
        out = model(input_ids=torch.tensor([[tok]]), past_key_values=past, use_cache=True)
        past, logits = out.past_key_values, out.logits[0, -1]
    return first, tokens, extra


def greedy_tokens(model, tokenizer, text: str, steps: int) -> list[int]:
    return _decode(model, _prompt_ids(tokenizer, text), steps, _greedy)[1]


def _greedy(logits: np.ndarray, _seen) -> tuple[int, float]:
    order = np.argsort(-logits, kind="stable")
    return int(order[0]), float(logits[order[0]] - logits[order[1]])


def write_text_references(out_dir, model, tokenizer, prompts, probes, greedy_steps, sampling) -> dict:
    ref_dir = os.path.join(out_dir, "reference")
    os.makedirs(ref_dir, exist_ok=True)
    doc = {"format_version": 1, "tolerance_note": "fp32 logits; compare max|a-b| / max|ref| <= 1e-4",
           "tokenizer": [{"text": t, "ids": tokenizer(t, add_special_tokens=False)["input_ids"]} for t in probes],
           "prompts": []}
    if hasattr(tokenizer, "hf_ids"):   # a checkpoint's tokenizer.json: ids from `tokenizers`; transformers' class beside them
        doc["tokenizer_source"] = "tokenizers (tokenizer.json)"
        try:
            doc["transformers_tokenizer_disagrees"] = [t for t in list(probes) + list(prompts)
                                                       if tokenizer.hf_ids(t) != tokenizer(t, add_special_tokens=False)["input_ids"]]
        except Exception as e:  # noqa: BLE001 - a note, not a reference
            doc["transformers_tokenizer_disagrees"] = f"n/a: {e}"
    for i, text in enumerate(prompts):
        ids = _prompt_ids(tokenizer, text)
        first, tokens, margins = _decode(model, ids, greedy_steps, _greedy)
        name = f"logits_{i}.bin"
        first.astype("<f4").tofile(os.path.join(ref_dir, name))
        doc["prompts"].append({"text": text, "ids": ids, "logits_file": name, "logits_shape": list(first.shape),
                               "greedy": tokens, "greedy_min_margin": min(margins), "greedy_margins": margins,
                               "greedy_text": tokenizer.decode(tokens)})
    s = dict(sampling)
    rng = SplitMix64(s["seed"])
    ids = _prompt_ids(tokenizer, prompts[1])
    choose = lambda lg, seen: sample_next(lg, seen, rng, s["temperature"], s["top_k"], s["top_p"], s["repetition_penalty"])
    _, tokens, uniforms = _decode(model, ids, s["steps"], choose)
    doc["sampling"] = dict(s, prompt=prompts[1], ids=ids, tokens=tokens, uniforms=uniforms,
                           rng="SplitMix64; uniform = (next >> 11) * 2^-53; see omm_export/sampling.py")
    with open(os.path.join(ref_dir, "reference.json"), "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=1, ensure_ascii=False)
    return doc


def ort_greedy(sess, dec: dict, ids: list[int], steps: int, banned=None) -> tuple[np.ndarray, list[int]]:
    """Greedy decoding of decoder.onnx on onnxruntime; returns prefill logits and tokens. Reference graphs
    take a growing cache, mask and positions; fused graphs one max-length cache and seqlens_k/total."""
    shared = dec.get("kv_cache") == "shared"
    dt = np.float16 if dec.get("kv_dtype") == "float16" else np.float32
    past = {f"past_key_values.{i}.{kv}": np.zeros((1, dec["num_kv_heads"], dec["context_length"] if shared else 0, dec["head_dim"]), dt)
            for i in range(dec["num_layers"]) for kv in ("key", "value")}

    def feeds(new, total):
        if shared:
            return dict(seqlens_k=np.array([total - 1], np.int32), total_sequence_length=np.array(total, np.int32))
        return dict(attention_mask=np.ones((1, total), np.int64), position_ids=np.arange(total - len(new), total, dtype=np.int64)[None])

    from .sampling_head import default_feeds
    head = default_feeds(sess, dec["vocab_size"])   # a --device-sampling graph's head inputs (its outputs are not read here)
    feed, total, tokens, first = list(ids), 0, [], None
    while True:
        total += len(feed)
        outs = sess.run(None, dict(past, input_ids=np.array([feed], np.int64), **feeds(feed, total), **head))
        if first is None:
            first = outs[0][0]
        for j, o in enumerate(sess.get_outputs()[1:]):
            if o.name.startswith("present"):   # not next_token (--next-token, --device-sampling)
                past[o.name.replace("present", "past_key_values")] = outs[j + 1]
        if len(tokens) == steps:
            return first, tokens
        row = outs[0][0, -1].astype(np.float32).copy()
        if banned is not None:
            row[banned] = np.finfo(np.float32).min
        tokens.append(int(np.argmax(row)))
        feed = [tokens[-1]]


def check_with_onnxruntime(out_dir: str, steps: int = 32) -> dict:
    """Runs decoder.onnx (reference or fused) on ORT's CPU provider against reference.json; returns the
    figures, or raises check.CheckFailed (exit 1) naming each prompt outside the precision's tolerance."""
    import onnxruntime as ort
    from .check import finish, judge_prompt, tolerance
    with open(os.path.join(out_dir, "multimodal.json")) as f:
        man = json.load(f)
    dec = man["decoder"]
    with open(os.path.join(out_dir, "reference", "reference.json")) as f:
        doc = json.load(f)
    roundtrip = os.path.join(out_dir, "reference", "roundtrip.json")
    if man.get("precision") == "int4" and os.path.exists(roundtrip):   # a converted int4 graph: its own round trip (roundtrip.py)
        with open(roundtrip) as f:
            doc = json.load(f)
    tol, why = tolerance(man, doc)
    sess = ort.InferenceSession(os.path.join(out_dir, man["components"]["decoder"]), providers=["CPUExecutionProvider"])
    result, failures = [], []
    for p in doc["prompts"]:
        ref = np.fromfile(os.path.join(out_dir, "reference", p["logits_file"]), dtype="<f4").reshape(p["logits_shape"])
        first, tokens = ort_greedy(sess, dec, p["ids"], len(p["greedy"]))
        if dec.get("logits") == "last":   # [1, V]: the prefill's last row only
            ref = ref[-1:]
        scale = float(np.abs(ref).max())
        rel = float(np.abs(first.astype(np.float32) - ref).max() / scale)
        result.append(judge_prompt(p["text"], rel, tol, why, tokens, p["greedy"],
                                   p.get("greedy_margins", p.get("greedy_min_margin")), scale, failures))
    return finish(out_dir, {"onnxruntime": ort.__version__, "precision": man["precision"], "prompts": result}, failures)
