"""PyTorch baselines for the decode benchmarks, on the same synthetic weights as our exported graphs
(same preset and seed): transformers' eager forward with its own cache (the paper's baseline), a
static-cache decode loop with SDPA, and that loop under torch.compile(mode="reduce-overhead") (CUDA
graphs; with --compile-modes reduce-overhead,max-autotune also Triton-autotuned). Prints JSON: ms/token
p50 for each, and the card's measured copy bandwidth.

  python bench/torch_decode.py --preset 1b --prompt-tokens 128 --new-tokens 256
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
from omm_export.families import llama  # noqa: E402


# JSON key of each torch.compile mode's ms/token (reduce-overhead keeps the key earlier results use)
COMPILE_KEYS = {"reduce-overhead": "static_sdpa_compiled_ms", "max-autotune": "static_sdpa_autotune_ms"}


class StaticCacheLlama(torch.nn.Module):
    """A Llama decode step over transformers' modules with a preallocated KV cache written by position;
    B rows in lockstep, and Chameleon's per-head qk-norm where the attention has one."""

    def __init__(self, hf, max_len: int, batch: int = 1):
        super().__init__()
        cfg = hf.config
        self.m, self.lm = hf.model, hf.lm_head
        self.nh, self.kvh = cfg.num_attention_heads, cfg.num_key_value_heads
        self.hd = cfg.hidden_size // self.nh
        L, dev, dt = cfg.num_hidden_layers, hf.device, hf.dtype
        self.register_buffer("k", torch.zeros(L, batch, self.kvh, max_len, self.hd, device=dev, dtype=dt))   # [L, B, kvH, max, hd]
        self.register_buffer("v", torch.zeros_like(self.k))
        theta = float((getattr(cfg, "rope_parameters", None) or {}).get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))
        inv = 1.0 / theta ** (torch.arange(0, self.hd, 2, device=dev).float() / self.hd)
        f = torch.outer(torch.arange(max_len, device=dev).float(), inv)
        emb = torch.cat([f, f], dim=-1)
        self.register_buffer("cos", emb.cos().to(dt))   # [max, hd]
        self.register_buffer("sin", emb.sin().to(dt))
        self.register_buffer("keys", torch.arange(max_len, device=dev))

    @staticmethod
    def _rot(x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat([-b, a], dim=-1)

    def forward(self, ids, pos):          # ids [B,S], pos [S]
        b, s = ids.shape
        x = self.m.embed_tokens(ids)
        cos, sin = self.cos[pos][None, None], self.sin[pos][None, None]                     # [1,1,S,hd]
        mask = (self.keys[None, :] <= pos[:, None])[None, None]                             # [1,1,S,max]
        for i, layer in enumerate(self.m.layers):
            a = layer.self_attn
            h = layer.input_layernorm(x)
            q = a.q_proj(h).view(b, s, self.nh, self.hd)
            k = a.k_proj(h).view(b, s, self.kvh, self.hd)
            if hasattr(a, "q_norm"):      # Chameleon: LayerNorm over each head with a per-head affine
                q, k = a.q_norm(q), a.k_norm(k)
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            v = a.v_proj(h).view(b, s, self.kvh, self.hd).transpose(1, 2)
            q, k = q * cos + self._rot(q) * sin, k * cos + self._rot(k) * sin
            self.k[i].index_copy_(2, pos, k)
            self.v[i].index_copy_(2, pos, v)
            o = F.scaled_dot_product_attention(q, self.k[i], self.v[i], attn_mask=mask, enable_gqa=True)
            x = x + a.o_proj(o.transpose(1, 2).reshape(b, s, -1))
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        return self.lm(self.m.norm(x[:, -1:]))


def timed_steps(step, first_token, start, n):
    tok, times = first_token, []
    for i in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        logits = step(tok, start + i)
        tok = logits.argmax(-1).view(-1, 1)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return times


def eager_steps(hf, prompt, n):
    """transformers' own loop with its dynamic cache (the paper's eager baseline): the prompt, then n
    timed one-token steps. Returns (prefill ms, per-step ms)."""
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    o = hf(input_ids=prompt, use_cache=True)
    past, tok = o.past_key_values, o.logits[:, -1:].argmax(-1)
    torch.cuda.synchronize()
    prefill, times = (time.perf_counter() - t0) * 1000, []
    for _ in range(n):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        o = hf(input_ids=tok, past_key_values=past, use_cache=True)
        past, tok = o.past_key_values, o.logits[:, -1:].argmax(-1)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return prefill, times


def position_step(forward, pos):
    """A step(tok, p) for timed_steps over a forward(ids, pos) that reads its position from a device tensor."""
    def step(tok, p):
        pos.fill_(p)
        return forward(tok, pos)
    return step


def compile_step(forward, first, pos, start, mode):
    """torch.compile(forward) in `mode`, warmed up on three positions from `start`: (step for timed_steps, seconds)."""
    torch._dynamo.reset()
    compiled = torch.compile(forward, mode=mode, fullgraph=True)
    t0 = time.perf_counter()
    for i in range(3):
        pos.fill_(start + i)
        compiled(first, pos)
    return position_step(compiled, pos), round(time.perf_counter() - t0, 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--compile-modes", default="reduce-overhead", help="comma-separated: reduce-overhead, max-autotune")
    a = ap.parse_args()

    class Args:
        checkpoint, preset, seed = None, a.preset, a.seed
    with tempfile.TemporaryDirectory() as tmp:
        hf, _, _ = llama.load_model(Args(), tmp)
    hf = hf.to(device="cuda", dtype=torch.float16).eval()
    prompt = torch.randint(10, hf.config.vocab_size - 10, (1, a.prompt_tokens), device="cuda", generator=torch.Generator("cuda").manual_seed(0))
    out = {"card": torch.cuda.get_device_name(0), "torch": torch.__version__, "preset": a.preset,
           "params": sum(p.numel() for p in hf.parameters()), "prompt_tokens": a.prompt_tokens, "new_tokens": a.new_tokens}

    buf = torch.empty(2 << 30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(buf)
    for _ in range(3):
        dst.copy_(buf)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(10):
        dst.copy_(buf)
    torch.cuda.synchronize()
    out["copy_bandwidth_tb_s"] = round(2 * 10 * buf.numel() / (time.perf_counter() - t0) / 1e12, 3)
    del buf, dst

    with torch.no_grad():
        # 1. transformers eager, its dynamic cache (the paper's baseline)
        _, times = eager_steps(hf, prompt, a.new_tokens)
        out["transformers_eager_ms"] = round(statistics.median(times[5:]), 4)
        print(json.dumps(out), flush=True)   # partial results, in case a later section is cut off

        # 2. static cache + SDPA, eager
        model = StaticCacheLlama(hf, a.prompt_tokens + a.new_tokens + 8)
        n = a.prompt_tokens
        first = model(prompt, torch.arange(n, device="cuda")).argmax(-1).view(1, 1)
        pos = torch.zeros(1, dtype=torch.long, device="cuda")

        out["static_sdpa_eager_ms"] = round(statistics.median(timed_steps(position_step(model, pos), first, n, a.new_tokens)[5:]), 4)
        print(json.dumps(out), flush=True)

        # 3. the same step under torch.compile: reduce-overhead (CUDA graphs), and max-autotune (CUDA
        # graphs + Triton autotuning of the matmuls) when asked
        if not a.skip_compile:
            for mode in a.compile_modes.split(","):
                key = COMPILE_KEYS[mode]
                step, out[key.replace("_ms", "_compile_seconds")] = compile_step(model.forward, first, pos, n, mode)
                out[key] = round(statistics.median(timed_steps(step, first, n, a.new_tokens)[5:]), 4)
                print(json.dumps(out), flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
