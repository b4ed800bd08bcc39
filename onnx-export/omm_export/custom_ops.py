"""Rewrites stock contrib ops to our own CUDA custom ops (src/OnnxMultimodal.Kernels, libomm_kernels.so).

`convert --custom-ops omm` calls `use_omm_int4(model)`: every MatMulNBits node that the OmmMatMulInt4
kernel supports (4 bits, fp16 activations, block size a power of two >= 32, K a multiple of 32, uint8 or
absent zero points, no g_idx) becomes `omm.OmmMatMulInt4` with the same inputs, in the same order, and
the same K / N / bits / block_size / accuracy_level attributes; the weights are untouched (the kernel
reads MatMulNBits' layout). A graph so rewritten loads only where the library is registered, so the
stock graph stays the default.

`convert --custom-ops omm-fused` then calls `fuse_silu_mul(model)`: each gate_up projection whose output is split
into gate and up and turned into silu(gate) * up for a down projection becomes `omm.OmmMatMulInt4SwiGlu`, writing
silu(gate) * up from its epilogue (the Split, SiLU and Mul nodes go). `omm.OmmMatMulInt4SiluMul`, which formed SiLU·up
at the down projection's input instead, measured slower on an H100 and is no longer written.
"""
from __future__ import annotations

import onnx
from onnx import numpy_helper

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


def _import_omm_domain(model: onnx.ModelProto) -> None:
    """Adds our domain to the model's opset imports (once)."""
    if not any(o.domain == OMM_DOMAIN for o in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid(OMM_DOMAIN, 1))


def _drop_unread(model: onnx.ModelProto) -> None:
    """Removes the initializers no node or graph output reads, and the value_info of tensors no node produces any more."""
    g = model.graph
    read = {i for n in g.node for i in n.input} | {o.name for o in g.output}
    inits = [t for t in g.initializer if t.name in read]
    del g.initializer[:]
    g.initializer.extend(inits)
    produced = {o for n in g.node for o in n.output}
    vi = [v for v in g.value_info if v.name in produced]
    del g.value_info[:]
    g.value_info.extend(vi)


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
    if rewritten:
        _import_omm_domain(model)
    return {"rewritten": rewritten, "kept": kept}


OMM_INT4_SILU_MUL_OP = "OmmMatMulInt4SiluMul"   # SiLU·up formed at the down projection's input (not written: slower)
OMM_INT4_SWIGLU_OP = "OmmMatMulInt4SwiGlu"       # the gate_up projection with silu(gate) * up in its epilogue


class _Graph:
    """Producers and consumers of a graph's tensors, for the pattern match below."""

    def __init__(self, model: onnx.ModelProto):
        g = model.graph
        self.producer = {o: n for n in g.node for o in n.output if o}
        self.consumers: dict[str, list] = {}
        for n in g.node:
            for i in n.input:
                if i:
                    self.consumers.setdefault(i, []).append(n)
        self.graph_outputs = {o.name for o in g.output}
        self.init = {t.name: t for t in g.initializer}
        self.rank = {v.name: len(v.type.tensor_type.shape.dim) for v in list(g.value_info) + list(g.input) + list(g.output)
                     if v.type.tensor_type.HasField("shape")}

    def sole_reader(self, tensor: str):
        """The one node that reads `tensor`, when exactly one does and it is no graph output; else None."""
        readers = self.consumers.get(tensor, [])
        return readers[0] if len(readers) == 1 and tensor not in self.graph_outputs else None

    def only_consumers(self, tensor: str, nodes: list) -> bool:
        """True when `tensor` is read by exactly `nodes` (each once, by identity) and is no graph output."""
        if tensor in self.graph_outputs:
            return False
        readers = self.consumers.get(tensor, [])
        return len(readers) == len(nodes) and all(any(r is n for r in readers) for n in nodes)

    def int_values(self, tensor: str):
        """The values of a constant int tensor (an initializer or a Constant node's output), else None."""
        a = self.constant(tensor, follow_identity=False)
        return None if a is None else [int(v) for v in a.reshape(-1)]

    def constant(self, tensor: str, follow_identity: bool = True):
        """A constant tensor's value as a numpy array (an initializer, a Constant node's output, or, when asked, an Identity
        of either: the exporter's deduplicated initializers), else None. Never loads external data."""
        for _ in range(8 if follow_identity else 1):
            if tensor in self.init:
                t = self.init[tensor]
                return None if t.data_location == onnx.TensorProto.EXTERNAL else numpy_helper.to_array(t)
            p = self.producer.get(tensor)
            if p is None or p.domain not in ("", "ai.onnx"):
                return None
            if p.op_type == "Constant":
                value = _attrs(p).get("value")
                return numpy_helper.to_array(value) if isinstance(value, onnx.TensorProto) else None
            if p.op_type != "Identity" or not follow_identity:
                return None
            tensor = p.input[0]
        return None


SILU_NOT_FOUND = "SiLU·up: neither factor is silu(x)"


def _silu_of(gr: _Graph, tensor: str):
    """(gate, nodes) when `tensor` is silu(gate): Mul(gate, Sigmoid(gate)) in either order, QuickGelu with alpha 1
    (what ORT fuses Sigmoid+Mul into), Silu, or Swish with alpha 1; `nodes` are the nodes that compute it. Else
    (None, reason)."""
    n = gr.producer.get(tensor)
    if n is None:
        return None, "SiLU·up: a factor is not computed by a node"
    a = _attrs(n)
    if n.op_type == "QuickGelu" and n.domain == "com.microsoft":
        return (n.input[0], [n]) if float(a.get("alpha", 1.702)) == 1.0 else (None, "QuickGelu with alpha != 1")
    if n.domain in ("", "ai.onnx") and (n.op_type == "Silu" or (n.op_type == "Swish" and float(a.get("alpha", 1.0)) == 1.0)):
        return n.input[0], [n]
    if n.op_type != "Mul" or n.domain not in ("", "ai.onnx") or len(n.input) != 2:
        return None, SILU_NOT_FOUND
    for x, s in ((n.input[0], n.input[1]), (n.input[1], n.input[0])):
        sig = gr.producer.get(s)
        if sig is not None and sig.op_type == "Sigmoid" and sig.domain in ("", "ai.onnx") and sig.input[0] == x:
            if not gr.only_consumers(s, [n]):
                return None, "sigmoid(gate) has other consumers"
            return x, [sig, n]
    return None, SILU_NOT_FOUND


def _match_down(gr: _Graph, node: onnx.NodeProto):
    """(split, dead nodes) when `node`'s A is silu(gate) * up with gate, up = Split(t) halves of size K along the last
    axis, every intermediate read only along the pattern; else (None, reason)."""
    a = node.input[0]
    mul = gr.producer.get(a)
    if mul is None or mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or len(mul.input) != 2:
        return None, "A is not a Mul's output"
    if not gr.only_consumers(a, [node]):
        return None, "SiLU·up has other consumers"
    split, found = _silu_mul_split(gr, mul, _attrs(node)["K"])
    return (split, found + [mul]) if split is not None else (None, found)


def _silu_mul_split(gr: _Graph, mul: onnx.NodeProto, k: int | None):
    """(split, nodes) when the two-input Mul `mul` computes silu(gate) * up with gate and up outputs 0 and 1 of one
    two-way Split into halves along the last axis (of size k; None: any two equal halves), every intermediate read only
    along the pattern; `nodes` are the Split and the SiLU's nodes. Else (None, reason): SILU_NOT_FOUND when neither
    factor is a SiLU."""
    reasons = []
    for s, up in ((mul.input[0], mul.input[1]), (mul.input[1], mul.input[0])):
        gate, silu_nodes = _silu_of(gr, s)
        if gate is None:
            reasons.append(silu_nodes)
            continue
        if not gr.only_consumers(s, [mul]):
            return None, "silu(gate) has other consumers"
        split = gr.producer.get(gate)
        if split is None or split.op_type != "Split" or split.domain not in ("", "ai.onnx"):
            return None, "gate is not a Split output"
        if len(split.output) != 2 or list(split.output) != [gate, up]:
            return None, "gate and up are not outputs 0 and 1 of one two-way Split"
        silu_readers = [n for n in silu_nodes if gate in n.input]   # Sigmoid and the Mul (or the one silu node)
        if not gr.only_consumers(gate, silu_readers) or not gr.only_consumers(up, [mul]):
            return None, "gate or up has other consumers"
        if k is None:   # the first size, which _split_is_halves then holds the second to (no sizes: halves by definition)
            sizes = gr.int_values(split.input[1]) if len(split.input) > 1 and split.input[1] else _attrs(split).get("split")
            k = int(sizes[0]) if sizes else 0
        why = _split_is_halves(gr, split, k)
        return (None, why) if why is not None else (split, [split] + silu_nodes)
    return None, next((r for r in reasons if r != SILU_NOT_FOUND), SILU_NOT_FOUND)


def _split_is_halves(gr: _Graph, split: onnx.NodeProto, k: int) -> str | None:
    """None when `split` cuts its input into two halves of size k along the last axis, else the reason."""
    a = _attrs(split)
    axis = a.get("axis", 0)
    if axis != -1:
        rank = gr.rank.get(split.input[0])
        if rank is None or axis != rank - 1:
            return f"Split axis {axis} is not the last axis (or the input's rank is unknown)"
    if len(split.input) > 1 and split.input[1]:
        sizes = gr.int_values(split.input[1])
        if sizes is None:
            return "Split sizes are not a constant"
    elif "split" in a:
        sizes = [int(v) for v in a["split"]]
    else:
        # two equal parts (no sizes, or num_outputs = 2): each is half of the input, and a valid graph's Mul and
        # down projection make that half K wide
        return None if a.get("num_outputs", 2) == 2 else f"Split num_outputs {a.get('num_outputs')}"
    return None if sizes == [k, k] else f"Split sizes {sizes} are not [K, K] = [{k}, {k}]"


def _remove(model: onnx.ModelProto, gr: _Graph, dead: list) -> None:
    """Removes `dead` nodes, Constant nodes only they read, and the initializers and value_info of tensors nothing reads
    any more. Nodes rewritten in place before the call are live: what they read stays."""
    gone = {id(n) for n in dead}
    live_reads = {i for n in model.graph.node if id(n) not in gone for i in n.input}   # the graph as rewritten

    def read_only_by_removed(tensor: str) -> bool:
        return bool(gr.consumers.get(tensor)) and tensor not in gr.graph_outputs and tensor not in live_reads

    # a Constant node whose outputs only the removed nodes read (the split sizes as a Constant) goes too
    orphans = [n for n in model.graph.node if id(n) not in gone and n.op_type == "Constant" and n.domain in ("", "ai.onnx")
               and all(read_only_by_removed(o) for o in n.output)]
    dead += orphans
    gone |= {id(n) for n in orphans}
    remaining = [n for n in model.graph.node if id(n) not in gone]
    del model.graph.node[:]
    model.graph.node.extend(remaining)
    used = {i for n in model.graph.node for i in n.input} | {o.name for o in model.graph.output}
    names = {o for n in dead for o in n.output} | {i for n in dead for i in n.input if i not in used}
    live = [t for t in model.graph.initializer if t.name in used or t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    vi = [v for v in model.graph.value_info if v.name not in names]
    del model.graph.value_info[:]
    model.graph.value_info.extend(vi)


def fuse_silu_mul(model: onnx.ModelProto) -> dict:
    """Folds a fused Llama MLP's Split + SiLU + Mul into the gate_up projection: for every omm.OmmMatMulInt4 down
    projection whose A is silu(gate) * up, with gate and up the two K-wide halves of one tensor (Split along the last
    axis; see _match_down) that an omm.OmmMatMulInt4 gate_up node (N = 2K) writes and nothing else reads, the gate_up
    node becomes omm.OmmMatMulInt4SwiGlu writing silu(gate) * up ([..., K]) under the Mul's output name, and the Split,
    SiLU and Mul nodes are removed (with a split-sizes initializer nothing else reads). The down projection is
    unchanged. (The H100 measured this epilogue form; the form that builds SiLU·up at the down projection's input,
    OmmMatMulInt4SiluMul, lost to the unfused kernels: docs/kernels.md.) Run after use_omm_int4. Returns
    {"fused": n, "kept": {reason: n}} over the OmmMatMulInt4 nodes (projections whose input is no SiLU·up say so)."""
    gr = _Graph(model)
    fused, kept, dead = 0, {}, []

    def keep(why: str) -> None:
        kept[why] = kept.get(why, 0) + 1

    for node in model.graph.node:
        if node.op_type != OMM_INT4_OP or node.domain != OMM_DOMAIN:
            continue
        split, found = _match_down(gr, node)   # found: the nodes the rewrite removes, or why there is none
        if split is None:
            keep(found)
            continue
        gate_up = gr.producer.get(split.input[0])
        if gate_up is None or gate_up.op_type != OMM_INT4_OP or gate_up.domain != OMM_DOMAIN:
            keep("gate_up is not an OmmMatMulInt4 output")
            continue
        if _attrs(gate_up).get("N") != 2 * _attrs(node)["K"] or not gr.only_consumers(split.input[0], [split]):
            keep("gate_up's N is not 2K, or its output has other readers")
            continue
        gate_up.output[0] = node.input[0]           # the Mul's output, now written by the SwiGLU projection
        gate_up.op_type = OMM_INT4_SWIGLU_OP
        dead.extend(found)
        fused += 1
    if dead:
        _remove(model, gr, dead)
    return {"fused": fused, "kept": kept}


OMM_SWIGLU_OP = "OmmSwiGlu"   # silu(gate) * up of a packed gate_up output on its own (src/OnnxMultimodal.Kernels/swiglu.cu)


def fuse_swiglu(model: onnx.ModelProto) -> dict:
    """Each fused MLP's SiLU·up, silu(gate) * up with gate and up the two halves of one Split along the last axis (every
    intermediate read only along the pattern), as one omm.OmmSwiGlu node reading the Split's input and writing the Mul's
    output: the form of OmmMatMulInt4SwiGlu's epilogue for graphs whose projections stay stock (fp16 MatMul, MatMulNBits),
    where a long prompt runs Split, SiLU and Mul as three passes. Returns {"fused": n, "kept": {reason: n}} over the Mul
    nodes with a SiLU factor."""
    gr = _Graph(model)
    fused, kept, dead, rewrites = 0, {}, [], []
    for mul in model.graph.node:
        if mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or len(mul.input) != 2:
            continue
        split, found = _silu_mul_split(gr, mul, None)
        if split is None:
            if found != SILU_NOT_FOUND:
                kept[found] = kept.get(found, 0) + 1
            continue
        rewrites.append((mul, onnx.helper.make_node(OMM_SWIGLU_OP, [split.input[0]], [mul.output[0]],
                                                    name=f"omm_swiglu_{fused}", domain=OMM_DOMAIN)))
        dead.extend(found)
        fused += 1
    if fused:
        for mul, node in rewrites:   # in the Mul's place: its input is computed before the Split, its output read after
            mul.CopyFrom(node)
        _remove(model, gr, dead)
        _import_omm_domain(model)
    return {"fused": fused, "kept": kept}


OMM_SAMPLING_HEAD_OP = "OmmSamplingHead"   # the whole sampling head in one op (src/OnnxMultimodal.Kernels/sampling_head.cu)


def use_omm_sampling_head(model: onnx.ModelProto) -> dict:
    """Replaces the sampling head's standard ops (sampling_head.append_sampling_head: ~70 nodes around a TopK over the
    whole vocabulary) by one omm.OmmSamplingHead node with the head's inputs and both its outputs, next_token and
    next_token_greedy, under the same names: the manifest's sampling_head entry and the engine's bindings stay as they
    are. The op reads the [B, 1, V] last-position logits the head squeezed. The head's nodes, and initializers only they
    read, are removed (every node nothing reads any more). Returns {"removed": nodes}; raises ValueError on a graph
    without the head."""
    from .sampling_head import GREEDY_OUTPUT, HEAD_INPUTS
    g = model.graph
    names = {i.name for i in g.input}
    missing = [n for n in HEAD_INPUTS.values() if n not in names]
    outputs = [o.name for o in g.output]
    if missing or "next_token" not in outputs or GREEDY_OUTPUT not in outputs:
        raise ValueError(f"no sampling head to replace (inputs {missing} missing, outputs {outputs}): convert with --device-sampling")
    gr = _Graph(model)
    # the head's logits: the data input of the guidance mix's Gathers, whose row index comes from sample_rows
    mixes = [n for n in g.node if n.op_type == "Gather" and len(n.input) == 2 and (p := gr.producer.get(n.input[1])) is not None
             and p.op_type == "Gather" and p.input[0] == HEAD_INPUTS["rows"]]
    squeezed = {n.input[0] for n in mixes}
    if len(mixes) != 2 or len(squeezed) != 1:
        raise ValueError("the sampling head's guidance mix was not found (two Gathers of the logits by sample_rows)")
    squeeze = gr.producer.get(next(iter(squeezed)))
    if squeeze is None or squeeze.op_type != "Squeeze":
        raise ValueError("the sampling head's logits are not a Squeeze of the [B, 1, V] last-position logits")
    head_logits = squeeze.input[0]
    replaced = {id(gr.producer[o]) for o in ("next_token", GREEDY_OUTPUT) if o in gr.producer}
    kept = [n for n in g.node if id(n) not in replaced]
    kept.append(onnx.helper.make_node(OMM_SAMPLING_HEAD_OP, [head_logits] + [HEAD_INPUTS[k] for k in ("params", "uniform", "rows", "seen", "mask")],
                                      ["next_token", GREEDY_OUTPUT], name="omm_sampling_head", domain=OMM_DOMAIN))
    before = len(g.node)
    wanted = set(outputs)
    while True:   # drop every node whose outputs nothing reads
        read = {i for n in kept for i in n.input} | wanted
        alive = [n for n in kept if any(o in read for o in n.output if o)]
        if len(alive) == len(kept):
            break
        kept = alive
    del g.node[:]
    g.node.extend(kept)
    _drop_unread(model)
    _import_omm_domain(model)
    return {"removed": before - len(g.node) + 1}


OMM_QKV_HEAD_NORM_OP = "OmmQkvHeadNorm"   # Chameleon's qk-norm on the packed qkv projection (src/OnnxMultimodal.Kernels/qk_norm.cu)


def _head_norm_chain(gr: _Graph, tensor: str, width: int):
    """(output, weight, bias, epsilon, head_dim, nodes) when `tensor` [.., width = heads * D] runs only through
    fused_graph._head_norm's chain: Reshape [0, 0, heads, D] -> LayerNormalization (scale 1, bias 0, last axis) -> Mul by an initializer [heads, D]
    -> Add an initializer [heads, D] -> Reshape [0, 0, heads * D]; else (None, reason)."""
    only = gr.sole_reader

    def const(name, d):   # a small inline initializer of D values, else None (never loads external data)
        t = gr.init.get(name)
        if t is None or list(t.dims) != [d] or t.data_location == onnx.TensorProto.EXTERNAL:
            return None
        return numpy_helper.to_array(t)

    r1 = only(tensor)
    if r1 is None or r1.op_type != "Reshape" or r1.domain not in ("", "ai.onnx") or _attrs(r1).get("allowzero", 0):
        return None, "not a Reshape (copying zero dimensions)"
    shape = gr.int_values(r1.input[1])
    if shape is None or len(shape) != 4 or shape[:2] != [0, 0] or shape[2] < 1 or shape[3] < 1 or shape[2] * shape[3] != width:
        return None, f"Reshape to {shape}"
    heads, d = shape[2], shape[3]
    ln = only(r1.output[0])
    if ln is None or ln.op_type != "LayerNormalization" or ln.domain not in ("", "ai.onnx") or len(ln.input) < 3 or len(ln.output) != 1:
        return None, "not a LayerNormalization"
    a = _attrs(ln)
    scale, bias = const(ln.input[1], d), const(ln.input[2], d)
    if (a.get("axis", -1) not in (-1, 3) or a.get("stash_type", 1) != 1 or scale is None or bias is None or not (scale == 1).all()
            or not (bias == 0).all()):
        return None, "LayerNormalization with an affine part, another axis or another stash type"
    mul = only(ln.output[0])
    if mul is None or mul.op_type != "Mul" or mul.domain not in ("", "ai.onnx") or mul.input[0] != ln.output[0]:
        return None, "not a Mul"
    add = only(mul.output[0])
    if add is None or add.op_type != "Add" or add.domain not in ("", "ai.onnx") or add.input[0] != mul.output[0]:
        return None, "not an Add"
    # the per-head weight and bias: fp16 [heads, D] initializers (read from their headers: they may be external data)
    w, b = gr.init.get(mul.input[1]), gr.init.get(add.input[1])
    if w is None or b is None or any(list(t.dims) != [heads, d] or t.data_type != onnx.TensorProto.FLOAT16 for t in (w, b)):
        return None, "per-head weight or bias not fp16 [heads, D] initializers"
    r2 = only(add.output[0])
    if r2 is None or r2.op_type != "Reshape" or _attrs(r2).get("allowzero", 0) or gr.int_values(r2.input[1]) != [0, 0, heads * d]:
        return None, "not reshaped back"
    return (r2.output[0], mul.input[1], add.input[1], float(a.get("epsilon", 1e-5)), d, [r1, ln, mul, add, r2]), None


def fuse_qk_norm(model: onnx.ModelProto) -> dict:
    """Chameleon's qk-norm (fused_graph._head_norm on q and k after a Split of the packed qkv projection) as one
    omm.OmmQkvHeadNorm node writing q, k and v under the chain's output names: for every Split of an fp16 tensor into
    [H*D, Hkv*D, Hkv*D] whose first two parts run only through that chain (the same D and epsilon), D up to 256. The
    chains' nodes, and every initializer nothing reads afterwards, are removed. Returns {"fused": n, "kept": {reason: n}}."""
    gr = _Graph(model)
    fused, kept, dead = 0, {}, []
    new_nodes = []

    def keep(why):
        kept[why] = kept.get(why, 0) + 1

    for split in model.graph.node:
        if split.op_type != "Split" or split.domain not in ("", "ai.onnx") or len(split.output) != 3 or len(split.input) != 2:
            continue
        sizes = gr.int_values(split.input[1])
        rank = gr.rank.get(split.input[0])
        # the chains reshape to [d0, d1, heads, D] and back to [d0, d1, heads * D], the op keeps its input's shape: a rank-3
        # input (the op refuses any other at run time, where the graph records no rank)
        if (sizes is None or len(sizes) != 3 or _attrs(split).get("axis", 0) not in (-1, 2) or sizes[1] != sizes[2]
                or rank not in (None, 3)):
            continue
        found = [_head_norm_chain(gr, part, size) for part, size in zip(split.output[:2], sizes[:2])]
        if any(chain is None for chain, _ in found):
            keep("q or k does not run only through the per-head norm")
            continue
        (q_out, q_w, q_b, q_eps, d, q_nodes), (k_out, k_w, k_b, k_eps, d_k, k_nodes) = (chain for chain, _ in found)
        if d != d_k or q_eps != k_eps or d > 256:
            keep(f"head size {d} / {d_k} or epsilon differ, or D is above 256")
            continue
        heads, kv_heads = sizes[0] // d, sizes[1] // d
        new_nodes.append((split, onnx.helper.make_node(OMM_QKV_HEAD_NORM_OP, [split.input[0], q_w, q_b, k_w, k_b],
                                                       [q_out, k_out, split.output[2]], name=f"omm_qk_norm_{fused}", domain=OMM_DOMAIN,
                                                       num_heads=heads, kv_num_heads=kv_heads, head_dim=d, epsilon=q_eps)))
        dead.extend(q_nodes + k_nodes)
        fused += 1
    if fused:
        gone = {id(n) for n in dead}
        replace = {id(s): n for s, n in new_nodes}
        nodes = [replace.get(id(n), n) for n in model.graph.node if id(n) not in gone]
        del model.graph.node[:]
        model.graph.node.extend(nodes)
        _drop_unread(model)
        _import_omm_domain(model)
    return {"fused": fused, "kept": kept}


OMM_GROUP_NORM_OP = "OmmGroupNorm"   # GroupNorm (+ SiLU) of an fp32 NCHW tensor (src/OnnxMultimodal.Kernels/group_norm.cu)


def _group_norm_chain(gr: _Graph, inorm: onnx.NodeProto, types: dict, ranks: dict):
    """(x, gamma, beta, groups, epsilon, last node, nodes) when InstanceNormalization `inorm` is the middle of the
    TorchScript exporter's nn.GroupNorm: x -> Reshape [0, G, -1] -> InstanceNormalization (scale 1, bias 0) -> Reshape to
    Shape(x) -> Mul gamma -> Add beta, with gamma and beta constants of shape [C] + [1] * (rank - 2) and every intermediate
    read only along the chain; else (None, why)."""
    only = gr.sole_reader

    r1 = gr.producer.get(inorm.input[0])
    if r1 is None or r1.op_type != "Reshape" or _attrs(r1).get("allowzero", 0) or only(r1.output[0]) is not inorm:
        return None, "not a Reshape into groups before it"
    x = r1.input[0]
    scale, bias = gr.constant(inorm.input[1]), gr.constant(inorm.input[2])
    if scale is None or bias is None or scale.ndim != 1 or bias.shape != scale.shape or (scale != 1).any() or (bias != 0).any():
        return None, "InstanceNormalization's scale and bias are not constant ones and zeros"
    groups = int(scale.shape[0])
    if gr.int_values(r1.input[1]) != [0, groups, -1]:
        return None, "the Reshape into groups is not [0, G, -1]"
    if types.get(x) != onnx.TensorProto.FLOAT:
        return None, "x is not float32 (or its type is unknown)"
    r2 = only(inorm.output[0])
    if r2 is None or r2.op_type != "Reshape" or _attrs(r2).get("allowzero", 0):
        return None, "not reshaped back"
    shape = gr.producer.get(r2.input[1])
    if shape is None or shape.op_type != "Shape" or shape.input[0] != x or _attrs(shape):
        return None, "not reshaped back to Shape(x)"
    mul = only(r2.output[0])
    add = only(mul.output[0]) if mul is not None and mul.op_type == "Mul" else None
    if add is None or add.op_type != "Add":
        return None, "no Mul by gamma and Add of beta after it"
    gamma_name = mul.input[1] if mul.input[0] == r2.output[0] else mul.input[0]
    beta_name = add.input[1] if add.input[0] == mul.output[0] else add.input[0]
    gamma, beta = gr.constant(gamma_name), gr.constant(beta_name)
    rank = ranks.get(x)
    if gamma is None or beta is None or rank is None or rank < 2:
        return None, "gamma or beta is not a constant, or x's rank is unknown"
    channels = gamma.shape[0] if gamma.ndim else 0
    per_channel = (channels,) + (1,) * (rank - 2)
    if gamma.shape != per_channel or beta.shape != per_channel or channels % groups:
        return None, f"gamma / beta shapes {gamma.shape} / {beta.shape} are not per channel for rank {rank}, or C % G != 0"
    nodes = [r1, inorm, r2, mul, add] + ([shape] if gr.only_consumers(shape.output[0], [r2]) else [])
    return (x, gamma_name, beta_name, groups, float(_attrs(inorm).get("epsilon", 1e-5)), add, nodes), None


def fuse_group_norm(model: onnx.ModelProto) -> dict:
    """Each nn.GroupNorm of an fp32 graph as exported by TorchScript (see _group_norm_chain), and the SiLU after it when the
    norm's output feeds only x * Sigmoid(x), as one omm.OmmGroupNorm node (attributes num_groups, epsilon, activation 0 / 1)
    reading x, gamma and beta and writing the chain's output: the VQ image encoder's norms, which ONNX Runtime runs as
    cuDNN batch norm plus three elementwise passes. Types and ranks come from ONNX shape inference. Returns
    {"fused": n, "silu": m, "kept": {reason: n}} over the InstanceNormalization nodes."""
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    g = inferred.graph
    infos = list(g.value_info) + list(g.input) + list(g.output)
    types = {v.name: v.type.tensor_type.elem_type for v in infos if v.type.HasField("tensor_type")}
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in infos if v.type.tensor_type.HasField("shape")}
    for t in model.graph.initializer:
        types.setdefault(t.name, t.data_type)
    gr = _Graph(model)
    fused, silu, kept, dead, rewrites = 0, 0, {}, [], []
    for inorm in model.graph.node:
        if inorm.op_type != "InstanceNormalization" or inorm.domain not in ("", "ai.onnx"):
            continue
        chain, why = _group_norm_chain(gr, inorm, types, ranks)
        if chain is None:
            kept[why] = kept.get(why, 0) + 1
            continue
        x, gamma, beta, groups, eps, last, nodes = chain
        out, activation = last.output[0], 0
        readers = gr.consumers.get(out, [])
        if out not in gr.graph_outputs and len(readers) == 2:   # y * Sigmoid(y), in either order
            sig = next((r for r in readers if r.op_type == "Sigmoid" and r.domain in ("", "ai.onnx")), None)
            prod = next((r for r in readers if r.op_type == "Mul" and r.domain in ("", "ai.onnx")), None)
            if sig is not None and prod is not None and sorted(prod.input) == sorted([out, sig.output[0]]) \
                    and gr.only_consumers(sig.output[0], [prod]):
                nodes, last, activation = nodes + [sig], prod, 1
        rewrites.append((last, onnx.helper.make_node(OMM_GROUP_NORM_OP, [x, gamma, beta], [last.output[0]], name=f"omm_group_norm_{fused}",
                                                     domain=OMM_DOMAIN, num_groups=groups, epsilon=eps, activation=activation)))
        dead.extend(n for n in nodes if n is not last)
        fused += 1
        silu += activation
    if fused:
        for last, node in rewrites:   # in the chain's last node's place: x, gamma and beta come before it
            last.CopyFrom(node)
        _remove(model, gr, dead)
        _import_omm_domain(model)
    return {"fused": fused, "silu": silu, "kept": kept}
