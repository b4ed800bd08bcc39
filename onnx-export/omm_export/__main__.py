"""CLI: python -m omm_export <family> --preset tiny --out models/tiny-llama [--checkpoint DIR]."""
from __future__ import annotations

import argparse
import json
import sys

ZP_HELP = ("int4: asymmetric blocks, each with a 4-bit zero point (MatMulNBits' zero_points input), instead of symmetric "
           "blocks around 8; a little more to store, less error where a block's weights are skewed")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="omm_export", description="Export an OnnxMultimodal model package.")
    sub = ap.add_subparsers(dest="family", required=True)
    p = sub.add_parser("llama", help="Llama-style text decoder")
    p.add_argument("--preset", default="tiny", help="tiny | hd64 | 1b | 7b (synthetic weights)")
    p.add_argument("--checkpoint", help="a local transformers checkpoint folder (real weights)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int4"], help="weight precision of the graph")
    p.add_argument("--graph", default="reference", choices=["reference", "fused"],
                   help="reference: standard ops, concatenating cache; fused: GroupQueryAttention, shared max-length cache, MatMulNBits")
    p.add_argument("--block-size", type=int, default=32, help="int4 quantization block (32 or 128)")
    p.add_argument("--accuracy-level", type=int, default=4, help="MatMulNBits accuracy_level (0..4)")
    p.add_argument("--int4-zero-points", action="store_true", help=ZP_HELP)
    p.add_argument("--int4-activation", default="fp32", choices=["fp32", "fp16"], help="activation type of int4 graphs (fp16 for CUDA)")
    p.add_argument("--last-logits", action="store_true", help="fused graphs: logits only at each row's last position (faster prefill)")
    p.add_argument("--device-sampling", action="store_true", help="fused graphs: end in the sampling head (next_token; see convert --device-sampling)")
    p.add_argument("--seed", type=int, default=1234, help="seed of the synthetic initialisation")
    p.add_argument("--context-length", type=int, help="the package's context (cos/sin tables, cache); default: the config's max_position_embeddings")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--no-reference", action="store_true", help="skip PyTorch reference outputs")
    p.add_argument("--check", action="store_true", help="run the graph on onnxruntime against the references")
    c = sub.add_parser("chameleon", help="Chameleon: decoder with qk-norm + VQ image tokenizer/detokenizer")
    c.add_argument("--preset", default="tiny", help="tiny | 7b (synthetic weights)")
    c.add_argument("--checkpoint", help="a local transformers Chameleon checkpoint folder")
    c.add_argument("--vqgan", help="the original VQ-GAN checkpoint (decoder weights), optional")
    c.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int4"])
    c.add_argument("--graph", default="reference", choices=["reference", "fused"],
                   help="fused: GroupQueryAttention decoder with the shared cache (image->text; guidance needs the reference graph)")
    c.add_argument("--block-size", type=int, default=32)
    c.add_argument("--accuracy-level", type=int, default=4)
    c.add_argument("--int4-zero-points", action="store_true", help=ZP_HELP)
    c.add_argument("--int4-activation", default="fp32", choices=["fp32", "fp16"])
    c.add_argument("--last-logits", action="store_true", help="fused graphs: logits only at each row's last position (faster prefill)")
    c.add_argument("--device-sampling", action="store_true", help="fused graphs: end in the sampling head (next_token; see convert --device-sampling)")
    c.add_argument("--image-encoder-fp16", action="store_true",
                   help="also write image_encoder_fp16.onnx: the VQ encoder's convolutions and norms in fp16 (quantizer in fp32), for CUDA; "
                        "the manifest records the file and its codes' agreement with fp32 (image_encoder.fp16)")
    c.add_argument("--seed", type=int, default=1234)
    c.add_argument("--context-length", type=int, help="the package's context; default: the config's max_position_embeddings")
    c.add_argument("--out", required=True)
    c.add_argument("--no-reference", action="store_true")
    c.add_argument("--check", action="store_true")
    m = sub.add_parser("seamless", help="Seamless M4T v2 speech->text: speech encoder + text decoder")
    m.add_argument("--preset", default="tiny", help="tiny | large (synthetic weights)")
    m.add_argument("--checkpoint", help="a local transformers SeamlessM4Tv2 checkpoint folder")
    m.add_argument("--precision", default="fp32", choices=["fp32"])
    m.add_argument("--seed", type=int, default=1234)
    m.add_argument("--out", required=True)
    m.add_argument("--no-reference", action="store_true")
    m.add_argument("--check", action="store_true")
    m.add_argument("--no-relpos-rewrite", action="store_true",
                   help="keep the exporter's relative-position attention (a [T, T, head_dim] tensor per layer) instead of the rewrite (relpos_pass.py)")
    v = sub.add_parser("convert", help="rebuild an fp32 reference package's decoder as fp16 / fused / int4 (numpy + onnx only)")
    v.add_argument("--from", dest="source", required=True, help="the fp32 (or fp16) reference package folder")
    v.add_argument("--out", required=True)
    v.add_argument("--graph", default="reference", choices=["reference", "fused"])
    v.add_argument("--precision", default="fp16", choices=["fp32", "fp16", "int4"])
    v.add_argument("--block-size", type=int, default=32)
    v.add_argument("--accuracy-level", type=int, default=4)
    v.add_argument("--int4-zero-points", action="store_true", help=ZP_HELP)
    v.add_argument("--int4-activation", default="fp32", choices=["fp32", "fp16"])
    v.add_argument("--external-data", action="store_true", help="stream the weights to decoder.onnx.data even when small")
    v.add_argument("--last-logits", action="store_true", help="fused graphs: logits only at each row's last position (faster prefill)")
    v.add_argument("--cross-mha", action="store_true", help="seq2seq: cross-attention as one MultiHeadAttention node")
    v.add_argument("--encoder-cross", default="fp16", choices=["fp16", "fp32"],
                   help="seq2seq with fp16 activations: the speech encoder writes the cross K/V in fp16 (a Cast per output; the weights are shared), so a CUDA cache takes them where they were computed")
    v.add_argument("--encoder-precision", default="fp32", choices=["fp32", "fp16"],
                   help="seq2seq: also run the speech encoder in fp16 along its feature path (length bookkeeping stays fp32)")
    v.add_argument("--prefill-decoder", help="a fused package (or its decoder.onnx) whose decoder runs the prompts into the same cache, e.g. fp16 beside an int4 decoder")
    v.add_argument("--next-token", action="store_true", help="fused decoder-only graphs: extra output next_token [B,1] int64, the ArgMax of the last position's logits (greedy choice on the device)")
    v.add_argument("--device-sampling", action="store_true",
                   help="fused decoder-only graphs: next_token [B,1] int64 from a sampling head (greedy, temperature, top-k, top-p, repetition penalty, "
                        "a logit mask, classifier-free guidance's mix) fed by small sample_* inputs; see sampling_head.py")
    v.add_argument("--custom-ops", default="none", choices=["none", "omm", "omm-fused", "elementwise"],
                   help="omm: int4 MatMulNBits nodes become omm.OmmMatMulInt4 (our CUDA kernels, libomm_kernels.so; needs --precision int4 --int4-activation fp16); "
                        "omm-fused: also each MLP's Split + SiLU + Mul folds into its gate_up projection's epilogue (omm.OmmMatMulInt4SwiGlu), "
                        "and Chameleon's qk-norm (Split + per-head LayerNorm, Mul, Add for q and k) runs as omm.OmmQkvHeadNorm; "
                        "elementwise: the qk-norm and each MLP's Split + SiLU + Mul (omm.OmmSwiGlu) as our ops, the projections stock "
                        "(fp16 activations, any precision: the fast path for long prompts and prefill decoders)")
    v.add_argument("--sampling-op", default="onnx", choices=["onnx", "omm"],
                   help="with --device-sampling: onnx writes the sampling head as standard ops; omm as one omm.OmmSamplingHead node "
                        "(our CUDA kernels, libomm_kernels.so; any precision), the same inputs, outputs and draws")
    v.add_argument("--link-components", action="store_true", help="reference the source's image/speech graphs by relative path instead of copying them (and leave reference/ behind)")
    v.add_argument("--check", action="store_true",
                   help="run the converted graph on onnxruntime (CPU) against the source package's references; exit 1 outside the precision's tolerance")
    v.add_argument("--no-relpos-rewrite", action="store_true", help="seq2seq: leave the speech encoder's relative-position attention as the source has it")
    r = sub.add_parser("relpos", help="rewrite relative-position attention in speech encoder graphs in place (no [T, T, head_dim] tensor)")
    r.add_argument("graphs", nargs="+", help="speech_encoder.onnx files")
    k = sub.add_parser("check", help="run a package's graphs on onnxruntime (CPU) against its reference/ folder; exit 1 outside tolerance")
    k.add_argument("package", help="the model folder")
    args = ap.parse_args(argv)

    if args.family == "relpos":
        from .relpos_pass import rewrite_file
        print(json.dumps({g: rewrite_file(g) for g in args.graphs}, indent=1))
        return 0
    if args.family == "check":
        print(json.dumps(check_package(args.package), indent=1))
        return 0
    if args.family == "convert":
        if args.check and (args.custom_ops != "none" or args.sampling_op != "onnx"):
            raise SystemExit("convert --check runs on onnxruntime's CPU, which has no omm ops: check the conversion without "
                             "--custom-ops / --sampling-op omm (the Cuda tests compare the two on the GPU)")
        from .convert import convert
        print(json.dumps(convert(args), indent=1))
        if args.check:
            if args.link_components:
                raise SystemExit("convert --check needs the references: drop --link-components")
            print(json.dumps(check_package(args.out), indent=1))
        return 0

    if args.family == "llama":
        from .families import llama
        llama.export(args)
    elif args.family == "chameleon":
        from .families import chameleon
        chameleon.export(args)
    elif args.family == "seamless":
        from .families import seamless
        seamless.export(args)
    if args.check:
        if args.no_reference:
            raise SystemExit("--check needs the references: drop --no-reference")
        print(json.dumps(check_package(args.out), indent=1))
    return 0


def check_package(out: str) -> dict:
    """The package's --check by family; raises check.CheckFailed (exit 1) when it is outside tolerance."""
    with open(f"{out}/multimodal.json", encoding="utf-8") as f:
        family = json.load(f)["family"]
    if family == "seamless":
        from .families.seamless import check_with_onnxruntime as check_speech
        return check_speech(out)
    if family == "chameleon":
        from .families.chameleon import check_with_onnxruntime as check_images
        return check_images(out)
    from .reference import check_with_onnxruntime
    return check_with_onnxruntime(out)


if __name__ == "__main__":
    sys.exit(main())
