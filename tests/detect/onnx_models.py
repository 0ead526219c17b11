"""Tiny ONNX models built with the ``onnx`` helper API, whose output is a known constant table.

The graph is ``output = table + 0 · Σ input`` (the sum taken per batch item, broadcast over the
table), so the input is used (ONNX Runtime keeps it), the batch dimension of the output follows
the input's, and every batch item's output equals ``table``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

Dimension = int | str


def constant_output_model(
    path: Path,
    table: NDArray[np.floating],
    *,
    input_shape: list[Dimension],
    output_shape: list[Dimension] | None = None,
    input_type: int = TensorProto.FLOAT,
) -> Path:
    """Write a model whose output is ``table`` (shape ``(1, ...)``) for every batch item.

    ``input_type`` ``TensorProto.FLOAT16`` makes a half-precision input (cast to float inside).
    """
    table = np.asarray(table, dtype=np.float32)
    if table.shape[0] != 1 or table.ndim != 3:
        raise ValueError(f"table must have shape (1, a, b), got {table.shape}")
    declared_output = output_shape if output_shape is not None else [input_shape[0], *table.shape[1:]]
    initializers = [
        numpy_helper.from_array(table, "table"),
        numpy_helper.from_array(np.array([1, 2, 3], np.int64), "axes"),
        numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "per_item"),
        numpy_helper.from_array(np.array(0.0, np.float32), "zero"),
    ]
    nodes = [
        helper.make_node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["pixels", "axes"], ["total"], keepdims=1),
        helper.make_node("Reshape", ["total", "per_item"], ["total_3d"]),
        helper.make_node("Mul", ["total_3d", "zero"], ["nothing"]),
        helper.make_node("Add", ["table", "nothing"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes,
        "constant_head",
        [helper.make_tensor_value_info("images", input_type, input_shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, declared_output)],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
