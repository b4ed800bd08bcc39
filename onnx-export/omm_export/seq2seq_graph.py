"""Writes an NLLB-style text decoder with cross-attention as an ONNX graph, straight from weights.

  inputs : input_ids [B,S], position_ids [B,S] (rows of the sinusoidal table: t + padding_idx + 1),
           attention_mask [B,T], encoder_attention_mask [B,Te],
           past_key_values.{i}.key/value [B,H,P,hd], cross.{i}.key/value [B,H,Te,hd] (from the encoder graph)
  outputs: logits [B,S,V], present.{i}.key/value [B,H,T,hd]
Pre-LayerNorm layers: self-attention, cross-attention, ReLU FFN; biases everywhere; embeddings
scaled by sqrt(hidden); final LayerNorm; lm_head.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from onnx import TensorProto, helper

from .decoder_graph import _heads
from .onnx_utils import GraphBuilder


@dataclass(frozen=True)
class Seq2SeqSpec:
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    context_length: int
    embed_scale: float
    layer_norm_eps: float = 1e-5

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass
class Linear:
    w: np.ndarray  # [in, out]
    b: np.ndarray | None


@dataclass
class Seq2SeqLayer:
    self_norm: tuple      # (weight, bias)
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    cross_norm: tuple
    cq: Linear
    co: Linear
    ffn_norm: tuple
    fc1: Linear
    fc2: Linear


@dataclass
class Seq2SeqWeights:
    embed: np.ndarray
    positions: np.ndarray           # [num_positions, H] sinusoidal table
    layers: list[Seq2SeqLayer] = field(default_factory=list)
    final_norm: tuple | None = None
    lm_head: np.ndarray | None = None  # [H, V]


def _linear(g: GraphBuilder, x: str, lin: Linear, name: str) -> str:
    y = g.op("MatMul", [x, g.const(lin.w.astype(np.float32), f"{name}.weight")])
    return g.op("Add", [y, g.const(lin.b.astype(np.float32), f"{name}.bias")], name) if lin.b is not None else y


def _layer_norm(g: GraphBuilder, x: str, wb: tuple, eps: float, name: str) -> str:
    w, b = wb
    return g.op("LayerNormalization", [x, g.const(w.astype(np.float32), f"{name}.weight"), g.const(b.astype(np.float32), f"{name}.bias")],
                name, axis=-1, epsilon=eps)


def _attend(g: GraphBuilder, q: str, k: str, v: str, bias: str, hint: str) -> str:
    scores = g.op("Add", [g.op("MatMul", [q, g.op("Transpose", [k], perm=[0, 1, 3, 2])]), bias], f"{hint}.scores")
    probs = g.op("Softmax", [scores], f"{hint}.probs", axis=-1)
    return g.op("Transpose", [g.op("MatMul", [probs, v])], f"{hint}.ctx", perm=[0, 2, 1, 3])   # [B,S,H,hd]


def _cross_bias(g: GraphBuilder, enc_mask: str, floor: str) -> str:
    """[B,1,1,Te]: 0 where the encoder frame is valid, the float minimum where it is padding."""
    return g.op("Where", [g.op("Unsqueeze", [g.op("Cast", [enc_mask], to=TensorProto.BOOL), g.i64([1, 2])]), g.f32(0.0), floor], "cross_bias")


def _embed(g: GraphBuilder, spec: Seq2SeqSpec, w: Seq2SeqWeights, ids: str, pos: str, const=None) -> str:
    """Token embeddings scaled by embed_scale plus the sinusoidal position rows; `const(array, name)`
    writes the tables and the scale in the graph's activation type (fp32 when not given)."""
    table = const or (lambda a, n: g.const(np.asarray(a).astype(np.float32), n))
    x = g.op("Mul", [g.op("Gather", [table(w.embed, "embed_tokens.weight"), ids], axis=0),
                     const(spec.embed_scale, "embed_scale") if const else g.f32(spec.embed_scale)])
    return g.op("Add", [x, g.op("Gather", [table(w.positions, "embed_positions.weights"), pos], axis=0)], "embeds")


def _cross_and_ffn(g: GraphBuilder, x: str, L: Seq2SeqLayer, cross_kv: tuple, cross_bias: str, scaling: str, eps: float,
                   H: int, hd: int, p: str) -> str:
    """The rest of a layer after self-attention: cross-attention over the encoder's K/V, then the ReLU FFN."""
    h = _layer_norm(g, x, L.cross_norm, eps, f"{p}.cross_attention_layer_norm")
    cq = _heads(g, g.op("Mul", [_linear(g, h, L.cq, f"{p}.cross_attention.q_proj"), scaling]), H, hd, f"{p}.cq")
    ctx = g.op("Reshape", [_attend(g, cq, cross_kv[0], cross_kv[1], cross_bias, f"{p}.cross"), g.i64([0, 0, H * hd])])
    x = g.op("Add", [x, _linear(g, ctx, L.co, f"{p}.cross_attention.out_proj")])
    h = _layer_norm(g, x, L.ffn_norm, eps, f"{p}.ffn_layer_norm")
    return g.op("Add", [x, _linear(g, g.op("Relu", [_linear(g, h, L.fc1, f"{p}.ffn.fc1")]), L.fc2, f"{p}.ffn.fc2")], f"{p}.out")


def build_seq2seq_decoder(spec: Seq2SeqSpec, w: Seq2SeqWeights, name: str = "decoder", data_path: str | None = None):
    g = GraphBuilder(name, data_path)
    H, hd = spec.num_heads, spec.head_dim
    ids = g.add_input("input_ids", TensorProto.INT64, ["batch", "seq"])
    pos = g.add_input("position_ids", TensorProto.INT64, ["batch", "seq"])
    mask = g.add_input("attention_mask", TensorProto.INT64, ["batch", "total"])
    enc_mask = g.add_input("encoder_attention_mask", TensorProto.INT64, ["batch", "encoder_seq"])
    pasts, cross = [], []
    for i in range(spec.num_layers):
        pasts.append((g.add_input(f"past_key_values.{i}.key", TensorProto.FLOAT, ["batch", H, "past", hd]),
                      g.add_input(f"past_key_values.{i}.value", TensorProto.FLOAT, ["batch", H, "past", hd])))
    for i in range(spec.num_layers):
        cross.append((g.add_input(f"cross.{i}.key", TensorProto.FLOAT, ["batch", H, "encoder_seq", hd]),
                      g.add_input(f"cross.{i}.value", TensorProto.FLOAT, ["batch", H, "encoder_seq", hd])))

    # self-attention bias [B,1,S,T] (causal + padding) and cross-attention bias [B,1,1,Te]
    one = g.const(np.array(1, dtype=np.int64))
    total = g.op("Gather", [g.op("Shape", [mask]), one], "total_len", axis=0)
    seq = g.op("Gather", [g.op("Shape", [ids]), one], "seq_len", axis=0)
    past = g.op("Sub", [total, seq], "past_len")
    key_pos = g.op("Unsqueeze", [g.op("Range", [g.const(np.array(0, dtype=np.int64)), total, one]), g.i64([0])])
    query_pos = g.op("Unsqueeze", [g.op("Range", [past, total, one]), g.i64([1])])
    allowed = g.op("And", [g.op("LessOrEqual", [key_pos, query_pos]),
                          g.op("Unsqueeze", [g.op("Cast", [mask], to=TensorProto.BOOL), g.i64([1, 2])])])
    floor = g.f32(np.finfo(np.float32).min)
    self_bias = g.op("Where", [allowed, g.f32(0.0), floor], "self_bias")
    cross_bias = _cross_bias(g, enc_mask, floor)

    x = _embed(g, spec, w, ids, pos)
    scaling = g.f32(hd ** -0.5)
    eps = spec.layer_norm_eps
    for i, L in enumerate(w.layers):
        p = f"layers.{i}"
        h = _layer_norm(g, x, L.self_norm, eps, f"{p}.self_attn_layer_norm")
        q = _heads(g, g.op("Mul", [_linear(g, h, L.q, f"{p}.self_attn.q_proj"), scaling]), H, hd, f"{p}.q")
        k = _heads(g, _linear(g, h, L.k, f"{p}.self_attn.k_proj"), H, hd, f"{p}.k")
        v = _heads(g, _linear(g, h, L.v, f"{p}.self_attn.v_proj"), H, hd, f"{p}.v")
        g.op_named("Concat", [pasts[i][0], k], [f"present.{i}.key"], axis=2)
        g.op_named("Concat", [pasts[i][1], v], [f"present.{i}.value"], axis=2)
        ctx = _attend(g, q, f"present.{i}.key", f"present.{i}.value", self_bias, f"{p}.self")
        ctx = g.op("Reshape", [ctx, g.i64([0, 0, H * hd])])
        x = g.op("Add", [x, _linear(g, ctx, L.o, f"{p}.self_attn.out_proj")])
        x = _cross_and_ffn(g, x, L, cross[i], cross_bias, scaling, eps, H, hd, p)
        g.add_output(f"present.{i}.key", TensorProto.FLOAT, ["batch", H, "total", hd])
        g.add_output(f"present.{i}.value", TensorProto.FLOAT, ["batch", H, "total", hd])
    x = _layer_norm(g, x, w.final_norm, eps, "layer_norm")
    g.op_named("MatMul", [x, g.const(w.lm_head.astype(np.float32), "lm_head.weight")], ["logits"])
    g.outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", spec.vocab_size]))
    model = g.model("omm_export")
    return model


def build_fused_seq2seq_decoder(spec: Seq2SeqSpec, w: Seq2SeqWeights, position_offset: int, name: str = "decoder",
                                data_path: str | None = None, opt=None):
    """The same decoder with its self-attention cache as one max-length buffer per layer (past and
    present bound to the same memory, GroupQueryAttention appending in place, no rotary), in fp32
    (CPU), fp16 or int4 (MatMulNBits, fp16 activations for CUDA) as `opt` (a FusedOptions) says.

      inputs : input_ids [B,S], seqlens_k [B] (tokens so far - 1), total_sequence_length [],
               past_key_values.{i}.key/value [B,H,max,hd], encoder_attention_mask [B,Te], cross.{i}.key/value [B,H,Te,hd]
      outputs: logits [B,S,V] float32, present.{i}.key/value [B,H,max,hd] (the same buffers)
    Cache and cross K/V are in the activation type. Positions come from seqlens_k inside the graph:
    token j of this run sits at seqlens_k + 1 - S + j (+ the table's offset), so no position or mask
    input changes between steps, and the cross K/V may be padded to a fixed Te (masked by
    encoder_attention_mask) so one captured CUDA graph serves every request.
    """
    from .fused_graph import FusedOptions, _Writer
    from .onnx_utils import MS_DOMAIN
    opt = opt or FusedOptions()
    g = GraphBuilder(name, data_path)
    wr = _Writer(g, opt)
    t = opt.act_type
    H, hd = spec.num_heads, spec.head_dim
    ids = g.add_input("input_ids", TensorProto.INT64, ["batch", "seq"])
    seqlens = g.add_input("seqlens_k", TensorProto.INT32, ["batch"])
    total = g.add_input("total_sequence_length", TensorProto.INT32, [])
    enc_mask = g.add_input("encoder_attention_mask", TensorProto.INT64, ["batch", "encoder_seq"])
    pasts = [(g.add_input(f"past_key_values.{i}.key", t, ["batch", H, "max_length", hd]),
              g.add_input(f"past_key_values.{i}.value", t, ["batch", H, "max_length", hd])) for i in range(spec.num_layers)]
    cross = [(g.add_input(f"cross.{i}.key", t, ["batch", H, "encoder_seq", hd]),
              g.add_input(f"cross.{i}.value", t, ["batch", H, "encoder_seq", hd])) for i in range(spec.num_layers)]

    # Token j of this run sits at seqlens_k - (S - 1) + j (+ offset). S comes from a shape (host
    # memory under CUDA), so it only feeds Range's host-side limit; S - 1 is read back from the range on
    # the device. Mixing a host shape value into device arithmetic would need a copy, and ONNX Runtime
    # refuses CUDA-graph capture of any graph with copies between host and device.
    seq = g.op("Gather", [g.op("Shape", [ids]), g.i64(1)], "seq_len", axis=0)
    steps = g.op("Range", [g.i64(0), seq, g.i64(1)], "run_offsets")                                                   # [S] 0..S-1
    last = g.op("Gather", [steps, g.i64(-1)], "last_offset", axis=0)                                                  # S - 1
    first = g.op("Sub", [g.op("Add", [g.op("Cast", [seqlens], to=TensorProto.INT64), g.i64(position_offset)]), last], "first_position")  # [B]
    pos = g.op("Add", [g.op("Unsqueeze", [first, g.i64([1])]), steps], "position_ids")                               # [B,S]
    cross_bias = None if opt.cross_mha else g.op(
        "Where", [g.op("Unsqueeze", [g.op("Cast", [enc_mask], to=TensorProto.BOOL), g.i64([1, 2])]), wr.c(0.0, "mask_zero"),
                  wr.c(np.finfo(opt.act_dtype).min, "mask_floor")], "cross_bias")   # [B,1,1,Te]: 0 or the type's floor

    def bias(lin: Linear, n, scale=1.0):
        return wr.c(lin.b * scale, f"{n}.bias") if lin.b is not None else ""

    def skip_norm(delta, residual, wb, delta_bias, n):
        """LayerNorm(residual + delta + delta_bias) and the new residual, in one SkipLayerNormalization."""
        h, _, _, x = g.op("SkipLayerNormalization", [delta, residual, wr.c(wb[0], f"{n}.weight"), wr.c(wb[1], f"{n}.bias"), delta_bias],
                          n, n_out=4, domain=MS_DOMAIN, epsilon=spec.layer_norm_eps)
        return h, x

    x = _embed(g, spec, w, ids, pos, wr.c)
    scaling = hd ** -0.5
    key_padding = g.op("Cast", [enc_mask], "key_padding_mask", to=TensorProto.INT32) if opt.cross_mha else ""
    # Each layer's residual stream is carried as (x, the last projection's output and bias): the residual
    # add, the bias add and the next LayerNorm are one SkipLayerNormalization: 26 nodes a layer instead
    # of 37 (the step is ~600-900 small kernels at Seamless-large depth).
    pending = None
    for i, L in enumerate(w.layers):
        p = f"layers.{i}"
        if pending is None:
            h = g.op("LayerNormalization", [x, wr.c(L.self_norm[0], f"{p}.self_attn_layer_norm.weight"),
                                            wr.c(L.self_norm[1], f"{p}.self_attn_layer_norm.bias")], f"{p}.self_attn_layer_norm",
                     axis=-1, epsilon=spec.layer_norm_eps)
        else:
            h, x = skip_norm(pending[0], x, L.self_norm, pending[1], f"{p}.self_attn_layer_norm")
        # packed q|k|v projection (one MatMul, one bias add) into GroupQueryAttention
        zeros = np.zeros(spec.hidden_size, np.float32)
        wqkv = np.concatenate([L.q.w, L.k.w, L.v.w], axis=1)
        bqkv = np.concatenate([lin.b if lin.b is not None else zeros for lin in (L.q, L.k, L.v)])
        qkv = g.op("Add", [wr.linear(h, wqkv, f"{p}.self_attn.qkv_proj.weight"), wr.c(bqkv, f"{p}.self_attn.qkv_proj.bias")], f"{p}.qkv")
        attn, _, _ = g.op("GroupQueryAttention", [qkv, "", "", pasts[i][0], pasts[i][1], seqlens, total], f"{p}.self", n_out=3,
                          domain=MS_DOMAIN, num_heads=H, kv_num_heads=H, do_rotary=0, scale=float(scaling))
        g.nodes[-1].output[1] = f"present.{i}.key"
        g.nodes[-1].output[2] = f"present.{i}.value"
        g.add_output(f"present.{i}.key", t, ["batch", H, "max_length", hd])
        g.add_output(f"present.{i}.value", t, ["batch", H, "max_length", hd])
        o = wr.linear(attn, L.o.w, f"{p}.self_attn.out_proj.weight")
        h, x = skip_norm(o, x, L.cross_norm, bias(L.o, f"{p}.self_attn.out_proj"), f"{p}.cross_attention_layer_norm")
        # cross-attention over the encoder's K/V; the query scaling is folded into its projection
        cq = wr.linear(h, L.cq.w * scaling, f"{p}.cross_attention.q_proj.weight")
        if L.cq.b is not None:
            cq = g.op("Add", [cq, bias(L.cq, f"{p}.cross_attention.q_proj", scaling)])
        if opt.cross_mha:   # one node: the precomputed K/V in [B,H,Te,hd], padding masked, the scale already in cq
            ctx = g.op("MultiHeadAttention", [cq, cross[i][0], cross[i][1], "", key_padding], f"{p}.cross", domain=MS_DOMAIN,
                       num_heads=H, scale=1.0)
        else:
            ctx = g.op("Reshape", [_attend(g, _heads(g, cq, H, hd, f"{p}.cq"), cross[i][0], cross[i][1], cross_bias, f"{p}.cross"),
                                   g.i64([0, 0, H * hd])])
        co = wr.linear(ctx, L.co.w, f"{p}.cross_attention.out_proj.weight")
        h, x = skip_norm(co, x, L.ffn_norm, bias(L.co, f"{p}.cross_attention.out_proj"), f"{p}.ffn_layer_norm")
        f1 = wr.linear(h, L.fc1.w, f"{p}.ffn.fc1.weight")
        if L.fc1.b is not None:
            f1 = g.op("Add", [f1, bias(L.fc1, f"{p}.ffn.fc1")])
        pending = (wr.linear(g.op("Relu", [f1]), L.fc2.w, f"{p}.ffn.fc2.weight"), bias(L.fc2, f"{p}.ffn.fc2"))
    x, _ = skip_norm(pending[0], x, w.final_norm, pending[1], "layer_norm")
    logits = wr.linear(x, w.lm_head, "lm_head.weight")
    if opt.act_dtype == np.float16:
        logits = g.op("Cast", [logits], "logits_fp32", to=TensorProto.FLOAT)
    g.op_named("Identity", [logits], ["logits"])
    g.outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", "seq", spec.vocab_size]))
    g.uses_ms_domain = True
    return g.model("omm_export")
