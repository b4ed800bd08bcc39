"""Seamless M4T v2 speech->text: conformer speech encoder (+ per-layer cross-attention K/V) and an
NLLB-style text decoder; references from torchaudio's Kaldi fbank through greedy decoding."""
from __future__ import annotations

import datetime
import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..onnx_utils import IR_VERSION, save_model
from ..sampling import SplitMix64, sample_next
from ..seq2seq_graph import Linear, Seq2SeqLayer, Seq2SeqSpec, Seq2SeqWeights, build_seq2seq_decoder
from ..text_tokenizer import CORPUS

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>", "__eng__", "__spa__", "__fra__", "__deu__"]
AUDIO_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "audio")
WAVS = ["fox_16k.wav", "robot_16k.wav", "sky_16k.wav", "stereo_44k.wav", "sky_float32.wav"]
LANGS = ["spa", "fra"]
STEPS = 12
SAMPLE_SEED = 2024
SAMPLING = dict(temperature=1.0, top_k=0, top_p=0.95, repetition_penalty=1.3)


@dataclass(frozen=True)
class SeamlessPreset:
    hidden_size: int
    speech_layers: int
    speech_heads: int
    speech_ffn: int
    decoder_layers: int
    decoder_heads: int
    decoder_ffn: int
    context_length: int
    conv_kernel: int = 31
    vocab_size: int | None = None
    initializer_range: float = 0.1


PRESETS = {
    "tiny": SeamlessPreset(64, 2, 4, 128, 2, 4, 128, 256, conv_kernel=7),
    # Seamless M4T v2 large shapes: benchmarks only, never committed.
    "large": SeamlessPreset(1024, 24, 16, 4096, 24, 16, 8192, 4096, vocab_size=256102, initializer_range=0.02),
}


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    with open(CORPUS, encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1024, min_frequency=2, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return tok


def load(args, out_dir):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast, SeamlessM4Tv2Config, SeamlessM4Tv2ForSpeechToText
    if args.checkpoint:
        from .hf_config import check_seamless_config, read_config
        src = args.checkpoint
        path, raw = read_config(src)
        provenance = {"source": "checkpoint", "path": os.path.abspath(src), "config": check_seamless_config(path, raw)}
    else:
        p = PRESETS[args.preset]
        tok = _tokenizer()
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                       clean_up_tokenization_spaces=False)
        cfg = SeamlessM4Tv2Config(
            vocab_size=p.vocab_size or tok.get_vocab_size(), hidden_size=p.hidden_size, initializer_range=p.initializer_range,
            max_position_embeddings=p.context_length, encoder_layers=1, encoder_ffn_dim=p.decoder_ffn, encoder_attention_heads=p.decoder_heads,
            decoder_layers=p.decoder_layers, decoder_ffn_dim=p.decoder_ffn, decoder_attention_heads=p.decoder_heads,
            speech_encoder_layers=p.speech_layers, speech_encoder_attention_heads=p.speech_heads,
            speech_encoder_intermediate_size=p.speech_ffn, conv_depthwise_kernel_size=p.conv_kernel,
            pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=3,
            dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, speech_encoder_dropout=0.0, adaptor_dropout=0.0,
            encoder_layerdrop=0.0, decoder_layerdrop=0.0, speech_encoder_layerdrop=0.0,
            t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=32, t2u_decoder_ffn_dim=32,
            t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2, t2u_vocab_size=32, char_vocab_size=32,
            t2u_variance_predictor_embed_dim=p.hidden_size, t2u_variance_predictor_hidden_dim=32, unit_embed_dim=32,
            upsample_initial_channel=16, unit_hifi_gan_vocab_size=16, spkr_embed_dim=8, lang_embed_dim=8)
        provenance = {"source": "synthetic", "preset": args.preset, "seed": args.seed, "preset_config": asdict(p)}
        if args.preset != "tiny":
            # Benchmark shapes: initialise on the GPU, skip the save/load round trip; export runs on the CPU copy.
            from .llama import synthetic_package
            model, tokenizer = synthetic_package(cfg, args.seed, fast, out_dir, SeamlessM4Tv2ForSpeechToText)
            return model.float().cpu(), tokenizer, provenance
        torch.manual_seed(args.seed)
        model = SeamlessM4Tv2ForSpeechToText(cfg)
        src = os.path.join(out_dir, ".hf")
        model.save_pretrained(src)
        fast.save_pretrained(src)
        provenance = {"source": "synthetic", "preset": args.preset, "seed": args.seed, "preset_config": asdict(p)}
    model = SeamlessM4Tv2ForSpeechToText.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
    tokenizer = AutoTokenizer.from_pretrained(src)
    if args.checkpoint:
        from .llama import checkpoint_tokenizer
        tokenizer = checkpoint_tokenizer(src, tokenizer)
    return model, tokenizer, provenance


def languages(model, vocab: dict) -> tuple[dict, str]:
    """Target-language token ids as the checkpoint defines them: generation_config.json's
    text_decoder_lang_to_code_id where present (each checked against the tokenizer's `__xxx__` token),
    else every `__xxx__` token of the tokenizer. Returns (code -> id, where it came from)."""
    import re
    gen = getattr(model, "generation_config", None)
    table = getattr(gen, "text_decoder_lang_to_code_id", None) if gen is not None else None
    if table:
        wrong = {k: v for k, v in table.items() if f"__{k}__" in vocab and vocab[f"__{k}__"] != v}
        if wrong:
            raise SystemExit(f"omm_export: generation_config text_decoder_lang_to_code_id disagrees with the tokenizer for {sorted(wrong)[:5]}")
        return {k: int(v) for k, v in table.items()}, "generation_config.json text_decoder_lang_to_code_id"
    found = {m.group(1): i for t, i in vocab.items() if (m := re.fullmatch(r"__([a-z]{3}(?:_[A-Za-z]+)?)__", t))}
    if not found:
        raise SystemExit("omm_export: no target-language tokens (__xxx__) in the tokenizer and no text_decoder_lang_to_code_id")
    return dict(sorted(found.items(), key=lambda kv: kv[1])), "tokenizer __xxx__ tokens"


def _cross(layer):
    return getattr(layer, "cross_attention", None) or getattr(layer, "encoder_attn")


def _lin(m) -> Linear:
    return Linear(m.weight.detach().float().numpy().T.copy(), None if m.bias is None else m.bias.detach().float().numpy())


def _ln(m) -> tuple:
    return (m.weight.detach().float().numpy(), m.bias.detach().float().numpy())


def decoder_weights(model) -> tuple[Seq2SeqSpec, Seq2SeqWeights, int]:
    dec = model.text_decoder
    cfg = model.config
    layers = []
    for L in dec.layers:
        sa, ca = L.self_attn, _cross(L)
        ffn = getattr(L, "ffn", L)
        layers.append(Seq2SeqLayer(
            self_norm=_ln(L.self_attn_layer_norm), q=_lin(sa.q_proj), k=_lin(sa.k_proj), v=_lin(sa.v_proj), o=_lin(sa.out_proj),
            cross_norm=_ln(getattr(L, "cross_attention_layer_norm", None) or L.encoder_attn_layer_norm),
            cq=_lin(ca.q_proj), co=_lin(ca.out_proj), ffn_norm=_ln(L.ffn_layer_norm), fc1=_lin(ffn.fc1), fc2=_lin(ffn.fc2)))
    embed_scale = float(getattr(dec.embed_tokens, "embed_scale", 1.0))
    positions = dec.embed_positions.weights.detach().float().numpy()
    spec = Seq2SeqSpec(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, num_layers=len(dec.layers),
                       num_heads=cfg.decoder_attention_heads, context_length=cfg.max_position_embeddings, embed_scale=embed_scale,
                       layer_norm_eps=float(dec.layer_norm.eps))
    w = Seq2SeqWeights(embed=dec.embed_tokens.weight.detach().float().numpy(), positions=positions, layers=layers,
                       final_norm=_ln(dec.layer_norm), lm_head=model.lm_head.weight.detach().float().numpy().T.copy())
    return spec, w, dec.embed_positions.padding_idx


class SpeechEncoderGraph(nn.Module):
    """features [B,T,160] + mask [B,T] -> encoder states [B,Te,H] and every decoder layer's cross K/V [B,H,Te,hd]."""

    def __init__(self, model):
        super().__init__()
        self.encoder = model.speech_encoder
        self.layers = model.text_decoder.layers
        self.heads = model.config.decoder_attention_heads

    def forward(self, input_features, attention_mask):
        h = self.encoder(input_features=input_features, attention_mask=attention_mask).last_hidden_state
        b, t, d = h.shape
        outs = [h]
        for layer in self.layers:
            ca = _cross(layer)
            outs.append(ca.k_proj(h).view(b, t, self.heads, d // self.heads).transpose(1, 2))
            outs.append(ca.v_proj(h).view(b, t, self.heads, d // self.heads).transpose(1, 2))
        return tuple(outs)


def load_audio(path):
    """Reference reader: PCM16 / float32 WAV -> mono (mean of channels) float32 at 16 kHz (torchaudio's resampler)."""
    import torchaudio.functional as AF
    with open(path, "rb") as f:
        data = f.read()
    fmt = int.from_bytes(data[20:22], "little")
    ch = int.from_bytes(data[22:24], "little")
    rate = int.from_bytes(data[24:28], "little")
    bits = int.from_bytes(data[34:36], "little")
    pos = 12
    while pos < len(data):
        cid, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if cid == b"data":
            raw = data[pos + 8:pos + 8 + size]
            break
        pos += 8 + size + (size & 1)
    if fmt == 3:
        x = np.frombuffer(raw, "<f4").astype(np.float32)
    else:
        x = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    x = x.reshape(-1, ch).mean(axis=1)
    w = torch.from_numpy(x.copy())
    if rate != 16000:
        w = AF.resample(w, rate, 16000)
    return w.numpy().astype(np.float32), rate, ch


def fbank(samples: np.ndarray, dtype=torch.float32) -> np.ndarray:
    """torchaudio's Kaldi fbank; float32 is torchaudio's default, float64 shows its rounding in near-silent frames."""
    import torchaudio.compliance.kaldi as kaldi
    w = torch.from_numpy(samples.astype(np.float64) * 32768.0).to(dtype)[None]
    f = kaldi.fbank(w, num_mel_bins=80, frame_length=25.0, frame_shift=10.0, dither=0.0, energy_floor=0.0,
                    preemphasis_coefficient=0.97, remove_dc_offset=True, window_type="povey", snip_edges=True,
                    sample_frequency=16000.0, use_energy=False, low_freq=20.0, high_freq=0.0)
    return f.numpy().astype(np.float32)  # [T, 80]


def normalise_stack(f: np.ndarray) -> np.ndarray:
    mean = f.mean(axis=0, keepdims=True)
    var = f.var(axis=0, ddof=1, keepdims=True)
    x = (f - mean) / np.sqrt(var + 1e-7)
    if x.shape[0] % 2:
        x = np.concatenate([x, np.zeros((1, x.shape[1]), x.dtype)])   # pad to even length with zeros, as Seamless does
    return x.reshape(x.shape[0] // 2, 160).astype(np.float32)


def _export(module, args, path, input_names, output_names, dynamic_axes):
    import onnx
    # In a folder of its own: graphs over 2 GB come out of the exporter as one file per weight.
    tmp_dir = path + ".tmp"
    os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir, "model.onnx")
    torch.onnx.export(module, args, tmp, dynamo=False, opset_version=17, input_names=input_names,
                      output_names=output_names, dynamic_axes=dynamic_axes)
    m = onnx.load(tmp)
    shutil.rmtree(tmp_dir)
    m.ir_version = IR_VERSION
    save_model(m, path)


def export(args) -> None:
    out = args.out
    os.makedirs(out, exist_ok=True)
    model, tokenizer, provenance = load(args, out)
    spec, weights, padding_idx = decoder_weights(model)
    from .llama import large_weights
    data_path = os.path.join(out, "decoder.onnx.data") if large_weights(model.text_decoder) else None
    save_model(build_seq2seq_decoder(spec, weights, data_path=data_path), os.path.join(out, "decoder.onnx"))
    n = spec.num_layers
    enc_graph = SpeechEncoderGraph(model).eval()
    names = ["encoder_hidden_states"] + [f"cross.{i}.{kv}" for i in range(n) for kv in ("key", "value")]
    dyn = {"input_features": {0: "batch", 1: "frames"}, "attention_mask": {0: "batch", 1: "frames"},
           "encoder_hidden_states": {0: "batch", 1: "encoder_frames"}}
    dyn.update({nm: {0: "batch", 2: "encoder_frames"} for nm in names[1:]})
    _export(enc_graph, (torch.randn(1, 120, 160), torch.ones(1, 120, dtype=torch.long)), os.path.join(out, "speech_encoder.onnx"),
            ["input_features", "attention_mask"], names, dyn)
    if not getattr(args, "no_relpos_rewrite", False):
        from ..relpos_pass import rewrite_file
        rewritten = rewrite_file(os.path.join(out, "speech_encoder.onnx"))
        expected = model.config.speech_encoder_layers if getattr(model.config, "position_embeddings_type", None) == "relative_key" else 0
        if rewritten != expected:   # the exporter's pattern changed: say so rather than ship the quadratic graph
            raise SystemExit(f"relpos rewrite: {rewritten} relative-position blocks in the speech encoder, expected {expected}"
                             " (--no-relpos-rewrite exports without it)")
    tokenizer.save_pretrained(out)
    from .llama import TokenizerJson
    if isinstance(tokenizer, TokenizerJson):   # the checkpoint's own tokenizer files, not transformers' rewrite
        for name in ("tokenizer.json", "tokenizer_config.json"):
            src = os.path.join(os.path.dirname(tokenizer.path), name)
            if os.path.isfile(src):
                shutil.copyfile(src, os.path.join(out, name))
    for junk in ("special_tokens_map.json", "chat_template.jinja"):
        if os.path.exists(os.path.join(out, junk)):
            os.remove(os.path.join(out, junk))
    vocab = tokenizer.get_vocab()
    import onnx
    import transformers
    cfg = model.config
    from .hf_config import eos_ids
    gen = getattr(model, "generation_config", None)
    langs, langs_from = languages(model, vocab)
    manifest = {
        "format_version": 1, "family": "seamless", "name": os.path.basename(os.path.normpath(out)), "precision": "fp32",
        "components": {"decoder": "decoder.onnx", "speech_encoder": "speech_encoder.onnx", "tokenizer": "tokenizer.json"},
        "decoder": {"num_layers": n, "num_heads": spec.num_heads, "num_kv_heads": spec.num_heads, "head_dim": spec.head_dim,
                    "hidden_size": spec.hidden_size, "vocab_size": spec.vocab_size, "context_length": spec.context_length,
                    "kv_cache": "concat", "position_offset": padding_idx + 1,
                    "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask", "position_ids": "position_ids",
                               "past_key": "past_key_values.%d.key", "past_value": "past_key_values.%d.value",
                               "cross_key": "cross.%d.key", "cross_value": "cross.%d.value",
                               "encoder_attention_mask": "encoder_attention_mask"},
                    "outputs": {"logits": "logits", "present_key": "present.%d.key", "present_value": "present.%d.value"}},
        "speech_encoder": {"inputs": {"features": "input_features", "mask": "attention_mask"},
                           "outputs": {"states": "encoder_hidden_states", "cross_key": "cross.%d.key", "cross_value": "cross.%d.value"},
                           "feature_dim": 160, "subsampling": cfg.adaptor_stride},
        "audio": {"sample_rate": 16000, "num_mel_bins": 80, "frame_length_ms": 25, "frame_shift_ms": 10, "preemphasis": 0.97,
                  "window": "povey", "dither": 0.0, "low_freq": 20.0, "high_freq": 8000.0, "scale": 32768.0,
                  "normalise": "per bin over the utterance, (x - mean) / sqrt(var_ddof1 + 1e-7)", "stack": 2},
        "tokens": {"bos": None, "eos": eos_ids(cfg, gen), "pad": cfg.pad_token_id, "add_bos": False,
                   "decoder_start": int(getattr(gen, "decoder_start_token_id", None) or cfg.decoder_start_token_id),
                   "languages": langs, "languages_from": langs_from},
        "provenance": dict(provenance, exporter=f"omm_export {__version__}", torch=torch.__version__,
                           transformers=transformers.__version__, onnx=onnx.__version__, date=datetime.date.today().isoformat()),
    }
    with open(os.path.join(out, "multimodal.json"), "w") as f:
        json.dump(manifest, f, indent=2)
    if not args.no_reference:
        write_references(out, model, manifest)
    if os.path.isdir(os.path.join(out, ".hf")):
        shutil.rmtree(os.path.join(out, ".hf"))


@torch.no_grad()
def write_references(out, model, manifest):
    ref = os.path.join(out, "reference")
    os.makedirs(ref, exist_ok=True)
    doc = {"format_version": 1, "audio": [], "transcripts": []}
    for wav in WAVS:
        shutil.copy(os.path.join(AUDIO_DIR, wav), os.path.join(ref, wav))
        name = os.path.splitext(wav)[0]
        samples, rate, ch = load_audio(os.path.join(AUDIO_DIR, wav))
        fb = fbank(samples)
        fb64 = fbank(samples, torch.float64)
        fb64.astype("<f4").tofile(os.path.join(ref, f"{name}.fbank64.bin"))
        feats = normalise_stack(fb)
        samples.astype("<f4").tofile(os.path.join(ref, f"{name}.samples.bin"))
        fb.astype("<f4").tofile(os.path.join(ref, f"{name}.fbank.bin"))
        feats.astype("<f4").tofile(os.path.join(ref, f"{name}.features.bin"))
        x = torch.from_numpy(feats)[None]
        mask = torch.ones(1, x.shape[1], dtype=torch.long)
        outs = SpeechEncoderGraph(model)(x, mask)
        states = outs[0][0].numpy()
        states.astype("<f4").tofile(os.path.join(ref, f"{name}.encoder.bin"))
        entry = {"name": name, "file": wav, "source_rate": rate, "channels": ch, "samples": int(samples.shape[0]),
                 "samples_file": f"{name}.samples.bin", "fbank_file": f"{name}.fbank.bin", "fbank64_file": f"{name}.fbank64.bin", "fbank_shape": list(fb.shape),
                 "features_file": f"{name}.features.bin", "features_shape": list(feats.shape),
                 "encoder_file": f"{name}.encoder.bin", "encoder_shape": list(states.shape)}
        try:
            from transformers import SeamlessM4TFeatureExtractor
            fe = SeamlessM4TFeatureExtractor()(samples, sampling_rate=16000, return_tensors="np")["input_features"][0]
            entry["feature_extractor_max_abs_diff"] = float(np.abs(fe[: feats.shape[0]] - feats).max()) if fe.shape == feats.shape else f"shape {fe.shape}"
        except Exception as e:  # noqa: BLE001
            entry["feature_extractor_max_abs_diff"] = f"n/a: {e}"
        doc["audio"].append(entry)
        if name in ("fox_16k", "robot_16k"):
            enc = outs[0]
            known = manifest["tokens"]["languages"]
            targets = [l for l in LANGS if l in known] or sorted(known)[:2]
            for lang, mode in [(l, "greedy") for l in targets] + [(targets[0], "sampled")]:
                ids = [manifest["tokens"]["decoder_start"], manifest["tokens"]["languages"][lang]]
                rng, uniforms = SplitMix64(SAMPLE_SEED), []
                o = model.text_decoder(input_ids=torch.tensor([ids]), encoder_hidden_states=enc,
                                       encoder_attention_mask=torch.ones(1, enc.shape[1], dtype=torch.long),
                                       use_cache=True)
                logits = model.lm_head(o.last_hidden_state)[0, -1]
                logits_file = f"{name}.{lang}.{mode}.logits.bin"
                logits.numpy().astype("<f4").tofile(os.path.join(ref, logits_file))
                past, toks, margins = o.past_key_values, [], []
                for _ in range(STEPS):
                    srt = torch.sort(logits, descending=True).values
                    margins.append(float(srt[0] - srt[1]))
                    if mode == "greedy":
                        t = int(torch.argmax(logits))
                    else:
                        t, u = sample_next(logits.double().numpy(), ids + toks, rng, SAMPLING["temperature"], SAMPLING["top_k"],
                                           SAMPLING["top_p"], SAMPLING["repetition_penalty"])
                        uniforms.append(u)
                    toks.append(t)
                    o = model.text_decoder(input_ids=torch.tensor([[t]]), encoder_hidden_states=enc,
                                           encoder_attention_mask=torch.ones(1, enc.shape[1], dtype=torch.long),
                                           past_key_values=past, use_cache=True)
                    past, logits = o.past_key_values, model.lm_head(o.last_hidden_state)[0, -1]
                doc["transcripts"].append({"audio": name, "lang": lang, "mode": mode, "ids": ids, "tokens": toks,
                                           "min_margin": min(margins), "margins": margins, "first_logits_file": logits_file,
                                           "sampling": dict(SAMPLING, seed=SAMPLE_SEED) if mode == "sampled" else None,
                                           "uniforms": uniforms})
    with open(os.path.join(ref, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)


def check_with_onnxruntime(out):
    import onnxruntime as ort
    ref = os.path.join(out, "reference")
    with open(os.path.join(ref, "reference.json")) as f:
        doc = json.load(f)
    with open(os.path.join(out, "multimodal.json")) as f:
        man = json.load(f)
    from ..check import finish, judge_prompt
    d = man["decoder"]
    if d.get("kv_cache", "concat") != "concat" or man.get("precision", "fp32") != "fp32":
        raise SystemExit(f"omm_export --check: {out}: only the fp32 reference speech package can be checked here "
                         "(converted speech packages are checked by the C# tests)")
    enc = ort.InferenceSession(os.path.join(out, man["components"]["speech_encoder"]), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(os.path.join(out, man["components"]["decoder"]), providers=["CPUExecutionProvider"])
    tol, why, failures = 1e-4, "fp32", []
    res = {"encoder_rel": {}, "tokens_agree": [], "fe_diff": [a.get("feature_extractor_max_abs_diff") for a in doc["audio"]]}
    cross = {}
    for a in doc["audio"]:
        feats = np.fromfile(os.path.join(ref, a["features_file"]), "<f4").reshape(a["features_shape"])[None]
        outs = enc.run(None, {"input_features": feats, "attention_mask": np.ones(feats.shape[:2], np.int64)})
        want = np.fromfile(os.path.join(ref, a["encoder_file"]), "<f4").reshape(a["encoder_shape"])
        rel = float(np.abs(outs[0][0] - want).max() / np.abs(want).max())
        res["encoder_rel"][a["name"]] = [rel, list(outs[0].shape)]
        if not rel <= tol:
            failures.append(f"audio {a['name']!r}: speech encoder states relative error {rel:.3g} > tolerance {tol:g} (fp32)")
        cross[a["name"]] = outs
    for t in doc["transcripts"]:
        if t["mode"] != "greedy":
            continue
        outs = cross[t["audio"]]
        te = outs[0].shape[1]
        feed = {f"cross.{i}.{kv}": outs[1 + 2 * i + j] for i in range(d["num_layers"]) for j, kv in enumerate(("key", "value"))}
        past = {f"past_key_values.{i}.{kv}": np.zeros((1, d["num_heads"], 0, d["head_dim"]), np.float32)
                for i in range(d["num_layers"]) for kv in ("key", "value")}
        ids, p0, toks, first = list(t["ids"]), 0, [], None
        while len(toks) < len(t["tokens"]):
            total = p0 + len(ids)
            o = dec.run(None, dict(feed, **past, input_ids=np.array([ids], np.int64),
                                   position_ids=(np.arange(p0, total) + d["position_offset"])[None].astype(np.int64),
                                   attention_mask=np.ones((1, total), np.int64), encoder_attention_mask=np.ones((1, te), np.int64)))
            for j, output in enumerate(dec.get_outputs()[1:]):
                past[output.name.replace("present", "past_key_values")] = o[j + 1]
            if first is None:
                first = o[0][0, -1].astype(np.float32)
            toks.append(int(np.argmax(o[0][0, -1])))
            ids, p0 = [toks[-1]], total
        want = np.fromfile(os.path.join(ref, t["first_logits_file"]), "<f4")
        scale = float(np.abs(want).max())
        rel = float(np.abs(first - want).max() / scale)
        res["tokens_agree"].append(judge_prompt(f"{t['audio']} -> {t['lang']}", rel, tol, why, toks, t["tokens"],
                                                t.get("margins", t["min_margin"]), scale, failures))
    return finish(out, res, failures)
