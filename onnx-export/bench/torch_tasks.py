"""PyTorch baselines for the multimodal tasks, on the same synthetic weights (same preset and seed) as
our exported graphs, fp16 on the GPU:

  caption  Chameleon-7B + VQ 512x512: VQ tokenization + prefill of the 1034-token prompt (time to first
           token), then 30 decode steps; transformers eager with its own cache (the paper's baseline)
           and a static-cache SDPA step under torch.compile(mode="reduce-overhead") (CUDA graphs).
  imagine  the same decoder, 2 rows (classifier-free guidance): ms per guided step, eager and compiled,
           extrapolated to 1024 image tokens, plus the VQ decoder's 512x512 decode.
  speech   Seamless-large: Kaldi fbank (torchaudio, CPU), speech encoder + cross K/V, 35 decode steps with
           transformers' own cache (eager), then a static-cache step (cross K/V computed once) eager and
           under torch.compile.
  --compile-modes reduce-overhead,max-autotune adds Triton-autotuned compiled steps.

Prints JSON (partial results as each section finishes).

  python bench/torch_tasks.py --task caption|imagine|speech [--audio WAV]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, os.path.dirname(__file__))
from torch_decode import COMPILE_KEYS, StaticCacheLlama, compile_step, eager_steps, position_step, timed_steps  # noqa: E402


class StaticCacheSeq2Seq(torch.nn.Module):
    """The NLLB-style text decoder of Seamless as one step over transformers' modules: a preallocated
    self-attention cache written by position, every layer's cross K/V computed once from the encoder
    states, SDPA. The same arithmetic as our seq2seq graph (pre-LayerNorm, ReLU FFN, sinusoidal rows at
    position + padding_idx + 1)."""

    def __init__(self, hf, enc, max_len: int):
        super().__init__()
        from omm_export.families.seamless import _cross
        dec = hf.text_decoder
        self.dec, self.lm = dec, hf.lm_head
        self.nh = hf.config.decoder_attention_heads
        self.hd = hf.config.hidden_size // self.nh
        self.offset = dec.embed_positions.padding_idx + 1
        self.register_buffer("table", dec.embed_positions.weights.to(enc.dtype))
        L, dt = len(dec.layers), enc.dtype
        self.register_buffer("k", torch.zeros(L, 1, self.nh, max_len, self.hd, device=enc.device, dtype=dt))
        self.register_buffer("v", torch.zeros_like(self.k))
        self.register_buffer("keys", torch.arange(max_len, device=enc.device))
        t = enc.shape[1]
        with torch.no_grad():
            ck = [_cross(layer).k_proj(enc).view(1, t, self.nh, self.hd).transpose(1, 2) for layer in dec.layers]
            cv = [_cross(layer).v_proj(enc).view(1, t, self.nh, self.hd).transpose(1, 2) for layer in dec.layers]
        self.register_buffer("ck", torch.stack(ck))   # [L, 1, H, Te, hd]
        self.register_buffer("cv", torch.stack(cv))

    def forward(self, ids, pos):          # ids [1,S], pos [S]
        from omm_export.families.seamless import _cross
        s = ids.shape[1]
        x = self.dec.embed_tokens(ids) + self.table[pos + self.offset][None]
        mask = (self.keys[None, :] <= pos[:, None])[None, None]                             # [1,1,S,max]
        for i, layer in enumerate(self.dec.layers):
            sa, ca, ffn = layer.self_attn, _cross(layer), getattr(layer, "ffn", layer)
            h = layer.self_attn_layer_norm(x)
            q = sa.q_proj(h).view(1, s, self.nh, self.hd).transpose(1, 2)
            self.k[i].index_copy_(2, pos, sa.k_proj(h).view(1, s, self.nh, self.hd).transpose(1, 2))
            self.v[i].index_copy_(2, pos, sa.v_proj(h).view(1, s, self.nh, self.hd).transpose(1, 2))
            o = F.scaled_dot_product_attention(q, self.k[i], self.v[i], attn_mask=mask)
            x = x + sa.out_proj(o.transpose(1, 2).reshape(1, s, -1))
            h = (getattr(layer, "cross_attention_layer_norm", None) or layer.encoder_attn_layer_norm)(x)
            q = ca.q_proj(h).view(1, s, self.nh, self.hd).transpose(1, 2)
            o = F.scaled_dot_product_attention(q, self.ck[i], self.cv[i])
            x = x + ca.out_proj(o.transpose(1, 2).reshape(1, s, -1))
            x = x + ffn.fc2(F.relu(ffn.fc1(layer.ffn_layer_norm(x))))
        return self.lm(self.dec.layer_norm(x[:, -1:]))


def sync_ms(fn, reps=1):
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        r = fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000 / reps, r


def chameleon_tasks(a, out):
    from omm_export.families import chameleon

    class Args:
        checkpoint, preset, seed, vqgan = None, "7b", a.seed, None
    with tempfile.TemporaryDirectory() as tmp:
        hf, _, image_decoder, _ = chameleon.load(Args(), tmp)
    hf = hf.to(device="cuda", dtype=torch.float16).eval()
    image_decoder = image_decoder.to(device="cuda", dtype=torch.float16).eval()
    cfg = hf.config
    out.update(card=torch.cuda.get_device_name(0), torch=torch.__version__, params=sum(p.numel() for p in hf.model.layers.parameters()))
    g = torch.Generator("cuda").manual_seed(0)
    rows = 1 if a.task == "caption" else 2
    prompt_len = 1034 if a.task == "caption" else 14
    steps = a.steps if a.task == "caption" else 64
    prompt = torch.randint(10, 60000, (rows, prompt_len), device="cuda", generator=g)
    with torch.no_grad():
        if a.task == "caption":
            pixels = torch.rand(1, 3, 512, 512, device="cuda", dtype=torch.float16) * 2 - 1
            for _ in range(2):
                ms_vq, codes = sync_ms(lambda: hf.model.get_image_tokens(pixels))
            out["vq_encode_ms"] = round(ms_vq, 2)
        # 1. transformers eager with its dynamic cache
        for run in range(2):
            prefill, times = eager_steps(hf, prompt, steps)
        out["transformers_eager_prefill_ms"] = round(prefill, 2)
        out["transformers_eager_step_ms"] = round(statistics.median(times[3:]), 4)
        if a.task == "caption":
            out["transformers_eager_ttft_ms"] = round(out["vq_encode_ms"] + prefill, 2)
            out["transformers_eager_end_to_end_ms"] = round(out["vq_encode_ms"] + prefill + sum(times), 1)
        else:
            codes = torch.randint(0, cfg.vq_config.num_embeddings, (1, 1024), device="cuda", generator=g)
            for _ in range(2):
                ms_dec, _ = sync_ms(lambda: image_decoder(codes))
            out["vq_decode_ms"] = round(ms_dec, 2)
            out["transformers_eager_image_s"] = round((prefill + 1024 * out["transformers_eager_step_ms"] + ms_dec) / 1000, 2)
        print(json.dumps(out), flush=True)

        # 2. static cache + SDPA, eager and compiled (CUDA graphs)
        model = StaticCacheLlama(hf, prompt_len + steps + 16, batch=rows)
        first = model(prompt, torch.arange(prompt_len, device="cuda")).argmax(-1).view(rows, 1)
        pos = torch.zeros(1, dtype=torch.long, device="cuda")

        out["static_sdpa_eager_step_ms"] = round(statistics.median(timed_steps(position_step(model, pos), first, prompt_len, steps)[3:]), 4)
        print(json.dumps(out), flush=True)
        for mode in [m for m in a.compile_modes.split(",") if m not in ("", "none")]:
            key = COMPILE_KEYS[mode].replace("_ms", "_step_ms")
            step, out[key.replace("_step_ms", "_compile_seconds")] = compile_step(model.forward, first, pos, prompt_len, mode)
            out[key] = round(statistics.median(timed_steps(step, first, prompt_len, steps)[3:]), 4)
            name = "compiled" if mode == "reduce-overhead" else "autotune"
            if a.task == "caption":
                out[f"{name}_end_to_end_ms"] = round(out["vq_encode_ms"] + prefill + steps * out[key], 1)
            else:
                out[f"{name}_image_s"] = round((prefill + 1024 * out[key] + out["vq_decode_ms"]) / 1000, 2)
            print(json.dumps(out), flush=True)
    print(json.dumps(out), flush=True)


def speech_task(a, out):
    from omm_export.families import seamless

    class Args:
        checkpoint, preset, seed = None, "large", a.seed
    with tempfile.TemporaryDirectory() as tmp:
        hf, _, _ = seamless.load(Args(), tmp)
    hf = hf.to(device="cuda", dtype=torch.float16).eval()
    out.update(card=torch.cuda.get_device_name(0), torch=torch.__version__, params=sum(p.numel() for p in hf.parameters()))
    samples, _, _ = seamless.load_audio(a.audio)   # mono float32 at 16 kHz, source rate, channels
    t0 = time.perf_counter()
    feats = seamless.normalise_stack(seamless.fbank(samples))
    out["preprocess_ms"] = round((time.perf_counter() - t0) * 1000, 2)
    x = torch.from_numpy(feats)[None].to("cuda", torch.float16)
    mask = torch.ones(x.shape[:2], dtype=torch.long, device="cuda")
    start = [hf.config.decoder_start_token_id, 4]
    with torch.no_grad():
        for run in range(3):
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            enc = hf.speech_encoder(input_features=x, attention_mask=mask).last_hidden_state
            torch.cuda.synchronize()
            encode = (time.perf_counter() - t0) * 1000
            o = hf.text_decoder(input_ids=torch.tensor([start], device="cuda"), encoder_hidden_states=enc, use_cache=True)
            past, tok = o.past_key_values, hf.lm_head(o.last_hidden_state[:, -1:]).argmax(-1)
            torch.cuda.synchronize()
            prefill = (time.perf_counter() - t0) * 1000 - encode
            times = []
            for _ in range(a.steps - 1):
                t1 = time.perf_counter()
                o = hf.text_decoder(input_ids=tok, encoder_hidden_states=enc, past_key_values=past, use_cache=True)
                past, tok = o.past_key_values, hf.lm_head(o.last_hidden_state[:, -1:]).argmax(-1)
                torch.cuda.synchronize()
                times.append((time.perf_counter() - t1) * 1000)
            total = (time.perf_counter() - t0) * 1000
        out.update(encoder_frames=int(enc.shape[1]), transformers_eager_encode_ms=round(encode, 2), transformers_eager_prefill_ms=round(prefill, 2),
                   transformers_eager_step_ms=round(statistics.median(times), 4), transformers_eager_end_to_end_ms=round(total + out["preprocess_ms"], 1))
        print(json.dumps(out), flush=True)

        # The decoder step with a static self-attention cache and the cross K/V computed once, eager and
        # under torch.compile; end to end = fbank + encode (eager) + prefill + 34 steps.
        model = StaticCacheSeq2Seq(hf, enc, len(start) + a.steps + 8)
        n = len(start)
        first = model(torch.tensor([start], device="cuda"), torch.arange(n, device="cuda")).argmax(-1).view(1, 1)
        pos = torch.zeros(1, dtype=torch.long, device="cuda")

        out["static_sdpa_eager_step_ms"] = round(statistics.median(timed_steps(position_step(model, pos), first, n, a.steps - 1)[3:]), 4)
        print(json.dumps(out), flush=True)
        for mode in [m for m in a.compile_modes.split(",") if m not in ("", "none")]:
            key = COMPILE_KEYS[mode].replace("_ms", "_step_ms")
            step, out[key.replace("_step_ms", "_compile_seconds")] = compile_step(model.forward, first, pos, n, mode)
            out[key] = round(statistics.median(timed_steps(step, first, n, a.steps - 1)[3:]), 4)
            name = "compiled" if mode == "reduce-overhead" else "autotune"
            out[f"{name}_end_to_end_ms"] = round(out["preprocess_ms"] + encode + prefill + (a.steps - 1) * out[key], 1)
            print(json.dumps(out), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", required=True, choices=["caption", "imagine", "speech"])
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--steps", type=int, default=30, help="decode steps (caption 30, speech 35)")
    ap.add_argument("--audio", help="speech: a 16 kHz WAV")
    ap.add_argument("--compile-modes", default="reduce-overhead", help="comma-separated torch.compile modes: reduce-overhead, max-autotune; none: eager only")
    a = ap.parse_args()
    out = {"task": a.task}
    try:
        (speech_task if a.task == "speech" else chameleon_tasks)(a, out)
    except Exception as e:   # keep what was measured
        out["error"] = f"{type(e).__name__}: {e}"
        print(json.dumps(out), flush=True)
        raise


if __name__ == "__main__":
    main()
