"""Rebuilds the decoder of an exported reference package (fp32 reference graph) in another form
without the checkpoint or PyTorch: `python -m omm_export convert --from DIR --out DIR --graph
reference|fused --precision fp32|fp16|int4`. Needs numpy and onnx only.

The weights are read back from the reference graph by the names our writer gives them; the norm
epsilons and the rotary base from the graph's own constants. Every other file of the package
(tokenizer, image/speech graphs, references) is copied; the references still describe the source
model, so a converted package is checked against them with a tolerance, as the fp16 and int4 tests do.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys

import numpy as np
import onnx
from onnx import numpy_helper

from .decoder_graph import DecoderSpec, DecoderWeights, LayerWeights, build_decoder
from .fused_graph import FUSED_IO
from .onnx_utils import EXTERNAL_DATA_THRESHOLD, save_model



def _scalar_after(model: onnx.ModelProto, producer_prefix: str, init: dict) -> float:
    """The constant added to the output of the node whose output starts with `producer_prefix` (a norm's epsilon)."""
    outputs = {o for n in model.graph.node for o in n.output if o.startswith(producer_prefix)}
    for n in model.graph.node:
        if n.op_type == "Add" and n.input[0] in outputs and n.input[1] in init:
            return float(init[n.input[1]].reshape(-1)[0])
    raise SystemExit(f"convert: no epsilon found after {producer_prefix}*: not a reference graph written by omm_export")


def read_reference(src: str):
    """(DecoderSpec, DecoderWeights, manifest) of a reference package written by omm_export."""
    with open(os.path.join(src, "multimodal.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    d = manifest["decoder"]
    if d.get("kv_cache", "concat") != "concat" or "cross_key" in d.get("inputs", {}):
        raise SystemExit("convert: the source must be a decoder-only reference package (kv_cache 'concat', no cross-attention)")
    model = onnx.load(os.path.join(src, manifest["components"]["decoder"]))
    init = {t.name: numpy_helper.to_array(t).astype(np.float32) if t.data_type in (1, 10) else numpy_helper.to_array(t)
            for t in model.graph.initializer}
    # a tied head is a Transpose of the embedding table instead of its own lm_head.weight
    tied = "lm_head.weight" not in init and any(n.op_type == "Transpose" and n.input[0] == "embed_tokens.weight" for n in model.graph.node)
    need = ["embed_tokens.weight", "rope.cos", "rope.sin", "final_norm.weight"] + ([] if tied else ["lm_head.weight"])
    missing = [n for n in need if n not in init]
    if missing:
        raise SystemExit(f"convert: {missing} not in the source graph: only reference graphs written by omm_export can be converted")
    hd = d["head_dim"]
    cos, sin = init["rope.cos"], init["rope.sin"]                  # [ctx, hd]: each half repeated
    # The tables travel verbatim (scaled RoPE -- llama3, linear -- and any attention scaling survive);
    # the nominal base is derived only to report it.
    tables = (np.ascontiguousarray(cos[:, : hd // 2]), np.ascontiguousarray(sin[:, : hd // 2]))
    inv_freq_1 = math.atan2(float(sin[1, 1]), float(cos[1, 1])) if hd >= 4 else float("nan")   # position 1, frequency index 1
    theta = float(f"{inv_freq_1 ** (-hd / 2):.6g}") if inv_freq_1 > 0 else float("nan")
    qk = "layers.0.q_norm.weight" in init
    spec = DecoderSpec(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"],
                       intermediate_size=init["layers.0.gate_proj"].shape[1], num_layers=d["num_layers"],
                       num_heads=d["num_heads"], num_kv_heads=d["num_kv_heads"], head_dim=hd,
                       context_length=d["context_length"], rms_norm_eps=_scalar_after(model, "layers.0.input_norm_var", init),
                       rope_theta=theta, rope_tables=tables, qk_norm=qk,
                       qk_norm_eps=_scalar_after(model, "layers.0.q_norm_var", init) if qk else 1e-5)
    layers = []
    for i in range(spec.num_layers):
        p = f"layers.{i}"
        lw = LayerWeights(input_norm=init[f"{p}.input_norm.weight"], post_norm=init[f"{p}.post_norm.weight"],
                          q=init[f"{p}.q_proj"], k=init[f"{p}.k_proj"], v=init[f"{p}.v_proj"], o=init[f"{p}.o_proj"],
                          gate=init[f"{p}.gate_proj"], up=init[f"{p}.up_proj"], down=init[f"{p}.down_proj"])
        for part in ("q", "k", "v", "o", "gate", "up", "down"):   # attention_bias / mlp_bias checkpoints
            setattr(lw, f"{part}_b", init.get(f"{p}.{part}_proj.bias"))
        if qk:
            lw.q_norm_w = init[f"{p}.q_norm.weight"].reshape(spec.num_heads, hd)
            lw.q_norm_b = init[f"{p}.q_norm.bias"].reshape(spec.num_heads, hd)
            lw.k_norm_w = init[f"{p}.k_norm.weight"].reshape(spec.num_kv_heads, hd)
            lw.k_norm_b = init[f"{p}.k_norm.bias"].reshape(spec.num_kv_heads, hd)
        layers.append(lw)
    lm_head = np.ascontiguousarray(init["embed_tokens.weight"].T) if tied else init["lm_head.weight"]
    w = DecoderWeights(embed=init["embed_tokens.weight"], layers=layers, final_norm=init["final_norm.weight"], lm_head=lm_head, tied_head=tied)
    return spec, w, manifest


def read_seq2seq_reference(src: str, manifest: dict):
    """(Seq2SeqSpec, Seq2SeqWeights) of an encoder-decoder reference package written by omm_export."""
    from .seq2seq_graph import Linear, Seq2SeqLayer, Seq2SeqSpec, Seq2SeqWeights
    d = manifest["decoder"]
    model = onnx.load(os.path.join(src, manifest["components"]["decoder"]))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    gather = next(n.output[0] for n in model.graph.node if n.op_type == "Gather" and n.input[0] == "embed_tokens.weight")
    scale = next(float(init[n.input[1]].reshape(-1)[0]) for n in model.graph.node if n.op_type == "Mul" and n.input[0] == gather)
    eps = next(a.f for n in model.graph.node if n.op_type == "LayerNormalization" for a in n.attribute if a.name == "epsilon")
    lin = lambda n: Linear(init[f"{n}.weight"], init.get(f"{n}.bias"))
    ln = lambda n: (init[f"{n}.weight"], init[f"{n}.bias"])
    layers = []
    for i in range(d["num_layers"]):
        p = f"layers.{i}"
        layers.append(Seq2SeqLayer(self_norm=ln(f"{p}.self_attn_layer_norm"), q=lin(f"{p}.self_attn.q_proj"), k=lin(f"{p}.self_attn.k_proj"),
                                   v=lin(f"{p}.self_attn.v_proj"), o=lin(f"{p}.self_attn.out_proj"),
                                   cross_norm=ln(f"{p}.cross_attention_layer_norm"), cq=lin(f"{p}.cross_attention.q_proj"),
                                   co=lin(f"{p}.cross_attention.out_proj"), ffn_norm=ln(f"{p}.ffn_layer_norm"),
                                   fc1=lin(f"{p}.ffn.fc1"), fc2=lin(f"{p}.ffn.fc2")))
    spec = Seq2SeqSpec(vocab_size=d["vocab_size"], hidden_size=d["hidden_size"], num_layers=d["num_layers"], num_heads=d["num_heads"],
                       context_length=d["context_length"], embed_scale=scale, layer_norm_eps=eps)
    w = Seq2SeqWeights(embed=init["embed_tokens.weight"], positions=init["embed_positions.weights"], layers=layers,
                       final_norm=ln("layer_norm"), lm_head=init["lm_head.weight"])
    return spec, w


def _convert_seq2seq(args, manifest: dict) -> dict:
    from .fused_graph import FusedOptions, quantization_entry
    from .seq2seq_graph import build_fused_seq2seq_decoder
    src, out = args.source, args.out
    if args.graph != "fused" or args.last_logits or getattr(args, "next_token", False) or getattr(args, "device_sampling", False):
        raise SystemExit("convert: encoder-decoder packages convert to --graph fused (without --last-logits, --next-token or --device-sampling) only")
    spec, w = read_seq2seq_reference(src, manifest)
    os.makedirs(out, exist_ok=True)
    d = manifest["decoder"]
    opt = FusedOptions(precision=args.precision, block_size=args.block_size, accuracy_level=args.accuracy_level, int4_activation=args.int4_activation,
                       cross_mha=getattr(args, "cross_mha", False), int4_zero_points=getattr(args, "int4_zero_points", False))
    nbytes = w.embed.nbytes + w.lm_head.nbytes + sum(l.w.nbytes for L in w.layers for l in (L.q, L.k, L.v, L.o, L.cq, L.co, L.fc1, L.fc2))
    data_path = os.path.join(out, "decoder.onnx.data") if nbytes > EXTERNAL_DATA_THRESHOLD or args.external_data else None
    model = build_fused_seq2seq_decoder(spec, w, d.get("position_offset", 0), data_path=data_path, opt=opt)
    _custom_ops(args, model, opt, d)
    save_model(model, os.path.join(out, "decoder.onnx"))
    cross = {k: v for k, v in d["inputs"].items() if k in ("cross_key", "cross_value", "encoder_attention_mask")}
    # kv_dtype is the type of the self-attention cache and of the cross K/V the graph takes (the engine
    # converts the encoder's fp32 K/V once per request).
    d.update(kv_cache="shared", kv_dtype="float16" if opt.act_dtype == np.float16 else "float32",
             inputs=dict(FUSED_IO["inputs"], **cross), outputs=FUSED_IO["outputs"])
    if args.precision == "int4":
        manifest["quantization"] = quantization_entry(opt)
    written = set()
    enc = manifest["speech_encoder"]
    names = [p.replace("%d", str(i)) for i in range(spec.num_layers) for p in (enc["outputs"]["cross_key"], enc["outputs"]["cross_value"])]
    half_cross = opt.act_dtype == np.float16 and getattr(args, "encoder_cross", "fp16") == "fp16"
    source_encoder = os.path.join(src, manifest["components"]["speech_encoder"])
    if getattr(args, "encoder_precision", "fp32") == "fp16":
        from .half_graph import convert_file
        convert_file(source_encoder, os.path.join(out, "speech_encoder.onnx"), [enc["inputs"]["features"]], set(names) if half_cross else set())
        manifest["components"]["speech_encoder"] = "speech_encoder.onnx"
        enc["precision"] = "fp16"
        written.add("speech_encoder")
    elif half_cross:
        manifest["components"]["speech_encoder"] = _encoder_with_half_cross(source_encoder, out, names)
        written.add("speech_encoder")
    if half_cross:
        enc["cross_dtype"] = "float16"
    if "speech_encoder" in written and not getattr(args, "no_relpos_rewrite", False):
        from .relpos_pass import rewrite_file
        rewrite_file(os.path.join(out, manifest["components"]["speech_encoder"]))   # a source exported before the pass
    return {"spec": spec, "data_path": data_path, "written": written}


def _encoder_with_half_cross(path: str, out: str, names: list) -> str:
    """The speech encoder, writing the decoder's cross K/V in fp16: one Cast at the end of each, so an
    fp16 decoder's device cache copies them where the encoder computed them (no host round trip, no
    conversion on the host). The weights are untouched (a graph with external data gets a copy of
    its data file)."""
    model = onnx.load(path, load_external_data=False)
    g = model.graph
    wanted = set(names)
    outputs = {o.name: o for o in g.output}
    missing = wanted - set(outputs)
    if missing:
        raise SystemExit(f"convert: the speech encoder {path} has no output(s) {sorted(missing)}")
    for node in g.node:   # the producers now write <name>.fp32, each Cast writes <name>
        node.output[:] = [o + ".fp32" if o in wanted else o for o in node.output]
    for name in names:
        if outputs[name].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            raise SystemExit(f"convert: the speech encoder's output {name} is not float32")
        g.node.append(onnx.helper.make_node("Cast", [name + ".fp32"], [name], to=onnx.TensorProto.FLOAT16, name=f"{name}.to_fp16"))
        outputs[name].type.tensor_type.elem_type = onnx.TensorProto.FLOAT16
    files = {e.value for t in g.initializer if t.data_location == onnx.TensorProto.EXTERNAL for e in t.external_data if e.key == "location"}
    for f in files:
        src, dst = os.path.join(os.path.dirname(path), f), os.path.join(out, f)
        if os.path.exists(dst):
            os.remove(dst)
        shutil.copyfile(src, dst)   # not a hard link: onnx refuses to read external data with several links
    name = "speech_encoder.onnx"
    with open(os.path.join(out, name), "wb") as f:
        f.write(model.SerializeToString())
    return name


def convert(args) -> dict:
    src, out = args.source, args.out
    if os.path.abspath(src) == os.path.abspath(out):
        raise SystemExit("convert: --out must differ from --from")
    if getattr(args, "prefill_decoder", None) and args.graph != "fused":
        raise SystemExit("convert: --prefill-decoder needs --graph fused (the two graphs share one in-place cache)")
    with open(os.path.join(src, "multimodal.json"), encoding="utf-8") as f:
        peek = json.load(f)
    if "cross_key" in peek.get("decoder", {}).get("inputs", {}):
        if os.path.abspath(src) == os.path.abspath(out):
            raise SystemExit("convert: --out must differ from --from")
        done = _convert_seq2seq(args, peek)
        return _finish(args, peek, done["data_path"], {"embed_scale": done["spec"].embed_scale, "layer_norm_eps": done["spec"].layer_norm_eps},
                       written=done["written"])
    if getattr(args, "encoder_precision", "fp32") != "fp32":
        raise SystemExit("convert: --encoder-precision applies to encoder-decoder (speech) packages only")
    spec, w, manifest = read_reference(src)
    source_precision = manifest.get("precision", "fp32")
    if source_precision not in ("fp32", "fp16"):
        raise SystemExit(f"convert: the source is {source_precision}; convert from the fp32 (or fp16) reference package")
    if source_precision == "fp16":
        # read_reference widened every fp16 initializer to fp32 (exact): the result is what an fp32 source holding
        # these fp16 values would give (e.g. the trained code model, committed in fp16 only)
        if args.precision == "fp32":
            raise SystemExit("convert: the source is fp16; --precision fp32 would only widen it")
        print("convert: fp16 source: weights widened to fp32 exactly before the conversion", file=sys.stderr)
    os.makedirs(out, exist_ok=True)
    weight_bytes = sum(a.nbytes for a in [w.embed, w.lm_head] + [x for L in w.layers for x in (L.q, L.k, L.v, L.o, L.gate, L.up, L.down)])
    data_path = os.path.join(out, "decoder.onnx.data") if weight_bytes > EXTERNAL_DATA_THRESHOLD or args.external_data else None
    decoder = manifest["decoder"]
    if args.graph == "fused":
        from .fused_graph import FusedOptions, build_fused_decoder, quantization_entry
        opt = FusedOptions(precision=args.precision, block_size=args.block_size, accuracy_level=args.accuracy_level,
                           int4_activation=args.int4_activation, last_logits=args.last_logits,
                           next_token=getattr(args, "next_token", False), device_sampling=getattr(args, "device_sampling", False),
                           int4_zero_points=getattr(args, "int4_zero_points", False))
        model = build_fused_decoder(spec, w, opt, data_path=data_path)
        if opt.last_logits:
            decoder["logits"] = "last"
        chooses = opt.next_token or opt.device_sampling
        decoder.update(kv_cache="shared", kv_dtype="float16" if opt.act_dtype == np.float16 else "float32",
                       inputs=FUSED_IO["inputs"], outputs=dict(FUSED_IO["outputs"], **({"next_token": "next_token"} if chooses else {})))
        if opt.device_sampling:
            from .sampling_head import manifest_entry
            decoder["sampling_head"] = manifest_entry(spec.vocab_size)
        if args.precision == "int4":
            manifest["quantization"] = quantization_entry(opt)
        _custom_ops(args, model, opt, decoder)
    else:
        if getattr(args, "custom_ops", "none") != "none":
            raise SystemExit("convert: --custom-ops needs --graph fused --precision int4")
        if getattr(args, "next_token", False) or getattr(args, "device_sampling", False) or getattr(args, "sampling_op", "onnx") != "onnx":
            raise SystemExit("convert: --next-token, --device-sampling and --sampling-op need --graph fused")
        if args.precision == "int4":
            raise SystemExit("convert: --precision int4 needs --graph fused")
        dtype = np.float16 if args.precision == "fp16" else np.float32
        model = build_decoder(spec, w, dtype=dtype, data_path=data_path)
        decoder["kv_dtype"] = "float16" if dtype == np.float16 else "float32"
    save_model(model, os.path.join(out, "decoder.onnx"))
    written = _image_encoder_ops(args, manifest)
    done = _finish(args, manifest, data_path, {"rope_theta": spec.rope_theta, "rms_norm_eps": spec.rms_norm_eps, "qk_norm": spec.qk_norm},
                   written=written)
    if args.graph == "fused" and args.precision == "int4" and os.path.isdir(os.path.join(out, "reference")):
        from .roundtrip import write_roundtrip_reference   # the int4 graph's own reference, for --check
        write_roundtrip_reference(out, spec, w, opt, decoder)
    return done


def _custom_ops(args, model, opt, decoder: dict) -> None:
    """--custom-ops omm: MatMulNBits -> omm.OmmMatMulInt4; omm-fused: also Split + SiLU + Mul + down projection ->
    omm.OmmMatMulInt4SwiGlu (the gate_up projection with SiLU·up in its epilogue), and Chameleon's qk-norm ->
    omm.OmmQkvHeadNorm. --sampling-op omm: the sampling head ->
    omm.OmmSamplingHead. The manifest names the library's domain the graph needs."""
    if getattr(args, "sampling_op", "onnx") == "omm":
        if not opt.device_sampling:
            raise SystemExit("convert: --sampling-op omm needs --device-sampling (it replaces the sampling head)")
        from .custom_ops import OMM_DOMAIN, use_omm_sampling_head
        done = use_omm_sampling_head(model)
        print(f"convert: --sampling-op omm: the sampling head's {done['removed']} nodes are one omm.OmmSamplingHead", file=sys.stderr)
        decoder["custom_op_domains"] = [OMM_DOMAIN]
    which = getattr(args, "custom_ops", "none")
    if which == "none":
        return
    if which == "elementwise":   # Chameleon's qk-norm and each MLP's SiLU·up as our ops; the projections stay stock MatMul /
        # MatMulNBits (its dequantize + GEMM is the fast path for long prompts)
        if opt.act_dtype != np.float16:
            raise SystemExit("convert: --custom-ops elementwise needs fp16 activations (--precision fp16, or int4 with --int4-activation fp16)")
        from .custom_ops import OMM_DOMAIN, fuse_qk_norm, fuse_swiglu
        qk, sw = fuse_qk_norm(model), fuse_swiglu(model)
        if not qk["fused"] and not sw["fused"]:
            raise SystemExit(f"convert: --custom-ops elementwise: nothing to fuse (qk-norm: {qk['kept']}; SiLU·up: {sw['kept']})")
        print(f"convert: --custom-ops elementwise: {qk['fused']} qk-norms as OmmQkvHeadNorm, {sw['fused']} SiLU·up as OmmSwiGlu; "
              f"kept: {qk['kept']} {sw['kept']}", file=sys.stderr)
        decoder["custom_op_domains"] = [OMM_DOMAIN]
        return
    if args.precision != "int4" or opt.act_dtype != np.float16:
        raise SystemExit(f"convert: --custom-ops {which} needs --precision int4 --int4-activation fp16 (the kernel takes fp16 activations)")
    from .custom_ops import OMM_DOMAIN, fuse_qk_norm, fuse_silu_mul, use_omm_int4
    done = use_omm_int4(model)
    if not done["rewritten"]:
        raise SystemExit(f"convert: --custom-ops {which}: no MatMulNBits node the kernel can run ({done['kept']})")
    if done["kept"]:   # those stay stock MatMulNBits: still correct, not our kernel
        print(f"convert: --custom-ops {which}: {sum(done['kept'].values())} MatMulNBits nodes kept stock: {done['kept']}", file=sys.stderr)
    if which == "omm-fused":
        fused = fuse_silu_mul(model)
        if not fused["fused"]:
            raise SystemExit(f"convert: --custom-ops omm-fused: no down projection reads silu(gate) * up of a gate_up Split "
                             f"({fused['kept']}); use --custom-ops omm")
        print(f"convert: --custom-ops omm-fused: {fused['fused']} gate_up projections fused with Split + SiLU + Mul; other "
              f"OmmMatMulInt4 nodes: {fused['kept']}", file=sys.stderr)
        qk = fuse_qk_norm(model)   # Chameleon's qk-norm as one op; models without it have nothing to fuse
        if qk["fused"] or qk["kept"]:
            print(f"convert: --custom-ops omm-fused: {qk['fused']} qk-norms as OmmQkvHeadNorm; kept: {qk['kept']}", file=sys.stderr)
    decoder["custom_op_domains"] = [OMM_DOMAIN]


def _image_encoder_ops(args, manifest: dict) -> set:
    """--custom-ops elementwise on a package with an fp32 image encoder (Chameleon's VQ encoder): its GroupNorms, and the
    SiLU after most of them, as omm.OmmGroupNorm (custom_ops.fuse_group_norm), written to the output package. Returns the
    components written ({"image_encoder"}, or none when the package has no image encoder or nothing in it fuses)."""
    file = manifest.get("components", {}).get("image_encoder")
    if getattr(args, "custom_ops", "none") != "elementwise" or file is None:
        return set()
    from .custom_ops import OMM_DOMAIN, fuse_group_norm
    # the real file, beside its external data: onnx refuses external data reached through a symbolic link (a source
    # package made of links, such as tools/package_variant.py's)
    model = onnx.load(os.path.realpath(os.path.join(args.source, file)))
    done = fuse_group_norm(model)
    if not done["fused"]:
        print(f"convert: --custom-ops elementwise: the image encoder keeps its norms ({done['kept']})", file=sys.stderr)
        return set()
    print(f"convert: --custom-ops elementwise: {done['fused']} image-encoder GroupNorms as OmmGroupNorm ({done['silu']} with the SiLU); "
          f"kept: {done['kept']}", file=sys.stderr)
    save_model(model, os.path.join(args.out, file))
    manifest.setdefault("image_encoder", {})["custom_op_domains"] = [OMM_DOMAIN]
    return {"image_encoder"}


def _finish(args, manifest: dict, data_path, facts: dict, written=frozenset()) -> dict:
    """Copies (or links) the package's other files; `written` names the components already written to out."""
    src, out = args.source, args.out
    # Everything else travels with the package (GenAI's config only describes the fp32 reference graph);
    # with --link-components the other graphs are referenced where they are and the references stay behind.
    skip = {"decoder.onnx", "decoder.onnx.data", "multimodal.json", "genai_config.json"}
    for role in written:   # the source's own file of that name (and its weights) is not copied over it
        skip.update({manifest["components"][role], manifest["components"][role] + ".data"})
    if args.link_components:
        for role, file in manifest["components"].items():
            if role not in ("decoder", "tokenizer") and role not in written:
                manifest["components"][role] = os.path.relpath(os.path.join(src, file), out).replace(os.sep, "/")
                skip.update({file, file + ".data"})
        skip.add("reference")
    for name in os.listdir(src):
        if name in skip:
            continue
        s = os.path.join(src, name)
        (shutil.copytree(s, os.path.join(out, name), dirs_exist_ok=True) if os.path.isdir(s) else shutil.copy2(s, out))
    if getattr(args, "prefill_decoder", None):
        prefill = args.prefill_decoder
        if os.path.isdir(prefill):
            with open(os.path.join(prefill, "multimodal.json"), encoding="utf-8") as f:
                prefill = os.path.join(prefill, json.load(f)["components"]["decoder"])
        manifest["components"]["prefill_decoder"] = os.path.relpath(prefill, out).replace(os.sep, "/")
    manifest["name"] = os.path.basename(os.path.normpath(out))
    manifest["precision"] = args.precision
    manifest["provenance"] = dict(manifest.get("provenance", {}), converted_from=os.path.basename(os.path.normpath(src)),
                                  conversion=f"--graph {args.graph} --precision {args.precision}"
                                             + (f" --encoder-precision {args.encoder_precision}" if getattr(args, "encoder_precision", "fp32") != "fp32" else "")
                                             + (f" --custom-ops {args.custom_ops}" if getattr(args, "custom_ops", "none") != "none" else "")
                                             + (" --next-token" if getattr(args, "next_token", False) else "")
                                             + (" --device-sampling" if getattr(args, "device_sampling", False) else ""),
                                  note="reference/ describes the source model")
    with open(os.path.join(out, "multimodal.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    return dict({"out": out, "graph": args.graph, "precision": args.precision, "external_data": data_path is not None}, **facts)
