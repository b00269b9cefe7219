"""A hand-built ONNX pose "detector" (no torch): the square detector of :mod:`detector_fakes` plus
17 COCO keypoints per box, placed as a fixed standing figure around the box centre, so per-person
pose mode can be tested end to end on synthetic videos."""

from __future__ import annotations

import json

import numpy as np

from detector_fakes import square_detector

# (dx, dy) in units of the square's side, from the box centre: a standing person seen from the front
STANDING = [(0, -.45), (-.05, -.47), (.05, -.47), (-.1, -.45), (.1, -.45), (-.15, -.3), (.15, -.3), (-.2, -.1),
            (.2, -.1), (-.2, .05), (.2, .05), (-.1, 0), (.1, 0), (-.1, .25), (.1, .25), (-.1, .48), (.1, .48)]


def square_pose_detector(path, height=256, width=256, square=12, figure=STANDING, visibility=0.9, scale=1.0):
    """``scale``: the figure's height in squares (3: a body taller than its square, as a real one)."""
    import onnx
    from onnx import helper, numpy_helper

    from actionnet.pose import KEYPOINTS_KEY

    square_detector(path, height, width, square)
    m = onnx.load(str(path))
    boxes = numpy_helper.to_array(next(i for i in m.graph.initializer if i.name == "boxes"))[0]  # [4, N]
    n = boxes.shape[1]
    kp = np.empty((17, 3, n), np.float32)
    for j, (dx, dy) in enumerate(figure):
        kp[j, 0] = boxes[0] + dx * square * scale
        kp[j, 1] = boxes[1] + dy * square * scale
        kp[j, 2] = visibility
    m.graph.initializer.append(numpy_helper.from_array(kp.reshape(1, 51, n), "kpts"))
    last = next(node for node in m.graph.node if "output0" in node.output)
    last.output[0] = "det"
    m.graph.node.append(helper.make_node("Concat", ["det", "kpts"], ["output0"], axis=1))
    dims = m.graph.output[0].type.tensor_type.shape.dim
    dims[1].dim_value = 5 + 51
    m.metadata_props.add(key=KEYPOINTS_KEY, value=json.dumps([17, 3]))
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return path
