"""Small helpers shared by every graph writer: constants, IR stamping, saving with external data."""
from __future__ import annotations

import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# ORT 1.31 accepts IR <= 13; onnx 1.23 stamps 14. Every graph we write says 10.
IR_VERSION = 10
OPSET = 17
MS_DOMAIN = "com.microsoft"

# Graphs whose initializers exceed this many bytes keep their weights in an external .data file.
EXTERNAL_DATA_THRESHOLD = 64 * 1024 * 1024


class GraphBuilder:
    """Accumulates nodes and initializers with unique names; one instance per graph.

    With `data_path`, every initializer of 1 KiB or more is appended to that file as it is added (the
    graph keeps only a reference, aligned to 4 KiB), so a 7B-parameter graph never holds its weights
    twice in memory and `save_model` writes just the small graph beside it."""

    def __init__(self, name: str, data_path: str | None = None):
        self.name = name
        self.data_path = data_path
        self._data = None
        if data_path:
            if os.path.exists(data_path):
                os.remove(data_path)
            self._data = open(data_path, "wb")
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self._count = 0
        self.uses_ms_domain = False

    def fresh(self, hint: str) -> str:
        self._count += 1
        return f"{hint}_{self._count}"

    def const(self, array: np.ndarray, name: str | None = None) -> str:
        name = name or self.fresh("const")
        array = np.asarray(array)
        if self._data is not None and array.nbytes >= 1024:
            self.initializers.append(self._external(np.ascontiguousarray(array), name))
        else:
            self.initializers.append(numpy_helper.from_array(array, name))
        return name

    def _external(self, array: np.ndarray, name: str) -> onnx.TensorProto:
        f = self._data
        offset = f.tell()
        pad = -offset % 4096
        if pad:
            f.write(b"\0" * pad)
            offset += pad
        f.write(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes(order="C"))
        t = onnx.TensorProto()
        t.name = name
        t.dims.extend(array.shape)
        t.data_type = _tensor_type(array.dtype)
        t.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", os.path.basename(self.data_path)), ("offset", str(offset)), ("length", str(array.nbytes))):
            e = t.external_data.add()
            e.key, e.value = k, v
        return t

    def i64(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.int64))

    def f32(self, values) -> str:
        return self.const(np.asarray(values, dtype=np.float32))

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, n_out: int = 1,
           domain: str = "", **attrs) -> str | list[str]:
        outs = [self.fresh(hint or op_type.lower()) for _ in range(n_out)]
        self.nodes.append(helper.make_node(op_type, inputs, outs, domain=domain or None, **attrs))
        if domain == MS_DOMAIN:
            self.uses_ms_domain = True
        return outs[0] if n_out == 1 else outs

    def op_named(self, op_type: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs) -> None:
        self.nodes.append(helper.make_node(op_type, inputs, outputs, domain=domain or None, **attrs))
        if domain == MS_DOMAIN:
            self.uses_ms_domain = True

    def add_input(self, name: str, elem_type: int, shape: list) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, shape))
        return name

    def add_output(self, name: str, elem_type: int, shape: list) -> None:
        self.outputs.append(helper.make_tensor_value_info(name, elem_type, shape))

    def model(self, producer: str) -> onnx.ModelProto:
        if self._data is not None:
            self._data.close()
            self._data = None
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_ms_domain:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = IR_VERSION
        return model


def _tensor_type(dtype: np.dtype) -> int:
    if hasattr(helper, "np_dtype_to_tensor_dtype"):
        return helper.np_dtype_to_tensor_dtype(dtype)
    from onnx import mapping  # onnx < 1.13
    return mapping.NP_TYPE_TO_TENSOR_TYPE[np.dtype(dtype)]


def save_model(model: onnx.ModelProto, path: str) -> None:
    """Checks and writes a model; weights go to `<file>.data` beside it when the graph is large."""
    model.ir_version = IR_VERSION
    # onnx's checker does not know ONNX Runtime's contrib ops (SimplifiedLayerNormalization is registered
    # by ORT in the default domain); those graphs are validated by loading them in onnxruntime (--check).
    checkable = not any(o.domain == MS_DOMAIN for o in model.opset_import)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        # Weights already streamed beside the graph by GraphBuilder(data_path=...): write the graph alone
        # (these are the multi-gigabyte benchmark graphs: loading them in onnxruntime is their check).
        with open(path, "wb") as f:
            f.write(model.SerializeToString())
        return
    total = sum(t.ByteSize() for t in model.graph.initializer)
    if total > EXTERNAL_DATA_THRESHOLD:
        data_name = os.path.basename(path) + ".data"
        data_path = os.path.join(os.path.dirname(path), data_name)
        if os.path.exists(data_path):
            os.remove(data_path)
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        if checkable:
            _check(path)
    else:
        if checkable:
            _check(model)
        onnx.save_model(model, path)


def _check(model) -> None:
    """onnx's checker, except that an onnx older than IR 10 cannot judge the graph (it says so and nothing else)."""
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        if "ir_version is higher" not in str(e):
            raise


