"""Graph pass: relative-position ("relative_key") attention without the [T, T, head_dim] tensor.

transformers' Seamless M4T v2 conformer computes, per layer,

    idx  = clamp(r - l, -left_max, right_max) + left_max                 # [T, T] int64
    emb  = distance_embedding.weight[idx]                                  # [T, T, d]   <- T*T*d floats
    rel  = einsum("bhld,lrd->bhlr", q, emb)                                # [B, H, T, T]

and the ONNX exporter keeps that order: Gather(table, idx) -> Cast* -> Einsum. The gathered tensor is
head_dim times the size of the attention score; it made encoder memory ~284 bytes per T^2 on the tiny
model (10 GB for 120 s of audio). The same numbers, computed in the other order:

    s    = q @ table^T                                                     # [B, H, T, P], P = L + R + 1
    rel[b, h, l, r] = s[b, h, l, idx[l, r]]                                # gather from the flattened rows

Each output element is the same dot product q[b, h, l] . table[idx[l, r]] (same operands, same length),
so the result matches the original to the rounding of one d-long dot product. The largest new tensor
is the [B, H, T, T] score itself, plus the [T, T] int64 flat index.

The pass matches by structure, not by name: a Gather (axis 0) of a rank-2 table whose output reaches,
through Cast/Identity nodes that have no other consumer, one Einsum of the form "bhld,lrd->bhlr" (any
letters, either operand order, spaces allowed). Anything else is left as it is.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

_PASS_THROUGH = ("Cast", "Identity")


def _opset(model: onnx.ModelProto) -> int:
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return o.version
    return 1


def _einsum_roles(equation: str, gathered_pos: int) -> bool:
    """True when `equation` is q[b,h,l,d] x emb[l,r,d] -> [b,h,l,r] with emb at operand `gathered_pos`."""
    eq = equation.replace(" ", "")
    if "..." in eq or "->" not in eq:
        return False
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2:
        return False
    g, q = terms[gathered_pos], terms[1 - gathered_pos]
    if len(q) != 4 or len(g) != 3 or len(out) != 4 or len(set(q)) != 4 or len(set(g)) != 3:
        return False
    b, h, l, d = q
    return g[0] == l and g[2] == d and g[1] not in q and out == b + h + l + g[1]


def _rank_of(name: str, inferred: dict, constants: dict) -> int | None:
    if name in constants:
        return len(constants[name])
    vi = inferred.get(name)
    if vi is not None and vi.type.tensor_type.HasField("shape"):
        return len(vi.type.tensor_type.shape.dim)
    return None


def _elem_type(name: str, inferred: dict, init_types: dict) -> int | None:
    if name in init_types:
        return init_types[name]
    vi = inferred.get(name)
    if vi is not None and vi.type.tensor_type.elem_type:
        return vi.type.tensor_type.elem_type
    return None


def rewrite_relative_position(model: onnx.ModelProto) -> int:
    """Rewrites every matching relative-position block of `model` in place; returns how many."""
    graph = model.graph
    opset = _opset(model)
    if opset < 13:
        return 0   # Unsqueeze/Range forms below are opset 13+; every graph we export is 17
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in graph.output}
    constants = {t.name: list(t.dims) for t in graph.initializer}
    init_types = {t.name: t.data_type for t in graph.initializer}
    for n in graph.node:
        if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value":
            constants[n.output[0]] = list(n.attribute[0].t.dims)
            init_types[n.output[0]] = n.attribute[0].t.data_type
    try:
        shaped = onnx.shape_inference.infer_shapes(model)
        inferred = {v.name: v for v in list(shaped.graph.value_info) + list(shaped.graph.input) + list(shaped.graph.output)}
    except Exception:   # shape inference is a help, not a requirement
        inferred = {}

    plans = []
    for gather in graph.node:
        if gather.op_type != "Gather" or gather.domain not in ("", "ai.onnx"):
            continue
        axis = next((helper.get_attribute_value(a) for a in gather.attribute if a.name == "axis"), 0)
        table, idx = gather.input[0], gather.input[1]
        if axis != 0 or _rank_of(table, inferred, constants) != 2:
            continue
        chain, cur = [], gather.output[0]
        while True:
            users = consumers.get(cur, [])
            if cur in graph_outputs or len(users) != 1:
                break
            nxt = users[0]
            if nxt.op_type in _PASS_THROUGH and nxt.domain in ("", "ai.onnx"):
                chain.append(nxt)
                cur = nxt.output[0]
                continue
            break
        users = consumers.get(cur, [])
        if cur in graph_outputs or len(users) != 1 or users[0].op_type != "Einsum":
            continue
        einsum = users[0]
        pos = list(einsum.input).index(cur)
        equation = next((helper.get_attribute_value(a) for a in einsum.attribute if a.name == "equation"), b"")
        equation = equation.decode() if isinstance(equation, bytes) else equation
        if len(einsum.input) != 2 or not _einsum_roles(equation, pos):
            continue
        plans.append((gather, chain, einsum, einsum.input[1 - pos], _elem_type(idx, inferred, init_types)))

    if not plans:
        return 0
    replace: dict[int, list[onnx.NodeProto]] = {}
    drop: set[int] = set()
    taken = {o for n in graph.node for o in n.output} | {n.name for n in graph.node}
    base = 0
    while any(t.startswith(f"relpos{base}") for t in taken):
        base += 100
    for k, (gather, chain, einsum, query, idx_type) in enumerate(plans):
        replace[id(einsum)] = _replacement(f"relpos{base + k}", gather, chain, einsum, query, idx_type)
        drop.add(id(gather))
        drop.update(id(c) for c in chain)
    nodes = []
    for n in graph.node:
        if id(n) in replace:
            nodes.extend(replace[id(n)])
        elif id(n) not in drop:
            nodes.append(n)
    del graph.node[:]
    graph.node.extend(nodes)
    # value_info of the removed [T, T, d] tensors would only mislead later tools
    removed = {o for _, chain, _, _, _ in plans for c in chain for o in c.output} | {g.output[0] for g, *_ in plans}
    keep = [v for v in graph.value_info if v.name not in removed]
    del graph.value_info[:]
    graph.value_info.extend(keep)
    return len(plans)


def _const(name: str, values, dtype=np.int64) -> onnx.NodeProto:
    arr = np.array(values, dtype=dtype)
    return helper.make_node("Constant", [], [name], name=name, value=numpy_helper.from_array(arr, name))


def _replacement(p: str, gather, chain, einsum, query: str, idx_type) -> list[onnx.NodeProto]:
    """Nodes computing einsum's output from q, the table and the [T, T] index, in topological order."""
    table, idx = gather.input[0], gather.input[1]
    nodes = []
    # the table through the same casts the gathered rows went through (fp32 -> fp16 and the like)
    t = table
    for i, c in enumerate(chain):
        nodes.append(helper.make_node(c.op_type, [t], [f"{p}/table_{i}"], name=f"{p}/table_{i}",
                                      **{a.name: helper.get_attribute_value(a) for a in c.attribute}))
        t = f"{p}/table_{i}"
    nodes.append(helper.make_node("Transpose", [t], [f"{p}/table_t"], name=f"{p}/Transpose", perm=[1, 0]))
    # s[b, h, l, p] = q[b, h, l, :] . table[p, :], flattened to [b, h, l * P]
    nodes.append(helper.make_node("MatMul", [query, f"{p}/table_t"], [f"{p}/scores"], name=f"{p}/MatMul"))
    nodes.append(_const(f"{p}/flat_shape", [0, 0, -1]))
    nodes.append(helper.make_node("Reshape", [f"{p}/scores", f"{p}/flat_shape"], [f"{p}/scores_flat"], name=f"{p}/Reshape_flat"))
    # flat index l * P + idx[l, r], [T * T]
    if idx_type not in (None, TensorProto.INT64):
        nodes.append(helper.make_node("Cast", [idx], [f"{p}/idx64"], name=f"{p}/Cast_idx", to=TensorProto.INT64))
        idx = f"{p}/idx64"
    nodes.append(helper.make_node("Shape", [idx], [f"{p}/idx_shape"], name=f"{p}/Shape_idx"))
    nodes.append(helper.make_node("Shape", [table], [f"{p}/table_shape"], name=f"{p}/Shape_table"))
    nodes.append(_const(f"{p}/zero", 0))
    nodes.append(_const(f"{p}/one", 1))
    nodes.append(helper.make_node("Gather", [f"{p}/idx_shape", f"{p}/zero"], [f"{p}/rows"], name=f"{p}/Gather_rows", axis=0))
    nodes.append(helper.make_node("Gather", [f"{p}/table_shape", f"{p}/zero"], [f"{p}/P"], name=f"{p}/Gather_P", axis=0))
    nodes.append(helper.make_node("Range", [f"{p}/zero", f"{p}/rows", f"{p}/one"], [f"{p}/row_ids"], name=f"{p}/Range"))
    nodes.append(helper.make_node("Mul", [f"{p}/row_ids", f"{p}/P"], [f"{p}/row_base"], name=f"{p}/Mul_base"))
    nodes.append(_const(f"{p}/axis1", [1]))
    nodes.append(helper.make_node("Unsqueeze", [f"{p}/row_base", f"{p}/axis1"], [f"{p}/row_base_col"], name=f"{p}/Unsqueeze"))
    nodes.append(helper.make_node("Add", [idx, f"{p}/row_base_col"], [f"{p}/flat_idx2d"], name=f"{p}/Add_flat"))
    nodes.append(_const(f"{p}/minus_one", [-1]))
    nodes.append(helper.make_node("Reshape", [f"{p}/flat_idx2d", f"{p}/minus_one"], [f"{p}/flat_idx"], name=f"{p}/Reshape_idx"))
    # rel[b, h, l * T + r] = s_flat[b, h, flat_idx], then [b, h, T, T] under einsum's own output name
    nodes.append(helper.make_node("Gather", [f"{p}/scores_flat", f"{p}/flat_idx"], [f"{p}/rel_flat"], name=f"{p}/Gather_scores", axis=2))
    nodes.append(_const(f"{p}/keep2", [0, 0]))
    nodes.append(helper.make_node("Concat", [f"{p}/keep2", f"{p}/idx_shape"], [f"{p}/out_shape"], name=f"{p}/Concat_shape", axis=0))
    nodes.append(helper.make_node("Reshape", [f"{p}/rel_flat", f"{p}/out_shape"], [einsum.output[0]], name=f"{p}/Reshape_out"))
    return nodes


def rewrite_file(path: str) -> int:
    """Applies the pass to one .onnx file in place (weights in an external .data file stay untouched)."""
    model = onnx.load(path, load_external_data=False)
    n = rewrite_relative_position(model)
    if n:
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
    return n

