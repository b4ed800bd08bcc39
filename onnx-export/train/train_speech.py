"""Spoken phrases (Seamless M4T v2 speech encoder + text decoder): shapes-world captions and short
commands spoken by espeak-ng in several voices, speeds and pitches, transcribed to English (__eng__)
or translated to Spanish (__spa__). One voice/speed combination is held out for evaluation.
Features are the exporter's own reference path (torchaudio resampling, Kaldi fbank, per-utterance
normalisation, stacking by 2), so training sees exactly what the exported package is fed.

usage: ESPEAK=/tmp/espeak/usr/bin/espeak-ng python train_speech.py WORK_DIR"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from multiprocessing import Pool

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_world as W  # noqa: E402
from common import (EXPORT_ROOT, SMOKE, Budget, autocast, device, export, log, lr_at, seed_all, set_lr,  # noqa: E402
                    write_json)

sys.path.insert(0, EXPORT_ROOT)
from omm_export.families.seamless import SPECIALS  # noqa: E402

SEED = 777
VOICES = ["en-us", "en-gb-scotland+m3", "en+f3", "en-029", "en-gb-x-rp+f2", "en-gb-x-gbclan+m2"]
SPEEDS = [130, 155, 180]
PITCHES = [35, 55, 75]
HELD_OUT = ("en+f3", 155)                 # every pitch of this voice at this speed is never trained on
DIMS = dict(hidden_size=64, speech_encoder_layers=3, speech_encoder_attention_heads=4, speech_encoder_intermediate_size=128,
            decoder_layers=2, decoder_attention_heads=4, decoder_ffn_dim=256, conv_depthwise_kernel_size=7)
CONTEXT = 128
MAX_TGT = 24
TRAIN_SECONDS = float(os.environ.get("SPEECH_SECONDS", "300"))


def phrases():
    """(english, spanish) pairs: every one-object caption, colour+shape phrases, commands."""
    out = []
    for shape in W.SHAPES:
        for colour in W.COLOURS:
            for size in W.SIZES:
                for bg in W.BACKGROUNDS:
                    s = W.Scene(bg, (W.Obj(shape, colour, size, 32, 32),))
                    out.append((W.caption(s), W.caption_es(s)))
            s = W.Scene("white", (W.Obj(shape, colour, "small", 32, 32),))
            noun_es = W.caption_es(s).split(" sobre ")[0].rsplit(" ", 1)[0]       # drop the size adjective
            out.append((f"a {colour} {shape}", noun_es))
    return out + W.commands()


def _synth(job):
    """One utterance: espeak-ng -> WAV -> the exporter's reference features [T, 160]."""
    i, text, voice, speed, pitch, tmp = job
    from omm_export.families.seamless import fbank, load_audio, normalise_stack
    torch.set_num_threads(1)
    path = os.path.join(tmp, f"{i}.wav")
    subprocess.run([os.environ.get("ESPEAK", "espeak-ng"), "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", path, text],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    samples, _, _ = load_audio(path)
    os.remove(path)
    return normalise_stack(fbank(samples))


def synthesize(items):
    with tempfile.TemporaryDirectory() as tmp:
        jobs = [(i, *it, tmp) for i, it in enumerate(items)]
        with Pool(min(16, os.cpu_count() or 1)) as pool:
            return pool.map(_synth, jobs, chunksize=16)


def build_tokenizer(corpus):
    from omm_export.text_tokenizer import train_byte_level_bpe
    return train_byte_level_bpe(600, texts=corpus, special_tokens=SPECIALS, min_frequency=1)


def hf_config(vocab_size: int):
    from transformers import SeamlessM4Tv2Config
    h = DIMS["hidden_size"]
    return SeamlessM4Tv2Config(
        vocab_size=vocab_size, hidden_size=h, initializer_range=0.02, max_position_embeddings=CONTEXT,
        encoder_layers=1, encoder_ffn_dim=DIMS["decoder_ffn_dim"], encoder_attention_heads=DIMS["decoder_attention_heads"],
        decoder_layers=DIMS["decoder_layers"], decoder_ffn_dim=DIMS["decoder_ffn_dim"], decoder_attention_heads=DIMS["decoder_attention_heads"],
        speech_encoder_layers=DIMS["speech_encoder_layers"], speech_encoder_attention_heads=DIMS["speech_encoder_attention_heads"],
        speech_encoder_intermediate_size=DIMS["speech_encoder_intermediate_size"], conv_depthwise_kernel_size=DIMS["conv_depthwise_kernel_size"],
        pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=3,
        dropout=0.05, attention_dropout=0.0, activation_dropout=0.0, speech_encoder_dropout=0.05, adaptor_dropout=0.05,
        encoder_layerdrop=0.0, decoder_layerdrop=0.0, speech_encoder_layerdrop=0.0,
        t2u_encoder_layers=1, t2u_decoder_layers=1, t2u_encoder_ffn_dim=32, t2u_decoder_ffn_dim=32,
        t2u_encoder_attention_heads=2, t2u_decoder_attention_heads=2, t2u_vocab_size=32, char_vocab_size=32,
        t2u_variance_predictor_embed_dim=h, t2u_variance_predictor_hidden_dim=32, unit_embed_dim=32,
        upsample_initial_channel=16, unit_hifi_gan_vocab_size=16, spkr_embed_dim=8, lang_embed_dim=8)


class FeatureBank:
    """Every utterance's features padded once into one GPU tensor [N, T, 160] plus lengths, so a training
    step only gathers rows (the per-step numpy padding and host copy dominated the step time)."""

    def __init__(self, feats, dev):
        self.lens = torch.tensor([f.shape[0] for f in feats], device=dev)
        t = int(self.lens.max())
        x = np.zeros((len(feats), t, 160), np.float32)
        for k, f in enumerate(feats):
            x[k, : f.shape[0]] = f
        self.x = torch.from_numpy(x).to(dev)
        self.frames = torch.arange(t, device=dev)

    def batch(self, idx: torch.Tensor, bucket: int = 16):
        """(features [B, T', 160], mask [B, T']) with T' the batch's longest utterance rounded up to `bucket`."""
        lens = self.lens[idx]
        t = min(self.x.shape[1], -(-int(lens.max()) // bucket) * bucket)
        return self.x[idx, :t], (self.frames[:t][None] < lens[:, None]).long()


def pad_features(feats, idx, dev):
    n = max(feats[i].shape[0] for i in idx)
    x = np.zeros((len(idx), n, 160), np.float32)
    m = np.zeros((len(idx), n), np.int64)
    for k, i in enumerate(idx):
        x[k, : feats[i].shape[0]] = feats[i]
        m[k, : feats[i].shape[0]] = 1
    return torch.from_numpy(x).to(dev), torch.from_numpy(m).to(dev)


def targets(tok, texts, langs, lang_ids):
    """decoder input [start, lang, t1..tn] and labels [-, t1..tn, eos] (-100 where no loss)."""
    dec, lab = [], []
    for t, l in zip(texts, langs):
        ids = tok.encode(t, add_special_tokens=False).ids[: MAX_TGT - 3]
        d = [3, lang_ids[l]] + ids
        y = [-100] + ids + [3]
        dec.append(d + [0] * (MAX_TGT - len(d)))
        lab.append(y + [-100] * (MAX_TGT - len(y)))
    return torch.tensor(dec), torch.tensor(lab)


@torch.no_grad()
def transcribe(model, tok, feats, idx, lang_id, dev, steps=MAX_TGT - 2):
    """Batched greedy decoding (the encoder reruns each step: tiny model, short outputs)."""
    model.eval()
    outs = []
    for b in range(0, len(idx), 256):
        chunk = idx[b:b + 256]
        x, m = pad_features(feats, chunk, dev)
        cur = torch.tensor([[3, lang_id]] * len(chunk), device=dev)
        done = torch.zeros(len(chunk), dtype=torch.bool, device=dev)
        for _ in range(steps):
            logits = model(input_features=x, attention_mask=m, decoder_input_ids=cur, use_cache=False).logits[:, -1].float()
            nxt = torch.where(done, torch.zeros_like(done, dtype=torch.long), logits.argmax(-1))
            done |= nxt == 3
            cur = torch.cat([cur, nxt[:, None]], 1)
            if bool(done.all()):
                break
        for row in cur[:, 2:].cpu().tolist():
            row = row[: row.index(3)] if 3 in row else row
            outs.append(tok.decode([t for t in row if t > 7], skip_special_tokens=True).strip())
    return outs


def ort_transcribe(package, tok, feats, idx, lang_id):
    """The exported package on onnxruntime CPU, one utterance at a time, as the C# pipeline runs it."""
    import onnxruntime as ort
    try:
        with open(os.path.join(package, "multimodal.json")) as f:
            d = json.load(f)["decoder"]
        enc = ort.InferenceSession(os.path.join(package, "speech_encoder.onnx"), providers=["CPUExecutionProvider"])
        dec = ort.InferenceSession(os.path.join(package, "decoder.onnx"), providers=["CPUExecutionProvider"])
        names = {i.name for i in dec.get_inputs()}
        shared = d.get("kv_cache") == "shared"                    # fused graphs: one max-length cache + seqlens_k
        kv_heads = d.get("num_kv_heads", d["num_heads"])
        kv_dt = np.float16 if d.get("kv_dtype") == "float16" else np.float32
        texts = []
        for i in idx:
            f = feats[i][None]
            efeed = {"input_features": f, "attention_mask": np.ones(f.shape[:2], np.int64)}
            if enc.get_inputs()[0].type == "tensor(float16)":
                efeed["input_features"] = f.astype(np.float16)
            outs = enc.run(None, {k: v for k, v in efeed.items() if k in {x.name for x in enc.get_inputs()}})
            te = outs[0].shape[1]
            feed = {f"cross.{l}.{kv}": outs[1 + 2 * l + j] for l in range(d["num_layers"]) for j, kv in enumerate(("key", "value"))}
            past = {f"past_key_values.{l}.{kv}": np.zeros((1, kv_heads, d["context_length"] if shared else 0, d["head_dim"]), kv_dt)
                    for l in range(d["num_layers"]) for kv in ("key", "value")}
            ids, p0, toks = [3, lang_id], 0, []
            while len(toks) < MAX_TGT:
                total = p0 + len(ids)
                full = dict(feed, **past, input_ids=np.array([ids], np.int64),
                            position_ids=(np.arange(p0, total) + d.get("position_offset", 0))[None].astype(np.int64),
                            attention_mask=np.ones((1, total), np.int64), encoder_attention_mask=np.ones((1, te), np.int64),
                            seqlens_k=np.array([total - 1], np.int32), total_sequence_length=np.array(total, np.int32))
                o = dec.run(None, {k: v for k, v in full.items() if k in names})
                for j, out in enumerate(dec.get_outputs()[1:]):
                    past[out.name.replace("present", "past_key_values")] = o[j + 1]
                t = int(np.argmax(o[0][0, -1]))
                if t == 3:
                    break
                toks.append(t)
                ids, p0 = [t], total
            texts.append(tok.decode(toks, skip_special_tokens=True).strip())
        return texts
    except Exception as e:  # noqa: BLE001 - recorded in the eval, the packages are still written
        return [f"error: {e!r}"]


def main(work: str) -> None:
    from transformers import PreTrainedTokenizerFast, SeamlessM4Tv2ForSpeechToText
    seed_all(SEED)
    dev = device()
    t_start = time.time()
    pairs = phrases()
    voices, speeds, pitches = (VOICES[:2] + ["en+f3"], [155, 180], [55]) if SMOKE else (VOICES, SPEEDS, PITCHES)
    if SMOKE:
        pairs = pairs[::12]
    items, meta = [], []
    for v in voices:
        for s in speeds:
            for p in pitches:
                for k, (en, es) in enumerate(pairs):
                    items.append((en, v, s, p))
                    meta.append((k, (v, s) == HELD_OUT))
    feats = synthesize(items)
    log(f"speech: {len(items)} utterances synthesized in {time.time() - t_start:.0f} s "
        f"(frames mean {np.mean([f.shape[0] for f in feats]):.0f}, max {max(f.shape[0] for f in feats)})")
    tok = build_tokenizer([t for pr in pairs for t in pr])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)
    vocab = tok.get_vocab()
    lang_ids = {"eng": vocab["__eng__"], "spa": vocab["__spa__"]}
    assert [vocab[s] for s in SPECIALS] == list(range(len(SPECIALS))), "special tokens must be ids 0..7"
    train_idx = [i for i, (_, held) in enumerate(meta) if not held]
    eval_idx = [i for i, (_, held) in enumerate(meta) if held]
    texts = {"eng": [pairs[k][0] for k, _ in meta], "spa": [pairs[k][1] for k, _ in meta]}
    dec_en, lab_en = targets(tok, texts["eng"], ["eng"] * len(meta), lang_ids)
    dec_es, lab_es = targets(tok, texts["spa"], ["spa"] * len(meta), lang_ids)

    model = SeamlessM4Tv2ForSpeechToText(hf_config(len(vocab))).to(dev)
    nparams = sum(p.numel() for p in model.parameters())
    log(f"speech: vocab {len(vocab)}, {nparams / 1e6:.2f} M parameters, {len(train_idx)} training / {len(eval_idx)} held-out utterances")
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01, fused=dev.type == "cuda")
    budget = Budget("speech", 5 if SMOKE else TRAIN_SECONDS, 60_000, recheck=300)   # first run: probe 235 ms, then 70 ms/step
    bank = FeatureBank(feats, dev)
    train_t = torch.tensor(train_idx, device=dev)
    dec_en, lab_en, dec_es, lab_es = (t.to(dev) for t in (dec_en, lab_en, dec_es, lab_es))
    gen = torch.Generator(device=dev).manual_seed(SEED)
    batch = min(256, len(train_idx))
    step, curve = 0, []
    t_train = time.time()
    model.train()
    while True:
        idx = train_t[torch.randperm(len(train_idx), device=dev, generator=gen)[:batch]]
        x, m = bank.batch(idx)
        x = x + 0.1 * torch.randn(x.shape, device=dev, generator=gen) * m[..., None]   # light feature noise
        spa = torch.rand(batch, device=dev, generator=gen) < 0.5
        d = torch.where(spa[:, None], dec_es[idx], dec_en[idx])
        y = torch.where(spa[:, None], lab_es[idx], lab_en[idx])
        set_lr(opt, lr_at(step, budget.schedule_total(), 2e-3, warmup=200))
        with autocast():
            logits = model(input_features=x, attention_mask=m, decoder_input_ids=d, use_cache=False).logits
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), y.reshape(-1), ignore_index=-100)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 250 == 0 or step == 1:
            curve.append((step, float(loss)))
            log(f"speech: step {step} loss {float(loss):.4f} ({(time.time() - t_train) / step * 1000:.0f} ms/step)")
        if not budget.after_step(step):
            break
    model.eval()
    ckpt = os.path.join(work, "speech_ckpt")
    model.save_pretrained(ckpt)
    fast.save_pretrained(ckpt)

    res = {"parameters": nparams, "steps": step, "train_seconds": round(time.time() - t_train, 1), "curve": curve, "dims": dict(DIMS, vocab=len(vocab)),
           "voices": voices, "speeds": speeds, "pitches": pitches, "held_out": list(HELD_OUT),
           "phrases": len(pairs), "train_utterances": len(train_idx), "eval_utterances": len(eval_idx)}
    for lang in ("eng", "spa"):
        got = transcribe(model, tok, feats, eval_idx, lang_ids[lang], dev)
        want = [texts[lang][i] for i in eval_idx]
        res[f"exact_{lang}"] = float(np.mean([g == w for g, w in zip(got, want)]))
        res[f"samples_{lang}"] = [{"want": w, "got": g} for w, g in list(zip(want, got))[:8]]
        res[f"errors_{lang}"] = [{"want": w, "got": g} for w, g in zip(want, got) if g != w][:20]
    got = transcribe(model, tok, feats, train_idx[::20], lang_ids["eng"], dev)
    res["exact_eng_train_subset"] = float(np.mean([g == texts["eng"][i] for g, i in zip(got, train_idx[::20])]))
    log(f"speech: held-out exact eng {res['exact_eng']:.3f} spa {res['exact_spa']:.3f} (train subset eng {res['exact_eng_train_subset']:.3f})")

    pk = os.path.join(work, "packages")
    export("seamless", "--checkpoint", ckpt, "--out", os.path.join(pk, "speech-fp32"), "--check")
    # the committed package is the fp32 one without its references (the same graphs)
    shutil.copytree(os.path.join(pk, "speech-fp32"), os.path.join(pk, "speech"), ignore=shutil.ignore_patterns("reference"))
    with open(os.path.join(pk, "speech", "multimodal.json")) as f:
        man = json.load(f)
    man["name"] = "speech"
    with open(os.path.join(pk, "speech", "multimodal.json"), "w") as f:
        json.dump(man, f, indent=2)
    export("convert", "--from", os.path.join(pk, "speech-fp32"), "--out", os.path.join(pk, "speech-fp16"), "--graph", "fused", "--precision", "fp16")
    if not SMOKE:
        export("convert", "--from", os.path.join(pk, "speech-fp32"), "--out", os.path.join(pk, "speech-int4-b32"), "--graph", "fused",
               "--precision", "int4", "--block-size", "32")
    sub = eval_idx[:: max(1, len(eval_idx) // 40)]
    for name in ("speech", "speech-fp16") + (() if SMOKE else ("speech-int4-b32",)):
        got = ort_transcribe(os.path.join(pk, name), tok, feats, sub, lang_ids["eng"])
        res[f"onnxruntime_{name}_exact_eng"] = float(np.mean([g == texts["eng"][i] for g, i in zip(got, sub)]))
        res[f"onnxruntime_{name}_samples"] = got[:4]
    res["total_seconds"] = round(time.time() - t_start, 1)
    write_json(os.path.join(work, "speech-eval.json"), res)
    print(f"SUMMARY speech: held-out exact eng {res['exact_eng']:.3f} spa {res['exact_spa']:.3f} (bar 0.90) | "
          f"train-subset eng {res['exact_eng_train_subset']:.3f} | onnxruntime fp32 {res.get('onnxruntime_speech_exact_eng', float('nan')):.3f} "
          f"fp16 {res.get('onnxruntime_speech-fp16_exact_eng', float('nan')):.3f} int4 {res.get('onnxruntime_speech-int4-b32_exact_eng', float('nan')):.3f} | "
          f"{step} steps in {res['train_seconds']} s, total {res['total_seconds']} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
