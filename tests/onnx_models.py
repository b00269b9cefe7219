"""Tiny hand-built ONNX models (no torch): stand-ins for foreign models such as
jetson-inference's resnet-18-kinetics-moments.onnx (input "0", output "198", [1,3,T,H,W])."""

from __future__ import annotations

import numpy as np


def colour_model(path, clip_length=4, size=16, input_name="0", output_name="198", rank=5, classes=2,
                 batch=1):
    """Float [N,3,T,H,W] -> logits [N, classes]: mean over T,H,W of each channel, then a fixed
    linear map. With 2 classes, class 0 ("red") wins when channel 0 (R) outweighs channel 2 (B)."""
    import onnx
    from onnx import TensorProto, helper

    shape = [batch, 3, clip_length, size, size][:rank] if rank <= 5 else [batch, 3, clip_length, size, size, 1]
    axes = list(range(2, len(shape)))
    w = np.zeros((3, classes), np.float32)
    w[0, 0], w[2, 0] = 4.0, -4.0
    w[0, 1], w[2, 1] = -4.0, 4.0
    nodes = [
        helper.make_node("ReduceMean", [input_name, "axes"], ["m"], keepdims=0),
        helper.make_node("MatMul", ["m", "w"], [output_name]),
    ]
    graph = helper.make_graph(
        nodes, "colour",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, classes])],
        initializer=[helper.make_tensor("axes", TensorProto.INT64, [len(axes)], axes),
                     helper.make_tensor("w", TensorProto.FLOAT, [3, classes], w.flatten())],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path
