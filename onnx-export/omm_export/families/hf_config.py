"""What a checkpoint's config.json says about the decoder's math, read field by field.

Every key of config.json is either understood (it feeds the graph), bookkeeping (it cannot change the
numbers: names, versions, dtype of the stored weights, dropout at inference, generation defaults), or
refused by name: a checkpoint that asks for something the graph writers do not implement stops the
export instead of producing a graph that runs and silently disagrees with PyTorch.

RoPE is read in both layouts of transformers 5: `rope_parameters` (rope_theta inside it) and the older
`rope_theta` + `rope_scaling`. Types: default, linear, llama3 (expressed exactly: the graph carries
transformers' own scaled inverse frequencies as cos/sin tables) and dynamic (NTK). Dynamic NTK changes
its frequencies once a sequence grows past the length it was configured for; up to that length its
frequencies are plain RoPE's. A static graph can therefore express it only up to that length, so the
package's context_length is capped there (`context_cap`), beyond it the cos/sin tables end.
"""
from __future__ import annotations

import json
import os


class UnsupportedConfig(SystemExit):
    """A config field the exporter does not implement; exits non-zero with the message."""

    def __init__(self, path: str, message: str):
        super().__init__(f"omm_export: {path}: {message}")


# Keys that never change a forward pass: bookkeeping, stored dtype, dropout (inference), generation
# defaults, special-token ids (they are read separately), labels.
BOOKKEEPING = {
    "architectures", "model_type", "transformers_version", "torch_dtype", "dtype", "use_cache",
    "initializer_range", "attention_dropout", "bos_token_id", "eos_token_id", "pad_token_id",
    "sep_token_id", "decoder_start_token_id", "output_attentions", "output_hidden_states", "return_dict",
    "id2label", "label2id", "problem_type", "tokenizer_class", "is_encoder_decoder", "is_decoder",
    "add_cross_attention", "tie_encoder_decoder", "chunk_size_feed_forward", "pruned_heads", "torchscript",
    "task_specific_params", "finetuning_task", "prefix", "cross_attention_hidden_size", "max_length",
    "min_length", "do_sample", "early_stopping", "num_beams", "num_beam_groups", "diversity_penalty",
    "temperature", "top_k", "top_p", "typical_p", "repetition_penalty", "length_penalty",
    "no_repeat_ngram_size", "encoder_no_repeat_ngram_size", "bad_words_ids", "num_return_sequences",
    "output_scores", "return_dict_in_generate", "forced_bos_token_id", "forced_eos_token_id",
    "remove_invalid_values", "exponential_decay_length_penalty", "suppress_tokens", "begin_suppress_tokens",
    "tf_legacy_loss", "use_bfloat16",
}

# Decoder fields the Llama graph writers implement.
LLAMA_UNDERSTOOD = {
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "head_dim", "max_position_embeddings", "rms_norm_eps", "rope_theta",
    "rope_scaling", "rope_parameters", "tie_word_embeddings", "attention_bias", "mlp_bias",
}

# Fields whose only supported value is the one that leaves the Llama math unchanged: name -> (test, what is supported).
LLAMA_CONDITIONAL = {
    "hidden_act": (lambda v: v == "silu", "silu (SwiGLU)"),
    "pretraining_tp": (lambda v: v is None or int(v) <= 1, "1 (values > 1 slice the projections)"),
    "sliding_window": (lambda v: v is None, "null (full causal attention)"),
    "use_sliding_window": (lambda v: not v, "false"),
    "max_window_layers": (lambda v: v is None, "null"),
    "partial_rotary_factor": (lambda v: v is None or float(v) == 1.0, "1.0 (RoPE over the whole head)"),
    "qk_layernorm": (lambda v: not v, "false (qk-norm is Chameleon's)"),
    "use_qk_norm": (lambda v: not v, "false"),
    "qk_norm": (lambda v: not v, "false"),
    "logits_scaling": (lambda v: v is None or float(v) == 1.0, "1.0"),
    "embedding_multiplier": (lambda v: v is None or float(v) == 1.0, "1.0"),
    "attention_multiplier": (lambda v: v is None, "null"),
    "residual_multiplier": (lambda v: v is None or float(v) == 1.0, "1.0"),
    "quantization_config": (lambda v: v is None, "absent (export from unquantized weights)"),
}

# RoPE types and the keys each may carry besides rope_type/type/rope_theta.
ROPE_TYPES = {
    "default": set(),
    "linear": {"factor"},
    "dynamic": {"factor", "original_max_position_embeddings"},
    "llama3": {"factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings"},
}
ROPE_NEUTRAL = {"partial_rotary_factor": 1.0}   # keys transformers may write into rope_parameters with a neutral value


def read_config(checkpoint: str) -> tuple[str, dict]:
    path = os.path.join(checkpoint, "config.json")
    if not os.path.isfile(path):
        raise SystemExit(f"omm_export: {checkpoint}: no config.json (a transformers checkpoint folder is expected)")
    with open(path, encoding="utf-8") as f:
        return path, json.load(f)


def rope_settings(path: str, raw: dict) -> dict:
    """The RoPE settings in one layout: {rope_type, rope_theta, factor, ...}; refuses unknown types and keys."""
    params = raw.get("rope_parameters")
    if isinstance(params, dict) and "full_attention" in params and isinstance(params["full_attention"], dict):
        raise UnsupportedConfig(path, "rope_parameters per layer type: only one RoPE for every layer is supported")
    if params:
        rp = dict(params)
        if "rope_theta" not in rp and "rope_theta" in raw:
            rp["rope_theta"] = raw["rope_theta"]
    else:
        rp = dict(raw.get("rope_scaling") or {})
        rp["rope_theta"] = raw.get("rope_theta", 10000.0)
    kind = rp.pop("rope_type", None) or rp.pop("type", None) or "default"
    rp.pop("type", None)
    if kind not in ROPE_TYPES:
        raise UnsupportedConfig(path, f"rope_type '{kind}' is not supported (supported: {', '.join(ROPE_TYPES)})")
    theta = rp.pop("rope_theta", 10000.0)
    for key, neutral in ROPE_NEUTRAL.items():
        if key in rp and rp[key] is not None and float(rp[key]) != neutral:
            raise UnsupportedConfig(path, f"rope {key} = {rp[key]} is not supported (only {neutral})")
        rp.pop(key, None)
    unknown = sorted(set(rp) - ROPE_TYPES[kind])
    if unknown:
        raise UnsupportedConfig(path, f"rope field(s) {unknown} of rope_type '{kind}' are not understood")
    if kind != "default" and not rp.get("factor"):
        raise UnsupportedConfig(path, f"rope_type '{kind}' without a factor")
    return dict(rp, rope_type=kind, rope_theta=float(theta))


def check_llama_config(path: str, raw: dict, extra_understood: frozenset = frozenset(), extra_conditional: dict | None = None) -> dict:
    """Refuses, by name, every field of a Llama-style config.json that the graph writers do not implement.
    Returns the facts the export records: rope settings, the context cap, biases, tying, head_dim."""
    conditional = dict(LLAMA_CONDITIONAL, **(extra_conditional or {}))
    for key, value in raw.items():
        if key.startswith("_") or key in BOOKKEEPING or key in LLAMA_UNDERSTOOD or key in extra_understood:
            continue
        if key in conditional:
            ok, supported = conditional[key]
            if not ok(value):
                raise UnsupportedConfig(path, f"{key} = {json.dumps(value)} is not supported (supported: {supported})")
            continue
        raise UnsupportedConfig(path, f"config field '{key}' is not understood by the exporter; it may change the "
                                      "model's math, so the export stops rather than guess")
    rope = rope_settings(path, raw)
    max_pos = int(raw.get("max_position_embeddings", 2048))
    cap = max_pos
    if rope["rope_type"] == "dynamic":
        cap = min(max_pos, int(rope.get("original_max_position_embeddings") or max_pos))
    heads = int(raw["num_attention_heads"])
    head_dim = int(raw.get("head_dim") or int(raw["hidden_size"]) // heads)
    if head_dim % 2:
        raise UnsupportedConfig(path, f"head_dim {head_dim} is odd: RoPE needs an even head size")
    return {"rope": rope, "context_cap": cap, "head_dim": head_dim,
            "attention_bias": bool(raw.get("attention_bias", False)), "mlp_bias": bool(raw.get("mlp_bias", False)),
            "tie_word_embeddings": bool(raw.get("tie_word_embeddings", False))}


def rotary_of(model, path: str, head_dim: int):
    """(inv_freq [hd/2] fp32 numpy, attention_scaling) exactly as the loaded transformers model computes
    RoPE: read from its rotary embedding module, so llama3 / linear scaling is transformers' own."""
    import numpy as np
    for name, module in model.named_modules():
        # original_inv_freq: the frequencies at load, before any dynamic-NTK update a forward pass may make
        inv = getattr(module, "original_inv_freq", None)
        inv = getattr(module, "inv_freq", None) if inv is None else inv
        if name.endswith("rotary_emb") and inv is not None:
            freq = inv.detach().float().cpu().numpy().astype(np.float32)
            if freq.shape != (head_dim // 2,):
                raise UnsupportedConfig(path, f"the rotary embedding has {freq.shape[0]} frequencies, head_dim/2 is "
                                              f"{head_dim // 2} (partial rotary embeddings are not supported)")
            return freq, float(getattr(module, "attention_scaling", 1.0) or 1.0)
    raise UnsupportedConfig(path, "no rotary embedding module (…rotary_emb with inv_freq) in the loaded model")


def eos_ids(cfg, generation_config=None) -> list[int]:
    """Every stop id: config.json's eos_token_id (an int or a list) then generation_config.json's, in order."""
    out = []
    for src in (getattr(cfg, "eos_token_id", None), getattr(generation_config, "eos_token_id", None)):
        for i in (src if isinstance(src, (list, tuple)) else [src]):
            if i is not None and int(i) not in out:
                out.append(int(i))
    return out


VQ_UNDERSTOOD = {"embed_dim", "num_embeddings", "double_latent", "latent_channels", "resolution", "in_channels",
                 "base_channels", "channel_multiplier", "num_res_blocks", "attn_resolutions", "dropout"}


def check_chameleon_config(path: str, raw: dict) -> dict:
    """Chameleon's config.json: the Llama fields plus qk-norm (required), the VQ-GAN settings and the
    vocabulary map. The image encoder is traced from transformers' module (its fields are honoured by
    construction); the image decoder and the text decoder are written by us, so their fields are checked."""
    facts = check_llama_config(path, raw, extra_understood=frozenset({"vq_config", "vocabulary_map", "image_token_id",
                                                                      "multimodal_generation_mode"}),
                               extra_conditional={
                                   "qk_layernorm": (lambda v: v is None or bool(v), "true (Chameleon's qk-norm)"),
                                   "model_parallel_size": (lambda v: v is None or int(v) == 1,
                                                           "1 (the 34B's model-parallel qk-norm layout is not implemented)"),
                                   "swin_norm": (lambda v: not v, "false (swin_norm moves the norms: the 34B layout is not implemented)"),
                               })
    vq = raw.get("vq_config") or {}
    for key, value in vq.items():
        if key.startswith("_") or key in BOOKKEEPING or key in VQ_UNDERSTOOD:
            continue
        if key == "attn_type" and value == "vanilla":
            continue
        if key == "out_channels" and value in (None, vq.get("in_channels", 3)):
            continue
        raise UnsupportedConfig(path, f"vq_config.{key} = {json.dumps(value)} is not supported by the image decoder graph")
    return facts


# Seamless M4T v2 fields that reach the graphs we write ourselves (the text decoder and the fbank front end);
# the speech encoder is traced from transformers' module, so its own fields are honoured by construction.
SEAMLESS_CONDITIONAL = {
    "activation_function": (lambda v: v in (None, "relu"), "relu (the text decoder's FFN)"),
    "scale_embedding": (lambda v: v is None or bool(v), "true (embeddings scaled by sqrt(hidden))"),
    "feature_projection_input_dim": (lambda v: v in (None, 160), "160 (80 mel bins, frame pairs stacked)"),
}


def check_seamless_config(path: str, raw: dict) -> dict:
    """The fields of a Seamless M4T v2 config.json that change the math of what we write: refused by
    name when unsupported. Other keys (text-to-unit, vocoder, speech encoder) either belong to
    components we do not export or reach the traced speech encoder as transformers reads them."""
    for key, (ok, supported) in SEAMLESS_CONDITIONAL.items():
        if key in raw and not ok(raw[key]):
            raise UnsupportedConfig(path, f"{key} = {json.dumps(raw[key])} is not supported (supported: {supported})")
    if raw.get("model_type", "seamless_m4t_v2") != "seamless_m4t_v2":
        raise UnsupportedConfig(path, f"model_type '{raw.get('model_type')}' is not seamless_m4t_v2")
    return {k: raw[k] for k in SEAMLESS_CONDITIONAL if k in raw}
