"""Polishes the shapes world's VQ image decoder with the encoder and the codebook frozen: the codes every
model already reads and writes keep their meaning; only the network that paints codes into pixels learns.

Why: the jointly trained VQ reconstructs large shapes right but blurs about one small shape in ten into a
blob the pixel judge reads as a circle (a small shape is about 2x2 codes of the 8x8 grid). That caps
`imagine`, which decodes the codes the language model draws through this decoder. The loss weights object
pixels by how small the object is, so a small star's points count as much as a large one's.

Two entry points:
- `polish(...)`: a torch decoder (train_shapes.py calls it after training the VQ, before the language model);
- `python polish_vq_decoder.py PACKAGE OUT_DIR`: a committed package's image_decoder.onnx, run as PyTorch ops by
  onnx_torch.py (its checkpoint is gone), trained, checked against onnxruntime, judged before/after on held-out
  renders, and written to OUT_DIR/image_decoder.onnx only when the judged reconstruction got better.
Knobs: POLISH_SECONDS (training wall-clock target, default 150), STEPS_POLISH (fixes the step count),
POLISH_SCENES (rendered training scenes for the package path, default 20000), POLISH_CODE_NOISE (share of
input codes replaced at random in training, default 0)."""
from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import shapes_world as W  # noqa: E402
from common import SMOKE, Budget, log, lr_at, seed_all, set_lr  # noqa: E402

POLISH_SECONDS = float(os.environ.get("POLISH_SECONDS", "150"))
POLISH_SCENES = int(os.environ.get("POLISH_SCENES", "20000"))
POLISH_CODE_NOISE = float(os.environ.get("POLISH_CODE_NOISE", "0"))
LARGE_SHARE = 0.25      # pixel share of a large object (r = 18 of 64); smaller objects weigh up to 4x more


def polish_loss(rec: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Weighted MSE + L1 in [-1, 1] pixel space. Background = the corner colour; object pixels weigh
    4 x clamp(LARGE_SHARE / object share, 1, 4) against background pixels' 1."""
    obj = ((x - x[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.05).float()
    share = obj.mean((1, 2, 3), keepdim=True).clamp_min(1.0 / obj[0].numel())
    wpix = 1.0 + obj * 4.0 * (LARGE_SHARE / share).clamp(1.0, 4.0)
    err = rec - x
    return ((err ** 2 + 0.5 * err.abs()) * wpix).mean() / wpix.mean()


def polish(decode, params, codes: torch.Tensor, images: np.ndarray, dev, seconds: float = POLISH_SECONDS,
           seed: int = 4321, peak_lr: float = 3e-4, code_noise: float = POLISH_CODE_NOISE) -> dict:
    """Trains `params` so that decode(codes[i]) ([B, 3, H, W] in [-1, 1]) paints images[i]. codes: [N, 64] int64
    on dev; images: uint8 [N, H, W, 3]. code_noise: the share of input codes replaced at random (the target
    stays the clean picture)."""
    opt = torch.optim.Adam(params, lr=peak_lr, betas=(0.9, 0.99))
    budget = Budget("polish", 5 if SMOKE else seconds, 30_000)
    gen = torch.Generator(device=dev).manual_seed(seed)
    data = torch.from_numpy(images).to(dev)
    pool = codes.reshape(-1)
    step, curve = 0, []
    while True:
        idx = torch.randint(0, data.shape[0], (256,), device=dev, generator=gen)
        x = data[idx].permute(0, 3, 1, 2).float() / 127.5 - 1.0
        set_lr(opt, lr_at(step, budget.schedule_total(), peak_lr, warmup=50))
        c = codes[idx]
        if code_noise > 0:
            # a share of the codes replaced by codes drawn from their training frequencies: the decoder learns to
            # paint the neighbours' shape over an odd code, as the language model sometimes draws one
            swap = torch.rand(c.shape, device=dev, generator=gen) < code_noise
            c = torch.where(swap, pool[torch.randint(0, pool.numel(), c.shape, device=dev, generator=gen)], c)
        rec = decode(c)                                            # fp32: the decoder is small; bf16 buys little
        loss = polish_loss(rec.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 200 == 0:
            curve.append((step, round(loss.item(), 5)))
            log(f"polish: step {step} loss {loss.item():.4f}")
        if not budget.after_step(step):
            break
    return {"steps": step, "curve": curve, "code_noise": code_noise, "seconds_target": seconds}


def torch_decoder(image_decoder):
    """codes -> pixels through omm_export's ImageDecoderGraph, with its final clamp straight-through (a pixel
    clamped at the wrong value still gets a gradient)."""
    def decode(codes):
        z = image_decoder.quantize.embedding(codes)
        z = z.reshape(codes.shape[0], image_decoder.grid, image_decoder.grid, -1).permute(0, 3, 1, 2)
        px = image_decoder.decoder(image_decoder.post_quant_conv(z))
        return px + (px.clamp(-1.0, 1.0) - px).detach()
    return decode


def judged_by_size(scenes, pictures) -> dict:
    """Share of single-object scenes whose picture the judge reads as the right shape and colour, per size."""
    out = {}
    for size in ("small", "large", "all"):
        pick = [(s, p) for s, p in zip(scenes, pictures) if size == "all" or s.objects[0].size == size]
        ok = [(lambda j: j["shape"] == s.objects[0].shape and j["colour"] == s.objects[0].colour)(W.judge(p)) for s, p in pick]
        out[size] = round(float(np.mean(ok)), 4) if ok else None
    return out


def _ort(path: str):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = min(16, os.cpu_count() or 1)
    return ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])


def _encode(session, images: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(images), 500):
        x = (images[i:i + 500].astype(np.float32) / 127.5 - 1.0).transpose(0, 3, 1, 2)
        out.append(session.run(None, {"pixel_values": np.ascontiguousarray(x)})[0])
    return np.concatenate(out).astype(np.int64)


def _decode(session, codes: np.ndarray) -> np.ndarray:
    out = []
    for i in range(0, len(codes), 500):
        out.append(session.run(None, {"codes": codes[i:i + 500]})[0])
    px = np.concatenate(out)
    return ((px.transpose(0, 2, 3, 1) + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)


def main(package: str, out_dir: str) -> int:
    from onnx_torch import OnnxModule
    from train_shapes import N_TRAIN, SEED, make_scenes
    seed_all(SEED)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    os.makedirs(out_dir, exist_ok=True)
    t0 = time.time()
    enc = _ort(os.path.join(package, "image_encoder.onnx"))
    src = os.path.join(package, "image_decoder.onnx")
    dec_before = _ort(src)
    module = OnnxModule(src).to(dev)
    module.eval()                                       # the onnxruntime check below runs the inference-mode Clip
    res = {"package": package, "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}

    eval_scenes, eval_images = make_scenes(SEED + 199, 100 if SMOKE else 1000, 0.0)
    eval_codes = _encode(enc, eval_images)
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False   # the check compares fp32 with fp32
    with torch.no_grad():
        mine = module(codes=torch.from_numpy(eval_codes[:64]).to(dev))["pixels"].float().cpu().numpy()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    ref = dec_before.run(None, {"codes": eval_codes[:64]})[0]
    res["interpreter_max_abs_diff"] = float(np.abs(mine - ref).max())
    log(f"polish: interpreter vs onnxruntime on 64 pictures: max |diff| {res['interpreter_max_abs_diff']:.2e}")
    if res["interpreter_max_abs_diff"] > 1e-3:
        log("polish: the PyTorch interpretation does not match onnxruntime; not training")
        return 1
    res["before"] = judged_by_size(eval_scenes, _decode(dec_before, eval_codes))
    log(f"polish: held-out reconstructions judged right before: {res['before']}")

    n = 2000 if SMOKE else min(N_TRAIN, POLISH_SCENES)
    scenes, images = make_scenes(SEED, n, 0.3)          # the VQ's own training distribution
    t1 = time.time()
    codes = torch.from_numpy(_encode(enc, images)).to(dev)
    log(f"polish: {n} training scenes encoded in {time.time() - t1:.0f} s")
    frozen = {"quantize.embedding.weight"}              # the codebook: codes keep their meaning
    missing = frozen - set(module.trainable)
    if missing:
        raise SystemExit(f"{src}: no initializer named {sorted(missing)}; the codebook could not be frozen")
    params = [module.params[k] for name, k in module.trainable.items() if name not in frozen]
    for name in frozen:
        module.params[module.trainable[name]].requires_grad_(False)
    module.train()
    res["training"] = polish(lambda c: module(codes=c)["pixels"], params, codes, images, dev, seed=SEED)
    module.eval()

    out_path = os.path.join(out_dir, "image_decoder.onnx")
    module.save(out_path)
    dec_after = _ort(out_path)
    res["after"] = judged_by_size(eval_scenes, _decode(dec_after, eval_codes))
    two_scenes, two_images = make_scenes(SEED + 277, 200, 1.0)
    res["two_objects_mean_abs_error"] = {
        "before": float(np.abs(_decode(dec_before, _encode(enc, two_images)).astype(np.float32) - two_images).mean()),
        "after": float(np.abs(_decode(dec_after, _encode(enc, two_images)).astype(np.float32) - two_images).mean())}
    res["seconds"] = round(time.time() - t0, 1)
    better = res["after"]["all"] > res["before"]["all"]
    if not better:
        os.remove(out_path)
    res["written"] = better
    with open(os.path.join(out_dir, "polish.json"), "w") as f:
        json.dump(res, f, indent=1)
    log(f"polish: after {res['after']} (before {res['before']}); two-object mean |error| {res['two_objects_mean_abs_error']}; "
        f"{'written' if better else 'NOT written (no better)'} {out_path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
