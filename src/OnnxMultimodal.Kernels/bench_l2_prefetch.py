"""Does the L2 prefetch of the next GEMV's weights (int4_gemv.cu, L2Prefetch; omm_int4_gemv_prefetch) shorten a decode
step? A Llama-7B-shaped int4 step (32 layers with their own weights: qkv, o, gate_up with SwiGLU, down; then the LM
head), with stand-ins for the kernels between the GEMVs that hold the GPU without streaming weights: a spin of
`--norm-us` for each norm, `--rope-us` for rotary + append, and for attention a read of the layer's KV (fp16, the mean
333 positions x 4096 x 2) plus a spin of `--attn-us`; then `--gap-us` for the sampling head and the host's wait. One CUDA
graph a step, replayed. Each GEMV asks the L2 for up to CAP bytes of the next GEMV's scales and weights; CAP 0 is the
kernel as it was. Also the same step without the stand-ins (GEMVs back to back), and the stand-ins alone.

  python3 bench_l2_prefetch.py LIB.so OUT.json [--rows 1] [--block 128] [--vocab 32000]

Also checks that the prefetch changes no output bit (every mode, the default tile).
"""
import argparse
import ctypes
import json
import math

import torch

MB = 1 << 20


def load(lib_path):
    f = ctypes.CDLL(lib_path).omm_int4_gemv_prefetch
    f.restype = ctypes.c_int
    f.argtypes = ([ctypes.c_int] + [ctypes.c_void_p] * 6 + [ctypes.c_int] * 4 + [ctypes.c_void_p, ctypes.c_int]
                  + [ctypes.c_void_p, ctypes.c_ulonglong, ctypes.c_void_p, ctypes.c_ulonglong])
    return f


def weights(n, k, bs, gen):
    kb = math.ceil(k / bs)
    b = torch.randint(0, 256, (n, kb * bs // 2), device="cuda", dtype=torch.uint8, generator=gen)
    s = (torch.rand(n, kb, device="cuda", generator=gen) * 0.01 + 0.002).half()
    return b, s


class Gemv:
    def __init__(self, f, mode, x, b, s, y, n, k, bs):
        self.f, self.mode, self.x, self.b, self.s, self.y, self.n, self.k, self.bs = f, mode, x, b, s, y, n, k, bs
        self.next = None

    def __call__(self, cap):
        pf = [None, 0, None, 0]
        if cap > 0 and self.next is not None:
            sb = min(self.next.s.numel() * 2, cap)
            wb = min(self.next.b.numel(), cap - sb)
            pf = [self.next.s.data_ptr(), sb, self.next.b.data_ptr(), wb]
        rc = self.f(self.mode, self.x.data_ptr(), self.b.data_ptr(), self.s.data_ptr(), None, None, self.y.data_ptr(),
                    self.x.shape[0], self.n, self.k, self.bs, torch.cuda.current_stream().cuda_stream, 0,
                    pf[0], pf[1], pf[2], pf[3])
        if rc != 0:
            raise RuntimeError(f"omm_int4_gemv_prefetch returned {rc}")


def sleep_model():
    """torch.cuda._sleep spins for a number of clock cycles; fit the time of a spin inside a CUDA graph (launch
    included) as a + b * cycles from graphs of 100 spins of two lengths. Returns (a us, b us a cycle)."""
    t = {}
    for c in (1000, 20000):
        t[c] = graph_ms(lambda: [torch.cuda._sleep(c) for _ in range(100)], reps=5) * 1000 / 100
    b = (t[20000] - t[1000]) / 19000
    return t[1000] - 1000 * b, b


def graph_ms(step, reps=20):
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        step()   # warm-up outside the graph
    torch.cuda.current_stream().wait_stream(s)
    torch.cuda.synchronize()
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        step()
    g.replay()
    torch.cuda.synchronize()
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(5):
        a.record()
        for _ in range(reps):
            g.replay()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b) / reps)
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("lib")
    ap.add_argument("out")
    ap.add_argument("--rows", type=int, default=1)
    ap.add_argument("--block", type=int, default=128)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--norm-us", type=float, default=2.0)
    ap.add_argument("--rope-us", type=float, default=2.0)
    ap.add_argument("--attn-us", type=float, default=7.0)
    ap.add_argument("--gap-us", type=float, default=120.0)
    ap.add_argument("--caps-mb", default="0,4,8,16,24,32")
    ap.add_argument("--styles", default="1", help="EXPERIMENT: 0 bulk per lane, 1 bulk per block, 2 per-thread lines")
    a = ap.parse_args()
    f = load(a.lib)
    gen = torch.Generator(device="cuda").manual_seed(1)
    m, bs, d, inter = a.rows, a.block, 4096, 11008
    x = torch.randn(m, d, device="cuda", generator=gen).half() * 0.5
    xi = torch.randn(m, inter, device="cuda", generator=gen).half() * 0.5
    y_qkv = torch.empty(m, 3 * d, device="cuda", dtype=torch.half)
    y_o = torch.empty(m, d, device="cuda", dtype=torch.half)
    y_gu = torch.empty(m, inter, device="cuda", dtype=torch.half)
    y_down = torch.empty(m, d, device="cuda", dtype=torch.half)
    y_head = torch.empty(m, a.vocab, device="cuda", dtype=torch.half)
    chain = []
    kvs = []
    for _ in range(a.layers):
        chain.append(Gemv(f, 0, x, *weights(3 * d, d, bs, gen), y_qkv, 3 * d, d, bs))
        chain.append(Gemv(f, 0, x, *weights(d, d, bs, gen), y_o, d, d, bs))
        chain.append(Gemv(f, 2, x, *weights(2 * inter, d, bs, gen), y_gu, 2 * inter, d, bs))
        chain.append(Gemv(f, 0, xi, *weights(d, inter, bs, gen), y_down, d, inter, bs))
        kvs.append(torch.randn(2 * 333, d, device="cuda", generator=gen).half())
    chain.append(Gemv(f, 0, x, *weights(a.vocab, d, bs, gen), y_head, a.vocab, d, bs))
    for i, g in enumerate(chain):
        g.next = chain[(i + 1) % len(chain)]
    kv_out = torch.empty(d, device="cuda", dtype=torch.half)
    weight_bytes = sum(g.b.numel() + 2 * g.s.numel() for g in chain)
    sleep_a, sleep_b = sleep_model()

    def spin(us):
        if us > 0:
            torch.cuda._sleep(max(0, int((us - sleep_a) / sleep_b)))

    def step(cap, stand_ins=True, gemvs=True):
        def run():
            for layer in range(a.layers):
                q, o, gu, dn = chain[4 * layer: 4 * layer + 4]
                if stand_ins:
                    spin(a.norm_us)
                if gemvs:
                    q(cap)
                if stand_ins:
                    spin(a.rope_us)
                    torch.amax(kvs[layer], dim=0, out=kv_out)
                    spin(a.attn_us)
                if gemvs:
                    o(cap)
                if stand_ins:
                    spin(a.norm_us)
                if gemvs:
                    gu(cap)
                    dn(cap)
            if gemvs:
                chain[-1](cap)
            if stand_ins:
                spin(a.gap_us)
        return run

    # The prefetch is a hint: every output bit must be the same with and without it.
    same = {}
    for g in (chain[0], chain[2], chain[3]):
        g(0)
        torch.cuda.synchronize()
        ref = g.y.clone()
        g(32 * MB)
        torch.cuda.synchronize()
        same[f"mode{g.mode}-N{g.n}-K{g.k}"] = bool(torch.equal(ref, g.y))
    results = {"device": torch.cuda.get_device_name(), "rows": m, "block": bs, "vocab": a.vocab, "layers": a.layers,
               "weight_gb": weight_bytes / 1e9, "spin_us": {"a": sleep_a, "b_per_cycle": sleep_b}, "same_outputs": same,
               "stand_ins": {"norm_us": a.norm_us, "rope_us": a.rope_us, "attn_us": a.attn_us, "gap_us": a.gap_us,
                             "kv_mb_per_layer": kvs[0].numel() * 2 / MB}}
    results["stand_ins_alone_ms"] = graph_ms(step(0, gemvs=False))
    rows = []
    set_style = ctypes.CDLL(a.lib).omm_int4_gemv_set_prefetch_style
    set_style.argtypes = [ctypes.c_int]
    for style, cap_mb in [(int(st), float(c)) for st in a.styles.split(",") for c in a.caps_mb.split(",")
                          if float(c) > 0 or st == a.styles.split(",")[0]]:
        set_style(style)
        cap = int(cap_mb * MB)
        full = graph_ms(step(cap))
        bare = graph_ms(step(cap, stand_ins=False))
        rows.append({"style": style, "cap_mb": cap_mb, "step_ms": full, "gemvs_only_ms": bare,
                     "gemv_tb_s_back_to_back": weight_bytes / bare / 1e9})
        print(f"style {style} cap {cap_mb:5.1f} MiB: step {full:.3f} ms, GEMVs back to back {bare:.3f} ms "
              f"({weight_bytes / bare / 1e9:.2f} TB/s)", flush=True)
    results["caps"] = rows
    base = rows[0]
    print(f"{results['device']}, rows {m}, block {bs}: weights {weight_bytes / 1e9:.2f} GB; stand-ins alone "
          f"{results['stand_ins_alone_ms']:.3f} ms; outputs unchanged by the prefetch: {all(same.values())}")
    print("| style | cap MiB | step ms | vs cap 0 | GEMVs back to back ms | vs cap 0 |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['style']} | {r['cap_mb']:g} | {r['step_ms']:.3f} | {r['step_ms'] - base['step_ms']:+.3f} | {r['gemvs_only_ms']:.3f} | "
              f"{r['gemvs_only_ms'] - base['gemvs_only_ms']:+.3f} |")
    with open(a.out, "w") as fh:
        json.dump(results, fh, indent=1)
    if not all(same.values()):
        raise SystemExit("the prefetch changed an output")


if __name__ == "__main__":
    main()
