"""CPU emulation of int4_gemv.cu's per-chunk arithmetic in numpy (no GPU needed): the MatMulNBits byte layout, the
nibble pairs (q_k, q_{k+4}) of each 32-bit word, the x permutation by __byte_perm and the half2 partial sums. It
checks the kernel's index logic where nvcc and a GPU are not at hand:  python3 emulate_int4_gemv.py
"""
import numpy as np


def u32(a):  # little-endian 32-bit words of a byte / fp16 run
    return np.frombuffer(a.tobytes(), dtype=np.uint32)


def h2(v):  # uint32 -> (low half, high half) as float16
    return np.frombuffer(np.uint32(v).tobytes(), dtype=np.float16)


def byte_perm(a, b, s):  # CUDA __byte_perm: result byte i = byte (selector nibble i) of {a, b}
    src = np.frombuffer(np.array([a, b], dtype=np.uint32).tobytes(), dtype=np.uint8)
    return np.frombuffer(bytes(src[(s >> (4 * i)) & 0xF] for i in range(4)), dtype=np.uint32)[0]


def emulate(packed, scales, x, bs):
    """y [M, N] as the kernel computes it (zero point 8)."""
    (m_rows, k), n_rows = x.shape, packed.shape[0]
    y = np.zeros((m_rows, n_rows), np.float32)
    zsub = np.float16(1032.0)
    for n in range(n_rows):
        for c in range(k // 32):
            wv = u32(packed[n, c * 16:(c + 1) * 16])                   # one uint4 of weights: 32 nibbles
            s2 = scales[n, (c * 32) // bs]
            w = [[((h2(((int(wv[g]) >> (4 * kk)) & 0x000F000F) | 0x64006400) - zsub).astype(np.float16) * s2).astype(np.float16)
                  for kk in range(4)] for g in range(4)]
            for m in range(m_rows):
                xw = u32(x[m, c * 32:(c + 1) * 32])                    # four uint4 of x
                acc = None
                for g in range(4):
                    a0, a1, a2, a3 = (int(t) for t in xw[4 * g:4 * g + 4])
                    p = [byte_perm(a0, a2, 0x5410), byte_perm(a0, a2, 0x7632), byte_perm(a1, a3, 0x5410), byte_perm(a1, a3, 0x7632)]
                    for kk in range(4):
                        prod = (w[g][kk] * h2(p[kk])).astype(np.float16)
                        acc = prod if acc is None else (acc + prod).astype(np.float16)   # fma's single rounding, approximated
                y[m, n] += float(acc[0]) + float(acc[1])
    return y


TILES = [(4, 2, 1), (4, 1, 1), (4, 2, 2), (4, 1, 2), (4, 2, 4), (4, 1, 4), (2, 2, 4)]   # kTiles[1..7]: rows, unroll, split


def coverage(chunks, unroll, split):
    """How often the kernel's loop visits each 16-byte chunk of a row: warp slice s, lane l, step j, unroll u
    read chunk first + stride * (j * unroll + u), first = 32 s + l, stride = 32 split, over its `steps`."""
    seen = np.zeros(chunks, np.int64)
    per_step = 32 * split * unroll
    for s in range(split):
        for lane in range(32):
            first = 32 * s + lane
            steps = (chunks - first + per_step - 1) // per_step
            assert steps >= 0
            for j in range(steps):
                for u in range(unroll):
                    c = first + 32 * split * (j * unroll + u)
                    if c < chunks:
                        seen[c] += 1
    return seen


def main():
    for k in (32, 1024, 4096, 4160, 11008, 13824):
        for _, unroll, split in TILES:
            assert (coverage(k // 32, unroll, split) == 1).all(), f"K={k} unroll={unroll} split={split}: a chunk is missed or read twice"
    print("split-K chunk assignment: every chunk read exactly once for every tile")
    rng = np.random.default_rng(0)
    for bs in (32, 128):
        n, k, m = 6, 256, 3
        kb = -(-k // bs)
        q = rng.integers(0, 16, (n, kb * bs), dtype=np.uint8)
        packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)     # [N, K/2], value 2i in the low nibble
        scales = (rng.random((n, kb)) * 0.015 + 0.005).astype(np.float16)
        x = rng.standard_normal((m, k)).astype(np.float16)
        w = (q.astype(np.float32).reshape(n, kb, bs) - 8) * scales.astype(np.float32)[:, :, None]
        ref = x.astype(np.float32) @ w.reshape(n, -1)[:, :k].T
        err = np.abs(emulate(packed, scales, x, bs) - ref).max() / np.abs(ref).max()
        print(f"block {bs}: max |y - ref| / max |ref| = {err:.2e}")
        assert err < 1e-2, "the emulated kernel disagrees with the reference"


if __name__ == "__main__":
    main()
