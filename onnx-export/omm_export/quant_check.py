"""Checks the int4 quantizers of fused_graph.py with numpy alone: `python -m omm_export.quant_check` (exit 0 = all held).

- symmetric (quantize_int4): scale absmax / 7, codes 1..15 around 8, every weight within half a step of its
  dequantized value;
- asymmetric (quantize_int4_zp): scale (max(w, 0) - min(w, 0)) / 15, codes and zero points 0..15, a negative block
  minimum at code 0 and a positive maximum at code 14-15, every weight within half a step, the zero points packed as MatMulNBits reads them
  (even block in the low nibble, odd k_blocks padded);
- both: K not a multiple of the block (padding), all-zero blocks, and a skewed block (all weights positive) where the
  asymmetric error must be below the symmetric one.
"""
from __future__ import annotations

import sys

import numpy as np

from .fused_graph import dequantize_int4, quantize_int4, quantize_int4_zp, quantize_weights


def _unpack(packed):
    return np.stack([packed & 0x0F, packed >> 4], axis=-1).reshape(packed.shape[0], packed.shape[1], -1)


def main() -> int:
    rng = np.random.default_rng(7)
    failures = []
    for k, n, block in ((96, 5, 32), (256, 7, 128), (160, 3, 64), (4160, 9, 64), (100, 4, 32)):
        w = (rng.standard_normal((k, n)) * 0.02 + rng.standard_normal((1, n)) * 0.01).astype(np.float32)
        w[: min(block, k), 0] = 0.0                                  # an all-zero block
        w[: min(block, k), 1] = np.abs(w[: min(block, k), 1]) + 0.01  # a skewed block: all positive
        kb = -(-k // block)
        pad = np.zeros((kb * block, n), np.float32)
        pad[:k] = w
        blocks = pad.T.reshape(n, kb, block)
        # symmetric
        p, s = quantize_int4(w, block)
        r = dequantize_int4(p, s, k)
        step = np.repeat(s, block, axis=1)[:, :k].T
        err = np.abs(r - w)
        amax = np.abs(blocks).max(axis=2)
        if not np.array_equal(s, np.where(amax == 0, np.float32(1), amax / np.float32(7)).astype(np.float32)):
            failures.append(f"symmetric K={k} block={block}: scales are not absmax / 7")
        if not (err <= 0.5 * step * (1 + 1e-5) + 1e-9).all():
            failures.append(f"symmetric K={k} N={n} block={block}: error {float((err / step).max()):.3f} steps")
        # asymmetric
        p2, s2, z = quantize_int4_zp(w, block)
        q, zz = _unpack(p2), _unpack(z[:, :, None]).reshape(n, -1)
        lo, hi = np.minimum(blocks.min(axis=2), 0), np.maximum(blocks.max(axis=2), 0)
        want = ((hi - lo) / np.float32(15)).astype(np.float32)
        if not np.array_equal(s2, np.where(want == 0, np.float32(1), want)):
            failures.append(f"asymmetric K={k} block={block}: scales are not (max - min) / 15")
        # a block's negative extreme is code 0 exactly and its positive extreme code 14 or 15 (15 up to ties)
        if not (q.min(axis=2)[lo < 0] == 0).all() or not (q.max(axis=2)[hi > 0] >= 14).all():
            failures.append(f"asymmetric K={k} block={block}: a block's extremes are not codes 0 and 14-15")
        if z.shape != (n, -(-kb // 2)) or zz.shape[1] < kb or (kb % 2 and zz[:, kb:].any()):
            failures.append(f"zero points K={k} block={block}: shape {z.shape} or padding wrong")
        if q.max() > 15 or zz.max() > 15:
            failures.append("codes out of 0..15")
        r2 = dequantize_int4(p2, s2, k, z)
        manual = ((q.astype(np.float32) - zz[:, :kb, None]) * s2[..., None]).reshape(n, -1)[:, :k].T
        if not np.array_equal(r2, manual):
            failures.append(f"dequantize_int4 with zero points disagrees with (q - zp) * s (K={k}, block={block})")
        step2 = np.repeat(s2, block, axis=1)[:, :k].T
        if not (np.abs(r2 - w) <= 0.5 * step2 * (1 + 1e-5) + 1e-9).all():
            failures.append(f"asymmetric K={k} block={block}: error {float((np.abs(r2 - w) / step2).max()):.3f} steps")
        if not (r2[: min(block, k), 0] == 0).all():
            failures.append("an all-zero block does not dequantize to zeros")
        e_sym = float(np.abs(r[: min(block, k), 1] - w[: min(block, k), 1]).mean())
        e_asym = float(np.abs(r2[: min(block, k), 1] - w[: min(block, k), 1]).mean())
        if not e_asym < e_sym:
            failures.append(f"skewed block: asymmetric error {e_asym:.2e} not below symmetric {e_sym:.2e}")
        # the dispatcher
        a, b, c = quantize_weights(w, block, False)
        if c is not None or not np.array_equal(a, p):
            failures.append("quantize_weights(zero_points=False) is not quantize_int4")
    for f in failures:
        print("FAIL", f)
    print("quant_check:", "PASS" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
