"""CPU check of `--custom-ops omm-fused` (custom_ops.fuse_silu_mul), numpy and onnx only, no GPU or onnxruntime:

  python3 -m omm_export.silu_mul_check [PACKAGE]      (PACKAGE: a fp32 reference package, default ../models/tiny-llama)

1. The rewrite on the graph our exporter writes: the package's fused int4 decoder (fp16 activations, block 32) after
   use_omm_int4 gets one OmmMatMulInt4SwiGlu (the gate_up projection) per layer, every Split / Sigmoid / Mul of the
   MLPs is gone, the graph stays topologically sorted, and the other projections are kept with their reason.
2. The math (of the rewrite and of a numpy model of the kernel's epilogue, not of the CUDA kernel itself: that is
   checked on the GPU by bench_int4_gemv.py and CustomOpsCudaTests): for each layer, the stock subgraph from the gate_up projection's input to SiLU·up (OmmMatMulInt4, Split,
   Sigmoid, Mul, Mul, each rounding to fp16 as the stock CUDA kernels do) is interpreted on random inputs and
   compared with OmmMatMulInt4SwiGlu's semantics (the kernel's epilogue: gate and up rounded to fp16, silu(gate) in
   fp32 rounded to fp16, the product rounded to fp16; the same fp16 dequantized weights): within a few fp16
   roundings, while the same check with the gate and up weight rows swapped fails by far (so the check can fail).
3. The matcher on small graphs: operand orders, QuickGelu(alpha 1), and what must not fuse (another consumer,
   split sizes that are not [K, K], a split along another axis, QuickGelu with its default alpha 1.702).
Exits 1 on any failure.
"""
from __future__ import annotations

import copy
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .custom_ops import OMM_INT4_OP, OMM_INT4_SILU_MUL_OP, OMM_INT4_SWIGLU_OP, fuse_silu_mul, use_omm_int4

# max |fused - stock| / max |stock| at the down projection's output. x differs by at most ~2 fp16 roundings per value
# (stock rounds silu(g), then silu(g) * u; fused rounds once), i.e. 2^-10 relative; summed over K terms of mixed signs
# and set against max |y| that is far below 2^-10 in practice, plus 1 rounding of y each: 4e-3 is loose for rounding
# and far below a wrong half, order or activation (which move y by its own size: the swap below gives ~1).
REL_TOL = 4e-3


def _dequant(b: np.ndarray, scales: np.ndarray, k: int, block: int) -> np.ndarray:
    """MatMulNBits' weights [N, K] as the kernels use them: (q - 8) * scale rounded to fp16."""
    n = scales.shape[0]
    b = b.reshape(n, -1)
    q = np.empty((n, b.shape[1] * 2), np.float32)
    q[:, 0::2], q[:, 1::2] = b & 0xF, b >> 4
    s = np.repeat(scales.astype(np.float32).reshape(n, -1), block, axis=1)
    return ((q - 8) * s).astype(np.float16)[:, :k]


def _silu_mul_fused(a: np.ndarray, k: int) -> np.ndarray:
    """OmmMatMulInt4SiluMul's x: silu(gate) * up in fp32 from A [..., 2K], rounded once to fp16 (int4_gemv.cu)."""
    g, u = a[..., :k].astype(np.float32), a[..., k:].astype(np.float32)
    return (g / (np.float32(1) + np.exp(-g)) * u).astype(np.float16)


def _gemv(x: np.ndarray, node: onnx.NodeProto, env: dict) -> np.ndarray:
    at = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    w = _dequant(env[node.input[1]], env[node.input[2]], at["K"], at["block_size"])
    y = x.astype(np.float32) @ w.astype(np.float32).T
    if len(node.input) > 5 and node.input[5]:
        y = y + env[node.input[5]].astype(np.float32)
    return y.astype(np.float16)


def _run(nodes, env: dict, want: str) -> np.ndarray:
    """Interprets `nodes` (in order; those whose inputs are not all known are skipped) until `want` is computed.
    fp16 tensors round after every op, as the stock fp16 CUDA kernels do."""
    f16 = lambda v: np.asarray(v, np.float32).astype(np.float16)
    for n in nodes:
        if not all(i in env for i in n.input if i):
            continue
        at = {a.name: helper.get_attribute_value(a) for a in n.attribute}
        x = [env.get(i) for i in n.input]
        if n.op_type == "Split":
            sizes = [int(v) for v in x[1]] if len(x) > 1 and x[1] is not None else None
            cuts = np.cumsum(sizes)[:-1] if sizes else 2
            outs = np.split(x[0], cuts, axis=at.get("axis", 0))
        elif n.op_type == "Sigmoid":
            outs = [f16(1 / (1 + np.exp(-x[0].astype(np.float32))))]
        elif n.op_type == "QuickGelu":
            v = x[0].astype(np.float32)
            outs = [f16(v / (1 + np.exp(-at.get("alpha", 1.702) * v)))]
        elif n.op_type == "Mul":
            outs = [f16(x[0].astype(np.float32) * x[1].astype(np.float32))]
        elif n.op_type == OMM_INT4_OP:
            outs = [_gemv(x[0], n, env)]
        elif n.op_type == OMM_INT4_SILU_MUL_OP:
            k = {a.name: helper.get_attribute_value(a) for a in n.attribute}["K"]
            outs = [_gemv(_silu_mul_fused(x[0], k), n, env)]
        elif n.op_type == OMM_INT4_SWIGLU_OP:
            y = _gemv(x[0], n, env)                  # gate and up, each rounded to fp16
            half = y.shape[-1] // 2
            g, u = y[..., :half].astype(np.float32), y[..., half:].astype(np.float32)
            outs = [f16(f16(g / (1 + np.exp(-g))).astype(np.float32) * u)]
        else:
            continue
        env.update(zip(n.output, outs))
        if want in env:
            return env[want]
    raise AssertionError(f"{want} was not computed")


def _check_package(src: str, failures: list) -> None:
    from .convert import read_reference
    from .fused_graph import FusedOptions, build_fused_decoder
    spec, w, _ = read_reference(src)
    opt = FusedOptions(precision="int4", int4_activation="fp16", block_size=32, accuracy_level=0)
    stock = build_fused_decoder(spec, w, opt)
    use_omm_int4(stock)
    fused = copy.deepcopy(stock)
    done = fuse_silu_mul(fused)
    count = lambda m, op: sum(n.op_type == op for n in m.graph.node)
    print(f"{src}: {len(stock.graph.node)} -> {len(fused.graph.node)} nodes; {done}")
    if done["fused"] != spec.num_layers or count(fused, OMM_INT4_SWIGLU_OP) != spec.num_layers:
        failures.append(f"fused {done['fused']} MLPs, want one per layer ({spec.num_layers})")
    for op in ("Split", "Sigmoid", "Mul"):
        if count(fused, op):
            failures.append(f"{count(fused, op)} {op} nodes left")
    if len(stock.graph.node) - len(fused.graph.node) != 4 * spec.num_layers:
        failures.append("not exactly Split, Sigmoid and two Muls removed per layer")
    known = {i.name for i in fused.graph.input} | {t.name for t in fused.graph.initializer} | {""}
    for n in fused.graph.node:
        if not all(i in known for i in n.input):
            failures.append(f"{n.op_type} reads a tensor no earlier node writes: {list(n.input)}")
        known |= set(n.output)
    init = {t.name: numpy_helper.to_array(t) for t in stock.graph.initializer}
    rng = np.random.default_rng(7)
    worst = 0.0
    for node in (n for n in fused.graph.node if n.op_type == OMM_INT4_SWIGLU_OP):
        k = {a.name: helper.get_attribute_value(a) for a in node.attribute}["K"]
        x = (rng.standard_normal((3, k)) * 2).astype(np.float16)     # 3 rows: prefill-like M
        want = _run(stock.graph.node, dict(init, **{node.input[0]: x}), node.output[0]).astype(np.float32)
        got = _run([node], dict(init, **{node.input[0]: x}), node.output[0]).astype(np.float32)
        rel = float(np.abs(got - want).max() / np.abs(want).max())
        flip = lambda t: np.concatenate([t[t.shape[0] // 2:], t[: t.shape[0] // 2]])   # up rows first, then gate rows
        env = dict(init, **{node.input[0]: x, node.input[1]: flip(init[node.input[1]]), node.input[2]: flip(init[node.input[2]])})
        swapped = _run([node], env, node.output[0])
        rel_swapped = float(np.abs(swapped.astype(np.float32) - want).max() / np.abs(want).max())
        worst = max(worst, rel)
        print(f"  {node.output[0]}: K={k}: max |fused - stock| / max |stock| = {rel:.2e}; with gate and up swapped {rel_swapped:.2e}")
        if not rel <= REL_TOL:
            failures.append(f"{node.output[0]}: fused differs from the stock subgraph by {rel:.2e} > {REL_TOL}")
        if not rel_swapped > 25 * REL_TOL:
            failures.append(f"{node.output[0]}: swapping gate and up moved the output by only {rel_swapped:.2e}: the check cannot tell")
    print(f"  worst over {done['fused']} layers: {worst:.2e} (tolerance {REL_TOL})")


def _mlp_graph(k=64, n=32, silu="sigmoid", swap_silu=False, swap_mul=False, sizes=None, axis=-1, extra_consumer=False,
               sizes_as_attr=False, sizes_as_constant=False):
    """A one-MLP graph shaped like fused_graph's: X [M, 64] -> OmmMatMulInt4 (gate_up) -> A [M, 2K] -> Split -> silu -> Mul
    -> OmmMatMulInt4 (down) -> Y [M, N]."""
    sizes = sizes or [k, k]
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.integers(0, 256, (n, k // 32, 16), dtype=np.uint8), "B"),
             numpy_helper.from_array((rng.random((n, k // 32)) * 0.02).astype(np.float16), "S"),
             numpy_helper.from_array(rng.integers(0, 256, (2 * k, 2, 16), dtype=np.uint8), "Bgu"),
             numpy_helper.from_array((rng.random((2 * k, 2)) * 0.05).astype(np.float16), "Sgu")]
    nodes = [helper.make_node(OMM_INT4_OP, ["X", "Bgu", "Sgu"], ["A"], domain="omm", K=64, N=2 * k, bits=4, block_size=32)]
    if sizes_as_attr:
        nodes.append(helper.make_node("Split", ["A"], ["gate", "up"], axis=axis, split=sizes))
    elif sizes_as_constant:
        nodes.append(helper.make_node("Constant", [], ["sizes"], value=numpy_helper.from_array(np.array(sizes, np.int64))))
        nodes.append(helper.make_node("Split", ["A", "sizes"], ["gate", "up"], axis=axis))
    else:
        inits.append(numpy_helper.from_array(np.array(sizes, np.int64), "sizes"))
        nodes.append(helper.make_node("Split", ["A", "sizes"], ["gate", "up"], axis=axis))
    if silu == "sigmoid":
        nodes.append(helper.make_node("Sigmoid", ["gate"], ["sig"]))
        nodes.append(helper.make_node("Mul", ["sig", "gate"] if swap_silu else ["gate", "sig"], ["silu"]))
    else:
        alpha = {"quickgelu1": 1.0, "quickgelu": 1.702}[silu]
        nodes.append(helper.make_node("QuickGelu", ["gate"], ["silu"], domain="com.microsoft", alpha=alpha))
    nodes.append(helper.make_node("Mul", ["up", "silu"] if swap_mul else ["silu", "up"], ["act"]))
    nodes.append(helper.make_node(OMM_INT4_OP, ["act", "B", "S"], ["Y"], domain="omm", K=k, N=n, bits=4, block_size=32))
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT16, ["M", n])]
    if extra_consumer:
        outputs.append(helper.make_tensor_value_info("act", TensorProto.FLOAT16, ["M", k]))
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("X", TensorProto.FLOAT16, ["M", 64])], outputs, inits,
                              value_info=[helper.make_tensor_value_info("A", TensorProto.FLOAT16, ["M", 2 * k])])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11 if sizes_as_attr else 17), helper.make_opsetid("omm", 1)])


def _check_matcher(failures: list) -> None:
    cases = [("Mul(gate, sigmoid)", {}, 1), ("Mul(sigmoid, gate)", {"swap_silu": True}, 1), ("Mul(up, silu)", {"swap_mul": True}, 1),
             ("QuickGelu alpha 1", {"silu": "quickgelu1"}, 1), ("split attribute (opset 11)", {"sizes_as_attr": True}, 1),
             ("split axis 1 of the rank-2 input A", {"axis": 1}, 1), ("split sizes from a Constant node", {"sizes_as_constant": True}, 1), ("QuickGelu alpha 1.702 (GELU, not SiLU)", {"silu": "quickgelu"}, 0),
             ("split sizes [32, 96]", {"sizes": [32, 96]}, 0), ("SiLU·up also a graph output", {"extra_consumer": True}, 0),
             ("split along axis 0", {"axis": 0}, 0)]
    for name, kw, want in cases:
        m = _mlp_graph(**kw)
        before = len(m.graph.node)
        done = fuse_silu_mul(m)
        ok = done["fused"] == want and (len(m.graph.node) == 2 if want else len(m.graph.node) == before)
        if want:
            node = m.graph.node[0]
            ok &= node.op_type == OMM_INT4_SWIGLU_OP and node.output[0] == m.graph.node[1].input[0] \
                and m.graph.node[1].op_type == OMM_INT4_OP and not any(t.name == "sizes" for t in m.graph.initializer)
            live = {i for n in m.graph.node for i in n.input} | {o for n in m.graph.node for o in n.output} | {"X", "Y"}
            ok &= all(t.name in live for t in m.graph.initializer) and all(v.name in live for v in m.graph.value_info)
            x = (np.random.default_rng(5).standard_normal((2, 64)) * 2).astype(np.float16)
            init = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
            ref = _run(_mlp_graph(**kw).graph.node, dict(init, X=x, sizes=np.array([64, 64], np.int64)), "Y").astype(np.float32)
            got = _run(m.graph.node, dict(init, X=x), "Y").astype(np.float32)
            rel = float(np.abs(got - ref).max() / np.abs(ref).max())
            ok &= rel <= REL_TOL
            name += f" (max rel diff {rel:.1e})"
        print(f"  {'fused' if done['fused'] else 'kept '}: {name}; {done['kept'] or ''}")
        if not ok:
            failures.append(f"matcher case '{name}': {done}, want {want} fused")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    src = argv[0] if argv else os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-llama")
    failures: list = []
    _check_package(src, failures)
    print("matcher cases:")
    _check_matcher(failures)
    for f in failures:
        print("FAIL:", f)
    print("silu_mul check:", "PASS" if not failures else f"FAIL ({len(failures)})")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
