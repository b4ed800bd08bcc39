"""PyTorch baselines for the decode benchmarks, on the same synthetic weights as our exported graphs
(same preset and seed): transformers' eager forward with its own cache (the paper's baseline), a
static-cache decode loop with SDPA, and that loop under torch.compile(mode="reduce-overhead") (CUDA
graphs; with --compile-modes reduce-overhead,max-autotune also Triton-autotuned), and with --sections int4
PyTorch's best int4 weight-only path (tinygemm Linears, gpt-fast style) in that loop. Prints JSON: ms/token
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


class Int4Linear(torch.nn.Module):
    """A weight-only int4 Linear over PyTorch's own tinygemm kernels (what gpt-fast and torchao's int4 path run):
    asymmetric per-group quantization (scale = (max - min) / 15 per group of `group` inputs), weights packed by
    aten._convert_weight_to_int4pack (uint8 [N, K/2], the even input in the high nibble, as the kernel
    micro-benchmark found), bf16 activations and a [K/group, N, 2] bf16 scale-and-zero table, where the kernel
    dequantizes (q - 8) * scale + zero."""

    def __init__(self, lin: torch.nn.Linear, group: int):
        super().__init__()
        w = lin.weight.detach().float()
        n, k = w.shape
        g = w.view(n, k // group, group)
        lo = g.amin(-1, keepdim=True)
        scale = ((g.amax(-1, keepdim=True) - lo).clamp(min=1e-8) / 15)
        q = ((g - lo) / scale).round().clamp(0, 15).to(torch.uint8).view(n, k)
        self.group, self.out_features = group, n
        self.register_buffer("packed", torch.ops.aten._convert_weight_to_int4pack(((q[:, 0::2] << 4) | q[:, 1::2]).contiguous(), 8))
        zero = lo + 8 * scale                                   # (q - 8) * scale + zero = q * scale + lo
        self.register_buffer("sz", torch.stack([scale.view(n, -1).T, zero.view(n, -1).T], dim=2).to(torch.bfloat16).contiguous())
        self.bias = None if lin.bias is None else torch.nn.Parameter(lin.bias.detach().to(torch.bfloat16), requires_grad=False)
        self.max_rel_err = float("nan")
        with torch.no_grad():                                   # the dequantized weight against the kernel, once
            x = torch.randn(2, k, device=w.device)
            ref = x @ (q.float().view(n, k // group, group) * scale + lo).view(n, k).T
            got = torch.ops.aten._weight_int4pack_mm(x.to(torch.bfloat16), self.packed, group, self.sz).float()
            self.max_rel_err = ((got - ref).abs().max() / ref.abs().max()).item()

    def forward(self, x):
        shape = x.shape
        y = torch.ops.aten._weight_int4pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.packed, self.group, self.sz)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], self.out_features).to(x.dtype)


def quantize_int4(module: torch.nn.Module, group: int) -> float:
    """Replaces every nn.Linear under `module` whose input size is a multiple of the group (and of 128, the
    packing's tile) by an Int4Linear, as gpt-fast does (the lm_head included). Returns the worst check error."""
    worst = 0.0
    for name, child in list(module.named_children()):
        if isinstance(child, torch.nn.Linear) and child.in_features % max(group, 128) == 0 and child.out_features % 8 == 0:
            q = Int4Linear(child, group)
            worst = max(worst, q.max_rel_err)
            setattr(module, name, q)
        else:
            worst = max(worst, quantize_int4(child, group))
    return worst


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


def prefill_ms(forward, prompt, runs=7):
    """The prompt pass through forward(ids, pos) and the first token's argmax: median ms of `runs` after 3 warm-ups (the
    time to first token of a loop that prefills through its static cache)."""
    n = prompt.shape[1]
    positions = torch.arange(n, device="cuda")
    for _ in range(3):
        forward(prompt, positions)[:, -1].argmax(-1)
    times = []
    for _ in range(runs):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        forward(prompt, positions)[:, -1].argmax(-1)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 4)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="1b")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--prompt-tokens", type=int, default=128)
    ap.add_argument("--new-tokens", type=int, default=256)
    ap.add_argument("--skip-compile", action="store_true")
    ap.add_argument("--compile-modes", default="reduce-overhead", help="comma-separated: reduce-overhead, max-autotune")
    ap.add_argument("--sections", default="eager,static,compile",
                    help="comma-separated: eager (transformers), static (static cache + SDPA), compile (that loop compiled), "
                         "int4 (the static loop over tinygemm int4 Linears, bf16, eager and compiled in --compile-modes), "
                         "prefill (with compile: the prompt pass and first token compiled too, *_prefill_ms; static also times it eager)")
    ap.add_argument("--int4-group", type=int, default=128, help="tinygemm group size (32, 64, 128 or 256)")
    a = ap.parse_args()
    sections = set(a.sections.split(","))

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
        if "eager" in sections:
            _, times = eager_steps(hf, prompt, a.new_tokens)
            out["transformers_eager_ms"] = round(statistics.median(times[5:]), 4)
            print(json.dumps(out), flush=True)   # partial results, in case a later section is cut off

        # 2. static cache + SDPA, eager
        n = a.prompt_tokens
        pos = torch.zeros(1, dtype=torch.long, device="cuda")
        if sections & {"static", "compile"}:
            model = StaticCacheLlama(hf, a.prompt_tokens + a.new_tokens + 8)
            first = model(prompt, torch.arange(n, device="cuda")).argmax(-1).view(1, 1)
        if "static" in sections:
            out["static_sdpa_eager_ms"] = round(statistics.median(timed_steps(position_step(model, pos), first, n, a.new_tokens)[5:]), 4)
            out["static_sdpa_eager_prefill_ms"] = prefill_ms(model, prompt)
            print(json.dumps(out), flush=True)

        # 3. the same step under torch.compile: reduce-overhead (CUDA graphs), and max-autotune (CUDA
        # graphs + Triton autotuning of the matmuls) when asked
        if not a.skip_compile and "compile" in sections:
            for mode in a.compile_modes.split(","):
                key = COMPILE_KEYS[mode]
                step, out[key.replace("_ms", "_compile_seconds")] = compile_step(model.forward, first, pos, n, mode)
                out[key] = round(statistics.median(timed_steps(step, first, n, a.new_tokens)[5:]), 4)
                print(json.dumps(out), flush=True)
                if "prefill" in sections:   # the prompt pass compiled the same way (its own graph: a static prompt shape)
                    torch._dynamo.reset()
                    out[key.replace("_ms", "_prefill_ms")] = prefill_ms(torch.compile(model.forward, mode=mode, fullgraph=True, dynamic=False), prompt)
                    print(json.dumps(out), flush=True)

        # 4. PyTorch's best int4 weight-only path: the same static loop in bf16 over tinygemm Linears
        #    (aten._weight_int4pack_mm), eager and compiled
        if "int4" in sections:
            if sections & {"static", "compile"}:
                del model
            hf = hf.to(torch.bfloat16)
            t0 = time.perf_counter()
            out["int4_group"] = a.int4_group
            out["int4_check_max_rel_err"] = round(quantize_int4(hf, a.int4_group), 5)
            out["int4_quantize_seconds"] = round(time.perf_counter() - t0, 1)
            torch.cuda.empty_cache()
            model = StaticCacheLlama(hf, a.prompt_tokens + a.new_tokens + 8)
            first = model(prompt, torch.arange(n, device="cuda")).argmax(-1).view(1, 1)
            out["int4_tinygemm_eager_ms"] = round(statistics.median(timed_steps(position_step(model, pos), first, n, a.new_tokens)[5:]), 4)
            print(json.dumps(out), flush=True)
            if not a.skip_compile:
                for mode in a.compile_modes.split(","):
                    key = "int4_tinygemm_" + COMPILE_KEYS[mode].replace("static_sdpa_", "")
                    step, out[key.replace("_ms", "_compile_seconds")] = compile_step(model.forward, first, pos, n, mode)
                    out[key] = round(statistics.median(timed_steps(step, first, n, a.new_tokens)[5:]), 4)
                    print(json.dumps(out), flush=True)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
