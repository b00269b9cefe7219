"""Pose detectors (YOLOv8/YOLO11-pose): person boxes plus K keypoints each, decoded on the host.

An ultralytics pose model exported to ONNX gives ``[1, 4 + C + K*D, N]``: per anchor cx, cy, w,
h, C class scores, then K keypoints of D values (x, y in model-input pixels, and a sigmoided
visibility when D = 3), keypoint-major (x0, y0, v0, x1, y1, v1, ...). The keypoint shape comes
from ``actionnet.keypoints`` (written by ``actionnet-export yolo``) or, for ultralytics' own
export, its ``kpt_shape`` metadata. Boxes go through the same score filter and NMS as the plain
detector (:mod:`actionnet.detector`); the keypoints of the kept boxes are mapped back to frame
pixels through the same letterbox.

:func:`open_detector` is the one way per-person mode opens its detector: a pose model gets a
:class:`PoseDetector`, anything else the plain :class:`~actionnet.detector.Detector`.
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import numpy as np

from .detector import Detections, Detector, DetectorSpec, _names, nms
from .engines.onnxmeta import read_metadata
from .errors import ModelError
from .spec import PREFIX

KEYPOINTS_KEY = PREFIX + "keypoints"

# COCO's 17 keypoints, in the order every COCO-trained pose model outputs them
COCO_KEYPOINTS = ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle")


def keypoint_shape(props: Mapping[str, str]) -> Optional[Tuple[int, int]]:
    """``(K, D)`` of a pose model from its metadata (ours, else ultralytics' ``kpt_shape``); None
    for a plain detector."""
    for key, parse in ((KEYPOINTS_KEY, json.loads), ("kpt_shape", ast.literal_eval)):
        raw = props.get(key)
        if raw is None:
            continue
        try:
            k, d = (int(v) for v in parse(raw))
        except (ValueError, TypeError, SyntaxError):
            raise ModelError(f"pose metadata {key}={raw!r} is corrupt; expected [K, D] such as [17, 3]") from None
        if k < 1 or d not in (2, 3):
            raise ModelError(f"pose metadata {key}={raw!r}: expected K >= 1 keypoints of 2 or 3 values")
        return k, d
    return None


@dataclass
class PoseDetections(Detections):
    """:class:`Detections` plus ``keypoints`` [M, K, 3] in frame pixels (x, y, visibility; the
    visibility is 1 for models that give only x, y)."""

    keypoints: np.ndarray = None

    @classmethod
    def empty(cls, k: int = 17):
        d = Detections.empty()
        return cls(d.boxes, d.scores, d.classes, np.zeros((0, k, 3), np.float32))


def decode_pose(out: np.ndarray, num_classes: int, kpt_shape: Tuple[int, int], conf: float,
                classes: Optional[np.ndarray]):
    """Raw ``[1, 4 + C + K*D, N]`` -> (boxes x1y1x2y2, scores, class ids, keypoints [M, K, 3]) in
    model-input pixels, score >= conf; the best class of a box decides, as in ultralytics."""
    o = out[0]
    k, d = kpt_shape
    nc = num_classes
    cls_rows = o[4:4 + nc]
    m = cls_rows.max(axis=0) >= conf
    xywh = o[:4, m].T
    cls_scores = cls_rows[:, m].T
    kp = o[4 + nc:4 + nc + k * d, m].T.reshape(-1, k, d)
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    if classes is not None:
        keep = np.isin(cls, classes)
        xywh, score, cls, kp = xywh[keep], score[keep], cls[keep], kp[keep]
    boxes = np.empty((len(score), 4), np.float32)
    boxes[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    kpts = np.ones((len(score), k, 3), np.float32)
    kpts[..., :d] = kp
    return boxes, score.astype(np.float32), cls.astype(np.int64), kpts


class PoseDetector(Detector):
    """``PoseDetector("yolo11n-pose.onnx")(frame) -> PoseDetections``: boxes and keypoints."""

    def __init__(self, path: str, kpt_shape: Tuple[int, int], **kwargs):
        self.kpt_shape = kpt_shape
        super().__init__(path, **kwargs)

    def _spec(self, layout, log) -> DetectorSpec:
        eng = self.engine
        shape = eng.input.shape
        if len(shape) != 4 or not all(isinstance(v, int) for v in shape[2:]):
            raise ModelError(f"{eng.path} is not a fixed-size image model: input shape {list(shape)}")
        spec = DetectorSpec.from_metadata(eng.metadata)
        if spec is None:
            rows = eng.outputs[0].shape[1]
            n = rows - 4 - self.kpt_shape[0] * self.kpt_shape[1] if isinstance(rows, int) else 1
            labels = _names(eng.metadata, n) or (("person",) if n == 1 else tuple(f"class{i}" for i in range(n)))
            spec = DetectorSpec("yolov8", shape[2], shape[3], labels, assumed=("layout",))
            if log is not None:
                print(f"actionnet: {eng.path} carries no actionnet metadata; pose model with "
                      f"{self.kpt_shape[0]} keypoints (its kpt_shape), classes {', '.join(labels[:3])}", file=log)
        if spec.layout != "yolov8":
            raise ModelError(f"{eng.path}: pose models have the yolov8 layout, not {spec.layout}")
        self._check_output(eng.outputs[0].shape, spec)
        return spec

    def _check_output(self, shape, spec: DetectorSpec) -> None:
        k, d = self.kpt_shape
        want = 4 + len(spec.labels) + k * d
        if len(shape) != 3 or (isinstance(shape[1], int) and shape[1] != want):
            raise ModelError(f"pose output of {self.engine.path} has shape {list(shape)}; {len(spec.labels)} "
                             f"classes and {k}x{d} keypoints want [1, {want}, N]")

    def postprocess(self, out: np.ndarray, shape) -> PoseDetections:
        boxes, scores, cls, kpts = decode_pose(out, len(self.spec.labels), self.kpt_shape, self.conf, self.class_ids)
        keep = nms(boxes, scores, cls, self.iou, self.max_det)
        boxes, scores, cls, kpts = boxes[keep], scores[keep], cls[keep], kpts[keep]
        return PoseDetections(self.letterbox.to_frame(boxes, shape), scores, cls, self.keypoints_to_frame(kpts, shape))

    def keypoints_to_frame(self, kpts: np.ndarray, shape) -> np.ndarray:
        s, left, top, _, _ = self.letterbox.geometry(shape)
        out = kpts.copy()
        out[..., 0] = np.clip((out[..., 0] - left) / s, 0, shape[1])
        out[..., 1] = np.clip((out[..., 1] - top) / s, 0, shape[0])
        return out


def open_detector(path: str, log=sys.stderr, **kwargs) -> Detector:
    """A :class:`PoseDetector` for a pose model (keypoints in its metadata), else a :class:`Detector`."""
    kpt = None
    if os.path.isfile(path) and path.lower().endswith(".onnx"):
        kpt = keypoint_shape(read_metadata(path))
    if kpt is None:
        return Detector(path, log=log, **kwargs)
    return PoseDetector(path, kpt, log=log, **kwargs)


def match_keypoints(track_boxes: np.ndarray, dets) -> list:
    """For each track box, the keypoints [K, 3] of the detection it was matched to on this frame
    (a track's box is that detection's box), else None (a track coasting on its prediction)."""
    kp = getattr(dets, "keypoints", None)
    if kp is None or not len(track_boxes):
        return [None] * len(track_boxes)
    if not len(dets):
        return [None] * len(track_boxes)
    from .tracker import iou_matrix

    iou = iou_matrix(np.asarray(track_boxes, np.float32).reshape(-1, 4), dets.boxes)
    j = iou.argmax(axis=1)
    return [kp[j[i]] if iou[i, j[i]] > 0.99 else None for i in range(len(track_boxes))]
