"""Checks the qk-norm kernel (qk_norm.cu, through libomm_int4.so's C entry point) against the fused graph's own sequence
in torch on the GPU machine: per head, LayerNormalization in float32 rounded to fp16, then the fp16 product with the
weight and the fp16 sum with the bias (each a separately rounded torch fp16 op), v copied.

    python3 check_qk_norm.py BUILD/libomm_int4.so OUT.json

q and k may differ from the reference by the normalised value's last fp16 bit (float32 1 / sqrt and sums in another
order), carried through the product and the sum: at most 3 fp16 ulps of |n * w| + |b| + |y| (plus 2^-24 absolute); a
wrong head, weight, mean or variance moves values by far more. v must be bit-identical. Also times the kernel at Chameleon-7B's shape. Exit status 1 on any failure.
"""
import ctypes
import sys

import torch

from check_common import cuda_us, finish


def reference(qkv, qw, qb, kw, kb, H, Hkv, D, eps):
    T = qkv.shape[0]
    q, k, v = qkv.split([H * D, Hkv * D, Hkv * D], dim=-1)

    def norm(x, heads, w, b):
        x = x.reshape(T, heads, D).float()
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        n = ((x - mean) / torch.sqrt(var + eps)).half()
        y = (n * w + b).reshape(T, heads * D)
        return y, ((n.float() * w.float()).abs() + b.float().abs()).reshape(T, heads * D)   # the magnitudes a rounding scales with

    (q, q_mag), (k, k_mag) = norm(q, H, qw, qb), norm(k, Hkv, kw, kb)
    return q, q_mag, k, k_mag, v.clone()


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.omm_qkv_head_norm.restype = ctypes.c_int
    lib.omm_qkv_head_norm.argtypes = [ctypes.c_void_p] * 8 + [ctypes.c_longlong, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_float, ctypes.c_void_p]
    g = torch.Generator(device="cuda").manual_seed(2026)
    failures, cases = [], 0
    stream = torch.cuda.current_stream().cuda_stream
    for (T, H, Hkv, D) in [(1, 32, 32, 128), (2, 32, 32, 128), (7, 32, 8, 128), (1034, 32, 32, 128), (3, 4, 2, 16), (5, 8, 8, 64),
                           (2, 6, 3, 96), (2, 2, 1, 256), (4, 3, 3, 40), (1, 1, 1, 1)]:
        for scale, offset in [(1.0, 0.0), (4.0, 3.0), (0.01, -2.0)]:
            cases += 1
            qkv = (torch.randn(T, (H + 2 * Hkv) * D, device="cuda", generator=g) * scale + offset).half()
            qw, qb = (torch.randn(H, D, device="cuda", generator=g).half() for _ in range(2))
            kw, kb = (torch.randn(Hkv, D, device="cuda", generator=g).half() for _ in range(2))
            q = torch.full((T, H * D), float("nan"), device="cuda", dtype=torch.half)
            k = torch.full((T, Hkv * D), float("nan"), device="cuda", dtype=torch.half)
            v = torch.full((T, Hkv * D), float("nan"), device="cuda", dtype=torch.half)
            rc = lib.omm_qkv_head_norm(*(ctypes.c_void_p(x.data_ptr()) for x in (qkv, qw, qb, kw, kb, q, k, v)), T, H, Hkv, D, 1e-5, ctypes.c_void_p(stream))
            torch.cuda.synchronize()
            if rc != 0:
                failures.append(dict(T=T, H=H, Hkv=Hkv, D=D, what=f"rc {rc}"))
                continue
            rq, q_mag, rk, k_mag, rv = reference(qkv, qw, qb, kw, kb, H, Hkv, D, 1e-5)
            for name, got, want, mag in (("q", q, rq, q_mag), ("k", k, rk, k_mag)):
                # an ulp of the normalised value times the weight, and the fp16 roundings of the product and the sum
                tol = 3 * (mag + want.float().abs()) * 2.0 ** -10 + 2.0 ** -24
                bad = ((got.float() - want.float()).abs() > tol) | torch.isnan(got)
                if bad.any():
                    i = int(bad.flatten().nonzero()[0])
                    failures.append(dict(T=T, H=H, Hkv=Hkv, D=D, scale=scale, what=name, count=int(bad.sum()), at=i,
                                         got=float(got.flatten()[i]), want=float(want.flatten()[i])))
            if not torch.equal(v, rv):
                failures.append(dict(T=T, H=H, Hkv=Hkv, D=D, what="v not copied exactly"))
    # timing at Chameleon-7B's guided step (2 rows) and its 1034-token prompt
    timings = []
    for T in (2, 1034):
        H = Hkv = 32; D = 128
        qkv = torch.randn(T, 3 * H * D, device="cuda").half()
        w = torch.randn(H, D, device="cuda").half()
        outs = [torch.empty(T, H * D, device="cuda", dtype=torch.half) for _ in range(3)]
        args = [ctypes.c_void_p(x.data_ptr()) for x in (qkv, w, w, w, w, *outs)] + [T, H, Hkv, D, 1e-5, ctypes.c_void_p(stream)]
        timings.append(dict(tokens=T, us_per_call=cuda_us(lambda: lib.omm_qkv_head_norm(*args), 20, 200)))
    finish(sys.argv[2], f"{cases} cases, {len(failures)} failures; timings {timings}", failures, cases=cases, timings=timings)


if __name__ == "__main__":
    main()
