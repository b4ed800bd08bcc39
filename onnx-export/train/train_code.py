"""Code model: a small LlamaForCausalLM trained on the Python standard library of the machine it runs
on (held-out files by a hash of their path), with its own byte-level BPE tokenizer. Writes the HF
checkpoint, exports fp32 (+ references and the onnxruntime check), fp16 and int4 (block 32 / 128)
packages, and an eval JSON (held-out perplexity per precision, greedy continuations).

usage: python train_code.py WORK_DIR"""
from __future__ import annotations

import hashlib
import os
import sys
import sysconfig
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import (EXPORT_ROOT, SMOKE, Budget, autocast, device, drop_chat_template, export, log, lr_at,  # noqa: E402
                    seed_all, set_lr, write_json)

sys.path.insert(0, EXPORT_ROOT)
from omm_export.text_tokenizer import SPECIAL_TOKENS, train_byte_level_bpe  # noqa: E402

SEED = 1234
VOCAB = 2048
DIMS = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=5, num_attention_heads=4, num_key_value_heads=2)
CONTEXT = 512
SEQ = 256
BATCH = 128
PEAK_LR = 3e-3
TRAIN_SECONDS = float(os.environ.get("CODE_SECONDS", "150"))
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__", "turtledemo"}
BLOCKS = () if SMOKE else (32, 128)      # SMOKE: fp32 + fp16 exports only
PROMPTS = ["def fibonacci(n):", "import os\n", "class Stack:\n", "def read_file(path):\n", "for i in range("]


def source_files(root: str):
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fn in sorted(filenames):
            p = os.path.join(dirpath, fn)
            if fn.endswith(".py") and 200 < os.path.getsize(p) < 300_000:
                files.append(p)
    return files


def held_out(rel: str) -> bool:
    return int(hashlib.sha1(rel.encode()).hexdigest(), 16) % 20 == 0      # ~5% of files


def train_tokenizer(texts):
    return train_byte_level_bpe(VOCAB, texts=texts, special_tokens=SPECIAL_TOKENS)


def encode_all(tok, texts, bos, eos) -> np.ndarray:
    out = []
    for enc in tok.encode_batch(texts):
        out.append(np.array([bos] + enc.ids + [eos], np.int32))
    return np.concatenate(out) if out else np.zeros(0, np.int32)


@torch.no_grad()
def perplexity(model, data: torch.Tensor, use_autocast: bool = False) -> float:
    model.eval()
    n = (data.numel() - 1) // SEQ
    x = data[: n * SEQ].view(n, SEQ)
    y = data[1: n * SEQ + 1].view(n, SEQ)
    total, count = 0.0, 0
    for i in range(0, n, 64):
        xb, yb = x[i:i + 64], y[i:i + 64]
        if use_autocast:
            with autocast():
                logits = model(input_ids=xb, use_cache=False).logits
        else:
            logits = model(input_ids=xb, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), yb.reshape(-1), reduction="sum")
        total += float(loss)
        count += yb.numel()
    return float(np.exp(total / max(1, count))), total / max(1, count)


@torch.no_grad()
def greedy(model, tokenizer, prompt: str, steps: int = 48) -> str:
    ids = [tokenizer.bos_token_id] + tokenizer(prompt, add_special_tokens=False)["input_ids"]
    dev = next(model.parameters()).device
    for _ in range(steps):
        logits = model(input_ids=torch.tensor([ids], device=dev), use_cache=False).logits[0, -1].float()
        t = int(logits.argmax())
        if t == tokenizer.eos_token_id:
            break
        ids.append(t)
    return tokenizer.decode(ids[1:], skip_special_tokens=True)


def main(work: str) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    seed_all(SEED)
    dev = device()
    t_start = time.time()
    root = sysconfig.get_paths()["stdlib"]
    files = source_files(root)
    if SMOKE:
        files = files[:300]
    texts_train, texts_eval, names_eval = [], [], []
    for p in files:
        rel = os.path.relpath(p, root)
        with open(p, encoding="utf-8", errors="replace") as f:
            text = f.read()
        (texts_eval if held_out(rel) else texts_train).append(text)
        if held_out(rel):
            names_eval.append(rel)
    log(f"code: {len(texts_train)} training files ({sum(map(len, texts_train)) / 1e6:.1f} MB), {len(texts_eval)} held out, from {root}")
    tok = train_tokenizer(texts_train)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
                                   clean_up_tokenization_spaces=False)
    bos, eos, pad = (tok.token_to_id(t) for t in ("<|bos|>", "<|eos|>", "<|pad|>"))
    train_ids = torch.from_numpy(encode_all(tok, texts_train, bos, eos)).long().to(dev)
    eval_ids = torch.from_numpy(encode_all(tok, texts_eval, bos, eos)[: 40_000 if SMOKE else 400_000]).long().to(dev)
    eval_bytes = sum(len(t.encode()) for t in texts_eval)
    log(f"code: vocab {tok.get_vocab_size()}, {train_ids.numel()} training tokens, {eval_ids.numel()} held-out tokens")

    cfg = LlamaConfig(vocab_size=tok.get_vocab_size(), max_position_embeddings=CONTEXT, rms_norm_eps=1e-5,
                      initializer_range=0.02, tie_word_embeddings=False, bos_token_id=bos, eos_token_id=eos,
                      pad_token_id=pad, rope_theta=10000.0, attention_dropout=0.0, **DIMS)
    model = LlamaForCausalLM(cfg).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"code: {nparams / 1e6:.2f} M parameters")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=PEAK_LR, betas=(0.9, 0.95), fused=dev.type == "cuda")
    budget = Budget("code", 5 if SMOKE else TRAIN_SECONDS, 60_000)
    gen = torch.Generator(device=dev).manual_seed(SEED)
    step, losses, t_train = 0, [], time.time()
    model.train()
    while True:
        start = torch.randint(0, train_ids.numel() - SEQ - 1, (BATCH,), device=dev, generator=gen)
        idx = start[:, None] + torch.arange(SEQ + 1, device=dev)[None]
        chunk = train_ids[idx]
        set_lr(opt, lr_at(step, budget.schedule_total(), PEAK_LR))
        with autocast():
            logits = model(input_ids=chunk[:, :-1], use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 200 == 0 or step == 1:
            losses.append((step, float(loss)))
            log(f"code: step {step} loss {float(loss):.3f}")
        if not budget.after_step(step):
            break
    train_seconds = time.time() - t_train
    log(f"code: trained {step} steps in {train_seconds:.0f} s")

    ckpt = os.path.join(work, "code_ckpt")
    model.eval()
    model.save_pretrained(ckpt)
    fast.save_pretrained(ckpt)

    # held-out perplexity per precision (PyTorch; the int4 rows use the exporter's own round trip)
    from omm_export.families.llama import dequantize_model_
    results = {"files_train": len(texts_train), "files_eval": len(texts_eval), "eval_files_sample": names_eval[:20],
               "eval_tokens": int(eval_ids.numel()), "eval_bytes_per_token": eval_bytes / max(1, encode_all(tok, texts_eval, bos, eos).size),
               "parameters": nparams, "steps": step, "train_seconds": round(train_seconds, 1), "loss_curve": losses,
               "dims": dict(DIMS, vocab=tok.get_vocab_size(), context=CONTEXT), "perplexity": {}}
    fp32 = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager").to(dev).eval()
    results["greedy"] = {p: greedy(fp32, fast, p) for p in PROMPTS}
    results["perplexity"]["fp32"] = perplexity(fp32, eval_ids)[0]
    results["perplexity"]["bf16_autocast"] = perplexity(fp32, eval_ids, use_autocast=True)[0]
    results["perplexity"]["fp16"] = perplexity(fp32.half(), eval_ids)[0]
    for block in BLOCKS:
        for zp in (False, True):   # symmetric blocks, and blocks with zero points (export --int4-zero-points)
            q = LlamaForCausalLM.from_pretrained(ckpt, dtype=torch.float32, attn_implementation="eager").eval()
            dequantize_model_(q, block, zero_points=zp)
            results["perplexity"][f"int4_b{block}" + ("_zp" if zp else "")] = perplexity(q.to(dev), eval_ids)[0]
    log("code: " + repr(results["perplexity"]))
    log("code: def fibonacci(n): -> " + repr(results["greedy"][PROMPTS[0]]))

    pk = os.path.join(work, "packages")
    export("llama", "--checkpoint", ckpt, "--out", os.path.join(pk, "code-fp32"), "--check")
    export("llama", "--checkpoint", ckpt, "--out", os.path.join(pk, "code"), "--precision", "fp16", "--no-reference")
    for block in BLOCKS:
        export("llama", "--checkpoint", ckpt, "--out", os.path.join(pk, f"code-int4-b{block}"), "--graph", "fused",
               "--precision", "int4", "--block-size", str(block), "--no-reference")
    for name in ["code-fp32", "code"] + [f"code-int4-b{b}" for b in BLOCKS]:
        drop_chat_template(os.path.join(pk, name))
    results["onnxruntime_greedy"] = ort_continuations(os.path.join(pk, "code"), fast)
    results["total_seconds"] = round(time.time() - t_start, 1)
    write_json(os.path.join(work, "code-eval.json"), results)


def ort_continuations(package: str, tokenizer) -> dict:
    """The committed (fp16) package on onnxruntime CPU: greedy continuations, as `omm run` should print."""
    import json

    import onnxruntime as ort
    from omm_export.reference import ort_greedy
    try:
        with open(os.path.join(package, "multimodal.json")) as f:
            dec = json.load(f)["decoder"]
        sess = ort.InferenceSession(os.path.join(package, "decoder.onnx"), providers=["CPUExecutionProvider"])
        out = {}
        for p in PROMPTS[:2]:
            ids = [tokenizer.bos_token_id] + tokenizer(p, add_special_tokens=False)["input_ids"]
            _, toks = ort_greedy(sess, dec, ids, 32)
            out[p] = tokenizer.decode(toks, skip_special_tokens=False)
        return out
    except Exception as e:  # noqa: BLE001 - recorded in the eval, the packages are still written
        return {"error": repr(e)}


if __name__ == "__main__":
    main(sys.argv[1])
