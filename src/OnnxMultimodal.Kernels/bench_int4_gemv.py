"""Correctness and micro-benchmark of omm_int4_gemv (int4_gemv.cu) against a fp32 reference, PyTorch's
tinygemm int4 kernel (aten._weight_int4pack_mm) and a cuBLAS fp16 matmul, at the Llama-7B shapes; and of its SiLU-mul
mode (omm_int4_gemv_silu_mul: x = silu(A[:, :K]) * A[:, K:] formed in the kernel) at the down projection's shape,
against the plain GEMV fed a precomputed silu(gate) * up and against the unfused sequence (torch SiLU and Mul + GEMV);
and the correctness of its SwiGLU mode (omm_int4_gemv_swiglu: the gate_up projection writing silu(gate) * up).

  python3 bench_int4_gemv.py LIB.so OUT.json [--quick]

Achieved bandwidth counts the bytes a call must move (int4 weights + fp16 scales + x + y), and is set
against the device-to-device copy bandwidth measured in the same run (2 x bytes / time of a 1 GiB copy).
Weights rotate through enough copies to exceed the L2 cache three times, so no call finds them cached.
Every timing is a CUDA-graph replay of many calls (launch gaps excluded, as in a captured decode step).
"""
import ctypes
import json
import math
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from emulate_int4_gemv import TILE_NAMES, default_tile  # noqa: E402  (int4_gemv.cu's rule, mirrored and checked there)

SMS = 132   # set in main() from the device

SHAPES = [("qkv", 4096, 12288), ("o", 4096, 4096), ("gate_up", 4096, 22016), ("down", 11008, 4096),
          ("lm_head", 4096, 32000)]  # (name, K, N)
ROWS = [1, 2, 4, 8]   # 8: one pass of the tensor-core tiles, two of the FMA tiles
BLOCKS = [32, 128]
L2_BYTES = 50 * 2**20
REL_TOL = 1e-2  # max |y - ref| / max |ref|: fp16 dequantized weights, 16-term half2 partial sums, fp16 output


# kTiles in int4_gemv.cu: columns per warp x chunks per column per step / split-K warps
# (1..7: the phase-2 tiles; 8..10: 8 columns per warp, fewer x loads per weight byte for M = 2..4; 11..19: the
# tensor-core tiles, "tcR x U / S" = R weight rows per warp (one or two m16 tiles), U 128-K steps per stage, split S)
TILES = {0: "default", 1: "4x2/1", 2: "4x1/1", 3: "4x2/2", 4: "4x1/2", 5: "4x2/4", 6: "4x1/4", 7: "2x2/4",
         8: "8x1/1", 9: "8x1/2", 10: "8x1/4",
         11: "tc16x2/1", 12: "tc16x2/2", 13: "tc16x2/4", 14: "tc16x1/4", 15: "tc32x1/2", 16: "tc32x1/4",
         17: "tc16x4/4", 18: "tc16x2/8", 19: "tc16x1/8"}
OLD_TILES = [TILES[i] for i in range(1, 8)]
NEW_TILES = [TILES[i] for i in range(8, 11)]
TC_TILES = [TILES[i] for i in range(11, 20)]
FMA_TILES = OLD_TILES + NEW_TILES


def load(lib_path, symbol="omm_int4_gemv_tile"):
    """One of the library's tile entry points (omm_int4_gemv_tile, omm_int4_gemv_silu_mul_tile, omm_int4_gemv_swiglu_tile):
    all take (x, b, scales, zero_points, bias, y, M, N, K, block_size, stream, tile)."""
    f = getattr(ctypes.CDLL(lib_path), symbol)
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_void_p, ctypes.c_int]
    return f


def load_rule(lib_path):
    """omm_int4_gemv_default_tile(M, N, K, block_size): the tile id the kernel's default_tile picks on this device."""
    f = ctypes.CDLL(lib_path).omm_int4_gemv_default_tile
    f.restype = ctypes.c_int
    f.argtypes = [ctypes.c_int] * 4
    return f


def ptr(t):
    return ctypes.c_void_p(t.data_ptr() if t is not None else 0)


def gemv(f, x, b, scales, zp, bias, y, bs, tile=0):
    m, k = x.shape
    rc = f(ptr(x), ptr(b), ptr(scales), ptr(zp), ptr(bias), ptr(y), m, y.shape[1], k, bs,
           ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), tile)
    if rc != 0:
        raise RuntimeError(f"omm_int4_gemv returned {rc}")


def gemv_silu(fs, a, b, scales, zp, bias, y, bs, tile=0):
    """y = (silu(a[:, :K]) * a[:, K:]) @ dequant(b)^T (+ bias); a [M, 2K]."""
    m, k2 = a.shape
    rc = fs(ptr(a), ptr(b), ptr(scales), ptr(zp), ptr(bias), ptr(y), m, y.shape[1], k2 // 2, bs,
            ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), tile)
    if rc != 0:
        raise RuntimeError(f"omm_int4_gemv_silu_mul returned {rc}")


def gemv_swiglu(fg, x, b, scales, zp, bias, y, bs, tile=0):
    """y [M, N/2] = silu(x @ gate^T) * (x @ up^T), gate = dequant(b)[:N/2], up = dequant(b)[N/2:] (N = the weight's rows)."""
    m, k = x.shape
    rc = fg(ptr(x), ptr(b), ptr(scales), ptr(zp), ptr(bias), ptr(y), m, 2 * y.shape[1], k, bs,
            ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), tile)
    if rc != 0:
        raise RuntimeError(f"omm_int4_gemv_swiglu returned {rc}")


def stock_silu_mul(a):
    """The stock graph's x: SiLU of the gate rounded to fp16, then the fp16 product with up (two roundings)."""
    k = a.shape[1] // 2
    return torch.nn.functional.silu(a[:, :k]) * a[:, k:]


def make_weights(n, k, bs, gen, with_zp=False):
    kb = math.ceil(k / bs)
    q = torch.randint(0, 16, (n, kb * bs), device="cuda", dtype=torch.uint8, generator=gen)
    q[:, k:] = 0
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).contiguous()          # [N, kb*bs/2], value 2i low nibble
    scales = (torch.rand(n, kb, device="cuda", generator=gen) * 0.015 + 0.005).half()
    zp = zpq = None
    if with_zp:
        zpq = torch.randint(0, 16, (n, kb + (kb & 1)), device="cuda", dtype=torch.uint8, generator=gen)
        zp = (zpq[:, 0::2] | (zpq[:, 1::2] << 4)).contiguous()      # [N, ceil(kb/2)]
    return q, packed, scales, zpq, zp


def reference(x, q, scales, zpq, bias, k, bs):
    n, kb = scales.shape
    zpf = zpq[:, :kb].float() if zpq is not None else torch.full((n, kb), 8.0, device="cuda")
    w = (q.float().view(n, kb, bs) - zpf[:, :, None]) * scales.float()[:, :, None]
    ref = x.float() @ w.view(n, kb * bs)[:, :k].T
    return ref + bias.float() if bias is not None else ref


def check(f, name, k, n, m, bs, gen, with_zp=False, with_bias=False, tile=0):
    q, packed, scales, zpq, zp = make_weights(n, k, bs, gen, with_zp)
    x = torch.randn(m, k, device="cuda", generator=gen).half()
    bias = torch.randn(n, device="cuda", generator=gen).half() if with_bias else None
    y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.half)
    gemv(f, x, packed, scales, zp, bias, y, bs, tile)
    torch.cuda.synchronize()
    ref = reference(x, q, scales, zpq, bias, k, bs)
    err = (y.float() - ref).abs()
    scale = ref.abs().max().item()
    rel = err.max().item() / scale
    return {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "tile": TILES[tile], "zero_points": with_zp, "bias": with_bias,
            "max_abs_err": err.max().item(), "max_abs_ref": scale, "max_rel_err": rel,
            "mean_abs_err": err.mean().item(), "pass": bool(rel <= REL_TOL and torch.isfinite(y).all().item())}


def check_silu(f, fs, name, k, n, m, bs, gen, with_zp=False, with_bias=False, tile=0):
    """SiLU-mul mode against the fp32 reference fed the stock path's x, and against the plain GEMV fed that x."""
    q, packed, scales, zpq, zp = make_weights(n, k, bs, gen, with_zp)
    a = (torch.randn(m, 2 * k, device="cuda", generator=gen) * 2).half()
    bias = torch.randn(n, device="cuda", generator=gen).half() if with_bias else None
    y = torch.full((m, n), float("nan"), device="cuda", dtype=torch.half)
    gemv_silu(fs, a, packed, scales, zp, bias, y, bs, tile)
    x = stock_silu_mul(a)
    y_plain = torch.empty_like(y)
    gemv(f, x, packed, scales, zp, bias, y_plain, bs, tile)
    torch.cuda.synchronize()
    ref = reference(x, q, scales, zpq, bias, k, bs)
    scale = ref.abs().max().item()
    rel = (y.float() - ref).abs().max().item() / scale
    rel_plain = (y.float() - y_plain.float()).abs().max().item() / scale
    return {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "tile": TILES[tile], "zero_points": with_zp, "bias": with_bias,
            "silu_mul": True, "max_abs_err": (y.float() - ref).abs().max().item(), "max_abs_ref": scale, "max_rel_err": rel,
            "max_rel_vs_plain_gemv": rel_plain, "pass": bool(rel <= REL_TOL and torch.isfinite(y).all().item())}


def graph_time(step, copies, reps=10):
    """Seconds per call: a CUDA graph of `calls` steps (cycling `copies` weight sets), replayed."""
    calls = copies * max(1, math.ceil(24 / copies))
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for i in range(copies):
            step(i)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for i in range(calls):
            step(i % copies)
    for _ in range(3):
        g.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        g.replay()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1e3 / (reps * calls)


def copy_bandwidth():
    src = torch.empty(2**30, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    t = graph_time(lambda i: dst.copy_(src), 1, reps=5)
    return 2 * src.numel() / t


def tinygemm_setup(q, scales, n, k, bs, high_first):
    lo, hi = q[:, 0::2], q[:, 1::2]
    u8 = ((lo << 4) | hi) if high_first else (lo | (hi << 4))
    packed = torch.ops.aten._convert_weight_to_int4pack(u8.contiguous(), 8)
    # tinygemm dequantizes (q - 8) * scale + zero; our zp = 8 gives zero = 0. [K/bs, N, 2] bf16
    sz = torch.stack([scales.float().T, torch.zeros(k // bs, n, device="cuda")], dim=2).to(torch.bfloat16)
    return packed, sz.contiguous()


def bench_shape(f, name, k, n, bs, copy_bw, gen, results):
    q, packed, scales, _, _ = make_weights(n, k, bs, gen)
    wbytes = packed.numel() + scales.numel() * 2
    copies = max(1, math.ceil(3 * L2_BYTES / wbytes))
    ws = [(packed, scales)] + [(packed.clone(), scales.clone()) for _ in range(copies - 1)]
    # tinygemm, checked against the same reference; the nibble order it expects is found by trying both.
    tg, tg_note = None, ""
    try:
        x1 = torch.randn(1, k, device="cuda", generator=gen).half()
        ref = reference(x1, q, scales, None, None, k, bs)
        for high_first in (True, False):
            p, sz = tinygemm_setup(q, scales, n, k, bs, high_first)
            yt = torch.ops.aten._weight_int4pack_mm(x1.to(torch.bfloat16), p, bs, sz)
            rel = ((yt.float() - ref).abs().max() / ref.abs().max()).item()
            if rel < 5e-2:
                tg = [(p, sz)] + [(p.clone(), sz.clone()) for _ in range(copies - 1)]
                tg_note = f"nibble order {'high' if high_first else 'low'}-first, max rel err {rel:.2e}"
                break
            tg_note = f"max rel err {rel:.2e} with both nibble orders"
    except Exception as e:  # the op's signature or availability changed: say so in the JSON
        tg_note = f"unavailable: {type(e).__name__}: {e}"[:300]
    for m in ROWS:
        x = torch.randn(m, k, device="cuda", generator=gen).half()
        y = torch.empty(m, n, device="cuda", dtype=torch.half)
        tiles = {name_: graph_time(lambda i: gemv(f, x, ws[i][0], ws[i][1], None, None, y, bs, tile), copies)
                 for tile, name_ in TILES.items()}
        t = tiles["default"]
        best = min(tiles, key=tiles.get)
        best_old = min(OLD_TILES, key=tiles.get)
        best_new = min(NEW_TILES, key=tiles.get)
        best_fma = min(FMA_TILES, key=tiles.get)
        best_tc = min(TC_TILES, key=tiles.get)
        moved = wbytes + x.numel() * 2 + y.numel() * 2
        row = {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "bytes": moved, "ours_us": t * 1e6,
               "ours_GBps": moved / t / 1e9, "ours_share_of_copy": moved / t / copy_bw,
               "default_is": TILE_NAMES[default_tile(m, n, k, SMS)],
               "tiles_us": {kk: v * 1e6 for kk, v in tiles.items()}, "best_tile": best,
               "best_share_of_copy": moved / tiles[best] / copy_bw,
               "best_old_tile": best_old, "best_old_share_of_copy": moved / tiles[best_old] / copy_bw,
               "best_new_tile": best_new, "best_new_share_of_copy": moved / tiles[best_new] / copy_bw,
               "best_fma_tile": best_fma, "best_fma_share_of_copy": moved / tiles[best_fma] / copy_bw,
               "best_tc_tile": best_tc, "best_tc_share_of_copy": moved / tiles[best_tc] / copy_bw}
        if tg is not None:
            xb = x.to(torch.bfloat16)
            tt = graph_time(lambda i: torch.ops.aten._weight_int4pack_mm(xb, tg[i][0], bs, tg[i][1]), copies)
            row.update({"tinygemm_us": tt * 1e6, "tinygemm_GBps": moved / tt / 1e9, "speedup_vs_tinygemm": tt / t})
        row["tinygemm_note"] = tg_note
        results.append(row)
    del ws, tg
    torch.cuda.empty_cache()


def bench_silu(f, fs, k, n, bs, copy_bw, gen, results):
    """The down projection, M = 1, 2, 4: fused (A [M, 2K]) vs the plain GEMV fed a precomputed silu(gate) * up, and vs
    the unfused sequence in one graph (torch SiLU, Mul, then the plain GEMV: what the stock graph launches)."""
    _, packed, scales, _, _ = make_weights(n, k, bs, gen)
    wbytes = packed.numel() + scales.numel() * 2
    copies = max(1, math.ceil(3 * L2_BYTES / wbytes))
    ws = [(packed, scales)] + [(packed.clone(), scales.clone()) for _ in range(copies - 1)]
    for m in ROWS:
        a = (torch.randn(m, 2 * k, device="cuda", generator=gen) * 2).half()
        x = stock_silu_mul(a)
        y = torch.empty(m, n, device="cuda", dtype=torch.half)
        # every tile: the SiLU-mul mode forms x in every warp, so its best tile may differ from the plain GEMV's
        fused_tiles = {nm: graph_time(lambda i: gemv_silu(fs, a, ws[i][0], ws[i][1], None, None, y, bs, tile), copies)
                       for tile, nm in TILES.items()}
        t_fused = fused_tiles["default"]
        best = min(fused_tiles, key=fused_tiles.get)
        t_plain = graph_time(lambda i: gemv(f, x, ws[i][0], ws[i][1], None, None, y, bs), copies)

        def unfused(i):
            torch.mul(torch.nn.functional.silu(a[:, :k]), a[:, k:], out=x)
            gemv(f, x, ws[i][0], ws[i][1], None, None, y, bs)
        t_unfused = graph_time(unfused, copies)
        moved = wbytes + a.numel() * 2 + y.numel() * 2
        results.append({"name": "down+silu_mul", "K": k, "N": n, "M": m, "block_size": bs, "fused_us": t_fused * 1e6,
                        "plain_gemv_us": t_plain * 1e6, "unfused_us": t_unfused * 1e6,
                        "fused_share_of_copy": moved / t_fused / copy_bw, "fused_over_plain": t_fused / t_plain,
                        "fused_tiles_us": {kk: v * 1e6 for kk, v in fused_tiles.items()}, "fused_best_tile": best,
                        "fused_best_us": fused_tiles[best] * 1e6})
    del ws
    torch.cuda.empty_cache()


def bench_fp16(name, k, n, m, copy_bw):
    w = torch.randn(n, k, device="cuda").half()
    copies = max(1, math.ceil(3 * L2_BYTES / w.numel() / 2))
    ws = [w] + [w.clone() for _ in range(copies - 1)]
    x = torch.randn(m, k, device="cuda").half()
    t = graph_time(lambda i: torch.mm(x, ws[i].T), copies)
    del ws
    torch.cuda.empty_cache()
    return {"name": name, "K": k, "N": n, "M": m, "fp16_us": t * 1e6, "fp16_GBps": n * k * 2 / t / 1e9,
            "fp16_share_of_copy": n * k * 2 / t / copy_bw}


def print_tile_summary(results):
    """Mean share of copy per M (default, best, best of the old and of the new tiles) and the best tile per (shape, M)."""
    # Tiles 1..7 are phase 2's; 8..10 (8 columns per warp) are new: "old" vs "new" says whether they helped.
    mean = lambda rows, key: 100 * sum(r[key] for r in rows) / len(rows)
    for m in ROWS:
        rows = [r for r in results if r["M"] == m]
        print(f"M={m}: default {mean(rows, 'ours_share_of_copy'):5.1f}% of copy, best tile {mean(rows, 'best_share_of_copy'):5.1f}% "
              f"(best of tiles 1-7 {mean(rows, 'best_old_share_of_copy'):5.1f}%, of the 8-column tiles 8-10 "
              f"{mean(rows, 'best_new_share_of_copy'):5.1f}%; best FMA tile {mean(rows, 'best_fma_share_of_copy'):5.1f}%, "
              f"best tensor-core tile {mean(rows, 'best_tc_share_of_copy'):5.1f}%; mean over {len(rows)} shape x block rows); "
              f"best tiles: {', '.join(sorted({r['name'] + ':' + r['best_tile'] for r in rows}))}")
    print("best tile per (shape, M), block 32 / 128: share of copy; [default = the tile default_tile() picks; "
          "old = best of tiles 1-7, new = best of 8-10, tc = best tensor-core tile 11-19]")
    for name, k, n in SHAPES:
        for m in ROWS:
            rows = sorted((r for r in results if r["name"] == name and r["M"] == m), key=lambda r: r["block_size"])
            if not rows:
                continue
            cells = " | ".join(f"b{r['block_size']}: {r['best_tile']} {100 * r['best_share_of_copy']:5.1f}% [default {r['default_is']} "
                               f"{100 * r['ours_share_of_copy']:5.1f}%, old {r['best_old_tile']} {100 * r['best_old_share_of_copy']:5.1f}%, "
                               f"new {r['best_new_tile']} {100 * r['best_new_share_of_copy']:5.1f}%, "
                               f"tc {r['best_tc_tile']} {100 * r['best_tc_share_of_copy']:5.1f}%]" for r in rows)
            print(f"  {name:8} M={m}: {cells}")


def check_swiglu(fg, name, k, n, m, bs, gen, with_zp=False, with_bias=False, tile=0):
    """SwiGLU mode (n = the gate_up weight's rows, output n/2) against the stock path's roundings on a fp32 reference:
    gate and up rounded to fp16, silu(gate) rounded to fp16, the product rounded to fp16."""
    q, packed, scales, zpq, zp = make_weights(n, k, bs, gen, with_zp)
    x = torch.randn(m, k, device="cuda", generator=gen).half()
    bias = torch.randn(n, device="cuda", generator=gen).half() if with_bias else None
    y = torch.full((m, n // 2), float("nan"), device="cuda", dtype=torch.half)
    gemv_swiglu(fg, x, packed, scales, zp, bias, y, bs, tile)
    torch.cuda.synchronize()
    gu = reference(x, q, scales, zpq, bias, k, bs).half()
    g, u = gu[:, : n // 2], gu[:, n // 2:]
    ref = (torch.nn.functional.silu(g.float()).half().float() * u.float())
    scale = ref.abs().max().item()
    rel = (y.float() - ref).abs().max().item() / scale
    swapped = (torch.nn.functional.silu(u.float()).half().float() * g.float())
    rel_swapped = (y.float() - swapped).abs().max().item() / scale
    return {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "tile": TILES[tile], "zero_points": with_zp, "bias": with_bias,
            "swiglu": True, "max_abs_err": (y.float() - ref).abs().max().item(), "max_abs_ref": scale, "max_rel_err": rel,
            "max_rel_if_gate_and_up_were_swapped": rel_swapped, "pass": bool(rel <= REL_TOL and torch.isfinite(y).all().item())}


def main():
    global SMS
    lib, out = sys.argv[1], sys.argv[2]
    SMS = torch.cuda.get_device_properties(0).multi_processor_count
    quick = "--quick" in sys.argv
    f = load(lib)
    fs = load(lib, "omm_int4_gemv_silu_mul_tile")
    fg = load(lib, "omm_int4_gemv_swiglu_tile")
    gen = torch.Generator(device="cuda").manual_seed(1234)
    dev = torch.cuda.get_device_name()
    t0 = time.time()
    checks = []
    for name, k, n in (SHAPES[:2] if quick else SHAPES):
        for bs in BLOCKS:
            for m in (1, 2, 3, 4, 5, 8, 9):   # the default: FMA at M = 1, tensor cores from 2 (8 rows a pass)
                checks.append(check(f, name, k, n, m, bs, gen))
    for tile in TILES:   # every tile the benchmark times at K = 11008 (344 chunks: a ragged last step for the FMA tiles'
                         # split-K; the tensor-core tiles' ragged last step is K = 4160 and 96 below)
        for bs in BLOCKS:
            for m in (1, 2, 3, 4) + ((7, 8) if tile >= 11 else ()):
                checks.append(check(f, "down", 11008, 4096, m, bs, gen, tile=tile))
    for tile in TILES:   # split-K with few chunks per lane (K=4096) and a ragged last block of columns (N=1000)
        checks.append(check(f, "o", 4096, 4096, 4, 32, gen, tile=tile))
        checks.append(check(f, "ragged", 4160, 1000, 3, 64, gen, with_zp=True, with_bias=True, tile=tile))
        checks.append(check(f, "ragged", 4160, 1000, 8, 64, gen, with_zp=True, with_bias=True, tile=tile))
        checks.append(check(f, "small_k", 96, 40, 5, 32, gen, with_zp=True, with_bias=True, tile=tile))
    checks.append(check(f, "zp+bias", 4096, 4096, 2, 32, gen, with_zp=True, with_bias=True))
    checks.append(check(f, "zp+bias", 4096, 4096, 4, 128, gen, with_zp=True, with_bias=True))
    checks.append(check(f, "k_not_multiple_of_block", 4160, 1000, 3, 128, gen, with_zp=True))
    # SiLU-mul mode: the down shape with the default tile at M = 1..5, 9 and 16 (9, 16: a second tensor-core pass, rows 2K
    # apart), every tile at M = 1 and 4 (and 8 for the tensor-core tiles), and a ragged shape with zero points and bias at M = 6
    for bs in BLOCKS:
        for m in (1, 2, 3, 4, 5, 9, 16):
            checks.append(check_silu(f, fs, "down+silu_mul", 11008, 4096, m, bs, gen))
    for tile in TILES:
        for m in (1, 4) + ((8,) if tile >= 11 else ()):
            checks.append(check_silu(f, fs, "down+silu_mul", 11008, 4096, m, 128, gen, tile=tile))
    checks.append(check_silu(f, fs, "ragged+silu_mul", 4160, 1000, 6, 64, gen, with_zp=True, with_bias=True))
    # SwiGLU mode: the 7B gate_up shape with the default tile at M = 1..6, 9 and 16 (9, 16: a second tensor-core pass),
    # every tile (split-K, 8-column tiles, the 2-column tile 7, the tensor-core tiles) at M = 1 and 4 (and 8 for the
    # tensor-core tiles), and ragged shapes with zero points and bias (N/2 odd, K not a multiple of the block)
    for bs in BLOCKS:
        for m in (1, 2, 3, 4, 5, 6, 9, 16):
            checks.append(check_swiglu(fg, "gate_up+swiglu", 4096, 22016, m, bs, gen))
    for tile in TILES:
        for m in (1, 4) + ((8,) if tile >= 11 else ()):
            checks.append(check_swiglu(fg, "gate_up+swiglu", 4096, 22016, m, 32, gen, tile=tile))
        checks.append(check_swiglu(fg, "ragged+swiglu", 4160, 2 * 1001, 3, 64, gen, with_zp=True, with_bias=True, tile=tile))
    checks.append(check_swiglu(fg, "ragged+swiglu", 4160, 2 * 1001, 6, 128, gen, with_zp=True, with_bias=True))
    # the kernel's own tile rule against its Python mirror, which labels the "default" column below
    rule = load_rule(lib)
    for name, k, n in SHAPES + [("chameleon_lm_head", 4096, 65536), ("small", 256, 1000), ("mid_k", 1024, 4096), ("k2048", 2048, 8192)]:
        for m in (1, 2, 3, 4, 8, 9):
            for bs in BLOCKS:
                got, want = rule(m, n, k, bs), default_tile(m, n, k, SMS)
                checks.append({"name": f"rule:{name}", "K": k, "N": n, "M": m, "block_size": bs, "tile": TILES.get(got, str(got)),
                               "mirror": TILES.get(want, str(want)), "max_abs_err": 0.0, "max_rel_err": 0.0, "pass": got == want})
    copy_bw = copy_bandwidth()
    results, dense, silu = [], [], []
    for bs in BLOCKS:
        bench_silu(f, fs, 11008, 4096, bs, copy_bw, gen, silu)
    for name, k, n in (SHAPES[:2] if quick else SHAPES):
        for bs in BLOCKS:
            bench_shape(f, name, k, n, bs, copy_bw, gen, results)
        dense.append(bench_fp16(name, k, n, 1, copy_bw))
    report = {"device": dev, "torch": torch.__version__, "copy_GBps": copy_bw / 1e9, "rel_tol": REL_TOL,
              "checks": checks, "all_checks_pass": all(c["pass"] for c in checks), "gemv": results,
              "fp16_cublas_m1": dense, "silu_mul": silu, "seconds": time.time() - t0}
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    print(f"device {dev}, torch {torch.__version__}, copy bandwidth {copy_bw / 1e9:.0f} GB/s")
    bad = [c for c in checks if not c["pass"]]
    worst = max(checks, key=lambda c: c["max_rel_err"])
    print(f"correctness: {len(checks) - len(bad)}/{len(checks)} pass (max |err|/max|ref| <= {REL_TOL}); worst "
          f"{worst['name']} M={worst['M']} bs={worst['block_size']}: abs {worst['max_abs_err']:.3e}, "
          f"rel {worst['max_rel_err']:.3e}")
    rules = [c for c in checks if c["name"].startswith("rule:")]
    print(f"tile rule: {sum(c['pass'] for c in rules)}/{len(rules)} (M, N, K, block) pick the same tile in the kernel and in "
          f"emulate_int4_gemv.default_tile" + "".join(f"; {c['name']} M={c['M']} K={c['K']} bs={c['block_size']}: kernel "
                                                      f"{c['tile']}, mirror {c['mirror']}" for c in rules if not c["pass"]))
    print(f"{'shape':9} {'KxN':>11} {'bs':>4} {'M':>2} {'ours us':>8} {'GB/s':>6} {'%copy':>6} "
          f"{'best tile':>9} {'%copy':>6} {'tinygemm us':>11} {'x':>5}")
    for r in results:
        tg = f"{r['tinygemm_us']:11.2f} {r['speedup_vs_tinygemm']:5.2f}" if "tinygemm_us" in r else f"{'-':>11} {'-':>5}"
        print(f"{r['name']:9} {r['K']:>5}x{r['N']:<5} {r['block_size']:>4} {r['M']:>2} {r['ours_us']:8.2f} "
              f"{r['ours_GBps']:6.0f} {100 * r['ours_share_of_copy']:5.1f}% {r['best_tile']:>9} "
              f"{100 * r['best_share_of_copy']:5.1f}% {tg}")
    notes = sorted({r["tinygemm_note"] for r in results})
    print("tinygemm: " + (notes[0] if len(notes) == 1 else f"{len(notes)} notes, see the JSON; first: {notes[0]}"))
    # The question for M = 2..4: do the extra rows cost bandwidth? Mean share of copy per M, default and best tile.
    print_tile_summary(results)
    for d in dense:
        print(f"fp16 cuBLAS M=1 {d['name']}: {d['fp16_us']:.2f} us, {d['fp16_GBps']:.0f} GB/s "
              f"({100 * d['fp16_share_of_copy']:.1f}% of copy)")
    gc = [c for c in checks if c.get("swiglu")]
    print(f"SwiGLU mode correctness: {sum(c['pass'] for c in gc)}/{len(gc)} pass; worst max |err|/max|ref| "
          f"{max(c['max_rel_err'] for c in gc):.3e}; with gate and up swapped the error would be at least "
          f"{min(c['max_rel_if_gate_and_up_were_swapped'] for c in gc):.3e}")
    sc = [c for c in checks if c.get("silu_mul")]
    print(f"SiLU-mul mode correctness: {sum(c['pass'] for c in sc)}/{len(sc)} pass; worst max |err|/max|ref| "
          f"{max(c['max_rel_err'] for c in sc):.3e}, worst vs the plain GEMV fed the stock x {max(c['max_rel_vs_plain_gemv'] for c in sc):.3e}")
    for r in silu:
        print(f"down+silu_mul K={r['K']} N={r['N']} bs={r['block_size']} M={r['M']}: fused {r['fused_us']:.2f} us "
              f"({100 * r['fused_share_of_copy']:.1f}% of copy), plain GEMV on a precomputed x {r['plain_gemv_us']:.2f} us "
              f"(fused/plain {r['fused_over_plain']:.3f}), unfused SiLU + Mul + GEMV {r['unfused_us']:.2f} us; "
              f"fused best tile {r['fused_best_tile']} {r['fused_best_us']:.2f} us")
    return 0 if report["all_checks_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
