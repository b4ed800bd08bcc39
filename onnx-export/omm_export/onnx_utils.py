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
    """Accumulates nodes and initializers with unique names; one instance per graph."""

    def __init__(self, name: str):
        self.name = name
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
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

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
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)
        opsets = [helper.make_opsetid("", OPSET)]
        if self.uses_ms_domain:
            opsets.append(helper.make_opsetid(MS_DOMAIN, 1))
        model = helper.make_model(graph, opset_imports=opsets, producer_name=producer)
        model.ir_version = IR_VERSION
        return model


def save_model(model: onnx.ModelProto, path: str) -> None:
    """Checks and writes a model; weights go to `<file>.data` beside it when the graph is large."""
    model.ir_version = IR_VERSION
    # onnx's checker does not know ONNX Runtime's contrib ops (SimplifiedLayerNormalization is registered
    # by ORT in the default domain); those graphs are validated by loading them in onnxruntime (--check).
    checkable = not any(o.domain == MS_DOMAIN for o in model.opset_import)
    total = sum(t.ByteSize() for t in model.graph.initializer)
    if total > EXTERNAL_DATA_THRESHOLD:
        data_name = os.path.basename(path) + ".data"
        data_path = os.path.join(os.path.dirname(path), data_name)
        if os.path.exists(data_path):
            os.remove(data_path)
        onnx.save_model(model, path, save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_name, size_threshold=1024)
        if checkable:
            onnx.checker.check_model(path)
    else:
        if checkable:
            onnx.checker.check_model(model)
        onnx.save_model(model, path)


