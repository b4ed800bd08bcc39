"""Checks the sampling-head kernels (sampling_head.cu, through libomm_int4.so's C entry point) against the host's
procedure in float64 numpy, on the GPU machine:

    python3 check_sampling_head.py BUILD/libomm_int4.so OUT.json [--quick]

The reference is the C# Sampler's (and sampling.py's) choice, written here from its documented steps: the guidance mix,
mask and repetition penalty in float32 as the head computes them, then in float64: greedy argmax (ties to the lower
id), x / T, the descending order (ties by lower id), top-k, softmax over the kept, top-p (the shortest prefix whose
cumulative probability reaches top_p), renormalise, the first position whose cumulative probability exceeds u.

Every case must give the reference's greedy id. A sampled id may differ only where the kernel's float32 exponentials
could move a boundary: u (or top_p) within 2e-6 of a cumulative probability at the reference's cut or draw; such cases
are counted as `near_boundary`, every other difference fails. Also times the kernels (CUDA events, 200 launches).
Exit status 1 on any failure.
"""
from __future__ import annotations

import ctypes
import json
import sys
import time

import numpy as np
import torch

F32_MIN = np.float32(np.finfo(np.float32).min)


def reference(logits, params, uniform, rows, seen, mask):
    """(next_token [B], greedy [B], margin [B]): margin = the distance of u or top_p to the nearest cumulative boundary
    that decided the sampled choice (inf for greedy)."""
    B, V = logits.shape
    T, top_k, top_p, r, s = [np.float32(p) for p in params]
    out, greedy, margins = [], [], []
    for b in range(B):
        base, cond = logits[rows[b, 0]], logits[rows[b, 1]]
        x = (base + s * (cond - base)).astype(np.float32)
        x = (x + mask).astype(np.float32)
        pen = np.where(x > 0, x / r, x * r).astype(np.float32)
        x = np.where(seen[b] > 0, pen, x).astype(np.float32)
        g = int(np.argmax(x))   # the first of the largest
        greedy.append(g)
        if T == 0:
            out.append(g); margins.append(np.inf)
            continue
        xd = x.astype(np.float64) / np.float64(T)
        order = np.lexsort((np.arange(V), -xd))   # descending, ties by lower id
        kept = min(int(np.ceil(top_k)), V) if top_k > 0 else V
        head = order[:kept]
        e = np.exp(xd[head] - xd[head[0]])
        p = e / e.sum()
        cum = np.cumsum(p)
        margin = np.inf
        if top_p < 1:
            reach = np.nonzero(cum >= np.float64(top_p))[0]
            keep = int(reach[0]) + 1 if len(reach) else kept
            if len(reach):
                lo = cum[keep - 2] if keep >= 2 else 0.0
                margin = min(margin, abs(cum[keep - 1] - top_p), abs(top_p - lo) if keep >= 2 else np.inf)
        else:
            keep = kept
        q = p[:keep] / p[:keep].sum()
        cq = np.cumsum(q)
        u = np.float64(uniform[b])
        above = np.nonzero(u < cq)[0]
        j = int(above[0]) if len(above) else keep - 1
        margin = min(margin, abs(cq[j] - u), abs(u - cq[j - 1]) if j >= 1 else np.inf)
        out.append(int(head[j])); margins.append(margin)
    return np.array(out), np.array(greedy), np.array(margins)


def run_kernel(lib, logits, params, uniform, rows, seen, mask):
    B, V = logits.shape
    dev = "cuda"
    t = lambda a, dt: torch.from_numpy(np.ascontiguousarray(a)).to(dev, dt)
    L, P, U, R, S, M = (t(logits, torch.float32), t(params, torch.float32), t(uniform, torch.float32), t(rows, torch.int64),
                        t(seen, torch.float32), t(mask, torch.float32))
    nxt = torch.full((B,), -7, dtype=torch.int64, device=dev)
    gr = torch.full((B,), -7, dtype=torch.int64, device=dev)
    scratch = torch.empty(max(1, lib.omm_sampling_head_scratch_bytes(B, V)), dtype=torch.uint8, device=dev)
    stream = torch.cuda.current_stream().cuda_stream
    rc = lib.omm_sampling_head(*(ctypes.c_void_p(x.data_ptr()) for x in (L, P, U, R, S, M, nxt, gr)), B, V,
                               ctypes.c_void_p(scratch.data_ptr()), ctypes.c_void_p(stream))
    if rc != 0:
        raise RuntimeError(f"omm_sampling_head returned {rc}")
    torch.cuda.synchronize()
    return nxt.cpu().numpy(), gr.cpu().numpy(), (L, P, U, R, S, M, nxt, gr, scratch)


def make_logits(rng, B, V, kind):
    if kind == "normal":
        return (rng.standard_normal((B, V)) * 3).astype(np.float32)
    if kind == "peaked":   # a trained model's shape: a few large logits over a flat tail
        x = rng.standard_normal((B, V)).astype(np.float32)
        x[:, rng.integers(0, V, 8)] += 12
        return x
    if kind == "fp16":   # fp16-valued logits: many exact ties
        return (rng.standard_normal((B, V)) * 2).astype(np.float16).astype(np.float32)
    if kind == "integers":   # massive ties
        return rng.integers(-3, 4, (B, V)).astype(np.float32)
    if kind == "flat":
        return np.zeros((B, V), np.float32)
    raise ValueError(kind)


def cases(quick):
    rng = np.random.default_rng(20261127)
    vocabs = [721, 32000, 65536] if quick else [1, 2, 721, 4097, 32000, 50257, 65536]
    settings = [  # temperature, top_k, top_p, penalty
        (0.0, 0, 1.0, 1.0), (0.0, 0, 1.0, 1.3), (1.0, 0, 1.0, 1.0), (0.8, 0, 1.0, 1.0), (1.6, 0, 1.0, 1.0),
        (1.0, 20, 1.0, 1.0), (1.0, 1, 1.0, 1.0), (1.0, 0, 0.9, 1.0), (0.7, 40, 0.8, 1.0), (0.9, 0, 0.95, 1.5),
        (1.0, 5, 1.0, 0.8), (1.0, 0, 0.0, 1.0), (1.0, 0, 1e-9, 1.0), (1.0, 100000, 0.5, 1.0), (0.05, 0, 0.99, 1.0)]
    for V in vocabs:
        for kind in ["normal", "peaked", "fp16", "integers", "flat"]:
            for (T, k, p, r) in settings:
                for B, guided in ((1, False), (2, True), (3, False)):
                    if quick and (B == 3 or kind == "flat"):
                        continue
                    logits = make_logits(rng, B, V, kind)
                    rows = np.array([[1, 0], [1, 0]] if guided else [[i, i] for i in range(B)], np.int64)
                    scale = 3.0 if guided else 1.0
                    mask = np.zeros(V, np.float32)
                    if guided and V > 16:   # Chameleon's constraint: a band of allowed ids
                        mask[:] = F32_MIN
                        mask[V // 4: V // 4 + max(1, V // 8)] = 0
                    seen = (rng.random((B, V)) < 0.05).astype(np.float32) if r != 1.0 else np.zeros((B, V), np.float32)
                    uniform = rng.random(B).astype(np.float32)
                    if rng.random() < 0.15:
                        uniform[:] = np.float32(0.0)
                    elif rng.random() < 0.15:
                        uniform[:] = np.float32(1.0) - np.float32(2 ** -24)
                    yield dict(V=V, B=B, kind=kind, T=T, top_k=k, top_p=p, penalty=r, guided=guided), \
                        (logits, np.array([T, k, p, r, scale], np.float32), uniform, rows, seen, mask)


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.omm_sampling_head_scratch_bytes.restype = ctypes.c_size_t
    lib.omm_sampling_head_scratch_bytes.argtypes = [ctypes.c_int, ctypes.c_int]
    lib.omm_sampling_head.restype = ctypes.c_int
    lib.omm_sampling_head.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    quick = "--quick" in sys.argv
    failures, near, total, sampled = [], 0, 0, 0
    t0 = time.time()
    for meta, inputs in cases(quick):
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            want, want_greedy, margin = reference(*inputs)
        got, got_greedy, _ = run_kernel(lib, *inputs)
        total += 1
        sampled += meta["T"] > 0
        if not np.array_equal(got_greedy, want_greedy):
            failures.append(dict(meta, what="greedy", want=want_greedy.tolist(), got=got_greedy.tolist()))
            continue
        for b in range(meta["B"]):
            if got[b] != want[b]:
                if margin[b] < 2e-6:
                    near += 1
                else:
                    failures.append(dict(meta, what="sampled", row=b, want=int(want[b]), got=int(got[b]), margin=float(margin[b])))
    print(f"{total} cases ({sampled} sampled), {len(failures)} failures, {near} differences within 2e-6 of a boundary, "
          f"{time.time() - t0:.1f} s")
    for f in failures[:20]:
        print("FAIL", f)
    # a seeded draw repeated: the same id each launch (the mass sums may round differently between runs only at 1e-16)
    rng = np.random.default_rng(7)
    logits = make_logits(rng, 1, 32000, "peaked")
    inputs = (logits, np.array([1.0, 0, 0.9, 1.0, 1.0], np.float32), np.array([0.37], np.float32), np.array([[0, 0]], np.int64),
              np.zeros((1, 32000), np.float32), np.zeros(32000, np.float32))
    ids = {int(run_kernel(lib, *inputs)[0][0]) for _ in range(50)}
    if len(ids) != 1:
        failures.append(dict(what="repeat", ids=sorted(ids)))
        print("FAIL repeated draws gave", sorted(ids))
    # timings
    timings = []
    for name, B, V, params, guided in [
            ("greedy, V 32000 (Llama)", 1, 32000, [0, 0, 1, 1, 1], False),
            ("T 0.8 top-p 0.95 penalty 1.1, V 32000", 1, 32000, [0.8, 0, 0.95, 1.1, 1], False),
            ("T 0.7 top-k 40 top-p 0.8, V 32000", 1, 32000, [0.7, 40, 0.8, 1, 1], False),
            ("guided 2 rows, T 1 top-p 0.9, image band, V 65536 (Chameleon)", 2, 65536, [1, 0, 0.9, 1, 3], True),
            ("greedy, V 256102 (Seamless)", 1, 256102, [0, 0, 1, 1, 1], False)]:
        logits = make_logits(rng, B, V, "peaked")
        rows = np.array([[1, 0], [1, 0]] if guided else [[0, 0]], np.int64)
        mask = np.zeros(V, np.float32)
        if guided:
            mask[:] = F32_MIN
            mask[4: 4 + 8192] = 0
        inputs = (logits, np.array(params, np.float32), rng.random(B).astype(np.float32), rows, np.zeros((B, V), np.float32), mask)
        _, _, keep = run_kernel(lib, *inputs)
        L, P, U, R, S, M, nxt, gr, scratch = keep
        stream = torch.cuda.current_stream().cuda_stream
        args = [ctypes.c_void_p(x.data_ptr()) for x in (L, P, U, R, S, M, nxt, gr)] + [B, V, ctypes.c_void_p(scratch.data_ptr()), ctypes.c_void_p(stream)]
        for _ in range(20):
            lib.omm_sampling_head(*args)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(200):
            lib.omm_sampling_head(*args)
        end.record()
        torch.cuda.synchronize()
        us = start.elapsed_time(end) / 200 * 1000
        timings.append(dict(case=name, rows=B, vocab=V, us_per_call=round(us, 2)))
        print(f"  {name:66s} {us:8.2f} us a call (two kernels, launch included)")
    with open(sys.argv[2], "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), cases=total, sampled=sampled, failures=failures,
                       near_boundary=near, timings=timings), f, indent=1)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
