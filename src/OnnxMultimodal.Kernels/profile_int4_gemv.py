"""Launches the int4 GEMV once per case, for a profiler (Nsight Compute) to measure why M = 2..4 fall short of the
copy bandwidth: achieved occupancy, issue-slot use, L1 wavefronts of the x loads, stall reasons.

  ncu --kernel-name regex:int4_gemv_kernel --section ... python3 profile_int4_gemv.py LIB.so

Cases (qkv, K = 4096, N = 12288, block 32): M = 1, 2, 4 with the default tile, and M = 4 with the 8-column tile 8x1/1,
in that order (ncu reports the kernels in launch order; the template arguments <M, rows, unroll, split> name each).
"""
import sys

import torch

import bench_int4_gemv as bench

CASES = [(1, 0), (2, 0), (4, 0), (4, 8)]   # (M, tile): 0 = default_tile(), 8 = 8x1/1


def main():
    f = bench.load(sys.argv[1])
    gen = torch.Generator(device="cuda").manual_seed(7)
    k, n, bs = 4096, 12288, 32
    _, packed, scales, _, _ = bench.make_weights(n, k, bs, gen)
    for m, tile in CASES:
        x = torch.randn(m, k, device="cuda", generator=gen).half()
        y = torch.empty(m, n, device="cuda", dtype=torch.half)
        bench.gemv(f, x, packed, scales, None, None, y, bs, tile)
        torch.cuda.synchronize()
        print(f"launched M={m} tile={bench.TILES[tile]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
