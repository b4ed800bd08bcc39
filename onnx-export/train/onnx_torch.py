"""Runs an exported ONNX graph as PyTorch ops, with its float initializers as trainable parameters, and writes
trained values back into the same graph. Only the op types of our exported VQ image graphs are implemented;
any other op stops the run with its name, so a graph this cannot run is never silently mis-trained.
Used by polish_vq_decoder.py to fine-tune a committed image decoder when its PyTorch checkpoint is gone."""
from __future__ import annotations

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import helper, numpy_helper


def _attrs(node) -> dict:
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _ints(t: torch.Tensor) -> list:
    return [int(v) for v in t.reshape(-1).tolist()]


class OnnxModule(torch.nn.Module):
    """forward(**inputs) -> dict of graph outputs. Float initializers with at least `min_numel` values become
    parameters (the rest, and Constant nodes, stay fixed). In train() mode Clip passes gradients straight through."""

    def __init__(self, path: str, min_numel: int = 2):
        super().__init__()
        self.model = onnx.load(path)
        g = self.model.graph
        self.trainable, self.fixed = {}, {}
        params = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype == np.float32 and arr.size >= min_numel:
                key = f"p{len(params)}"
                params[key] = torch.nn.Parameter(torch.from_numpy(arr.copy()))
                self.trainable[init.name] = key
            else:
                self.fixed[init.name] = torch.from_numpy(np.array(arr))
        self.params = torch.nn.ParameterDict(params)
        self.nodes = list(g.node)
        self.outputs = [o.name for o in g.output]
        unknown = sorted({n.op_type for n in self.nodes} - set(_OPS))
        if unknown:
            raise NotImplementedError(f"{path}: op types this interpreter does not run: {unknown}")
        opset = next((o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")), 0)
        if not 13 <= opset <= 17:   # Softmax/Unsqueeze/Clip as from 13; Shape's start/end (15) and Resize's new attributes (18) unhandled
            raise NotImplementedError(f"{path}: opset {opset}; this interpreter follows opsets 13-17")
        for node in self.nodes:
            if node.op_type == "Shape" and any(a.name in ("start", "end") for a in node.attribute):
                raise NotImplementedError(f"{path}: Shape {node.name} with start/end")

    def forward(self, **inputs):
        dev = next(self.params.parameters()).device
        env = {"": None}
        # integer tensors (shapes, indices of shapes) stay on the host: reading them back costs no device sync
        env.update({k: v.to(dev) if v.is_floating_point() else v for k, v in self.fixed.items()})
        env.update({name: self.params[key] for name, key in self.trainable.items()})
        env.update(inputs)
        for node in self.nodes:
            args = [env[i] if i in env else _missing(node, i) for i in node.input]
            out = _OPS[node.op_type](node, _attrs(node), args, dev)
            if node.op_type == "Clip" and self.training:
                # straight-through in training: a pixel clipped at the wrong value still gets a gradient
                out = args[0] + (out - args[0]).detach()
            outs = out if isinstance(out, tuple) else (out,)
            for name, value in zip(node.output, outs):
                env[name] = value
        return {k: env[k] for k in self.outputs}

    def save(self, path: str) -> None:
        """Writes the graph with the current parameter values (the same nodes, names and IR version)."""
        m = onnx.ModelProto()
        m.CopyFrom(self.model)
        for init in m.graph.initializer:
            key = self.trainable.get(init.name)
            if key is not None:
                init.CopyFrom(numpy_helper.from_array(self.params[key].detach().float().cpu().numpy(), init.name))
        onnx.save(m, path)


def _missing(node, name):
    raise KeyError(f"{node.op_type} node {node.name}: input {name} is not produced before it")


def _gather(node, a, args, dev):
    data, idx = args
    axis = a.get("axis", 0)
    axis = axis + data.dim() if axis < 0 else axis
    idx = torch.where(idx < 0, idx + data.shape[axis], idx)
    out = torch.index_select(data, axis, idx.reshape(-1).long().to(data.device))
    return out.reshape(tuple(data.shape[:axis]) + tuple(idx.shape) + tuple(data.shape[axis + 1:]))


def _reshape(node, a, args, dev):
    x, shape = args
    target = _ints(shape)
    if not a.get("allowzero", 0):
        target = [x.shape[i] if v == 0 else v for i, v in enumerate(target)]
    return x.reshape(target)


def _unsqueeze(node, a, args, dev):
    x = args[0]
    axes = _ints(args[1]) if len(args) > 1 else list(a["axes"])
    rank = x.dim() + len(axes)
    for ax in sorted(v + rank if v < 0 else v for v in axes):
        x = x.unsqueeze(ax)
    return x


def _conv(node, a, args, dev):
    x, w = args[0], args[1]
    b = args[2] if len(args) > 2 else None
    pads = list(a.get("pads", [0, 0, 0, 0]))
    if pads[:2] != pads[2:]:
        raise NotImplementedError(f"Conv {node.name}: asymmetric pads {pads}")
    if a.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise NotImplementedError(f"Conv {node.name}: auto_pad")
    return F.conv2d(x, w, b, stride=tuple(a.get("strides", [1, 1])), padding=tuple(pads[:2]),
                    dilation=tuple(a.get("dilations", [1, 1])), groups=a.get("group", 1))


def _resize(node, a, args, dev):
    x = args[0]
    if a.get("mode", b"nearest") not in (b"nearest", "nearest") or a.get("coordinate_transformation_mode") not in (b"asymmetric", "asymmetric") \
            or a.get("nearest_mode", b"round_prefer_floor") not in (b"floor", "floor"):
        raise NotImplementedError(f"Resize {node.name}: only nearest / asymmetric / floor")
    scales = args[2].reshape(-1).tolist() if len(args) > 2 and args[2] is not None and args[2].numel() else None
    if scales is None or scales[0] != 1 or scales[1] != 1 or any(s != int(s) for s in scales[2:]):
        raise NotImplementedError(f"Resize {node.name}: integer spatial scales only, got {scales}")
    return F.interpolate(x, scale_factor=tuple(float(s) for s in scales[2:]), mode="nearest")


def _constant(node, a, args, dev):
    if "value" in a:
        t = torch.from_numpy(np.array(numpy_helper.to_array(a["value"])))
        return t.to(dev) if t.is_floating_point() else t
    for k, dt in (("value_float", torch.float32), ("value_floats", torch.float32)):
        if k in a:
            return torch.tensor(a[k], dtype=dt, device=dev)
    for k in ("value_int", "value_ints"):
        if k in a:
            return torch.tensor(a[k], dtype=torch.int64)
    raise NotImplementedError(f"Constant {node.name}: attributes {list(a)}")


def _clip(node, a, args, dev):
    lo = args[1] if len(args) > 1 and args[1] is not None else None
    hi = args[2] if len(args) > 2 and args[2] is not None else None
    return torch.clamp(args[0], None if lo is None else float(lo), None if hi is None else float(hi))


_OPS = {
    "Constant": _constant,
    "Shape": lambda n, a, x, d: torch.tensor(list(x[0].shape), dtype=torch.int64),
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Concat": lambda n, a, x, d: torch.cat([t.reshape(1) if t.dim() == 0 else t for t in x], dim=a["axis"]),
    "Reshape": _reshape,
    "Transpose": lambda n, a, x, d: x[0].permute(*a["perm"]) if "perm" in a else x[0].permute(*reversed(range(x[0].dim()))),
    "InstanceNormalization": lambda n, a, x, d: F.instance_norm(x[0], weight=x[1], bias=x[2], eps=a.get("epsilon", 1e-5)),
    "Mul": lambda n, a, x, d: x[0] * x[1],
    "Add": lambda n, a, x, d: x[0] + x[1],
    "Sub": lambda n, a, x, d: x[0] - x[1],
    "Div": lambda n, a, x, d: x[0] / x[1] if x[0].is_floating_point() else torch.div(x[0], x[1], rounding_mode="trunc"),
    "Sigmoid": lambda n, a, x, d: torch.sigmoid(x[0]),
    "MatMul": lambda n, a, x, d: torch.matmul(x[0], x[1]),
    "Softmax": lambda n, a, x, d: torch.softmax(x[0], dim=a.get("axis", -1)),
    "Conv": _conv,
    "Resize": _resize,
    "Clip": _clip,
}
