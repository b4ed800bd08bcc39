"""The sampling procedure and random source that the C# `Sampler` reproduces draw for draw.

Random source: SplitMix64 seeded with the request seed; a uniform draw is (next >> 11) * 2**-53.
One uniform is drawn per sampled token, after filtering. Filtering order, all in float64:
  1. repetition penalty r over every id already in the sequence (prompt + generated):
     logit > 0 -> logit / r, else logit * r
  2. temperature: logit / T
  3. top-k: keep the k largest (ties: lower id first); k <= 0 keeps all
  4. softmax over the kept ids (max subtracted first)
  5. top-p: in descending probability (ties: lower id first), keep the shortest prefix whose
     cumulative probability reaches p (at least one id); renormalise
  6. pick the first id in that order whose cumulative probability exceeds u
"""
from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1


class SplitMix64:
    def __init__(self, seed: int):
        self.state = seed & MASK64

    def next_u64(self) -> int:
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        return z ^ (z >> 31)

    def next_double(self) -> float:
        return (self.next_u64() >> 11) * (1.0 / (1 << 53))


def sample_next(logits: np.ndarray, seen: list[int], rng: SplitMix64, temperature: float,
                top_k: int, top_p: float, repetition_penalty: float) -> tuple[int, float]:
    x = logits.astype(np.float64).copy()
    if repetition_penalty != 1.0:
        for t in set(seen):
            x[t] = x[t] / repetition_penalty if x[t] > 0 else x[t] * repetition_penalty
    x /= temperature
    order = sorted(range(len(x)), key=lambda i: (-x[i], i))  # descending, ties by id
    if top_k > 0:
        order = order[:top_k]
    vals = np.array([x[i] for i in order])
    probs = np.exp(vals - vals.max())
    probs /= probs.sum()
    cum = 0.0
    keep = len(order)
    for j, pr in enumerate(probs):
        cum += pr
        if cum >= top_p:
            keep = j + 1
            break
    probs = probs[:keep] / probs[:keep].sum()
    u = rng.next_double()
    cum = 0.0
    for j, pr in enumerate(probs):
        cum += pr
        if u < cum:
            return order[j], u
    return order[keep - 1], u
