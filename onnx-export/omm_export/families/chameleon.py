"""Chameleon: early-fusion decoder (qk-norm) + VQ-GAN image tokenizer/detokenizer; references for
image->text, image+question->text and text->image with classifier-free guidance."""
from __future__ import annotations

import copy
import json
import os
import shutil
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..onnx_utils import IR_VERSION, save_model
from ..sampling import SplitMix64, sample_next
from ..text_tokenizer import SPECIAL_TOKENS, train_byte_level_bpe
from ..vq_decoder import HalfImageEncoderGraph, ImageDecoderGraph, ImageEncoderGraph
from .llama import build_graph, spec_from_config, write_package

BOI, EOI, IMAGE = "<racm3:break>", "<eoss>", "<image>"


def code_token_name(code: int) -> str:
    """IMGIMG + the code's decimal digits as letters A-J + a final letter."""
    return "IMGIMG" + "".join(chr(ord("A") + int(d)) for d in str(code)) + "Z"


@dataclass(frozen=True)
class ChameleonPreset:
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    context_length: int
    image_size: int
    codebook_size: int
    embed_dim: int
    latent_channels: int
    base_channels: int
    channel_multiplier: tuple
    num_res_blocks: int
    text_vocab: int | None = None     # None: the trained tokenizer
    initializer_range: float = 0.1
    guidance_scale: float = 3.0


PRESETS = {
    # 64x64 images -> 8x8 = 64 codes from a 256-entry codebook; 4-layer decoder with qk-norm.
    "tiny": ChameleonPreset(64, 192, 4, 4, 2, 256, 64, 256, 16, 16, 32, (1, 1, 2, 2), 1),
    # Chameleon-7B shapes (512x512 -> 1024 codes, codebook 8192): benchmarks only, never committed.
    "7b": ChameleonPreset(4096, 11008, 32, 32, 32, 4096, 512, 8192, 256, 256, 128, (1, 1, 2, 2, 4), 2,
                          text_vocab=65536 - 8192 - 3, initializer_range=0.02, guidance_scale=6.0),
}

CAPTION_PROMPT = "A photo of"
QUESTION = "What colour is the sky?"
IMAGINE_PROMPTS = ["A red circle on a white background", "A photo of a mountain lake at sunrise"]
CAPTION_STEPS = 16
SAMPLE_SEED = 99


def _tokenizer(preset: ChameleonPreset):
    from tokenizers import AddedToken
    tok = train_byte_level_bpe(vocab_size=1024)
    extra = [BOI, EOI, IMAGE] + [code_token_name(c) for c in range(preset.codebook_size)]
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in extra])
    return tok


def load(args, out_dir):
    from transformers import AutoTokenizer, ChameleonConfig, ChameleonForConditionalGeneration, PreTrainedTokenizerFast
    preset = PRESETS[args.preset]
    if args.checkpoint:
        from .hf_config import check_chameleon_config, read_config
        src = args.checkpoint
        path, raw = read_config(src)
        if raw.get("model_type", "chameleon") != "chameleon":
            raise SystemExit(f"omm_export: {path}: model_type '{raw.get('model_type')}' is not a Chameleon checkpoint")
        provenance = {"source": "checkpoint", "path": os.path.abspath(src), "config": check_chameleon_config(path, raw)}
    else:
        tok = _tokenizer(preset)
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|bos|>", eos_token="<|eos|>", pad_token="<|pad|>",
                                       clean_up_tokenization_spaces=False)
        vocab = tok.get_vocab()
        vq = dict(embed_dim=preset.embed_dim, num_embeddings=preset.codebook_size, double_latent=False,
                  latent_channels=preset.latent_channels, resolution=preset.image_size, in_channels=3,
                  base_channels=preset.base_channels, channel_multiplier=list(preset.channel_multiplier),
                  num_res_blocks=preset.num_res_blocks, attn_resolutions=None, dropout=0.0, attn_type="vanilla")
        # The 7B preset keeps Chameleon's 65536-entry vocabulary (ids past the trained tokenizer are never produced by it).
        vocab_size = len(vocab) if preset.text_vocab is None else max(len(vocab), preset.text_vocab + preset.codebook_size + 3)
        cfg = ChameleonConfig(vocab_size=vocab_size, hidden_size=preset.hidden_size, intermediate_size=preset.intermediate_size,
                              num_hidden_layers=preset.num_layers, num_attention_heads=preset.num_heads,
                              num_key_value_heads=preset.num_kv_heads, max_position_embeddings=preset.context_length,
                              initializer_range=preset.initializer_range, rms_norm_eps=1e-5, tie_word_embeddings=False,
                              bos_token_id=vocab["<|bos|>"], eos_token_id=vocab["<|eos|>"], pad_token_id=vocab["<|pad|>"],
                              vq_config=vq, vocabulary_map=vocab)
        provenance = {"source": "synthetic", "preset": args.preset, "seed": args.seed, "preset_config": asdict(preset)}
        if args.preset != "tiny":
            # Benchmark shapes: the decoder is initialised on the GPU and never round-tripped; the VQ
            # model comes back to the CPU, where its graphs are traced.
            from .llama import synthetic_package
            model, tokenizer = synthetic_package(cfg, args.seed, fast, out_dir, ChameleonForConditionalGeneration)
            model.model.vqmodel.float().cpu()
            src = None
        else:
            torch.manual_seed(args.seed)
            model = ChameleonForConditionalGeneration(cfg)
            src = os.path.join(out_dir, ".hf")
            model.save_pretrained(src)
            fast.save_pretrained(src)
    if src is not None:
        model = ChameleonForConditionalGeneration.from_pretrained(src, dtype=torch.float32, attn_implementation="eager").eval()
        tokenizer = AutoTokenizer.from_pretrained(src)
        if args.checkpoint:
            from .llama import checkpoint_tokenizer
            tokenizer = checkpoint_tokenizer(src, tokenizer)
            _check_vocabulary(src, model.config, tokenizer)
    torch.manual_seed(args.seed + 1)
    vqm = model.model.vqmodel
    image_decoder = ImageDecoderGraph(vqm.config, vqm.quantize.embedding, vqm.post_quant_conv).eval()
    if getattr(args, "vqgan", None):   # original VQ-GAN checkpoint: decoder.* / post_quant_conv.* / quantize.*
        state = torch.load(args.vqgan, map_location="cpu")
        state = state.get("state_dict", state)
        missing, unexpected = image_decoder.load_state_dict({k: v for k, v in state.items()
                                                             if k.split(".")[0] in ("decoder", "post_quant_conv", "quantize")}, strict=False)
        print("vqgan decoder: missing", missing, "unexpected", len(unexpected))
    return model, tokenizer, image_decoder, provenance


def _check_vocabulary(src, cfg, tokenizer) -> None:
    """The checkpoint's vocabulary_map (what transformers maps image codes with) and its tokenizer must
    agree on the sentinels and the image-token names, else the package would map codes to other ids."""
    vmap = getattr(cfg, "vocabulary_map", None) or {}
    vocab = tokenizer.get_vocab()
    for name in [BOI, EOI, IMAGE]:
        if name not in vocab:
            raise SystemExit(f"omm_export: {src}: the tokenizer has no '{name}' token (Chameleon's image sentinels)")
    wrong = [k for k, v in vmap.items() if (k.startswith("IMGIMG") or k in (BOI, EOI, IMAGE)) and vocab.get(k) != v]
    if wrong:
        raise SystemExit(f"omm_export: {src}: config.json vocabulary_map and the tokenizer disagree on {len(wrong)} "
                         f"image token(s), e.g. {wrong[:3]}")


def _export_module(module, example, path, input_name, output_name):
    import onnx
    module.eval()
    # The TorchScript exporter keeps the batch dimension symbolic through the reshapes of the VQ graphs.
    tmp = path + ".tmp"
    torch.onnx.export(module, (example,), tmp, dynamo=False, opset_version=17, input_names=[input_name],
                      output_names=[output_name], dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}})
    model = onnx.load(tmp)
    os.remove(tmp)
    # batch dimension symbolic
    for vi in list(model.graph.input) + list(model.graph.output):
        d = vi.type.tensor_type.shape.dim
        if len(d):
            d[0].ClearField("dim_value")
            d[0].dim_param = "batch"
    model.ir_version = IR_VERSION
    save_model(model, path)


@torch.no_grad()
def export_half_encoder(vqmodel, size, out, file="image_encoder_fp16.onnx"):
    """Writes `file`, the image encoder with its convolutions and norms in fp16 (HalfImageEncoderGraph; the fp32
    image_encoder.onnx stays the package's component), and returns its manifest entry: the file and, measured here,
    the share of codes equal to the fp32 encoder's on a few seeded images (on CUDA where present, TF32 off)."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    half = HalfImageEncoderGraph(vqmodel).to(device).eval()
    g = torch.Generator().manual_seed(7)
    ramp = torch.linspace(-1, 1, size)
    images = {"noise": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
              "gradient": torch.stack([ramp.view(1, -1).expand(size, size), ramp.view(-1, 1).expand(size, size),
                                       (ramp.view(1, -1) * ramp.view(-1, 1))]).unsqueeze(0),
              "blocks": (torch.rand(1, 3, size // 32, size // 32, generator=g) * 2 - 1).repeat_interleave(32, 2).repeat_interleave(32, 3)}
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    full = ImageEncoderGraph(copy.deepcopy(vqmodel).float().to(device)).eval()
    agreement, agreement_tf32 = {}, {}
    try:
        for name, x in images.items():
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
            a, b = full(x.to(device)), half(x.to(device))
            agreement[name] = round((a == b).float().mean().item(), 4)
            if device == "cuda":   # the fp32 graph on TF32 tensor cores (ExecutionOptions.CudaTf32 / --tf32), for comparison
                torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
                agreement_tf32[name] = round((a == full(x.to(device))).float().mean().item(), 4)
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    print(f"image encoder fp16: codes equal to fp32 on {agreement}; fp32 on TF32: {agreement_tf32 or 'not measured (no CUDA)'}")
    _export_module(half, torch.zeros(1, 3, size, size, device=device), os.path.join(out, file), "pixel_values", "codes")
    entry = {"file": file, "codes_equal_fp32": agreement}
    if agreement_tf32:
        entry["tf32_codes_equal_fp32"] = agreement_tf32
    return entry


def _image_token_ids(tokenizer, codebook_size):
    """Token id of each code 0..codebook_size-1, read from the vocabulary as transformers reads it: a name
    IMGIMG + the code's digits as letters A-J + one last character (whatever it is)."""
    by_code = {}
    for name, i in tokenizer.get_vocab().items():
        digits = name[len("IMGIMG"):-1]
        if name.startswith("IMGIMG") and digits and all("A" <= ch <= "J" for ch in digits):
            by_code[int("".join(str(ord(ch) - ord("A")) for ch in digits))] = i
    missing = [c for c in range(codebook_size) if c not in by_code]
    if missing:
        raise SystemExit(f"omm_export: the tokenizer has no image token for {len(missing)} of {codebook_size} codes "
                         f"(first: {missing[0]}; expected names like {code_token_name(missing[0])})")
    return [by_code[c] for c in range(codebook_size)]


@torch.no_grad()
def _decode(model, ids_batch, steps, choose):
    """Batched KV-cache loop on the raw (unmasked) logits of model.model + lm_head.
    ids_batch: equal-length rows. choose(logits[B,V] float64) -> next ids per row (list)."""
    out = model.model(input_ids=torch.tensor(ids_batch), use_cache=True)
    logits = model.lm_head(out.last_hidden_state)
    first = logits[:, -1].double().numpy()
    past, last, tokens = out.past_key_values, first, []
    for _ in range(steps):
        nxt = choose(last)
        tokens.append(nxt)
        out = model.model(input_ids=torch.tensor([[t] for t in nxt]), past_key_values=past, use_cache=True)
        past, last = out.past_key_values, model.lm_head(out.last_hidden_state)[:, -1].double().numpy()
    return logits[0].float().numpy(), tokens


def _margin(row):
    s = np.sort(row)
    return float(s[-1] - s[-2])


def make_test_images(ref_dir):
    """Three committed test images: shapes (RGB, non-square), gradient with alpha (RGBA), text (grayscale)."""
    from PIL import Image, ImageDraw
    paths = []
    img = Image.new("RGB", (96, 80), "white")
    d = ImageDraw.Draw(img)
    d.ellipse((8, 8, 48, 48), fill=(220, 30, 30))
    d.rectangle((52, 20, 88, 56), fill=(30, 60, 220))
    d.polygon([(10, 76), (40, 52), (70, 76)], fill=(20, 160, 60))
    paths.append(("shapes.png", img))
    g = np.zeros((64, 72, 4), np.uint8)
    g[..., 0] = np.linspace(0, 255, 72)[None, :]
    g[..., 1] = np.linspace(255, 0, 64)[:, None]
    g[..., 2] = 128
    g[..., 3] = np.clip(np.linspace(0, 400, 72)[None, :], 0, 255)
    paths.append(("gradient_alpha.png", Image.fromarray(g, "RGBA")))
    t = Image.new("L", (80, 96), 235)
    d = ImageDraw.Draw(t)
    d.text((6, 10), "Hello", fill=10)
    d.text((6, 40), "ONNX 42", fill=60)
    d.line((0, 90, 80, 70), fill=0, width=3)
    paths.append(("text_gray.png", t))
    for name, im in paths:
        im.save(os.path.join(ref_dir, name))
    return [os.path.join(ref_dir, n) for n, _ in paths]


def preprocess(path, size):
    """Reference preprocessing: alpha over white, short side to `size` (Lanczos), centre crop, [-1, 1] NCHW."""
    from PIL import Image
    im = Image.open(path)
    im = im.convert("RGBA")
    white = Image.new("RGBA", im.size, (255, 255, 255, 255))
    im = Image.alpha_composite(white, im).convert("RGB")
    w, h = im.size
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    im = im.resize((nw, nh), Image.LANCZOS)
    left, top = (nw - size) // 2, (nh - size) // 2
    im = im.crop((left, top, left + size, top + size))
    x = np.asarray(im, dtype=np.float32) / 255.0 * 2.0 - 1.0
    return x.transpose(2, 0, 1)[None].copy()  # [1,3,H,W]


def export(args) -> None:
    out = args.out
    os.makedirs(out, exist_ok=True)
    model, tokenizer, image_decoder, provenance = load(args, out)
    preset = PRESETS[args.preset]
    vq_cfg = model.model.vqmodel.config
    size = vq_cfg.resolution
    grid = size // 2 ** (len(vq_cfg.channel_multiplier) - 1)
    n_codes = grid * grid

    from .llama import _cap
    cap = _cap(provenance.get("config", {}).get("context_cap"), getattr(args, "context_length", None))
    spec = spec_from_config(model.config, qk_norm=True, model=model if args.checkpoint else None, context_cap=cap)
    onnx_model, fused = build_graph(args, spec, model, out, qk_norm=True)
    save_model(onnx_model, os.path.join(out, "decoder.onnx"))
    del onnx_model
    enc = ImageEncoderGraph(model.model.vqmodel).eval()
    _export_module(enc, torch.zeros(1, 3, size, size), os.path.join(out, "image_encoder.onnx"), "pixel_values", "codes")
    _export_module(image_decoder, torch.zeros(1, n_codes, dtype=torch.long), os.path.join(out, "image_decoder.onnx"), "codes", "pixels")
    encoder_io = {"input": "pixel_values", "output": "codes"}
    if getattr(args, "image_encoder_fp16", False):
        encoder_io["fp16"] = export_half_encoder(model.model.vqmodel, size, out)

    vocab = tokenizer.get_vocab()
    code_ids = _image_token_ids(tokenizer, vq_cfg.num_embeddings)
    extra = {
        "image": {"size": size, "tokens_per_image": n_codes, "codebook_size": vq_cfg.num_embeddings, "grid": grid,
                  "rescale": "x / 127.5 - 1", "alpha": "composite over white", "resize": "short side, Lanczos, centre crop",
                  "begin_image": vocab[BOI], "end_image": vocab[EOI], "placeholder": vocab[IMAGE],
                  "code_to_token": code_ids},
        "guidance": {"scale": preset.guidance_scale, "temperature": 1.0, "top_p": 0.9,
                     "unconditional_prompt": "bos, begin_image"},
        "image_encoder": encoder_io,
        "image_decoder": {"input": "codes", "output": "pixels"},
    }
    write_package(out, "chameleon", model, tokenizer, spec, provenance, precision=args.precision, extra=extra,
                  components={"image_encoder": "image_encoder.onnx", "image_decoder": "image_decoder.onnx"}, fused=fused)
    if not args.no_reference and next(model.parameters()).device.type != "cpu":
        model = model.float().cpu()   # the references run on the CPU in fp32
    if not args.no_reference:
        write_references(out, model, tokenizer, image_decoder, code_ids, size, n_codes, preset.guidance_scale)
    if os.path.isdir(os.path.join(out, ".hf")):
        shutil.rmtree(os.path.join(out, ".hf"))


@torch.no_grad()
def write_references(out, model, tokenizer, image_decoder, code_ids, size, n_codes, scale):
    ref = os.path.join(out, "reference")
    os.makedirs(ref, exist_ok=True)
    vocab = tokenizer.get_vocab()
    bos, boi, eoi = tokenizer.bos_token_id, vocab[BOI], vocab[EOI]
    image_ids = np.array(code_ids)
    is_image = np.zeros(model.config.vocab_size, bool)
    is_image[image_ids] = True
    doc = {"format_version": 1, "images": [], "captions": [], "imagine": []}

    def text_choice(row):       # HF masks image tokens when generating text
        x = row.copy()
        x[is_image] = np.finfo(np.float32).min
        return int(np.argmax(x)), _margin(x)

    for path in make_test_images(ref):
        name = os.path.splitext(os.path.basename(path))[0]
        pixels = preprocess(path, size)
        pixels.astype("<f4").tofile(os.path.join(ref, f"{name}.pixels.bin"))
        codes = ImageEncoderGraph(model.model.vqmodel)(torch.from_numpy(pixels))[0].tolist()
        hf_tokens = model.model.get_image_tokens(torch.from_numpy(pixels))[0].tolist()   # transformers' own path
        assert hf_tokens == [code_ids[c] for c in codes], "code -> token mapping disagrees with transformers"
        # distance margin between the nearest and second-nearest codebook entries, per position
        h = model.model.vqmodel.quant_conv(model.model.vqmodel.encoder(torch.from_numpy(pixels)))
        z = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        e = model.model.vqmodel.quantize.embedding.weight
        dist = torch.cdist(z, e).sort(dim=1).values
        tokens = [int(code_ids[c]) for c in codes]
        doc["images"].append({"name": name, "file": os.path.basename(path), "pixels_file": f"{name}.pixels.bin",
                              "pixels_shape": list(pixels.shape), "codes": codes, "token_ids": tokens,
                              "code_min_margin": float((dist[:, 1] - dist[:, 0]).min())})
        for kind, text in (("caption", CAPTION_PROMPT), ("question", QUESTION)):
            ids = [bos, boi] + tokens + [eoi] + tokenizer(text, add_special_tokens=False)["input_ids"]
            margins = []
            def choose(last):
                t, m = text_choice(last[0])
                margins.append(m)
                return [t]
            _, toks = _decode(model, [ids], CAPTION_STEPS, choose)
            doc["captions"].append({"image": name, "kind": kind, "text": text, "ids": ids,
                                    "tokens": [t[0] for t in toks], "min_margin": min(margins), "margins": margins})

    # text -> image with classifier-free guidance: row 0 conditional, row 1 unconditional (left-padded)
    pad = tokenizer.pad_token_id
    for prompt in IMAGINE_PROMPTS:
        cond = [bos] + tokenizer(prompt, add_special_tokens=False)["input_ids"] + [boi]
        uncond = [bos, boi]
        for mode in ("greedy", "sampled"):
            rng = SplitMix64(SAMPLE_SEED)
            margins, uniforms, generated = [], [], []

            def choose(last):
                g = last[1] + scale * (last[0] - last[1])            # guided logits, float64
                g = np.where(is_image, g, np.finfo(np.float32).min)
                if mode == "greedy":
                    t = int(np.argmax(g)); margins.append(_margin(g))
                else:
                    t, u = sample_next(g, [], rng, 1.0, 0, 0.9, 1.0); uniforms.append(u)
                generated.append(t)
                return [t, t]
            # separate batch-1 runs would differ only by padding; run the two rows unpadded, one each
            toks = _guided(model, cond, uncond, n_codes, choose)
            codes = [int(np.nonzero(image_ids == t)[0][0]) for t in toks]
            pixels = image_decoder(torch.tensor([codes])).numpy()
            fname = f"imagine_{IMAGINE_PROMPTS.index(prompt)}_{mode}.pixels.bin"
            pixels.astype("<f4").tofile(os.path.join(ref, fname))
            doc["imagine"].append({"prompt": prompt, "mode": mode, "cond_ids": cond, "uncond_ids": uncond, "scale": scale,
                                   "seed": SAMPLE_SEED if mode == "sampled" else None, "temperature": 1.0, "top_p": 0.9,
                                   "tokens": toks, "codes": codes, "pixels_file": fname, "pixels_shape": list(pixels.shape),
                                   "min_margin": min(margins) if margins else None, "uniforms": uniforms})
    with open(os.path.join(ref, "reference.json"), "w") as f:
        json.dump(doc, f, indent=1)


@torch.no_grad()
def _guided(model, cond, uncond, steps, choose):
    """Runs the conditional and unconditional streams side by side, each with its own cache."""
    def start(ids):
        o = model.model(input_ids=torch.tensor([ids]), use_cache=True)
        return o.past_key_values, model.lm_head(o.last_hidden_state)[0, -1].double().numpy()
    pc, lc = start(cond)
    pu, lu = start(uncond)
    toks = []
    for _ in range(steps):
        t = choose(np.stack([lc, lu]))[0]
        toks.append(t)
        oc = model.model(input_ids=torch.tensor([[t]]), past_key_values=pc, use_cache=True)
        ou = model.model(input_ids=torch.tensor([[t]]), past_key_values=pu, use_cache=True)
        pc, lc = oc.past_key_values, model.lm_head(oc.last_hidden_state)[0, -1].double().numpy()
        pu, lu = ou.past_key_values, model.lm_head(ou.last_hidden_state)[0, -1].double().numpy()
    return toks


def check_with_onnxruntime(out):
    """Image encoder codes, image decoder pixels and the captions' greedy tokens on ORT's CPU provider
    against reference.json; raises check.CheckFailed (exit 1) naming what is outside tolerance: codes
    must be equal (unless PyTorch's nearest and second-nearest codebook entries are within 1e-4), pixels
    within 1e-3 (fp32 convolutions, values in [-1, 1]), captions by the precision's token rule."""
    import onnxruntime as ort
    from ..check import finish, judge_prompt, tolerance
    ref = os.path.join(out, "reference")
    with open(os.path.join(ref, "reference.json")) as f:
        doc = json.load(f)
    with open(os.path.join(out, "multimodal.json")) as f:
        manifest = json.load(f)
    comp = manifest["components"]
    enc = ort.InferenceSession(os.path.join(out, comp["image_encoder"]), providers=["CPUExecutionProvider"])
    dec = ort.InferenceSession(os.path.join(out, comp["image_decoder"]), providers=["CPUExecutionProvider"])
    res, failures = {"codes_equal": [], "pixels_max_abs": []}, []
    for im in doc["images"]:
        px = np.fromfile(os.path.join(ref, im["pixels_file"]), "<f4").reshape(im["pixels_shape"])
        codes = enc.run(None, {enc.get_inputs()[0].name: px})[0]
        equal = int((codes[0] == np.array(im["codes"])).sum())
        res["codes_equal"].append([equal, len(im["codes"]), im["code_min_margin"]])
        if equal != len(im["codes"]) and im["code_min_margin"] > 1e-4:
            failures.append(f"image {im['name']!r}: {len(im['codes']) - equal} of {len(im['codes'])} codes differ "
                            f"(PyTorch's nearest-code margin {im['code_min_margin']:.3g} > 1e-4)")
    for g in doc["imagine"]:
        want = np.fromfile(os.path.join(ref, g["pixels_file"]), "<f4").reshape(g["pixels_shape"])
        got = dec.run(None, {dec.get_inputs()[0].name: np.array([g["codes"]], np.int64)})[0]
        err = float(np.abs(got - want).max())
        res["pixels_max_abs"].append(err)
        if not err <= 1e-3:
            failures.append(f"imagine {g['prompt']!r} ({g['mode']}): image decoder pixels differ by {err:.3g} > 1e-3")
    from ..reference import ort_greedy
    tol, why = tolerance(manifest, doc)
    sess = ort.InferenceSession(os.path.join(out, comp["decoder"]), providers=["CPUExecutionProvider"])
    banned = np.array(manifest["image"]["code_to_token"])
    res["captions"] = []
    for c in doc["captions"]:
        first, toks = ort_greedy(sess, manifest["decoder"], c["ids"], len(c["tokens"]), banned)
        scale = float(np.abs(first[-1]).max())   # no logits are stored for captions: ORT's own scale
        res["captions"].append(judge_prompt(f"{c['image']}/{c['kind']}: {c['text']}", None, tol, why, toks, c["tokens"],
                                            c.get("margins", c["min_margin"]), scale, failures))
    res["encoder_inputs"] = [(i.name, i.shape) for i in enc.get_inputs()]
    res["decoder_outputs"] = [(o.name, o.shape) for o in dec.get_outputs()]
    res["imagine_margins"] = [g["min_margin"] for g in doc["imagine"]]
    return finish(out, res, failures)
