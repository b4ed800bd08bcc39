"""fp16 along a graph's feature path: the speech encoder exported in fp32 (torch.onnx.export of the
conformer), rewritten so that everything computed from the audio features runs in fp16, while the
bookkeeping the exporter traced in float (frame counts, output lengths, position tables derived from
shapes) stays in fp32, where integers above 2048 are still exact.

The feature path is found by type-aware reachability: a float tensor is on it when it is computed from
the features through float tensors (a Shape, a comparison or a Cast to an integer type ends it). A
node on the path runs in fp16: its float inputs from outside the path are cast (or, for weights and
constants read only by such nodes, stored in fp16); its float outputs are fp16. Float constants are
clamped to fp16's range first, so a "minus the largest float" mask value stays finite (-65504), and
the graph's float outputs keep their type unless named in `half_outputs`.
"""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16
F16_MAX = float(np.finfo(np.float16).max)


def _float_types(model: onnx.ModelProto) -> dict:
    """name -> elem_type of every value onnx's shape inference can type."""
    inferred = onnx.shape_inference.infer_shapes(model)
    g = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in list(g.value_info) + list(g.input) + list(g.output)}
    types.update({t.name: t.data_type for t in g.initializer})
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    types[n.output[0]] = a.t.data_type
    return types


def _clamp(a: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(a, -F16_MAX, F16_MAX), dtype=np.float32) if a.dtype == np.float32 else a


# Ops left in fp32 on the path (inputs cast up, outputs cast back): cuDNN's fp16 depthwise Conv1d (the
# conformer's convolution module) measured 4x slower than fp32 on an H100.
KEEP_FP32 = frozenset({"Conv"})


def to_half(model: onnx.ModelProto, sources: list, half_outputs: set, data_dir: str | None = None,
            keep_fp32=KEEP_FP32) -> onnx.ModelProto:
    """Rewrites `model` in place (see the module's note) and returns it. `sources`: the float graph inputs
    the feature path starts from (they stay fp32 inputs, cast once). `data_dir`: where the weights of a
    model loaded without its external data live; they are read, converted and kept in memory."""
    g = model.graph
    _inline_weight_aliases(g)
    types = _float_types(model)
    for name in sources:
        if types.get(name) != FLOAT:
            raise ValueError(f"{name} is not a float input of the graph")
    path = set(sources)
    half_nodes = []
    for n in g.node:   # the exporter writes nodes in topological order
        on = any(i in path for i in n.input if i) and not (n.op_type == "Cast" and _cast_to(n) not in (FLOAT, HALF))
        if n.op_type in ("Shape", "Size"):
            on = False
        if on:
            half_nodes.append(n)
            path.update(o for o in n.output if types.get(o) == FLOAT)
    kept = [n for n in half_nodes if n.op_type in keep_fp32]
    half_nodes = [n for n in half_nodes if n.op_type not in keep_fp32]
    half_set = {id(n) for n in half_nodes}
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    outputs = {o.name for o in g.output}

    inits = {t.name: t for t in g.initializer}
    if data_dir is not None:
        from onnx.external_data_helper import load_external_data_for_tensor, uses_external_data
        for t in g.initializer:
            if uses_external_data(t):
                load_external_data_for_tensor(t, data_dir)
                t.data_location = TensorProto.DEFAULT
                del t.external_data[:]
    for t in g.initializer:   # constants in fp16's range: a mask's float-min stays finite once halved
        if t.data_type == FLOAT:
            t.CopyFrom(numpy_helper.from_array(_clamp(numpy_helper.to_array(t)), t.name))
    constant_nodes = {}
    for n in g.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type == FLOAT:
                    a.t.CopyFrom(numpy_helper.from_array(_clamp(numpy_helper.to_array(a.t)), a.t.name))
                    constant_nodes[n.output[0]] = (n, a)

    # Weights and constants read only on the path are stored in fp16; any other float input of a path node is cast.
    halved, casts, new_nodes = set(), {}, []
    for name in list(inits) + list(constant_nodes):
        users = consumers.get(name, [])
        if users and all(id(u) in half_set for u in users) and name not in outputs and types.get(name) == FLOAT:
            if name in inits:
                t = inits[name]
                t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float16), name))
            else:
                _, a = constant_nodes[name]
                a.t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(a.t).astype(np.float16), a.t.name))
            halved.add(name)
    for n in g.node:
        if id(n) in half_set:
            for k, i in enumerate(n.input):
                if not i or i in path or i in halved or types.get(i) != FLOAT:
                    continue
                if i not in casts:
                    casts[i] = i + ".fp16"
                    new_nodes.append((n, helper.make_node("Cast", [i], [casts[i]], to=HALF, name=i + ".to_fp16")))
                n.input[k] = casts[i]
            if n.op_type == "Cast" and _cast_to(n) == FLOAT:
                for a in n.attribute:
                    if a.name == "to":
                        a.i = HALF
    # Path nodes kept in fp32: their path inputs cast up, their float outputs cast back (and stay on the path).
    after = {}
    for n in kept:
        for k, i in enumerate(n.input):
            if i in path:
                if i + ".fp32" not in casts:
                    casts[i + ".fp32"] = i + ".fp32"
                    new_nodes.append((n, helper.make_node("Cast", [i], [i + ".fp32"], to=FLOAT, name=i + ".to_fp32")))
                n.input[k] = i + ".fp32"
        for k, o in enumerate(n.output):
            if o in path:
                n.output[k] = o + ".fp32"
                after.setdefault(id(n), []).append(helper.make_node("Cast", [o + ".fp32"], [o], to=HALF, name=o + ".to_fp16"))
    # The sources: cast once at the top; every reader takes the fp16 copy.
    head = []
    for name in sources:
        for n in g.node:
            n.input[:] = [name + ".fp16" if i == name else i for i in n.input]
        head.append(helper.make_node("Cast", [name], [name + ".fp16"], to=HALF, name=name + ".to_fp16"))
    # Graph outputs on the path: fp16 where asked, else cast back to fp32 under their own name.
    tail = []
    for o in g.output:
        if o.name not in path:
            continue
        if o.name in half_outputs:
            o.type.tensor_type.elem_type = HALF
            continue
        for n in list(g.node) + [c for cs in after.values() for c in cs]:   # (the producer may be a kept node's cast back)
            n.output[:] = [o.name + ".fp16" if x == o.name else x for x in n.output]
            n.input[:] = [o.name + ".fp16" if x == o.name else x for x in n.input]
        tail.append(helper.make_node("Cast", [o.name + ".fp16"], [o.name], to=FLOAT, name=o.name + ".to_fp32"))
    # Insert each input cast just before its first reader, keeping the order topological.
    before = {}
    for reader, cast in new_nodes:
        before.setdefault(id(reader), []).append(cast)
    nodes = head[:]
    for n in g.node:
        nodes.extend(before.get(id(n), []))
        nodes.append(n)
        nodes.extend(after.get(id(n), []))
    nodes.extend(tail)
    del g.node[:]
    g.node.extend(nodes)
    del g.value_info[:]   # stale float types: ONNX Runtime infers them again
    return model


def _inline_weight_aliases(g) -> None:
    """The exporter folds equal weights into one initializer and gives the others Identity aliases; the
    readers take the initializer itself, so a weight read only on the feature path is stored once in fp16."""
    inits = {t.name for t in g.initializer}
    outputs = {o.name for o in g.output}
    alias = {n.output[0]: n.input[0] for n in g.node if n.op_type == "Identity" and n.input[0] in inits and n.output[0] not in outputs}
    if not alias:
        return
    kept = [n for n in g.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    for n in kept:
        n.input[:] = [alias.get(i, i) for i in n.input]
    del g.node[:]
    g.node.extend(kept)


def _cast_to(n) -> int:
    return next(a.i for a in n.attribute if a.name == "to")


def convert_file(src: str, dst: str, sources: list, half_outputs: set) -> None:
    """Reads `src` (with its external data, if any), writes the fp16 graph to `dst` (weights beside it in
    `<dst>.data` when large)."""
    from .onnx_utils import EXTERNAL_DATA_THRESHOLD, IR_VERSION
    model = onnx.load(src, load_external_data=False)
    to_half(model, sources, half_outputs, data_dir=os.path.dirname(os.path.abspath(src)))
    model.ir_version = IR_VERSION
    total = sum(t.ByteSize() for t in model.graph.initializer)
    if total > EXTERNAL_DATA_THRESHOLD:
        data = os.path.basename(dst) + ".data"
        if os.path.exists(os.path.join(os.path.dirname(dst), data)):
            os.remove(os.path.join(os.path.dirname(dst), data))
        onnx.save_model(model, dst, save_as_external_data=True, all_tensors_to_one_file=True, location=data, size_threshold=1024)
    else:
        onnx.save_model(model, dst)
