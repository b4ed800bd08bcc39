"""CPU check of custom_ops.fuse_group_norm (numpy, onnx and onnxruntime's CPU provider; no GPU):

  python3 -m omm_export.group_norm_check [IMAGE_ENCODER]      (default ../models/tiny-chameleon/image_encoder.onnx)

1. Small graphs written the way TorchScript writes nn.GroupNorm (Reshape [0, G, -1], InstanceNormalization with unit
   scale and zero bias, Reshape back to Shape(x), Mul gamma, Add beta; then Sigmoid and Mul for the SiLU in either
   operand order): each becomes one omm.OmmGroupNorm whose attributes and inputs, read as numpy's GroupNorm, give ONNX
   Runtime's result for the original graph within 1e-5 of (1 + |y|). Two images, 3 groups, rank 3, 4 and 5; gamma and
   beta as initializers, as an Identity of one, and as Constant nodes (which must survive the rewrite).
2. What must not fuse: an intermediate read elsewhere, gamma of shape [1, C, 1, 1], a Reshape into groups with a literal
   batch, InstanceNormalization with a scale other than 1, an fp16 x. The SiLU stays outside (activation 0) when the
   norm's output has another reader.
3. The committed tiny-chameleon image encoder: every InstanceNormalization fused, all but one with the SiLU; onnx's
   checker (which requires a topologically sorted graph) passes.
Exits 1 on any failure.
"""
from __future__ import annotations

import copy
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .custom_ops import OMM_GROUP_NORM_OP, _Graph, _attrs, fuse_group_norm

failures: list[str] = []


def check(ok: bool, what: str) -> None:
    print(("ok   " if ok else "FAIL ") + what)
    if not ok:
        failures.append(what)


def graph(shape, groups, silu=None, affine="init", gamma_shape=None, batch=0, scale=1.0, dtype=TensorProto.FLOAT, extra=None):
    """x -> GroupNorm as TorchScript exports it (-> SiLU: "ab" Mul(y, sig), "ba" Mul(sig, y)) -> y. extra: "r2" (the
    reshaped-back tensor is also an output) or "norm" (the norm's output is also an output)."""
    c = shape[1]
    np_type = np.float16 if dtype == TensorProto.FLOAT16 else np.float32
    rng = np.random.default_rng(5)
    per = gamma_shape or (c,) + (1,) * (len(shape) - 2)
    gamma = (1 + 0.5 * rng.standard_normal(per)).astype(np_type)
    beta = (0.3 * rng.standard_normal(per)).astype(np_type)
    nodes, inits = [], []

    def const(name, value):
        nodes.append(helper.make_node("Constant", [], [name], value=numpy_helper.from_array(value, name + "_v")))

    const("groups_shape", np.array([batch, groups, -1], dtype=np.int64))
    const("ones", np.full(groups, scale, dtype=np_type))
    const("zeros", np.zeros(groups, dtype=np_type))
    nodes += [helper.make_node("Reshape", ["x", "groups_shape"], ["r1"]),
              helper.make_node("InstanceNormalization", ["r1", "ones", "zeros"], ["inorm"], epsilon=1e-5),
              helper.make_node("Shape", ["x"], ["shape"]),
              helper.make_node("Reshape", ["inorm", "shape"], ["r2"])]
    if affine == "constant":
        const("gamma", gamma)
        const("beta", beta)
    elif affine == "identity":
        inits += [numpy_helper.from_array(gamma, "gamma_w"), numpy_helper.from_array(beta, "beta_w")]
        nodes += [helper.make_node("Identity", ["gamma_w"], ["gamma"]), helper.make_node("Identity", ["beta_w"], ["beta"])]
    else:
        inits += [numpy_helper.from_array(gamma, "gamma"), numpy_helper.from_array(beta, "beta")]
    nodes += [helper.make_node("Mul", ["r2", "gamma"], ["m"]), helper.make_node("Add", ["m", "beta"], ["norm"])]
    out = "norm"
    if silu:
        nodes += [helper.make_node("Sigmoid", ["norm"], ["sig"]),
                  helper.make_node("Mul", ["norm", "sig"] if silu == "ab" else ["sig", "norm"], ["y"])]
        out = "y"
    outputs = [helper.make_tensor_value_info(out, dtype, list(shape))]
    if extra:
        outputs.append(helper.make_tensor_value_info(extra, dtype, list(shape)))
    g = helper.make_graph(nodes, "gn", [helper.make_tensor_value_info("x", dtype, list(shape))], outputs, inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 10
    return m, gamma, beta


def reference(x, groups, gamma, beta, eps, silu):
    n = x.shape[0]
    xg = x.astype(np.float64).reshape(n, groups, -1)
    y = ((xg - xg.mean(-1, keepdims=True)) / np.sqrt(xg.var(-1, keepdims=True) + eps)).reshape(x.shape)
    y = y * gamma.astype(np.float64).reshape((1,) + gamma.shape) + beta.astype(np.float64).reshape((1,) + beta.shape)
    return y / (1 + np.exp(-y)) if silu else y


def main() -> int:
    import onnxruntime as ort
    x_rng = np.random.default_rng(7)
    for shape in [(2, 6, 5, 4), (2, 6, 9), (2, 6, 3, 2, 2)]:
        for silu in (None, "ab", "ba"):
            for affine in ("init", "identity", "constant"):
                m, _, _ = graph(shape, 3, silu, affine)
                x = (x_rng.standard_normal(shape) * 2 + 1).astype(np.float32)
                want = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
                fused = copy.deepcopy(m)
                done = fuse_group_norm(fused)
                name = f"{shape} silu={silu} gamma/beta as {affine}"
                ops = [n for n in fused.graph.node if n.op_type == OMM_GROUP_NORM_OP]
                check(done["fused"] == 1 and done["silu"] == (1 if silu else 0) and len(ops) == 1, f"{name}: fused {done}")
                if len(ops) != 1:
                    continue
                op = ops[0]
                left = sorted(n.op_type for n in fused.graph.node if n.op_type != "Constant")
                check(left == sorted([OMM_GROUP_NORM_OP] + (["Identity", "Identity"] if affine == "identity" else [])),
                      f"{name}: nothing of the chain is left ({left})")
                try:
                    onnx.checker.check_model(fused)
                    check(True, f"{name}: onnx checker (every input defined, topological order)")
                except onnx.checker.ValidationError as e:
                    check(False, f"{name}: onnx checker: {e}")
                gr = _Graph(fused)
                a = _attrs(op)
                gamma, beta = gr.constant(op.input[1]), gr.constant(op.input[2])
                if gamma is None or beta is None:
                    check(False, f"{name}: the op's gamma / beta are still defined")
                    continue
                got = reference(x, a["num_groups"], gamma, beta, a["epsilon"], a["activation"])
                err = float(np.max(np.abs(got - want) / (1 + np.abs(want))))
                check(op.input[0] == "x" and op.output[0] == ("y" if silu else "norm") and err < 1e-5,
                      f"{name}: the op read as GroupNorm gives ONNX Runtime's output (max err {err:.1e})")
    kept = {
        "an intermediate read elsewhere": graph((2, 6, 5, 4), 3, "ab", extra="r2")[0],
        "gamma [1, C, 1, 1]": graph((2, 6, 5, 4), 3, "ab", gamma_shape=(1, 6, 1, 1))[0],
        "a literal batch in the Reshape into groups": graph((2, 6, 5, 4), 3, "ab", batch=2)[0],
        "InstanceNormalization scale 2": graph((2, 6, 5, 4), 3, "ab", scale=2.0)[0],
        "an fp16 x": graph((2, 6, 5, 4), 3, "ab", dtype=TensorProto.FLOAT16)[0],
    }
    for what, m in kept.items():
        done = fuse_group_norm(m)
        check(done["fused"] == 0 and sum(done["kept"].values()) == 1, f"kept: {what} ({done['kept']})")
    m, _, _ = graph((2, 6, 5, 4), 3, "ab", extra="norm")
    done = fuse_group_norm(m)
    sig = [n for n in m.graph.node if n.op_type == "Sigmoid"]
    check(done["fused"] == 1 and done["silu"] == 0 and len(sig) == 1, f"the SiLU stays outside when the norm's output is also read ({done})")

    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny-chameleon", "image_encoder.onnx")
    m = onnx.load(path)
    norms = sum(n.op_type == "InstanceNormalization" for n in m.graph.node)
    done = fuse_group_norm(m)
    check(norms > 0 and done["fused"] == norms and done["silu"] == norms - 1 and not done["kept"], f"{path}: {norms} norms, {done}")
    try:
        onnx.checker.check_model(m)
        check(True, f"{path}: onnx checker")
    except onnx.checker.ValidationError as e:
        check(False, f"{path}: onnx checker: {e}")
    print(f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
