"""The bulk-copy tiles of omm_int4_gemv (int4_gemv.cu, int4_bulk_kernel: weights to shared memory by cp.async.bulk) against
the default tile: correctness at the Llama-7B shapes and on small shapes (plain and SwiGLU modes, with and without bias,
M = 1..3), refusal where a bulk tile cannot run (zero points), and time at M = 1 and 2 (CUDA-graph replays, weights
rotating through 3x the L2), with the share of the device's read bandwidth (a 1 GiB sum) and of its copy bandwidth
(2 x bytes / time of a 1 GiB copy), and a whole Llama-7B token's GEMVs (32 x qkv, o, gate_up + SwiGLU, down; the LM head).

  python3 bench_bulk_gemv.py LIB.so OUT.json
"""
import ctypes
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_int4_gemv import (L2_BYTES, REL_TOL, copy_bandwidth, graph_time, load, make_weights, ptr,  # noqa: E402
                             reference)

BULK = {20: "r4w4", 21: "r2w4", 22: "r8w2", 23: "r4w8", 24: "stream-r4w4", 25: "stream-r2w4"}
STREAM = {24, 25}   # diagnostic tiles: the bulk stream without the arithmetic (no correctness check)
SHAPES = [("qkv", 4096, 12288), ("o", 4096, 4096), ("gate_up", 4096, 22016), ("down", 11008, 4096),
          ("lm_head", 4096, 32000)]
PER_TOKEN = {"qkv": 32, "o": 32, "gate_up": 32, "down": 32, "lm_head": 1}


def call(f, x, b, s, zp, bias, y, n, bs, tile):
    m, k = x.shape
    return f(ptr(x), ptr(b), ptr(s), ptr(zp), ptr(bias), ptr(y), m, n, k, bs,
             ctypes.c_void_p(torch.cuda.current_stream().cuda_stream), tile)


def check(f, fg, name, k, n, m, bs, gen, tile, swiglu=False, bias=False):
    q, packed, scales, _, _ = make_weights(n, k, bs, gen)
    x = torch.randn(m, k, device="cuda", generator=gen).half()
    bv = torch.randn(n, device="cuda", generator=gen).half() if bias else None
    out_n = n // 2 if swiglu else n
    y = torch.full((m, out_n), float("nan"), device="cuda", dtype=torch.half)
    y0 = torch.full((m, out_n), float("nan"), device="cuda", dtype=torch.half)
    rc = call(fg if swiglu else f, x, packed, scales, None, bv, y, n, bs, tile)
    if rc == -7:   # the tile cannot take this shape (stages too large): refused, not run
        return {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "tile": BULK[tile], "rc": rc, "max_rel_err": 0.0,
                "pass": True, "refused": True}
    rc0 = call(fg if swiglu else f, x, packed, scales, None, bv, y0, n, bs, 0)
    torch.cuda.synchronize()
    ref = reference(x, q, scales, None, bv, k, bs)
    if swiglu:
        gu = ref.half()
        ref = torch.nn.functional.silu(gu[:, : n // 2].float()).half().float() * gu[:, n // 2:].float()
    scale = ref.abs().max().item()
    rel = (y.float() - ref).abs().max().item() / scale
    rel_default = (y.float() - y0.float()).abs().max().item() / scale
    return {"name": name, "K": k, "N": n, "M": m, "block_size": bs, "tile": BULK[tile], "swiglu": swiglu, "bias": bias,
            "rc": rc, "max_rel_err": rel, "max_rel_vs_default_tile": rel_default,
            "pass": bool(rc == 0 and rc0 == 0 and rel <= REL_TOL and torch.isfinite(y).all().item())}


def read_bandwidth():
    src = torch.ones(2**29, dtype=torch.half, device="cuda")   # 1 GiB
    out = torch.empty((), dtype=torch.float32, device="cuda")
    t = graph_time(lambda i: torch.sum(src, dim=0, dtype=torch.float32, out=out), 1, reps=5)
    return src.numel() * 2 / t


def main():
    lib, out = sys.argv[1], sys.argv[2]
    f, fg = load(lib), load(lib, "omm_int4_gemv_swiglu_tile")
    gen = torch.Generator(device="cuda").manual_seed(7)
    checks = []
    for tile in [t for t in BULK if t not in STREAM]:
        for name, k, n in SHAPES:
            for bs in (32, 128):
                for m in (1, 2, 3):
                    checks.append(check(f, fg, name, k, n, m, bs, gen, tile))
        for bs in (32, 128):
            for m in (1, 2):
                checks.append(check(f, fg, "gate_up+swiglu", 4096, 22016, m, bs, gen, tile, swiglu=True))
        checks.append(check(f, fg, "gate_up+swiglu+bias", 4096, 22016, 2, 32, gen, tile, swiglu=True, bias=True))
        checks.append(check(f, fg, "small+bias", 256, 64, 2, 32, gen, tile, bias=True))
        checks.append(check(f, fg, "small_swiglu+bias", 128, 2 * 176, 1, 32, gen, tile, swiglu=True, bias=True))
    # zero points: a bulk tile refuses (-7) rather than ignore them
    _, packed, scales, _, zp = make_weights(4096, 4096, 32, gen, with_zp=True)
    x = torch.randn(1, 4096, device="cuda", generator=gen).half()
    y = torch.empty(1, 4096, device="cuda", dtype=torch.half)
    refused = call(f, x, packed, scales, zp, None, y, 4096, 32, 20)
    checks.append({"name": "zero points refused", "rc": refused, "max_rel_err": 0.0, "pass": refused == -7})
    copy_bw, read_bw = copy_bandwidth(), read_bandwidth()
    rows = []
    for name, k, n in SHAPES:
        for bs in (32, 128):
            _, packed, scales, _, _ = make_weights(n, k, bs, gen)
            wbytes = packed.numel() + scales.numel() * 2
            copies = max(1, -(-3 * L2_BYTES // wbytes))
            ws = [(packed, scales)] + [(packed.clone(), scales.clone()) for _ in range(copies - 1)]
            fn, out_n = (fg, n // 2) if name == "gate_up" else (f, n)
            for m in (1, 2):
                x = torch.randn(m, k, device="cuda", generator=gen).half()
                y = torch.empty(m, out_n, device="cuda", dtype=torch.half)
                times = {}
                for tile in [0] + list(BULK):
                    rc = call(fn, x, ws[0][0], ws[0][1], None, None, y, n, bs, tile)
                    if rc == -7:
                        times[BULK[tile]] = float("inf")
                        continue
                    if rc != 0:
                        raise RuntimeError(f"tile {tile} failed {name} b{bs} M={m}: {rc}")
                    times["default" if tile == 0 else BULK[tile]] = graph_time(
                        lambda i: call(fn, x, ws[i][0], ws[i][1], None, None, y, n, bs, tile), copies)
                row = {"name": name + ("+swiglu" if name == "gate_up" else ""), "K": k, "N": n, "M": m, "block_size": bs,
                       "weight_bytes": wbytes, "us": {t: v * 1e6 for t, v in times.items()},
                       "share_of_read": {t: wbytes / v / read_bw for t, v in times.items()}}
                rows.append(row)
                print(f"{row['name']:15} b{bs:<3} M={m}: " + "  ".join(
                    f"{t} {v * 1e6:6.2f} us ({100 * wbytes / v / read_bw:4.1f}%)" for t, v in times.items()), flush=True)
            del ws
            torch.cuda.empty_cache()
    token = {}
    for bs in (32, 128):
        for m in (1, 2):
            sel = [r for r in rows if r["block_size"] == bs and r["M"] == m]
            tot = {t: sum(PER_TOKEN[r["name"].split("+")[0]] * r["us"][t] for r in sel) for t in sel[0]["us"]}
            best = sum(PER_TOKEN[r["name"].split("+")[0]] * min(v for t, v in r["us"].items() if not t.startswith("stream"))
                       for r in sel)
            wb = sum(PER_TOKEN[r["name"].split("+")[0]] * r["weight_bytes"] for r in sel)
            token[f"b{bs}-M{m}"] = {"ms": {t: v / 1e3 for t, v in tot.items()}, "best_per_shape_ms": best / 1e3,
                                    "share_of_read": {t: wb / (v * 1e-6) / read_bw for t, v in tot.items()}}
    report = {"device": torch.cuda.get_device_name(), "copy_GBps": copy_bw / 1e9, "read_GBps": read_bw / 1e9,
              "checks": checks, "all_checks_pass": all(c["pass"] for c in checks), "gemv": rows, "token": token}
    with open(out, "w") as fh:
        json.dump(report, fh, indent=1)
    bad = [c for c in checks if not c["pass"]]
    print(f"{report['device']}: copy {copy_bw / 1e9:.0f} GB/s, read {read_bw / 1e9:.0f} GB/s; checks {len(checks) - len(bad)}/"
          f"{len(checks)} pass, worst rel {max(c['max_rel_err'] for c in checks):.2e}"
          + "".join(f"\n  FAIL {c}" for c in bad[:8]))
    print("| Llama-7B token's GEMVs | " + " | ".join(token["b32-M1"]["ms"]) + " | best per shape |")
    for key, v in token.items():
        print(f"| {key} | " + " | ".join(f"{ms:.3f} ms ({100 * v['share_of_read'][t]:.0f}%)" for t, ms in v["ms"].items())
              + f" | {v['best_per_shape_ms']:.3f} ms |")
    return 0 if report["all_checks_pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
