"""Rewrites stock contrib ops to our own CUDA custom ops (src/OnnxMultimodal.Kernels, libomm_kernels.so).

`convert --custom-ops omm` calls `use_omm_int4(model)`: every MatMulNBits node that the OmmMatMulInt4
kernel supports (4 bits, fp16 activations, block size a power of two >= 32, K a multiple of 32, uint8 or
absent zero points, no g_idx) becomes `omm.OmmMatMulInt4` with the same inputs, in the same order, and
the same K / N / bits / block_size / accuracy_level attributes; the weights are untouched (the kernel
reads MatMulNBits' layout). A graph so rewritten loads only where the library is registered, so the
stock graph stays the default.
"""
from __future__ import annotations

import onnx

OMM_DOMAIN = "omm"
OMM_INT4_OP = "OmmMatMulInt4"
_KEPT_ATTRIBUTES = {"K", "N", "bits", "block_size", "accuracy_level"}


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _supported(node: onnx.NodeProto, init_types: dict) -> str | None:
    """None when the node can run as OmmMatMulInt4, else the reason it stays stock."""
    a = _attrs(node)
    if a.get("bits") != 4:
        return f"bits {a.get('bits')}"
    bs, k = a.get("block_size", 0), a.get("K", 0)
    if bs < 32 or bs & (bs - 1):
        return f"block_size {bs}"
    if k % 32:
        return f"K {k} not a multiple of 32"
    inputs = list(node.input) + [""] * (6 - len(node.input))
    if inputs[3] and init_types.get(inputs[3], onnx.TensorProto.UINT8) != onnx.TensorProto.UINT8:
        return "non-uint8 zero points"
    if inputs[4]:
        return "g_idx"
    if set(a) - _KEPT_ATTRIBUTES:
        return f"attributes {sorted(set(a) - _KEPT_ATTRIBUTES)}"
    return None


def use_omm_int4(model: onnx.ModelProto) -> dict:
    """Rewrites the supported MatMulNBits nodes of `model` in place (activations must be fp16: the caller
    checks, since value types are not recorded for every node). Returns {"rewritten": n, "kept": {reason: n}}."""
    init_types = {t.name: t.data_type for t in model.graph.initializer}
    rewritten, kept = 0, {}
    for node in model.graph.node:
        if node.op_type != "MatMulNBits" or node.domain != "com.microsoft":
            continue
        why = _supported(node, init_types)
        if why is not None:
            kept[why] = kept.get(why, 0) + 1
            continue
        node.op_type, node.domain = OMM_INT4_OP, OMM_DOMAIN
        rewritten += 1
    if rewritten and not any(o.domain == OMM_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(OMM_DOMAIN, 1))
    return {"rewritten": rewritten, "kept": kept}
