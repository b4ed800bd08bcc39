"""Writes a Llama-style decoder as an ONNX graph, straight from weights (no tracing).

Conventions (ORT GenAI naming, KV cache that grows by concatenation):
  inputs : input_ids [B,S] int64, attention_mask [B,T] int64, position_ids [B,S] int64,
           past_key_values.{i}.key / .value [B,kvH,P,hd]
  outputs: logits [B,S,V], present.{i}.key / .value [B,kvH,T,hd]      (T = P + S)
Standard ONNX ops only (opset 17): runs on every execution provider and is the reference graph the
fused builder (GroupQueryAttention, MatMulNBits) is checked against. fp32, or fp16 weights, cache and
activations (norms computed in fp32 as transformers does; logits cast to fp32): the naive rung of the
GPU ladder.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper

from .onnx_utils import GraphBuilder


@dataclass(frozen=True)
class DecoderSpec:
    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    context_length: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    qk_norm: bool = False          # Chameleon: LayerNorm over head_dim on q and k, per head
    qk_norm_eps: float = 1e-5
    # RoPE as the checkpoint computes it: transformers' own inverse frequencies (after llama3 / linear /
    # dynamic scaling) and the factor it multiplies cos/sin by. None: plain RoPE from rope_theta.
    rope_inv_freq: tuple | None = None
    rope_attention_scaling: float = 1.0
    # (cos, sin) [context, hd/2] fp32 tables taken verbatim from an existing graph (convert): wins over the above.
    rope_tables: object = field(default=None, compare=False, repr=False)


@dataclass
class LayerWeights:
    # Linear weights are stored [in, out] (already transposed from torch's [out, in]).
    input_norm: np.ndarray
    q: np.ndarray
    k: np.ndarray
    v: np.ndarray
    o: np.ndarray
    post_norm: np.ndarray
    gate: np.ndarray
    up: np.ndarray
    down: np.ndarray
    q_b: np.ndarray | None = None        # attention_bias / mlp_bias checkpoints: [out] biases
    k_b: np.ndarray | None = None
    v_b: np.ndarray | None = None
    o_b: np.ndarray | None = None
    gate_b: np.ndarray | None = None
    up_b: np.ndarray | None = None
    down_b: np.ndarray | None = None
    q_norm_w: np.ndarray | None = None   # [heads, hd] for qk-norm
    q_norm_b: np.ndarray | None = None
    k_norm_w: np.ndarray | None = None
    k_norm_b: np.ndarray | None = None


@dataclass
class DecoderWeights:
    embed: np.ndarray            # [V, H]
    layers: list[LayerWeights] = field(default_factory=list)
    final_norm: np.ndarray | None = None
    lm_head: np.ndarray | None = None  # [H, V]
    tied_head: bool = False      # lm_head is embed.T (tie_word_embeddings): the reference graph stores the table once


def rope_cache(spec: DecoderSpec) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [context, hd/2] for positions 0..context-1, computed as transformers does (fp32):
    freqs = position * inv_freq, then cos/sin times the attention scaling. The inverse frequencies are
    the checkpoint's own (scaled RoPE survives) or, without them, plain RoPE from rope_theta."""
    half = spec.head_dim // 2
    if spec.rope_tables is not None:
        cos, sin = (np.asarray(t, np.float32) for t in spec.rope_tables)
        if cos.shape != (spec.context_length, half) or sin.shape != cos.shape:
            raise ValueError(f"rope tables {cos.shape} do not match [context {spec.context_length}, head_dim/2 {half}]")
        return cos, sin
    if spec.rope_inv_freq is not None:
        inv_freq = np.asarray(spec.rope_inv_freq, np.float32)
        if inv_freq.shape != (half,):
            raise ValueError(f"rope_inv_freq has {inv_freq.shape[0]} entries, head_dim/2 is {half}")
    else:
        inv_freq = 1.0 / (spec.rope_theta ** (np.arange(0, spec.head_dim, 2, dtype=np.int64).astype(np.float32) / spec.head_dim))
    pos = np.arange(spec.context_length, dtype=np.float32)
    freqs = np.outer(pos, inv_freq.astype(np.float32)).astype(np.float32)  # [ctx, hd/2]
    scale = np.float32(spec.rope_attention_scaling)
    return (np.cos(freqs) * scale).astype(np.float32), (np.sin(freqs) * scale).astype(np.float32)


def _rms_norm(g: GraphBuilder, x: str, weight: np.ndarray, eps: float, hint: str, dtype=np.float32) -> str:
    fp16 = dtype == np.float16
    if fp16:
        x = g.op("Cast", [x], f"{hint}_fp32", to=TensorProto.FLOAT)
    sq = g.op("Mul", [x, x], f"{hint}_sq")
    var = g.op("ReduceMean", [sq], f"{hint}_var", axes=[-1], keepdims=1)          # [B,S,1]
    denom = g.op("Sqrt", [g.op("Add", [var, g.f32(eps)])], f"{hint}_rms")
    normed = g.op("Div", [x, denom], f"{hint}_normed")
    if fp16:
        normed = g.op("Cast", [normed], f"{hint}_fp16", to=TensorProto.FLOAT16)
    return g.op("Mul", [normed, g.const(weight.astype(dtype), f"{hint}.weight")], hint)


def _heads(g: GraphBuilder, x: str, heads: int, hd: int, hint: str) -> str:
    # [B,S,heads*hd] -> [B,heads,S,hd]
    r = g.op("Reshape", [x, g.i64([0, 0, heads, hd])], f"{hint}_bshd")
    return g.op("Transpose", [r], f"{hint}_bhsd", perm=[0, 2, 1, 3])


def _rotate(g: GraphBuilder, x: str, cos: str, sin: str, hd: int, hint: str) -> str:
    # x [B,h,S,hd]; cos/sin [B,1,S,hd]; rotate_half = cat(-x2, x1)
    x1, x2 = g.op("Split", [x, g.i64([hd // 2, hd // 2])], f"{hint}_half", n_out=2, axis=-1)
    rotated = g.op("Concat", [g.op("Neg", [x2]), x1], f"{hint}_rot", axis=-1)
    return g.op("Add", [g.op("Mul", [x, cos]), g.op("Mul", [rotated, sin])], f"{hint}_rope")


def _head_layer_norm(g: GraphBuilder, x: str, w: np.ndarray, b: np.ndarray, eps: float, hint: str, dtype=np.float32) -> str:
    # x [B,h,S,hd]; w,b [h,hd] -> broadcast as [1,h,1,hd]; fp16 graphs normalise in fp32
    if dtype == np.float16:
        y = _head_layer_norm(g, g.op("Cast", [x], f"{hint}_fp32", to=TensorProto.FLOAT), w, b, eps, f"{hint}32")
        return g.op("Cast", [y], hint, to=TensorProto.FLOAT16)
    mean = g.op("ReduceMean", [x], f"{hint}_mean", axes=[-1], keepdims=1)
    centred = g.op("Sub", [x, mean])
    var = g.op("ReduceMean", [g.op("Mul", [centred, centred])], f"{hint}_var", axes=[-1], keepdims=1)
    normed = g.op("Div", [centred, g.op("Sqrt", [g.op("Add", [var, g.f32(eps)])])])
    h, hd = w.shape
    scaled = g.op("Mul", [normed, g.const(w.reshape(1, h, 1, hd).astype(np.float32), f"{hint}.weight")])
    return g.op("Add", [scaled, g.const(b.reshape(1, h, 1, hd).astype(np.float32), f"{hint}.bias")], hint)


def _linear(g: GraphBuilder, c, x: str, w: np.ndarray, b: np.ndarray | None, name: str) -> str:
    """x [.., K] @ w [K, N] (+ b [N]); the weight keeps the initializer name `name`, the bias `name.bias`."""
    y = g.op("MatMul", [x, c(w, name)])
    return y if b is None else g.op("Add", [y, c(b, f"{name}.bias")])


def _repeat_kv(g: GraphBuilder, x: str, kv_heads: int, rep: int, hd: int, hint: str) -> str:
    # [B,kvH,T,hd] -> [B,kvH*rep,T,hd] (each kv head serves `rep` query heads, in order)
    if rep == 1:
        return x
    u = g.op("Unsqueeze", [x, g.i64([2])], f"{hint}_u")                          # [B,kvH,1,T,hd]
    shape = g.op("Shape", [u])
    target = g.op("Mul", [shape, g.i64([1, 1, rep, 1, 1])])
    e = g.op("Expand", [u, target], f"{hint}_e")                                  # [B,kvH,rep,T,hd]
    return g.op("Reshape", [e, g.i64([0, kv_heads * rep, -1, hd])], f"{hint}_rep")


def build_decoder(spec: DecoderSpec, w: DecoderWeights, name: str = "decoder", dtype=np.float32, data_path: str | None = None):
    """dtype np.float32 or np.float16 (weights, cache, activations); data_path: stream weights there."""
    g = GraphBuilder(name, data_path)
    dtype = np.dtype(dtype).type
    t = TensorProto.FLOAT16 if dtype == np.float16 else TensorProto.FLOAT
    c = lambda a, n=None: g.const(np.asarray(a).astype(dtype), n)
    nH, kvH, hd = spec.num_heads, spec.num_kv_heads, spec.head_dim
    input_ids = g.add_input("input_ids", TensorProto.INT64, ["batch", "seq"])
    mask = g.add_input("attention_mask", TensorProto.INT64, ["batch", "total"])
    position_ids = g.add_input("position_ids", TensorProto.INT64, ["batch", "seq"])
    pasts = []
    for i in range(spec.num_layers):
        pk = g.add_input(f"past_key_values.{i}.key", t, ["batch", kvH, "past", hd])
        pv = g.add_input(f"past_key_values.{i}.value", t, ["batch", kvH, "past", hd])
        pasts.append((pk, pv))

    # Additive attention bias [B,1,S,T]: key j visible to query i iff j <= past+i and mask[b,j] == 1.
    total = g.op("Gather", [g.op("Shape", [mask]), g.const(np.array(1, dtype=np.int64))], "total_len", axis=0)
    seq = g.op("Gather", [g.op("Shape", [input_ids]), g.const(np.array(1, dtype=np.int64))], "seq_len", axis=0)
    past = g.op("Sub", [total, seq], "past_len")
    one = g.const(np.array(1, dtype=np.int64))
    key_pos = g.op("Unsqueeze", [g.op("Range", [g.const(np.array(0, dtype=np.int64)), total, one]), g.i64([0])], "key_pos")   # [1,T]
    query_pos = g.op("Unsqueeze", [g.op("Range", [past, total, one]), g.i64([1])], "query_pos")                              # [S,1]
    causal = g.op("LessOrEqual", [key_pos, query_pos], "causal")                                                             # [S,T]
    padded = g.op("Unsqueeze", [g.op("Cast", [mask], to=TensorProto.BOOL), g.i64([1, 2])], "key_valid")                     # [B,1,1,T]
    allowed = g.op("And", [causal, padded], "allowed")                                                                       # [B,1,S,T]
    bias = g.op("Where", [allowed, c(0.0), c(np.finfo(dtype).min)], "attn_bias")

    cos_np, sin_np = rope_cache(spec)
    cos_c = c(np.concatenate([cos_np, cos_np], axis=1), "rope.cos")   # [ctx, hd]
    sin_c = c(np.concatenate([sin_np, sin_np], axis=1), "rope.sin")
    cos = g.op("Unsqueeze", [g.op("Gather", [cos_c, position_ids], axis=0), g.i64([1])], "cos")  # [B,1,S,hd]
    sin = g.op("Unsqueeze", [g.op("Gather", [sin_c, position_ids], axis=0), g.i64([1])], "sin")

    embed = c(w.embed, "embed_tokens.weight")
    x = g.op("Gather", [embed, input_ids], "embeds", axis=0)  # [B,S,H]
    scale = c(1.0 / np.sqrt(hd))
    for i, lw in enumerate(w.layers):
        p = f"layers.{i}"
        h = _rms_norm(g, x, lw.input_norm, spec.rms_norm_eps, f"{p}.input_norm", dtype)
        lin = lambda x_, w_, b_, n_: _linear(g, c, x_, w_, b_, n_)
        q = _heads(g, lin(h, lw.q, lw.q_b, f"{p}.q_proj"), nH, hd, f"{p}.q")       # [B,nH,S,hd]
        k = _heads(g, lin(h, lw.k, lw.k_b, f"{p}.k_proj"), kvH, hd, f"{p}.k")      # [B,kvH,S,hd]
        v = _heads(g, lin(h, lw.v, lw.v_b, f"{p}.v_proj"), kvH, hd, f"{p}.v")
        if spec.qk_norm:
            q = _head_layer_norm(g, q, lw.q_norm_w, lw.q_norm_b, spec.qk_norm_eps, f"{p}.q_norm", dtype)
            k = _head_layer_norm(g, k, lw.k_norm_w, lw.k_norm_b, spec.qk_norm_eps, f"{p}.k_norm", dtype)
        q = _rotate(g, q, cos, sin, hd, f"{p}.q")
        k = _rotate(g, k, cos, sin, hd, f"{p}.k")
        present_k, present_v = f"present.{i}.key", f"present.{i}.value"
        g.op_named("Concat", [pasts[i][0], k], [present_k], axis=2)                               # [B,kvH,T,hd]
        g.op_named("Concat", [pasts[i][1], v], [present_v], axis=2)
        kr = _repeat_kv(g, present_k, kvH, nH // kvH, hd, f"{p}.k")
        vr = _repeat_kv(g, present_v, kvH, nH // kvH, hd, f"{p}.v")
        scores = g.op("Mul", [g.op("MatMul", [q, g.op("Transpose", [kr], perm=[0, 1, 3, 2])]), scale], f"{p}.scores")  # [B,nH,S,T]
        probs = g.op("Softmax", [g.op("Add", [scores, bias])], f"{p}.probs", axis=-1)
        ctx = g.op("Transpose", [g.op("MatMul", [probs, vr])], f"{p}.ctx", perm=[0, 2, 1, 3])    # [B,S,nH,hd]
        ctx = g.op("Reshape", [ctx, g.i64([0, 0, nH * hd])])
        x = g.op("Add", [x, lin(ctx, lw.o, lw.o_b, f"{p}.o_proj")], f"{p}.attn_out")
        h = _rms_norm(g, x, lw.post_norm, spec.rms_norm_eps, f"{p}.post_norm", dtype)
        gate = lin(h, lw.gate, lw.gate_b, f"{p}.gate_proj")
        up = lin(h, lw.up, lw.up_b, f"{p}.up_proj")
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up], f"{p}.swiglu")
        x = g.op("Add", [x, lin(act, lw.down, lw.down_b, f"{p}.down_proj")], f"{p}.out")
        g.add_output(present_k, t, ["batch", kvH, "total", hd])
        g.add_output(present_v, t, ["batch", kvH, "total", hd])

    x = _rms_norm(g, x, w.final_norm, spec.rms_norm_eps, "final_norm", dtype)
    # Tied head: [H, V] as a Transpose of the embedding table (constant-folded by ONNX Runtime at load), so
    # the file holds the vocabulary table once.
    head = g.op("Transpose", [embed], "lm_head.tied", perm=[1, 0]) if w.tied_head else c(w.lm_head, "lm_head.weight")
    if dtype == np.float16:
        g.op_named("Cast", [g.op("MatMul", [x, head], "logits_fp16")], ["logits"], to=TensorProto.FLOAT)
    else:
        g.op_named("MatMul", [x, head], ["logits"])
    g.outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", spec.vocab_size]))
    return g.model("omm_export")
