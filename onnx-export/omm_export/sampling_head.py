"""The sampling head: the next-token choice of sampling.py (and of the C# Sampler) as standard ONNX ops
appended to a decoder graph, so a decode step hands back one token id per row instead of the logits.

Inputs the host fills (fixed shapes: the step can be captured as a CUDA graph and replayed):
  sample_params  [5] float32      temperature (0: greedy), top_k (<= 0: all), top_p (>= 1: all),
                                  repetition penalty (1: off), guidance scale s
  sample_uniform [B] float32      the uniform draw of each row (the host's SplitMix64 stream, one per sampled token)
  sample_rows    [B, 2] int64     per row (base, cond): the row mixes g = L[base] + s * (L[cond] - L[base]);
                                  (r, r) is row r's own logits (exact: the difference is zero), classifier-free
                                  guidance gives both rows (1, 0): u + s * (c - u), one choice for both rows
  sample_seen    [B, V] float32   1 where the id is already in the row's sequence (repetition penalty)
  sample_mask    [V] float32      added to every row after the mix: 0 allowed, float32 min banned (the
                                  image-span constraint and suppressed ids, exactly as the host's processors)
Outputs: next_token [B, 1] int64; next_token_greedy [B, 1] int64, the greedy choice alone (the first id of the
tie-broken order). A greedy request binds it; ONNX Runtime still runs the whole head (its inference builds do not
prune nodes by the requested outputs), so a greedy step pays for the sort too (~0.3 ms a step at a 32k vocabulary on
an H100 in a launch-blocking profile).

Order, as the host: mix -> mask -> penalty -> (greedy: argmax, ties to the lower id) -> temperature ->
descending order (TopK over the whole vocabulary on a float64 key that orders ties by the lower id) -> top-k
as a position mask ->
softmax -> top-p (keep position i while the cumulative probability before it is < top_p) -> renormalise
-> the first position whose cumulative probability exceeds u (the last kept one if rounding leaves none).
All in float32 (the host works in float64): a draw can differ only where u or top_p falls within
float32 rounding of a cumulative boundary, or where two logits round to one float32 after a division.

Cumulative sums are blocked ([B, V] -> [B, V/C, C], a CumSum within blocks, then the block offsets
from each block's own last partial sum): ONNX Runtime's CUDA CumSum sums every prefix afresh (O(V^2)
work), and this keeps it O(V * C). Each block's offset is the previous offset plus that block's last
inclusive partial, so the sequence stays monotone (a float addition of a non-negative term never
decreases), which the count-based pick below needs.
"""
from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper

HEAD_INPUTS = {"params": "sample_params", "uniform": "sample_uniform", "rows": "sample_rows",
               "seen": "sample_seen", "mask": "sample_mask"}
PARAMS = ["temperature", "top_k", "top_p", "repetition_penalty", "guidance_scale"]
HEAD_VERSION = 1
GREEDY_OUTPUT = "next_token_greedy"


def block_size(vocab: int) -> int:
    """The cumulative-sum block: the power of two at or above sqrt(V) (V = 32000 -> 256, 721 -> 32)."""
    c = 1
    while c * c < vocab:
        c *= 2
    return c


def manifest_entry(vocab: int) -> dict:
    """What the engine reads to find and feed the head (decoder.sampling_head in multimodal.json)."""
    return {"version": HEAD_VERSION, "inputs": dict(HEAD_INPUTS), "params": list(PARAMS), "output": "next_token", "greedy_output": GREEDY_OUTPUT,
            "cumsum_block": block_size(vocab)}


def default_feeds(sess, vocab: int, batch: int = 1) -> dict:
    """Greedy settings for the head's inputs, for checks that run a head graph on onnxruntime (empty without a head)."""
    names = {i.name for i in sess.get_inputs()}
    if HEAD_INPUTS["params"] not in names:
        return {}
    return {HEAD_INPUTS["params"]: np.array([0, 0, 1, 1, 1], np.float32), HEAD_INPUTS["uniform"]: np.zeros(batch, np.float32),
            HEAD_INPUTS["rows"]: np.repeat(np.arange(batch, dtype=np.int64)[:, None], 2, axis=1),
            HEAD_INPUTS["seen"]: np.zeros((batch, vocab), np.float32), HEAD_INPUTS["mask"]: np.zeros(vocab, np.float32)}


def _cumsum(g, p: str, vocab: int, hint: str) -> str:
    """Inclusive cumulative sum of p [B, V] along V, blocked (see the module doc)."""
    c = block_size(vocab)
    blocks = -(-vocab // c)
    padded = g.op("Pad", [p, g.i64([0, 0, 0, blocks * c - vocab]), g.f32(0.0)], f"{hint}_padded") if blocks * c != vocab else p
    x = g.op("Reshape", [padded, g.i64([0, blocks, c])], f"{hint}_blocks")                              # [B, nb, C]
    inner = g.op("CumSum", [x, g.i64(2)], f"{hint}_inner")                                               # [B, nb, C]
    last = g.op("Slice", [inner, g.i64([c - 1]), g.i64([c]), g.i64([2])], f"{hint}_block_last")          # [B, nb, 1]
    offsets = g.op("CumSum", [last, g.i64(1)], f"{hint}_offsets", exclusive=1)                          # [B, nb, 1]
    whole = g.op("Reshape", [g.op("Add", [offsets, inner]), g.i64([0, blocks * c])], f"{hint}_flat")     # [B, nb*C]
    return g.op("Slice", [whole, g.i64([0]), g.i64([vocab]), g.i64([1])], hint) if blocks * c != vocab else whole


def append_sampling_head(g, last_logits: str, vocab: int, output: str = "next_token") -> None:
    """Appends the head to GraphBuilder `g`: last_logits [B, 1, V] float32 -> output [B, 1] int64."""
    f32 = TensorProto.FLOAT
    params = g.add_input(HEAD_INPUTS["params"], f32, [len(PARAMS)])
    uniform = g.add_input(HEAD_INPUTS["uniform"], f32, ["batch"])
    rows = g.add_input(HEAD_INPUTS["rows"], TensorProto.INT64, ["batch", 2])
    seen = g.add_input(HEAD_INPUTS["seen"], f32, ["batch", vocab])
    mask = g.add_input(HEAD_INPUTS["mask"], f32, [vocab])
    logits = g.op("Squeeze", [last_logits, g.i64([1])], "head_logits")                                   # [B, V]
    temperature, top_k, top_p, r, scale = g.op("Split", [params], "param", n_out=len(PARAMS), axis=0)   # [1] each
    # guidance mix: g = L[base] + s * (L[cond] - L[base]) (float32, the host's own expression)
    base = g.op("Gather", [logits, g.op("Gather", [rows, g.i64(0)], "base_row", axis=1)], "head_base", axis=0)   # [B, V]
    cond = g.op("Gather", [logits, g.op("Gather", [rows, g.i64(1)], "cond_row", axis=1)], "head_cond", axis=0)   # [B, V]
    x = g.op("Add", [base, g.op("Mul", [scale, g.op("Sub", [cond, base])])], "guided")                  # [B, V]
    x = g.op("Add", [x, mask], "masked")                                                                 # [B, V]
    # repetition penalty over ids already seen: x > 0 -> x / r, else x * r
    penalised = g.op("Where", [g.op("Greater", [x, g.f32(0.0)]), g.op("Div", [x, r]), g.op("Mul", [x, r])], "penalised")
    x = g.op("Where", [g.op("Greater", [seen, g.f32(0.0)]), penalised, x], "after_penalty")             # [B, V]
    is_greedy = g.op("Equal", [temperature, g.f32(0.0)], "is_greedy")
    scaled = g.op("Div", [x, g.op("Where", [is_greedy, g.f32(1.0), temperature])], "scaled")            # [B, V]
    # Descending order with ties to the lower id, as the host sorts. ONNX Runtime's CUDA TopK promises no order among
    # equal keys (the first H100 run forked from the host at a tie of fp16-valued logits), so the key breaks ties
    # itself, in float64: x - |x| * id * 2^-48 (x = 0: -id * 2^-173; non-finite x stays x). The term moves a value
    # by under 2^-28 of its size (V < 2^20), and distinct float32 values differ by at least 2^-24 of theirs, so
    # distinct values keep their order; equal values fall in id order; float64 holds each step (2^-48 of |x|).
    if vocab >= 1 << 20:
        raise ValueError(f"sampling head: vocabulary {vocab} >= 2^20 (the tie-breaking key's bound)")
    xd = g.op("Cast", [scaled], "scaled_f64", to=TensorProto.DOUBLE)                                     # [B, V]
    step = g.const(np.arange(vocab, dtype=np.float64) * 2.0 ** -48, "head_tie_step")                    # [V]
    # zeros: -id * 2^-173, below every float32 magnitude (2^-149), so a zero never passes a tiny negative value
    tie = g.op("Where", [g.op("Equal", [xd, g.const(np.array(0.0, np.float64), "head_zero_f64")]),
                         g.op("Mul", [step, g.const(np.array(2.0 ** -125, np.float64), "head_zero_scale")]),
                         g.op("Mul", [g.op("Abs", [xd]), step])], "tie")
    finite = g.op("Less", [g.op("Abs", [xd]), g.const(np.array(np.inf, np.float64), "head_inf_f64")], "finite")
    key = g.op("Where", [finite, g.op("Sub", [xd, tie]), xd], "sort_key")                              # [B, V] float64
    _, ids = g.op("TopK", [key, g.i64([vocab])], "sorted", n_out=2, axis=1, largest=1, sorted=1)      # [B, V] descending
    values = g.op("GatherElements", [scaled, ids], "sorted_values", axis=1)                             # [B, V] float32
    # greedy: the first of that order (the largest, ties to the lower id), not an ArgMax whose tie rule the CUDA
    # kernel does not promise; with temperature 0, `scaled` is x itself
    greedy = GREEDY_OUTPUT
    g.op_named("Slice", [ids, g.i64([0]), g.i64([1]), g.i64([1])], [greedy])                            # [B, 1]
    g.outputs.append(helper.make_tensor_value_info(greedy, TensorProto.INT64, ["batch", 1]))
    positions = g.f32(np.arange(vocab, dtype=np.float32))                                                # [V]
    k = g.op("Where", [g.op("Greater", [top_k, g.f32(0.0)]), top_k, g.f32(float(vocab))], "k")
    in_k = g.op("Less", [positions, k], "in_top_k")                                                     # [V]
    largest = g.op("Slice", [values, g.i64([0]), g.i64([1]), g.i64([1])], "largest")                     # [B, 1]
    e = g.op("Where", [in_k, g.op("Exp", [g.op("Sub", [values, largest])]), g.f32(0.0)], "exp")          # [B, V]
    p = g.op("Div", [e, g.op("ReduceSum", [e, g.i64([1])], keepdims=1)], "probs")                      # [B, V]
    p_cut = g.op("Where", [g.op("Less", [top_p, g.f32(1.0)]), top_p, g.f32(2.0)], "top_p_cut")          # >= 1: keep all
    cum = _cumsum(g, p, vocab, "cum")                                                                   # [B, V]
    before = g.op("Pad", [g.op("Slice", [cum, g.i64([0]), g.i64([vocab - 1]), g.i64([1])]), g.i64([0, 1, 0, 0]), g.f32(0.0)],
                  "cum_before")                                                                          # [B, V]: sum of earlier positions
    keep = g.op("And", [in_k, g.op("Less", [before, p_cut])], "keep")                                  # [B, V]: a prefix
    q = g.op("Where", [keep, p, g.f32(0.0)], "kept")
    q = g.op("Div", [q, g.op("ReduceSum", [q, g.i64([1])], keepdims=1)], "renormalised")               # [B, V]
    cum_q = _cumsum(g, q, vocab, "cum_kept")                                                             # [B, V], monotone
    u = g.op("Unsqueeze", [uniform, g.i64([1])], "u")                                                    # [B, 1]
    above = g.op("ReduceSum", [g.op("Cast", [g.op("Less", [u, cum_q])], to=f32), g.i64([1])], "above", keepdims=1)   # [B, 1]
    # where float32 rounding leaves u past the last cumulative sum, the last position with a non-zero kept probability
    # (the host's fallback, the last kept id; never a zero-probability, e.g. banned, id)
    live = g.op("ReduceSum", [g.op("Cast", [g.op("Greater", [q, g.f32(0.0)])], to=f32), g.i64([1])], "live_count", keepdims=1)
    pick = g.op("Min", [g.op("Sub", [g.f32(float(vocab)), above]), g.op("Sub", [live, g.f32(1.0)])], "pick")   # first cum > u
    sampled = g.op("GatherElements", [ids, g.op("Cast", [pick], to=TensorProto.INT64)], "sampled", axis=1)      # [B, 1]
    g.op_named("Where", [is_greedy, greedy, sampled], [output])                                         # [B, 1] int64
    g.outputs.append(helper.make_tensor_value_info(output, TensorProto.INT64, ["batch", 1]))

