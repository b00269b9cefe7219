"""A tiny hand-built ONNX "detector" (no torch) that finds saturated coloured squares on grey.

It has the YOLOv8 output layout, ``[1, 4 + 1, N]``: for every cell of a stride-2 grid a box of
the square's size centred on the cell, scored by the fraction of saturated pixels under it
(max - min over the colour channels, through a steep sigmoid), to the fourth power. NMS keeps the best-aligned box,
so the runtime's letterbox, decode, NMS and coordinate mapping all have to be right for the
boxes to land on the squares. (Also ``spread_yolo``: a random-weight ultralytics YOLO, torch
imported only there, for the export tests.)
"""

from __future__ import annotations

import numpy as np


def square_detector(path, height=256, width=256, square=12, labels=("person",), metadata=True, layout_meta=None,
                    transpose=False):
    import onnx
    from onnx import TensorProto, helper

    from actionnet.detector import DetectorSpec

    k, p, s = square, square // 2, 2
    oh, ow = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
    ys, xs = np.meshgrid(np.arange(oh) * s - p + k / 2, np.arange(ow) * s - p + k / 2, indexing="ij")
    n = oh * ow
    boxes = np.stack([xs.ravel(), ys.ravel(), np.full(n, k), np.full(n, k)]).astype(np.float32)[None]
    c = len(labels)
    nodes = [
        helper.make_node("ReduceMax", ["images"], ["mx"], axes=[1], keepdims=1),
        helper.make_node("ReduceMin", ["images"], ["mn"], axes=[1], keepdims=1),
        helper.make_node("Sub", ["mx", "mn"], ["sat"]),
        helper.make_node("Sub", ["sat", "thr"], ["d"]),
        helper.make_node("Mul", ["d", "gain"], ["g"]),
        helper.make_node("Sigmoid", ["g"], ["mask"]),
        helper.make_node("AveragePool", ["mask"], ["pooled"], kernel_shape=[k, k], strides=[s, s], pads=[p] * 4,
                         count_include_pad=1),
        # fourth power: a box half off the square scores 0.06, below any sane threshold, so each
        # square gives one detection, as a trained detector's peaked scores do
        helper.make_node("Mul", ["pooled", "pooled"], ["p2"]),
        helper.make_node("Mul", ["p2", "p2"], ["p4"]),
        helper.make_node("Reshape", ["p4", "shape"], ["score"]),
        helper.make_node("Tile", ["score", "reps"], ["scores"]),
        helper.make_node("Concat", ["boxes", "scores"], ["raw"], axis=1),
    ]
    out_shape = [1, 4 + c, n]
    if transpose:  # [1, N, 4 + C]: the shape of a YOLOv5 head without its objectness column
        nodes.append(helper.make_node("Transpose", ["raw"], ["output0"], perm=[0, 2, 1]))
        out_shape = [1, n, 4 + c]
    else:
        nodes.append(helper.make_node("Identity", ["raw"], ["output0"]))
    graph = helper.make_graph(
        nodes, "squares",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, height, width])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, out_shape)],
        initializer=[
            helper.make_tensor("thr", TensorProto.FLOAT, [], [0.3]),
            helper.make_tensor("gain", TensorProto.FLOAT, [], [40.0]),
            helper.make_tensor("shape", TensorProto.INT64, [3], [1, 1, n]),
            helper.make_tensor("reps", TensorProto.INT64, [3], [1, c, 1]),
            helper.make_tensor("boxes", TensorProto.FLOAT, list(boxes.shape), boxes.ravel()),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata:
        props = DetectorSpec(layout_meta or "yolov8", height, width, tuple(labels)).to_metadata()
        for key, v in props.items():
            model.metadata_props.add(key=key, value=v)
    onnx.save(model, str(path))
    return path


def spread_yolo(yaml: str, every_conv: bool = True):
    """A random-weight ultralytics YOLO from ``yaml`` whose scores spread: default init makes
    activations vanish layer by layer (every class score the same 1e-4), so convolutions get He
    init (``every_conv=False``: only trainable ones, not the DFL's fixed arange) and the class
    layers a -3 bias. Returns the model in eval mode."""
    import torch

    from actionnet.export.yolo import load_yolo

    torch.manual_seed(0)
    yolo = load_yolo(yaml)
    for mod in yolo.model.modules():
        if isinstance(mod, torch.nn.Conv2d) and (every_conv or mod.weight.requires_grad):
            torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    yolo.model.eval()
    with torch.no_grad():
        for seq in yolo.model.model[-1].cv3:
            seq[-1].bias.fill_(-3.0)
    return yolo
