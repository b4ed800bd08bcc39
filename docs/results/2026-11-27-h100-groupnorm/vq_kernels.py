#!/usr/bin/env python3
"""Per request, the image encoder's kernels in an image->text trace (tools/kernel_trace TSV.gz): the kernels outside CUDA
graphs before the request's first prompt GEMM (cuBLAS nvjet, or MatMulNBits' Dequantize4Bits), back to the first gap of
more than 1.5 ms (the CPU's preprocessing before the encoder); the window's span, GPU busy time, and the last request's
kernels by time. Usage: vq_kernels.py TRACE.tsv.gz"""
import collections
import gzip
import sys

rows = []
for line in gzip.open(sys.argv[1], "rt", errors="replace"):
    if not line.startswith("#"):
        f = line.rstrip("\n").split("\t")
        rows.append((int(f[0]), int(f[1]), f[3], int(f[11]), f[13]))   # start, end, name, graph id, kind
rows.sort()
plain = [r for r in rows if r[4] == "kernel" and r[3] == 0]
firsts, last = [], None
for r in plain:   # the first prompt GEMM of each request (requests are > 50 ms apart)
    if "nvjet" in r[2] or "Dequantize4Bits" in r[2]:
        if last is None or r[0] - last > 50e6:
            firsts.append(r[0])
        last = r[0]
for i, first in enumerate(firsts):
    before = [r for r in plain if r[0] < first]
    window = []
    for r in reversed(before):
        if window and window[-1][0] - r[1] > 1.5e6:
            break
        window.append(r)
    window.reverse()
    start, end, busy, edge = window[0][0], max(r[1] for r in window), 0, window[0][0]
    for r in window:
        busy += max(0, r[1] - max(r[0], edge))
        edge = max(edge, r[1])
    print(f"request {i}: encoder span {(end - start) / 1e6:.2f} ms, GPU busy {busy / 1e6:.2f} ms, {len(window)} kernels")
    if i == len(firsts) - 1:
        names = collections.Counter()
        for r in window:
            names[r[2][:100]] += r[1] - r[0]
        for n, t in names.most_common(20):
            print(f"   {t / 1e6:8.3f} ms {n}")
