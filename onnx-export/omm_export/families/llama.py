"""Llama-style decoder family: presets, loading (synthetic or a local checkpoint), export, references."""
from __future__ import annotations

import datetime
import json
import os
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .. import __version__
from ..decoder_graph import DecoderSpec, DecoderWeights, LayerWeights, build_decoder
from ..fused_graph import FUSED_IO
from ..onnx_utils import save_model
from ..text_tokenizer import SPECIAL_TOKENS, train_byte_level_bpe
from .hf_config import check_llama_config, eos_ids, read_config, rotary_of


@dataclass(frozen=True)
class LlamaPreset:
    hidden_size: int          # model width
    intermediate_size: int    # SwiGLU inner width
    num_layers: int
    num_heads: int
    num_kv_heads: int         # < num_heads: grouped-query attention
    context_length: int
    vocab_size: int | None    # None: the trained tokenizer's size
    initializer_range: float = 0.02
    rope_theta: float = 10000.0


PRESETS = {
    # Committed test model: 4 layers, GQA 4:2, byte-level BPE vocabulary (~1k), 256 context.
    "tiny": LlamaPreset(64, 192, 4, 4, 2, 256, None, initializer_range=0.1),
    # Head dimension 64 with grouped-query attention 4:2 (ONNX Runtime's XQA and flash decode kernels both take it), tiny
    # otherwise: exported on the GPU machine by DecodeAttentionCudaTests, never committed.
    "hd64": LlamaPreset(256, 512, 2, 4, 2, 512, None, initializer_range=0.1),
    # Mid-size for GPU measurements (1B class): never committed.
    "1b": LlamaPreset(2048, 5632, 22, 32, 4, 2048, 32000),
    # CodeLlama-7B shapes: never committed.
    "7b": LlamaPreset(4096, 11008, 32, 32, 32, 4096, 32016),
}

REFERENCE_PROMPTS = [
    "The quick brown fox",
    "Once upon a time there was a small robot who",
    "def fibonacci(n):\n",
]
TOKENIZER_PROBES = [
    "Hello, world!",
    "The robot counted 1024 ships; the captain said \"thank you\".",
    "  leading spaces and\ttabs\nnew lines",
    "naïve café — 日本語 🙂 emoji",
    "",
]
GREEDY_STEPS = 32
SAMPLING = dict(seed=1234, temperature=0.8, top_k=40, top_p=0.9, repetition_penalty=1.1, steps=24)


def _hf_config(preset: LlamaPreset, vocab_size: int, bos: int, eos: int, pad: int):
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=vocab_size, hidden_size=preset.hidden_size,
                       intermediate_size=preset.intermediate_size, num_hidden_layers=preset.num_layers,
                       num_attention_heads=preset.num_heads, num_key_value_heads=preset.num_kv_heads,
                       max_position_embeddings=preset.context_length, rms_norm_eps=1e-5,
                       initializer_range=preset.initializer_range, tie_word_embeddings=False,
                       bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
                       rope_theta=preset.rope_theta)


def load_model(args, out_dir: str):
    """Returns (hf_model, hf_tokenizer, provenance). Synthetic models go through save_pretrained and
    from_pretrained, the same path a real checkpoint folder takes."""
    from transformers import AutoTokenizer, LlamaForCausalLM, PreTrainedTokenizerFast
    if args.checkpoint:
        src = args.checkpoint
        path, raw = read_config(src)
        if raw.get("model_type", "llama") != "llama":
            raise SystemExit(f"omm_export: {path}: model_type '{raw.get('model_type')}' is not a Llama checkpoint")
        facts = check_llama_config(path, raw)
        provenance = {"source": "checkpoint", "path": os.path.abspath(src), "config": facts}
    else:
        preset = PRESETS[args.preset]
        tok = train_byte_level_bpe(vocab_size=1024)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>",
                                       pad_token="<|pad|>", clean_up_tokenization_spaces=False)
        ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
        vocab = preset.vocab_size or tok.get_vocab_size()
        cfg = _hf_config(preset, vocab, ids["<|bos|>"], ids["<|eos|>"], ids["<|pad|>"])
        provenance = {"source": "synthetic", "preset": args.preset, "seed": args.seed, "preset_config": asdict(preset)}
        if args.preset != "tiny":
            # Benchmark shapes: initialise on the GPU (seconds instead of minutes for 7B) and skip the
            # save/load round trip; bench/torch_decode.py builds the same weights the same way.
            model, tokenizer = synthetic_package(cfg, args.seed, fast, out_dir)
            provenance["initialised_on"] = str(model.device)
            return model, tokenizer, provenance
        torch.manual_seed(args.seed)
        model = LlamaForCausalLM(cfg)
        src = os.path.join(out_dir, ".hf")
        model.save_pretrained(src)
        fast.save_pretrained(src)
    model = LlamaForCausalLM.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = checkpoint_tokenizer(src, _hf_tokenizer(src, model.config))
    return model, tokenizer, provenance


def _hf_tokenizer(src: str, cfg):
    """AutoTokenizer; where its class cannot load the folder but tokenizer.json is there, the generic fast
    tokenizer over that file with the config's BOS/EOS (said on stderr)."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast
    try:
        return AutoTokenizer.from_pretrained(src)
    except Exception as e:  # noqa: BLE001 - any loader failure falls back to the file itself
        path = os.path.join(src, "tokenizer.json")
        if not os.path.isfile(path):
            raise
        import sys
        print(f"omm_export: AutoTokenizer failed on {src} ({e}); using PreTrainedTokenizerFast over tokenizer.json", file=sys.stderr)
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(path)
        first = lambda x: x[0] if isinstance(x, (list, tuple)) else x
        name = lambda i: tok.id_to_token(i) if i is not None else None
        return PreTrainedTokenizerFast(tokenizer_file=path, bos_token=name(cfg.bos_token_id), eos_token=name(first(cfg.eos_token_id)))


def synthetic_package(cfg, seed: int, fast_tokenizer, out_dir: str, model_class=None):
    """The benchmark presets' path: a transformers model with seeded random weights, initialised on the
    GPU where there is one (seconds instead of minutes at 7B), and its tokenizer written to `out_dir`
    and read back; no save/load round trip of the weights. Returns (model, tokenizer)."""
    from transformers import AutoTokenizer, LlamaForCausalLM
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(seed)
    with torch.device(device):
        model = (model_class or LlamaForCausalLM)(cfg)
    fast_tokenizer.save_pretrained(out_dir)
    return model.eval(), AutoTokenizer.from_pretrained(out_dir)


def large_weights(model) -> bool:
    """Graphs whose weights are worth streaming to disk as they are written (see GraphBuilder)."""
    from ..onnx_utils import EXTERNAL_DATA_THRESHOLD
    return sum(p.numel() for p in model.parameters()) * 2 > EXTERNAL_DATA_THRESHOLD


def _rope_theta(cfg) -> float:
    rp = getattr(cfg, "rope_parameters", None) or {}
    return float(rp.get("rope_theta", getattr(cfg, "rope_theta", 10000.0)))


def _cap(config_cap, requested):
    """The package's context length: the smaller of the config's cap and --context-length."""
    caps = [c for c in (config_cap, requested) if c]
    if requested is not None and requested <= 0:
        raise SystemExit("--context-length must be positive")
    return min(caps) if caps else None


def checkpoint_tokenizer(src: str, hf_tokenizer):
    """The checkpoint's tokenizer; where it ships tokenizer.json, prompts are encoded by the `tokenizers`
    library from that very file (what the package ships and every runtime reads), not by whatever
    pipeline a transformers tokenizer class may rebuild around it."""
    path = os.path.join(src, "tokenizer.json")
    return TokenizerJson(hf_tokenizer, path) if os.path.isfile(path) else hf_tokenizer


class TokenizerJson:
    """A transformers tokenizer whose encode/decode go through tokenizer.json (Hugging Face `tokenizers`)."""

    def __init__(self, hf_tokenizer, path: str):
        from tokenizers import Tokenizer
        self._hf, self._tok, self.path = hf_tokenizer, Tokenizer.from_file(path), path

    def __getattr__(self, name):
        return getattr(self._hf, name)

    def __call__(self, text: str, add_special_tokens: bool = True):
        return {"input_ids": self._tok.encode(text, add_special_tokens=add_special_tokens).ids}

    def decode(self, ids, skip_special_tokens: bool = False):
        return self._tok.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def hf_ids(self, text: str) -> list[int]:
        return self._hf(text, add_special_tokens=False)["input_ids"]


def spec_from_config(cfg, qk_norm: bool = False, model=None, context_cap: int | None = None) -> DecoderSpec:
    """The decoder's spec; with `model`, RoPE is the loaded model's own (scaled inverse frequencies and
    attention scaling), so llama3 / linear / dynamic scaling reach the graph exactly."""
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    inv_freq, scaling = (None, 1.0)
    if model is not None:
        inv_freq, scaling = rotary_of(model, "config.json", head_dim)
        inv_freq = tuple(float(x) for x in inv_freq)
    context = cfg.max_position_embeddings if context_cap is None else min(context_cap, cfg.max_position_embeddings)
    return DecoderSpec(qk_norm=qk_norm, vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size,
                       intermediate_size=cfg.intermediate_size, num_layers=cfg.num_hidden_layers,
                       num_heads=cfg.num_attention_heads, num_kv_heads=cfg.num_key_value_heads or cfg.num_attention_heads,
                       head_dim=head_dim, context_length=context,
                       rms_norm_eps=cfg.rms_norm_eps, rope_theta=_rope_theta(cfg),
                       rope_inv_freq=inv_freq, rope_attention_scaling=scaling)


def weights_from_model(model, qk_norm: bool = False, dtype=np.float32) -> DecoderWeights:
    """The decoder's weights as numpy arrays of `dtype` (converted and transposed where the model lives,
    the GPU for the benchmark presets)."""
    tdt = torch.float16 if dtype == np.float16 else torch.float32
    params = model.state_dict()
    sd = {k: v.detach().to(tdt).cpu().numpy() for k, v in params.items() if not k.endswith("_proj.weight")}
    # torch Linear [out,in] -> MatMul [in,out]
    t = lambda k: params[k].detach().to(tdt).T.contiguous().cpu().numpy()
    layers = []
    for i in range(model.config.num_hidden_layers):
        p = f"model.layers.{i}"
        lw = LayerWeights(
            input_norm=sd[f"{p}.input_layernorm.weight"], post_norm=sd[f"{p}.post_attention_layernorm.weight"],
            q=t(f"{p}.self_attn.q_proj.weight"), k=t(f"{p}.self_attn.k_proj.weight"),
            v=t(f"{p}.self_attn.v_proj.weight"), o=t(f"{p}.self_attn.o_proj.weight"),
            gate=t(f"{p}.mlp.gate_proj.weight"), up=t(f"{p}.mlp.up_proj.weight"), down=t(f"{p}.mlp.down_proj.weight"))
        for part, module in (("q", "self_attn"), ("k", "self_attn"), ("v", "self_attn"), ("o", "self_attn"),
                             ("gate", "mlp"), ("up", "mlp"), ("down", "mlp")):   # attention_bias / mlp_bias
            setattr(lw, f"{part}_b", sd.get(f"{p}.{module}.{part}_proj.bias"))
        if qk_norm:  # Chameleon: LayerNorm over head_dim with per-head affine [heads, hd]
            lw.q_norm_w, lw.q_norm_b = sd[f"{p}.self_attn.q_norm.weight"], sd[f"{p}.self_attn.q_norm.bias"]
            lw.k_norm_w, lw.k_norm_b = sd[f"{p}.self_attn.k_norm.weight"], sd[f"{p}.self_attn.k_norm.bias"]
        layers.append(lw)
    lm = sd.get("lm_head.weight", sd["model.embed_tokens.weight"])
    head = getattr(model, "lm_head", None)
    tied = head is None or head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    del params
    return DecoderWeights(embed=sd["model.embed_tokens.weight"], layers=layers,
                          final_norm=sd["model.norm.weight"], lm_head=np.ascontiguousarray(lm.T), tied_head=tied)


def _first(x):
    return x[0] if isinstance(x, (list, tuple)) else x




def write_package(out_dir: str, family: str, model, tokenizer, spec: DecoderSpec, provenance: dict,
                  precision: str = "fp32", extra: dict | None = None, components: dict | None = None,
                  fused: dict | None = None) -> None:
    cfg = model.config
    bos, pad = cfg.bos_token_id, cfg.pad_token_id
    eos_list = eos_ids(cfg, getattr(model, "generation_config", None))   # every stop id (Llama-3: several)
    genai = {
        "model": {
            "bos_token_id": bos, "eos_token_id": eos_list if len(eos_list) > 1 else eos_list[0],
            "pad_token_id": pad if pad is not None else eos_list[0],
            "context_length": spec.context_length, "vocab_size": spec.vocab_size, "type": "llama",
            "decoder": {
                "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
                "filename": "decoder.onnx", "head_size": spec.head_dim, "hidden_size": spec.hidden_size,
                "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                           "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
                "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                            "present_value_names": "present.%d.value"},
                "num_attention_heads": spec.num_heads, "num_hidden_layers": spec.num_layers,
                "num_key_value_heads": spec.num_kv_heads,
            },
        },
        "search": {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
                   "max_length": spec.context_length, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
                   "num_return_sequences": 1, "past_present_share_buffer": False, "repetition_penalty": 1.0,
                   "temperature": 1.0, "top_k": 1, "top_p": 1.0},
    }
    import onnx
    import transformers
    manifest = {
        "format_version": 1,
        "family": family,
        "name": os.path.basename(os.path.normpath(out_dir)),
        "precision": precision,
        "components": dict({"decoder": "decoder.onnx", "tokenizer": "tokenizer.json"}, **(components or {})),
        "decoder": {
            "num_layers": spec.num_layers, "num_heads": spec.num_heads, "num_kv_heads": spec.num_kv_heads,
            "head_dim": spec.head_dim, "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size,
            "context_length": spec.context_length, "kv_cache": "concat",
            "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                       "past_key": "past_key_values.%d.key", "past_value": "past_key_values.%d.value"},
            "outputs": {"logits": "logits", "present_key": "present.%d.key", "present_value": "present.%d.value"},
        },
        "tokens": {"bos": bos, "eos": eos_list, "pad": pad, "add_bos": True},
        "chat_template": {"user": "<|user|>{0}<|end|><|assistant|>"},
        "provenance": dict(provenance, exporter=f"omm_export {__version__}", torch=torch.__version__,
                           transformers=transformers.__version__, onnx=onnx.__version__,
                           date=datetime.date.today().isoformat()),
    }
    if provenance.get("source") == "checkpoint":
        # Our preset's template names tokens a real vocabulary does not have; a checkpoint's chat format is
        # its tokenizer_config.json's chat_template, which the package carries.
        del manifest["chat_template"]
    if extra:
        manifest.update(extra)
    if precision == "fp16" and not fused:
        manifest["decoder"]["kv_dtype"] = "float16"
    if fused:
        # GroupQueryAttention graph: one max-length KV buffer per layer, past and present bound together.
        manifest["decoder"].update(kv_cache="shared", kv_dtype="float16" if fused["act_fp16"] else "float32",
                                   inputs=FUSED_IO["inputs"], outputs=FUSED_IO["outputs"])
        if fused.get("device_sampling"):   # the graph ends in the sampling head (sampling_head.py)
            from ..sampling_head import manifest_entry
            manifest["decoder"]["outputs"] = dict(FUSED_IO["outputs"], next_token="next_token")
            manifest["decoder"]["sampling_head"] = manifest_entry(spec.vocab_size)
        manifest["quantization"] = fused.get("quantization")
        if fused.get("last_logits"):
            manifest["decoder"]["logits"] = "last"
        if os.path.exists(os.path.join(out_dir, "genai_config.json")):
            os.remove(os.path.join(out_dir, "genai_config.json"))
    else:
        with open(os.path.join(out_dir, "genai_config.json"), "w") as f:
            json.dump(genai, f, indent=2)
    with open(os.path.join(out_dir, "multimodal.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    tokenizer.save_pretrained(out_dir)
    if isinstance(tokenizer, TokenizerJson):   # the checkpoint's own files, byte for byte, not transformers' rewrite
        import shutil
        for name in ("tokenizer.json", "tokenizer_config.json"):
            src = os.path.join(os.path.dirname(tokenizer.path), name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(out_dir, name))
    for junk in ("special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(out_dir, junk)):
            os.remove(os.path.join(out_dir, junk))


def build_graph(args, spec: DecoderSpec, model, out: str, qk_norm: bool = False):
    """The decoder graph the arguments ask for: (onnx model, fused-manifest info or None)."""
    data_path = os.path.join(out, "decoder.onnx.data") if large_weights(model) else None
    if args.graph == "fused":
        from ..fused_graph import FusedOptions, build_fused_decoder, quantization_entry
        opt = FusedOptions(precision=args.precision, block_size=args.block_size, accuracy_level=args.accuracy_level,
                           int4_activation=args.int4_activation, last_logits=getattr(args, "last_logits", False),
                           device_sampling=getattr(args, "device_sampling", False),
                           int4_zero_points=getattr(args, "int4_zero_points", False))
        # fp16 weights feed both the fp16 graph and int4 quantization of an fp16-activation graph
        wdt = np.float16 if data_path and opt.act_dtype == np.float16 else np.float32
        onnx_model = build_fused_decoder(spec, weights_from_model(model, qk_norm, wdt), opt, data_path=data_path)
        return onnx_model, {"act_fp16": opt.act_dtype == np.float16, "last_logits": opt.last_logits, "device_sampling": opt.device_sampling,
                            "quantization": quantization_entry(opt) if args.precision == "int4" else None}
    if args.precision == "int4":
        raise SystemExit("--precision int4 needs --graph fused")
    dtype = np.float16 if args.precision == "fp16" else np.float32
    return build_decoder(spec, weights_from_model(model, qk_norm, dtype), dtype=dtype, data_path=data_path), None


@torch.no_grad()
def dequantize_model_(model, block: int, zero_points: bool = False) -> None:
    """Replaces every Linear weight the fused int4 graph quantizes by its int4 round trip."""
    from ..fused_graph import dequantize_int4, quantize_weights
    linears = [m for name, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    embed = model.get_input_embeddings().weight
    for lin in linears:
        if lin.weight.data_ptr() == embed.data_ptr():
            # tied LM head: the graph quantizes the head but gathers the embeddings unquantized, so untie
            lin.weight = torch.nn.Parameter(lin.weight.detach().clone(), requires_grad=False)
        w = lin.weight.detach().float().numpy().T        # [in, out]
        packed, scale, zp = quantize_weights(w, block, zero_points)
        lin.weight.copy_(torch.from_numpy(dequantize_int4(packed, scale, w.shape[0], zp).T.copy()))


def export(args) -> None:
    from ..reference import write_text_references
    out = args.out
    os.makedirs(out, exist_ok=True)
    model, tokenizer, provenance = load_model(args, out)
    cap = _cap(provenance.get("config", {}).get("context_cap"), getattr(args, "context_length", None))
    spec = spec_from_config(model.config, model=model if args.checkpoint else None, context_cap=cap)
    onnx_model, fused = build_graph(args, spec, model, out)
    save_model(onnx_model, os.path.join(out, "decoder.onnx"))
    write_package(out, "llama", model, tokenizer, spec, provenance, precision=args.precision, fused=fused)
    if not args.no_reference and next(model.parameters()).device.type != "cpu":
        model = model.float().cpu()   # the references run on the CPU in fp32
    if not args.no_reference:
        fp32_greedy = None
        if args.precision == "int4":
            # The references describe the int4 model: PyTorch with every quantized weight replaced by its
            # dequantized value (the exact values MatMulNBits computes with). Agreement with the fp32
            # model is a property of the quantization and is recorded beside them.
            from ..reference import greedy_tokens
            fp32_greedy = [greedy_tokens(model, tokenizer, t, GREEDY_STEPS) for t in REFERENCE_PROMPTS]
            dequantize_model_(model, args.block_size, getattr(args, "int4_zero_points", False))
        doc = write_text_references(out, model, tokenizer, REFERENCE_PROMPTS, TOKENIZER_PROBES, GREEDY_STEPS, SAMPLING)
        if fp32_greedy is not None:
            import json as _json
            doc["fp32_model_greedy"] = fp32_greedy
            doc["quantized_reference"] = {"method": "int4 " + ("asymmetric (zero points)" if getattr(args, "int4_zero_points", False) else "symmetric")
                                                    + ", dequantized into the PyTorch weights", "block_size": args.block_size}
            with open(os.path.join(out, "reference", "reference.json"), "w", encoding="utf-8") as f:
                _json.dump(doc, f, indent=1, ensure_ascii=False)
    if os.path.isdir(os.path.join(out, ".hf")):
        import shutil
        shutil.rmtree(os.path.join(out, ".hf"))
