"""Checks the SwiGLU kernel (swiglu.cu, through libomm_int4.so's C entry point) against the unfused graph's sequence in
torch on the GPU machine: gate, up = the halves of x; silu(gate) in float32 rounded to fp16; the fp16 product with up.

    python3 check_swiglu.py BUILD/libomm_int4.so OUT.json

The kernel's exp is the fast intrinsic: silu may differ in its last fp16 bit, carried through the product, so the bound
is 2 fp16 ulps of |silu(gate) * up| (plus 2^-24 absolute); swapped halves, a wrong row stride or a missing element miss
by far more. Odd sizes and an unaligned start take the scalar path. Also times the kernel at Chameleon-7B's MLP
(K = 11008) for a guided step (2 rows) and a 1034-token prompt, beside torch's split + silu + mul (three kernels, what
the graph ran). Exit status 1 on any failure.
"""
import ctypes
import sys

import torch
import torch.nn.functional as F

from check_common import cuda_us, finish


def main():
    lib = ctypes.CDLL(sys.argv[1])
    lib.omm_swiglu.restype = ctypes.c_int
    lib.omm_swiglu.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_void_p]
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    g = torch.Generator(device="cuda").manual_seed(2027)
    failures, cases = [], 0
    for rows, k, offset in [(1, 11008, 0), (2, 11008, 0), (1034, 11008, 0), (3, 8, 0), (5, 7, 0), (1, 1, 0), (4, 24, 1), (17, 1000, 0),
                            (2, 11008, 3), (0, 16, 0)]:
        for scale in (1.0, 6.0, 0.01):
            cases += 1
            buf = (torch.randn(rows * 2 * k + offset, device="cuda", generator=g) * scale).half()
            x = buf[offset:].view(rows, 2 * k)   # offset > 0: a start that is not 16-byte aligned
            y = torch.full((rows, k), float("nan"), device="cuda", dtype=torch.half)
            rc = lib.omm_swiglu(ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(y.data_ptr()), rows, k, stream)
            torch.cuda.synchronize()
            if rc != 0:
                failures.append(dict(rows=rows, k=k, offset=offset, what=f"rc {rc}"))
                continue
            gate, up = x[:, :k], x[:, k:]
            want = F.silu(gate.float()).half() * up
            tol = 2 * want.float().abs() * 2.0 ** -10 + 2.0 ** -24
            bad = ((y.float() - want.float()).abs() > tol) | torch.isnan(y)
            if bad.any():
                i = int(bad.flatten().nonzero()[0])
                failures.append(dict(rows=rows, k=k, offset=offset, scale=scale, count=int(bad.sum()), at=i,
                                     got=float(y.flatten()[i]), want=float(want.flatten()[i])))
    if lib.omm_swiglu(None, None, -1, 8, stream) != -1:
        failures.append(dict(what="negative rows accepted"))
    timings = []
    for rows in (2, 1034):
        k = 11008
        x = torch.randn(rows, 2 * k, device="cuda").half()
        y = torch.empty(rows, k, device="cuda", dtype=torch.half)
        args = (ctypes.c_void_p(x.data_ptr()), ctypes.c_void_p(y.data_ptr()), rows, k, stream)

        def ours():
            lib.omm_swiglu(*args)

        def torch_ops():
            gate, up = x.split(k, dim=-1)
            return F.silu(gate.contiguous()) * up.contiguous()

        row = dict(rows=rows, k=k)
        for name, fn in (("ours_us", ours), ("torch_split_silu_mul_us", torch_ops)):
            row[name] = cuda_us(fn, 20, 200)
        row["ours_gb_per_s"] = round(rows * 3 * k * 2 / (row["ours_us"] * 1e-6) / 1e9, 1)
        timings.append(row)
    finish(sys.argv[2], f"{cases} cases, {len(failures)} failures; timings {timings}", failures, cases=cases, timings=timings)


if __name__ == "__main__":
    main()
