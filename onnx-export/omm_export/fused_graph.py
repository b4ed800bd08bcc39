"""Writes the fast decoder graph: ONNX Runtime contrib ops, a KV cache that is one max-length buffer
per layer (past and present bound to the same memory), fp32 / fp16 / int4 weights.

  inputs : input_ids [B,S] int64, seqlens_k [B] int32 (tokens so far - 1), total_sequence_length []
           int32, past_key_values.{i}.key/value [B,kvH,max,hd]
  outputs: logits [B,S,V] float32, present.{i}.key/value [B,kvH,max,hd] (the same buffers)
Per layer: SkipSimplifiedLayerNormalization (residual add fused), one packed QKV projection (or q,k,v
with Chameleon's qk-norm), GroupQueryAttention with rotary fused, o projection, fused gate|up
projection and SiLU, down projection. int4 uses MatMulNBits (symmetric, zero point 8).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from onnx import TensorProto, helper

from .decoder_graph import DecoderSpec, DecoderWeights, rope_cache
from .onnx_utils import MS_DOMAIN, GraphBuilder


# I/O names of the fused graphs (decoder-only and seq2seq), as the manifests give them.
FUSED_IO = {
    "inputs": {"input_ids": "input_ids", "seqlens_k": "seqlens_k", "total_sequence_length": "total_sequence_length",
               "past_key": "past_key_values.%d.key", "past_value": "past_key_values.%d.value"},
    "outputs": {"logits": "logits", "present_key": "present.%d.key", "present_value": "present.%d.value"},
}


@dataclass(frozen=True)
class FusedOptions:
    precision: str = "fp32"        # fp32 | fp16 | int4
    block_size: int = 32           # int4 quantization block along K (power of 2, >= 16)
    accuracy_level: int = 4        # MatMulNBits: 0 unset, 1 fp32, 2 fp16, 3 bf16, 4 int8 compute
    int4_activation: str = "fp32"  # activations of the int4 graph: fp32 (CPU) or fp16 (CUDA)
    last_logits: bool = False      # logits only at each row's last valid position: [B, 1, V] (prefill skips S-1 rows of lm_head)
    cross_mha: bool = False        # seq2seq: cross-attention as one MultiHeadAttention node (else MatMul/Softmax/MatMul)
    next_token: bool = False       # decoder-only: extra output next_token [B,1] int64 = ArgMax of the last valid position's logits
    device_sampling: bool = False  # decoder-only: next_token [B,1] from the sampling head (sampling_head.py) instead of the plain ArgMax
    int4_zero_points: bool = False  # int4: asymmetric blocks (min/max range, a 4-bit zero point per block) instead of symmetric

    @property
    def act_dtype(self):
        return np.float16 if self.precision == "fp16" or (self.precision == "int4" and self.int4_activation == "fp16") else np.float32

    @property
    def act_type(self):
        return TensorProto.FLOAT16 if self.act_dtype == np.float16 else TensorProto.FLOAT


def _blocked(w_in_out: np.ndarray, block: int) -> np.ndarray:
    """[K, N] weights -> fp32 [N, k_blocks, block], zero-padded along K to whole blocks."""
    k, n = w_in_out.shape
    w = np.zeros((n, -(-k // block) * block), np.float32)
    w[:, :k] = w_in_out.T
    return w.reshape(n, -1, block)


def quantize_int4(w_in_out: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """[K, N] weights -> MatMulNBits B uint8 [N, k_blocks, block/2] and scales [N, k_blocks].
    Symmetric: q = clip(round(w / s), -8, 7) + 8 with s = absmax / 7 per block; dequant (q - 8) * s."""
    if w_in_out.size >= 1 << 22:
        fast = _quantize_int4_torch(w_in_out, block)
        if fast is not None:
            return fast
    w = _blocked(w_in_out, block)
    scale = np.abs(w).max(axis=2) / 7.0
    scale[scale == 0] = 1.0
    q = np.clip(np.rint(w / scale[..., None]), -8, 7).astype(np.int32) + 8          # [N, blocks, block] in 0..15
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)                  # low nibble first
    return packed, scale.astype(np.float32)


def _quantize_int4_torch(w_in_out: np.ndarray, block: int, device: str = "cuda", zero_points: bool = False):
    """The same arithmetic as quantize_int4 (or quantize_int4_zp with zero_points: fp32 division, round half to even)
    on the GPU, for the multi-billion-weight graphs; None where torch or a GPU is missing. Dividing a CUDA tensor by a
    Python number multiplies by its reciprocal, so a scale may differ from numpy's in its last bit (measured on an H100,
    2026-11-27: within 2e-9 absolute, scales ~1e-3) and a code at an exact rounding tie by one."""
    try:
        import torch
    except ImportError:
        return None
    if device == "cuda" and not torch.cuda.is_available():
        return None
    k, n = w_in_out.shape
    blocks = -(-k // block)
    with torch.no_grad():
        w = torch.zeros((n, blocks * block), dtype=torch.float32, device=device)
        w[:, :k] = torch.from_numpy(np.ascontiguousarray(w_in_out)).to(device, torch.float32).T
        w = w.view(n, blocks, block)
        if zero_points:
            lo, hi = torch.clamp(w.amin(dim=2), max=0), torch.clamp(w.amax(dim=2), min=0)
            scale = (hi - lo) / 15.0
            scale[scale == 0] = 1.0
            zp = torch.clamp(torch.round(-lo / scale), 0, 15).to(torch.int32)
            q = torch.clamp(torch.round(w / scale[..., None]) + zp[..., None], 0, 15).to(torch.int32)
            packed = (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8)
            return packed.cpu().numpy(), scale.cpu().numpy(), _pack_zero_points(zp.cpu().numpy())
        scale = w.abs().amax(dim=2) / 7.0
        scale[scale == 0] = 1.0
        q = torch.clamp(torch.round(w / scale[..., None]), -8, 7).to(torch.int32) + 8
        packed = (q[..., 0::2] | (q[..., 1::2] << 4)).to(torch.uint8)
        return packed.cpu().numpy(), scale.cpu().numpy()


def quantize_int4_zp(w_in_out: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[K, N] weights -> MatMulNBits B uint8 [N, k_blocks, block/2], scales [N, k_blocks] and zero points uint8
    [N, ceil(k_blocks/2)] (4-bit, low nibble = even block). Asymmetric: each block's range [min(w, 0), max(w, 0)] in 15
    steps, s = (hi - lo) / 15, zp = clip(round(-lo / s), 0, 15), q = clip(round(w / s) + zp, 0, 15); dequant (q - zp) * s.
    A skewed block keeps all 16 levels where the symmetric scheme leaves half its range unused."""
    if w_in_out.size >= 1 << 22:
        fast = _quantize_int4_torch(w_in_out, block, zero_points=True)
        if fast is not None:
            return fast
    w = _blocked(w_in_out, block)
    lo, hi = np.minimum(w.min(axis=2), 0), np.maximum(w.max(axis=2), 0)
    scale = ((hi - lo) / np.float32(15)).astype(np.float32)
    scale[scale == 0] = 1.0
    zp = np.clip(np.rint(-lo / scale), 0, 15).astype(np.int32)
    q = np.clip(np.rint(w / scale[..., None]) + zp[..., None], 0, 15).astype(np.int32)
    packed = (q[..., 0::2] | (q[..., 1::2] << 4)).astype(np.uint8)
    return packed, scale.astype(np.float32), _pack_zero_points(zp)


def _pack_zero_points(zp: np.ndarray) -> np.ndarray:
    """[N, k_blocks] ints in 0..15 -> uint8 [N, ceil(k_blocks/2)], the even block in the low nibble (MatMulNBits)."""
    if zp.shape[1] % 2:
        zp = np.concatenate([zp, np.zeros((zp.shape[0], 1), zp.dtype)], axis=1)
    return (zp[:, 0::2] | (zp[:, 1::2] << 4)).astype(np.uint8)


def quantize_weights(w_in_out: np.ndarray, block: int, zero_points: bool = False):
    """(packed, scales, zero points or None): quantize_int4_zp with zero_points, else quantize_int4."""
    if zero_points:
        return quantize_int4_zp(w_in_out, block)
    packed, scale = quantize_int4(w_in_out, block)
    return packed, scale, None


def dequantize_int4(packed: np.ndarray, scale: np.ndarray, k: int, zp: np.ndarray | None = None) -> np.ndarray:
    lo, hi = packed & 0x0F, packed >> 4
    q = np.stack([lo, hi], axis=-1).reshape(packed.shape[0], packed.shape[1], -1).astype(np.float32)
    if zp is None:
        q -= 8
    else:
        z = np.stack([zp & 0x0F, zp >> 4], axis=-1).reshape(zp.shape[0], -1)[:, :packed.shape[1]].astype(np.float32)
        q -= z[..., None]
    return (q * scale[..., None]).reshape(packed.shape[0], -1)[:, :k].T                # [K, N]


def quantization_entry(opt: FusedOptions) -> dict:
    """The manifest's "quantization" object of an int4 graph."""
    return {"method": "MatMulNBits int4 " + ("asymmetric (4-bit zero points)" if opt.int4_zero_points else "symmetric"),
            "block_size": opt.block_size, "accuracy_level": opt.accuracy_level}


class _Writer:
    def __init__(self, g: GraphBuilder, opt: FusedOptions):
        self.g, self.opt = g, opt

    def c(self, array, name):
        return self.g.const(np.asarray(array).astype(self.opt.act_dtype), name)

    def linear(self, x: str, w: np.ndarray, name: str, bias: np.ndarray | None = None) -> str:
        """x [.., K] times w [K, N] (+ bias [N], an Add in the activation type)."""
        y = self._matmul(x, w, name)
        return y if bias is None else self.g.op("Add", [y, self.c(bias, f"{name}.bias")], f"{name}_biased")

    def _matmul(self, x: str, w: np.ndarray, name: str) -> str:
        g, opt = self.g, self.opt
        if opt.precision != "int4":
            return g.op("MatMul", [x, self.c(w, name)], name)
        k, n = w.shape
        packed, scale, zp = quantize_weights(w, opt.block_size, opt.int4_zero_points)
        inputs = [x, g.const(packed, f"{name}.qweight"), self.c(scale, f"{name}.scales")]
        if zp is not None:
            inputs.append(g.const(zp, f"{name}.zero_points"))
        return g.op("MatMulNBits", inputs, name, domain=MS_DOMAIN, K=k, N=n, bits=4, block_size=opt.block_size,
                    accuracy_level=opt.accuracy_level)


def build_fused_decoder(spec: DecoderSpec, w: DecoderWeights, opt: FusedOptions, name: str = "decoder", data_path: str | None = None):
    if spec.head_dim % 16:
        raise SystemExit(f"fused graph: GroupQueryAttention's rotary needs head_dim to be a multiple of 16 (this model's is "
                         f"{spec.head_dim}); use --graph reference")
    g = GraphBuilder(name, data_path)
    wr = _Writer(g, opt)
    nH, kvH, hd, eps = spec.num_heads, spec.num_kv_heads, spec.head_dim, spec.rms_norm_eps
    t = opt.act_type
    ids = g.add_input("input_ids", TensorProto.INT64, ["batch", "seq"])
    seqlens = g.add_input("seqlens_k", TensorProto.INT32, ["batch"])
    total = g.add_input("total_sequence_length", TensorProto.INT32, [])
    pasts = [(g.add_input(f"past_key_values.{i}.key", t, ["batch", kvH, "max_length", hd]),
              g.add_input(f"past_key_values.{i}.value", t, ["batch", kvH, "max_length", hd])) for i in range(spec.num_layers)]
    cos_np, sin_np = rope_cache(spec)
    cos, sin = wr.c(cos_np, "cos_cache"), wr.c(sin_np, "sin_cache")   # [ctx, hd/2]
    x = g.op("Gather", [wr.c(w.embed, "embed_tokens.weight"), ids], "embeds", axis=0)                    # [B,S,H]
    residual_in = None
    for i, L in enumerate(w.layers):
        p = f"layers.{i}"
        if residual_in is None:
            h = g.op("SimplifiedLayerNormalization", [x, wr.c(L.input_norm, f"{p}.input_norm")], f"{p}.input_norm", axis=-1, epsilon=eps)
        else:
            h, _, _, x = g.op("SkipSimplifiedLayerNormalization", [residual_in, x, wr.c(L.input_norm, f"{p}.input_norm")],
                              f"{p}.input_norm", n_out=4, domain=MS_DOMAIN, epsilon=eps)
        # one packed projection [B,S,(nH+2kvH)*hd] (one weight stream: at decode's 1-2 rows three N = hidden GEMVs cost
        # about twice one N = 3 hidden GEMV, docs/kernels.md); qk-norm models split it for the per-head norms
        qkv = wr.linear(h, np.concatenate([L.q, L.k, L.v], axis=1), f"{p}.qkv_proj",
                        _packed_bias([(L.q, L.q_b), (L.k, L.k_b), (L.v, L.v_b)]))
        if spec.qk_norm:
            q, k, v = g.op("Split", [qkv, g.i64([nH * hd, kvH * hd, kvH * hd])], f"{p}.qkv", n_out=3, axis=-1)
            q = _head_norm(g, wr, q, nH, hd, L.q_norm_w, L.q_norm_b, spec.qk_norm_eps, f"{p}.q_norm")
            k = _head_norm(g, wr, k, kvH, hd, L.k_norm_w, L.k_norm_b, spec.qk_norm_eps, f"{p}.k_norm")
            qkv_inputs = [q, k, v]
        else:
            qkv_inputs = [qkv, "", ""]
        attn, _, _ = g.op("GroupQueryAttention", qkv_inputs + [pasts[i][0], pasts[i][1], seqlens, total, cos, sin],
                          f"{p}.attn", n_out=3, domain=MS_DOMAIN, num_heads=nH, kv_num_heads=kvH, do_rotary=1,
                          rotary_interleaved=0, scale=float(hd ** -0.5))
        g.nodes[-1].output[1] = f"present.{i}.key"
        g.nodes[-1].output[2] = f"present.{i}.value"
        g.add_output(f"present.{i}.key", t, ["batch", kvH, "max_length", hd])
        g.add_output(f"present.{i}.value", t, ["batch", kvH, "max_length", hd])
        o = wr.linear(attn, L.o, f"{p}.o_proj", L.o_b)
        h, _, _, x = g.op("SkipSimplifiedLayerNormalization", [o, x, wr.c(L.post_norm, f"{p}.post_norm")],
                          f"{p}.post_norm", n_out=4, domain=MS_DOMAIN, epsilon=eps)
        gate_up = wr.linear(h, np.concatenate([L.gate, L.up], axis=1), f"{p}.gate_up_proj",
                            _packed_bias([(L.gate, L.gate_b), (L.up, L.up_b)]))                                  # [B,S,2F]
        gate, up = g.op("Split", [gate_up, g.i64([L.gate.shape[1], L.up.shape[1]])], f"{p}.gate_up", n_out=2, axis=-1)
        act = g.op("Mul", [g.op("Mul", [gate, g.op("Sigmoid", [gate])]), up], f"{p}.swiglu")
        residual_in = wr.linear(act, L.down, f"{p}.down_proj", L.down_b)
    h, _, _, _ = g.op("SkipSimplifiedLayerNormalization", [residual_in, x, wr.c(w.final_norm, "final_norm")], "final_norm",
                      n_out=4, domain=MS_DOMAIN, epsilon=eps)
    if opt.last_logits:
        h = _last_rows(g, h, seqlens, spec.hidden_size)
    logits = wr.linear(h, w.lm_head, "lm_head")
    if opt.act_dtype == np.float16:
        logits = g.op("Cast", [logits], "logits_fp32", to=TensorProto.FLOAT)
    g.op_named("Identity", [logits], ["logits"])
    g.outputs.insert(0, helper.make_tensor_value_info("logits", TensorProto.FLOAT,
                                                      ["batch", 1 if opt.last_logits else "seq", spec.vocab_size]))
    if opt.device_sampling:   # the whole choice on the device: greedy, sampling, penalty, mask, guidance mix
        from .sampling_head import append_sampling_head
        append_sampling_head(g, logits if opt.last_logits else _last_rows(g, logits, seqlens, spec.vocab_size), spec.vocab_size)
    elif opt.next_token:   # greedy choice on the device: a step hands back 8 bytes instead of V floats
        last = logits if opt.last_logits else _last_rows(g, logits, seqlens, spec.vocab_size)                    # [B,1,V]
        g.op_named("ArgMax", [last], ["next_token"], axis=-1, keepdims=0)                                      # [B,1] int64
        g.outputs.insert(1, helper.make_tensor_value_info("next_token", TensorProto.INT64, ["batch", 1]))
    g.uses_ms_domain = True
    return g.model("omm_export")


def _packed_bias(parts) -> np.ndarray | None:
    """The bias of a packed projection: each part's bias (zeros where a part has none), or None when no part has one."""
    if all(b is None for _, b in parts):
        return None
    return np.concatenate([np.zeros(w.shape[1], np.float32) if b is None else np.asarray(b, np.float32) for w, b in parts])


def _last_rows(g, h, seqlens, hidden):
    """h [B,S,H] -> [B,1,H] at each row's last valid position: min(seqlens_k[b], S-1) (rows are
    right-padded; a decode step has S = 1, so position 0). Shapes (host memory under CUDA) feed only
    host-side inputs (Range's limit, Expand's shape); the index arithmetic stays on the device, so the
    graph needs no host/device copies and can be captured as a CUDA graph."""
    shape = g.op("Shape", [h])
    s = g.op("Gather", [shape, g.i64([1])], "positions", axis=0)                                                      # [1]
    last_offset = g.op("Gather", [g.op("Range", [g.i64(0), g.op("Squeeze", [s]), g.i64(1)]), g.i64(-1)], "last_offset", axis=0)  # S - 1
    last = g.op("Min", [g.op("Cast", [seqlens], to=TensorProto.INT64), last_offset], "last_position")                 # [B]
    index_shape = g.op("Concat", [g.op("Gather", [shape, g.i64([0])], axis=0), g.i64([1, hidden])], "index_shape", axis=0)
    index = g.op("Expand", [g.op("Unsqueeze", [last, g.i64([1, 2])]), index_shape], "last_index")                    # [B,1,H]
    return g.op("GatherElements", [h, index], "last_hidden_3d", axis=1)                                                # [B,1,H]


def _head_norm(g, wr, x, heads, hd, w, b, eps, name):
    """Chameleon qk-norm on [B,S,heads*hd]: LayerNorm over hd with per-head affine [heads, hd]."""
    r = g.op("Reshape", [x, g.i64([0, 0, heads, hd])])
    n = g.op("LayerNormalization", [r, wr.c(np.ones(hd), f"{name}.ones"), wr.c(np.zeros(hd), f"{name}.zeros")], f"{name}.ln", axis=-1, epsilon=eps)
    n = g.op("Add", [g.op("Mul", [n, wr.c(w, f"{name}.weight")]), wr.c(b, f"{name}.bias")])
    return g.op("Reshape", [n, g.i64([0, 0, heads * hd])], name)
