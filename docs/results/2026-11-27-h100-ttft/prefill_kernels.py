#!/usr/bin/env python3
"""Per request, the prompt pass of an image->text trace (tools/kernel_trace TSV.gz): kernels outside CUDA graphs from 0.3 ms
before the request's first prompt GEMM (cuBLAS nvjet, or MatMulNBits' Dequantize4Bits) to 1 ms after its last; the
window's span, GPU busy time, and the last request's kernels by time. Usage: prefill_kernels.py TRACE.tsv.gz"""
import collections
import gzip
import sys

rows = []
for line in gzip.open(sys.argv[1], "rt", errors="replace"):
    if not line.startswith("#"):
        f = line.rstrip("\n").split("\t")
        rows.append((int(f[0]), int(f[1]), f[3], int(f[11]), f[13]))   # start, end, name, graph id, kind
rows.sort()
prompt = [r for r in rows if "nvjet" in r[2] or "Dequantize4Bits" in r[2]]
groups, cur = [], []
for r in prompt:   # requests are > 50 ms apart
    if cur and r[0] - cur[-1][0] > 50e6:
        groups.append(cur)
        cur = []
    cur.append(r)
groups.append(cur)
for i, g in enumerate(groups):
    a, b = g[0][0] - 0.3e6, g[-1][1] + 1.0e6
    ker = [r for r in rows if a <= r[0] <= b and r[4] == "kernel" and r[3] == 0]
    start, end, busy, last = ker[0][0], max(r[1] for r in ker), 0, ker[0][0]
    for r in ker:
        busy += max(0, r[1] - max(r[0], last))
        last = max(last, r[1])
    print(f"request {i}: span {(end - start) / 1e6:.2f} ms, GPU busy {busy / 1e6:.2f} ms, {len(ker)} kernels")
    if i == len(groups) - 1:
        names = collections.Counter()
        for r in ker:
            names[r[2][:100]] += r[1] - r[0]
        for n, t in names.most_common(16):
            print(f"   {t / 1e6:8.3f} ms {n}")
