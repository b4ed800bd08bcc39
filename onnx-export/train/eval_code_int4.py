"""Held-out perplexity of code packages on onnxruntime (CPU): the same held-out files, token stream and 256-token
chunks as train_code.py's PyTorch evaluation, run through each package's own graph and tokenizer, so fused fp32, fp16
and int4 packages (symmetric or with zero points, any block size) compare on the tokens the training run held out
(the first 400k at most; 187k on the GPU machine), not on one snippet. Runs where the training data is: the Python standard library of the machine (the GPU machine's
for the committed model).

usage: python eval_code_int4.py OUT.json PACKAGE [PACKAGE ...]     (fused-graph packages: convert --graph fused)
"""
from __future__ import annotations

import json
import os
import sys
import sysconfig
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_code import SEQ, held_out, source_files  # noqa: E402  (the training run's split and chunk length)

MAX_TOKENS = 400_000   # train_code.py evaluates the first 400k held-out tokens
BATCH = 32


def held_out_ids(tokenizer_json: str, bos: int, eos: int) -> tuple[np.ndarray, int]:
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_json)
    root = sysconfig.get_paths()["stdlib"]
    texts = []
    for p in source_files(root):
        if held_out(os.path.relpath(p, root)):
            with open(p, encoding="utf-8", errors="replace") as f:
                texts.append(f.read())
    out = [np.array([bos] + e.ids + [eos], np.int64) for e in tok.encode_batch(texts, add_special_tokens=False)]
    return np.concatenate(out)[:MAX_TOKENS], len(texts)


def perplexity(package: str) -> dict:
    import onnxruntime as ort
    with open(os.path.join(package, "multimodal.json")) as f:
        man = json.load(f)
    dec, tokens = man["decoder"], man["tokens"]
    if dec.get("kv_cache") != "shared":
        raise SystemExit(f"{package}: not a fused-graph package (convert --graph fused)")
    if dec.get("logits") == "last" or "sampling_head" in dec:
        raise SystemExit(f"{package}: its graph returns last-position logits or a sampling head; convert without "
                         "--last-logits / --device-sampling to score every position")
    eos = tokens["eos"][0] if isinstance(tokens["eos"], list) else tokens["eos"]
    ids, files = held_out_ids(os.path.join(package, man["components"]["tokenizer"]), tokens["bos"], eos)
    so = ort.SessionOptions()
    sess = ort.InferenceSession(os.path.join(package, man["components"]["decoder"]), so, providers=["CPUExecutionProvider"])
    kv = np.float16 if dec.get("kv_dtype") == "float16" else np.float32
    n = (ids.size - 1) // SEQ
    x, y = ids[: n * SEQ].reshape(n, SEQ), ids[1: n * SEQ + 1].reshape(n, SEQ)
    total, count, t0 = 0.0, 0, time.time()
    for i in range(0, n, BATCH):
        xb, yb = x[i:i + BATCH], y[i:i + BATCH]
        b = xb.shape[0]
        feeds = {"input_ids": xb, "seqlens_k": np.full(b, SEQ - 1, np.int32), "total_sequence_length": np.array(SEQ, np.int32)}
        for inp in sess.get_inputs():
            if inp.name.startswith("past_key_values"):
                feeds[inp.name] = np.zeros((b, dec["num_kv_heads"], SEQ, dec["head_dim"]), kv)
        logits = sess.run(["logits"], feeds)[0].astype(np.float64)                  # [b, SEQ, V]
        m = logits.max(axis=-1, keepdims=True)
        lse = (m[..., 0] + np.log(np.exp(logits - m).sum(axis=-1)))
        picked = np.take_along_axis(logits, yb[..., None], axis=-1)[..., 0]
        total += float((lse - picked).sum())
        count += yb.size
    return {"package": package, "precision": man.get("precision"), "quantization": man.get("quantization"),
            "held_out_files": files, "tokens": int(count), "perplexity": float(np.exp(total / count)),
            "seconds": round(time.time() - t0, 1)}


def main() -> int:
    out, packages = sys.argv[1], sys.argv[2:]
    rows = []
    for p in packages:
        r = perplexity(p)
        rows.append(r)
        q = r["quantization"] or {}
        print(f"{os.path.basename(p.rstrip('/'))}: perplexity {r['perplexity']:.3f} over {r['tokens']} held-out tokens "
              f"({r['held_out_files']} files; {q.get('method', r['precision'])}, block {q.get('block_size', '-')}) in {r['seconds']} s")
    with open(out, "w") as f:
        json.dump({"stdlib": sysconfig.get_paths()["stdlib"], "seq": SEQ, "results": rows}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
