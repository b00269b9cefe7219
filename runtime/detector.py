"""The person detector: letterbox in, one ONNX call, decode, class filter, NMS, boxes in frame pixels.

Three output layouts cover the YOLO family:

* ``yolov5``: ``[1, N, 5 + C]`` rows of cx, cy, w, h, objectness, C class scores (sigmoided);
  score = objectness x class score (YOLOv5's own ONNX export, e.g. ``yolov5n.onnx``);
* ``yolov8``: ``[1, 4 + C, N]`` columns of cx, cy, w, h, C class scores, no objectness
  (YOLOv8, YOLO11 and YOLO26 exported without end-to-end NMS);
* ``end2end``: ``[1, N, 6]`` rows of x1, y1, x2, y2, score, class, already NMS-ed (YOLOv10 and
  YOLO26's NMS-free heads).

Coordinates are pixels of the letterboxed model input. Models written by
``actionnet-export yolo`` carry their layout, class names and input size in their metadata; a
foreign ONNX gets them from its output shape (and COCO's names when it has 80 classes), and the
detector says what it assumed. The hot path allocates nothing per frame but the candidate
arrays that survive the score threshold (a few hundred floats).
"""

from __future__ import annotations

import ast
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from .engines import choose_engine, open_engine
from .engines.onnxmeta import read_metadata
from .errors import ModelError, UsageError
from .spec import PREFIX, SPEC_VERSION

LAYOUTS = ("yolov5", "yolov8", "end2end")

COCO80 = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush",
)


@dataclass(frozen=True)
class DetectorSpec:
    """How to feed a detector and read its output (``actionnet.*`` metadata, task=detector)."""

    layout: str
    height: int
    width: int
    labels: Tuple[str, ...]
    pad_value: int = 114
    color_order: str = "RGB"
    assumed: Tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ModelError(f"unknown detector output layout {self.layout!r}; known layouts: {', '.join(LAYOUTS)}")
        if self.height < 1 or self.width < 1:
            raise ModelError(f"invalid detector input size {self.height}x{self.width}")

    def to_metadata(self) -> dict:
        return {PREFIX + "spec_version": SPEC_VERSION, PREFIX + "task": "detector", PREFIX + "detector_layout": self.layout,
                PREFIX + "height": str(self.height), PREFIX + "width": str(self.width),
                PREFIX + "labels": json.dumps(list(self.labels)), PREFIX + "pad_value": str(self.pad_value),
                PREFIX + "color_order": self.color_order}

    @classmethod
    def from_metadata(cls, props: Mapping[str, str]) -> Optional["DetectorSpec"]:
        if props.get(PREFIX + "task") != "detector":
            return None
        try:
            return cls(layout=props[PREFIX + "detector_layout"], height=int(props[PREFIX + "height"]),
                       width=int(props[PREFIX + "width"]), labels=tuple(json.loads(props[PREFIX + "labels"])),
                       pad_value=int(props.get(PREFIX + "pad_value", "114")),
                       color_order=props.get(PREFIX + "color_order", "RGB"))
        except (KeyError, ValueError, TypeError) as e:
            raise ModelError(f"detector metadata is corrupt ({type(e).__name__}: {e})") from None


def infer_layout(shape: Sequence) -> Tuple[str, int]:
    """``(layout, num_classes)`` from a foreign detector's output shape ``[1, a, b]``.

    YOLOv5 rows are 5 + C wide and far outnumbered by the rows (thousands of anchors); YOLOv8
    has the 4 + C channels first; ``[1, N, 6]`` with N <= 1000 is an end-to-end head (YOLOv5
    with one class has 6-wide rows too, but tens of thousands of them).
    """
    if len(shape) != 3 or not all(isinstance(d, int) and d > 0 for d in shape[1:]):
        raise ModelError(f"detector output has shape {list(shape)}; expected [1, N, 5+C] (YOLOv5), "
                         "[1, 4+C, N] (YOLOv8/11) or [1, N, 6] (end-to-end)")
    _, a, b = shape
    if b == 6 and a <= 1000:
        return "end2end", 0
    if a > b and b >= 6:
        return "yolov5", b - 5
    if b > a and a >= 5:
        return "yolov8", a - 4
    raise ModelError(f"cannot tell the layout of detector output {list(shape)}; export it with "
                     "actionnet-export yolo, or pass --detector-layout")


@dataclass
class Detections:
    """Boxes in frame pixels (x1, y1, x2, y2), scores and class ids; float32/int arrays."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray

    def __len__(self):
        return len(self.scores)

    @classmethod
    def empty(cls):
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou: float, max_det: int) -> np.ndarray:
    """Indices kept by per-class NMS, best first (OpenCV's C++ NMS; classes separated by an
    offset, the trick ultralytics uses, so one call handles all classes)."""
    if len(scores) == 0:
        return np.zeros(0, np.int64)
    off = classes.astype(np.float32)[:, None] * (float(boxes.max()) + 1.0)
    b = boxes + off
    xywh = np.empty_like(b)
    xywh[:, :2] = b[:, :2]
    xywh[:, 2:] = b[:, 2:] - b[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), 0.0, iou, top_k=max_det)
    return np.asarray(keep, np.int64).reshape(-1)


class Letterbox:
    """Fits a frame inside (H, W) keeping its aspect ratio, pads with grey, and writes the
    float32 [1, 3, H, W] model input; all buffers preallocated, geometry cached per frame size."""

    def __init__(self, height: int, width: int, pad_value: int = 114, rgb: bool = True):
        self.height, self.width, self.pad_value, self.rgb = height, width, pad_value, rgb
        self.canvas = np.full((height, width, 3), pad_value, np.uint8)
        self.blob = np.empty((1, 3, height, width), np.float32)
        self._geom = None
        self._tmp = None

    def geometry(self, shape):
        """(scale, pad_x, pad_y, new_w, new_h) for a frame of ``shape`` (ultralytics' rounding)."""
        if self._geom is None or self._geom[0] != shape[:2]:
            h, w = shape[:2]
            s = min(self.height / h, self.width / w)
            nw, nh = int(round(w * s)), int(round(h * s))
            px, py = (self.width - nw) / 2, (self.height - nh) / 2
            left, top = int(round(px - 0.1)), int(round(py - 0.1))
            self.canvas[...] = self.pad_value
            self._geom = (shape[:2], s, left, top, nw, nh)
        return self._geom[1:]

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        s, left, top, nw, nh = self.geometry(frame.shape)
        dst = self.canvas[top:top + nh, left:left + nw]
        if (nh, nw) == frame.shape[:2]:
            dst[...] = frame
        elif dst.flags.c_contiguous:  # full-width rows (a landscape frame): resize straight in
            cv2.resize(frame, (nw, nh), dst=dst, interpolation=cv2.INTER_LINEAR)
        else:
            if self._tmp is None or self._tmp.shape[:2] != (nh, nw):
                self._tmp = np.empty((nh, nw, 3), np.uint8)
            cv2.resize(frame, (nw, nh), dst=self._tmp, interpolation=cv2.INTER_LINEAR)
            dst[...] = self._tmp
        src = self.canvas[..., ::-1] if self.rgb else self.canvas
        np.multiply(src.transpose(2, 0, 1), np.float32(1.0 / 255.0), out=self.blob[0])
        return self.blob

    def to_frame(self, boxes: np.ndarray, shape) -> np.ndarray:
        """Model-input pixel boxes (x1, y1, x2, y2) -> frame pixels, clipped to the frame."""
        s, left, top, _, _ = self.geometry(shape)
        out = boxes.astype(np.float32, copy=True)
        out[:, [0, 2]] -= left
        out[:, [1, 3]] -= top
        out /= s
        out[:, [0, 2]] = np.clip(out[:, [0, 2]], 0, shape[1])
        out[:, [1, 3]] = np.clip(out[:, [1, 3]], 0, shape[0])
        return out


def decode(out: np.ndarray, layout: str, conf: float, classes: Optional[np.ndarray]):
    """Raw output [1, ...] -> (boxes x1y1x2y2 in input pixels, scores, class ids), score >= conf.

    Cheap filters first (objectness, then the best class score), so the arithmetic runs only on
    the few candidates that can survive.
    """
    if layout == "end2end":
        rows = out[0]
        m = rows[:, 4] >= conf
        rows = rows[m]
        cls = rows[:, 5].astype(np.int64)
        if classes is not None:
            k = np.isin(cls, classes)
            rows, cls = rows[k], cls[k]
        return rows[:, :4].astype(np.float32), rows[:, 4].astype(np.float32), cls
    if layout == "yolov5":
        rows = out[0]
        rows = rows[rows[:, 4] >= conf]
        xywh = rows[:, :4]
        cls_scores = rows[:, 5:] * rows[:, 4:5]
    else:  # yolov8: [4 + C, N]
        o = out[0]
        m = o[4:].max(axis=0) >= conf
        xywh = o[:4, m].T
        cls_scores = o[4:, m].T
    # the best class of each box, then the class filter: ultralytics' semantics, so a box that
    # is rather a chair than a person is not reported as a person
    cls = cls_scores.argmax(axis=1)
    score = cls_scores[np.arange(len(cls)), cls]
    if classes is not None:
        k = np.isin(cls, classes)
        xywh, score, cls = xywh[k], score[k], cls[k]
    k = score >= conf
    xywh, score, cls = xywh[k], score[k], cls[k]
    boxes = np.empty((len(score), 4), np.float32)
    boxes[:, :2] = xywh[:, :2] - xywh[:, 2:] / 2
    boxes[:, 2:] = xywh[:, :2] + xywh[:, 2:] / 2
    return boxes, score.astype(np.float32), cls.astype(np.int64)


def _names(props: Mapping[str, str], n: int) -> Optional[Tuple[str, ...]]:
    """Class names from the ``names`` metadata YOLOv5's and ultralytics' exporters write
    (a Python dict literal), when they fit the output."""
    try:
        names = ast.literal_eval(props.get("names", ""))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(names, dict) or sorted(names) != list(range(len(names))) or (n and len(names) != n):
        return None
    return tuple(str(names[i]) for i in range(len(names)))


def choose_detector_engine(path: str) -> Tuple[str, str]:
    """``auto`` for a detector: the classifier's rule (:func:`~actionnet.engines.choose_engine`),
    except on the CPU and for files quantised for CPUs.

    Measured with scripts/bench_detector.py (YOLOv5n, 1080p frames at 384x640, 2 threads, an
    AVX2 CPU without VNNI): ONNX Runtime FP32 35.9 ms, OpenVINO FP32 61.2 ms, OpenVINO INT8
    30.9 ms, ONNX Runtime INT8 93.8 ms. So OpenVINO takes the INT8 detectors ``actionnet-export
    quantize`` writes for CPUs (u8 activations), and ONNX Runtime float ones. An s8 QDQ detector
    (TensorRT's format) stays off OpenVINO, which lost every person with one on that CPU; a u8
    one stays off TensorRT, which refuses it. ``--detector-engine`` overrides."""
    from .engines import openvino
    from .engines.trt_build import graph_precision

    engine, why = choose_engine(path)
    if not (os.path.isfile(path) and path.lower().endswith(".onnx")):
        return engine, why
    qdq = graph_precision(path) == "qdq"
    cpu_int8 = qdq and read_metadata(path).get(PREFIX + "activations") == "u8"
    if cpu_int8 and engine == "tensorrt":
        engine = "openvino" if openvino.available() else "onnxruntime"
        return engine, "an INT8 detector quantised for CPUs (u8); TensorRT takes s8 only"
    if engine == "openvino" and not cpu_int8:
        return "onnxruntime", ("an s8 QDQ detector (TensorRT's format): OpenVINO may run it wrong on CPUs without "
                               "VNNI" if qdq else "a float detector: ONNX Runtime runs it faster than OpenVINO on "
                               "the CPU; OpenVINO takes INT8 detectors (actionnet-export quantize)")
    if engine == "openvino":
        return engine, "an INT8 (QDQ) detector: OpenVINO's INT8 kernels"
    if cpu_int8 and engine == "onnxruntime" and why.startswith("no GPU"):
        return engine, ("no OpenVINO: ONNX Runtime runs this INT8 detector right but slower than the float one; "
                        "install openvino, or run the float detector")
    return engine, why


class Detector:
    """``Detector("yolov5n.onnx")(frame) -> Detections`` of the chosen classes (person by default)."""

    def __init__(self, path: str, conf: float = 0.25, iou: float = 0.45, classes: Optional[Sequence] = ("person",),
                 max_det: int = 100, layout: Optional[str] = None, engine: str = "auto", threads: Optional[int] = None,
                 precision: Optional[str] = None, log=sys.stderr):
        if not 0.0 <= conf <= 1.0:
            raise UsageError(f"detector confidence must be between 0 and 1, got {conf}")
        if not 0.0 < iou <= 1.0:
            raise UsageError(f"NMS IoU must be in (0, 1], got {iou}")
        if os.path.isfile(path) and path.lower().endswith(".onnx"):
            read_metadata(path)  # a broken file fails here with one clear line, before any backend parses it
        auto = engine == "auto"
        if auto:
            engine, why = choose_detector_engine(path)
        self.engine = open_engine(path, engine, threads=threads, precision=precision)
        try:
            self.spec = self._spec(layout, log)
        except Exception:
            self.engine.close()
            raise
        if auto and log is not None:  # said once the file is known to be a detector: errors stay one line
            print(f"actionnet: detector engine auto -> {engine} ({why})", file=log)
        self.conf, self.iou, self.max_det = conf, iou, max_det
        self.class_ids = self._class_ids(classes)
        shape = self.engine.input.shape
        # a detector exported with a dynamic input (actionnet-export yolo --dynamic) gets each
        # frame letterboxed to its own aspect, the longer side at the exported size, the shorter
        # rounded up to the stride: 384x640 for 16:9 instead of 640x640, 40 % less work
        self.dynamic = not (isinstance(shape[2], int) and isinstance(shape[3], int))
        try:
            self.stride = int(self.engine.metadata.get("stride", "32"))
        except ValueError:
            self.stride = 32
        self.log = log
        self.letterbox = Letterbox(self.spec.height, self.spec.width, self.spec.pad_value, self.spec.color_order == "RGB")
        self._fitted = None  # the frame shape the dynamic letterbox was sized for

    def _spec(self, layout, log) -> DetectorSpec:
        eng = self.engine
        shape = eng.input.shape
        if eng.metadata.get(PREFIX + "task") == "action":
            raise ModelError(f"{eng.path} is an action model, not a detector (swap --model and --detector?)")
        if len(shape) != 4 or (isinstance(shape[1], int) and shape[1] != 3):
            raise ModelError(f"{eng.path} is not an image detector: input {eng.input.name!r} has shape "
                             f"{list(shape)}, expected [1, 3, H, W]")
        out_shape = eng.outputs[0].shape
        spec = DetectorSpec.from_metadata(eng.metadata)
        if spec is None:
            h, w = shape[2], shape[3]
            if not (isinstance(h, int) and isinstance(w, int)):
                raise ModelError(f"{eng.path} has a dynamic input size {list(shape)}; export it with a fixed size")
            found, n = infer_layout(out_shape)
            layout = layout or found
            labels = _names(eng.metadata, n)
            assumed = ["layout"] if layout == found else []
            if labels is None:
                labels = COCO80 if n == 80 or layout == "end2end" else tuple(f"class{i}" for i in range(n))
                assumed += ["labels (COCO-80)"] if labels is COCO80 else ["labels"]
            spec = DetectorSpec(layout, h, w, labels, assumed=tuple(assumed))
            if log is not None:
                how = "given" if layout != found else f"read from its output {list(out_shape)}"
                names = ("class names from its 'names' metadata" if "labels" not in " ".join(spec.assumed)
                         else f"assumed {spec.assumed[-1]}")
                print(f"actionnet: {eng.path} carries no actionnet metadata; layout {layout} {how}, {names}", file=log)
        elif layout and layout != spec.layout:
            spec = DetectorSpec(layout, spec.height, spec.width, spec.labels, spec.pad_value, spec.color_order)
        self._check_output(out_shape, spec)
        return spec

    def _check_output(self, shape, spec: DetectorSpec) -> None:
        p = self.engine.path
        if len(shape) != 3:
            raise ModelError(f"detector output of {p} has shape {list(shape)}; layout {spec.layout} wants rank 3")
        n = len(spec.labels)
        want = {"yolov5": (2, 5 + n), "yolov8": (1, 4 + n), "end2end": (2, 6)}[spec.layout]
        got = shape[want[0]]
        if isinstance(got, int) and got != want[1]:
            expect = {"yolov5": f"[1, N, {5 + n}]", "yolov8": f"[1, {4 + n}, N]", "end2end": "[1, N, 6]"}[spec.layout]
            raise ModelError(f"detector output of {p} has shape {list(shape)}, which does not fit layout "
                             f"{spec.layout} with {n} classes ({expect})")

    def _class_ids(self, classes):
        if classes is None:
            return None
        ids = []
        for c in classes:
            if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.isdigit()):
                i = int(c)
                if not 0 <= i < len(self.spec.labels):
                    raise UsageError(f"detector class {i} out of range; the detector has {len(self.spec.labels)} classes")
                ids.append(i)
            elif c in self.spec.labels:
                ids.append(self.spec.labels.index(c))
            else:
                raise UsageError(f"detector {self.engine.path} has no class {c!r}; its classes start with "
                                 f"{', '.join(self.spec.labels[:5])}")
        return np.asarray(ids, np.int64)

    def input_size(self, shape) -> Tuple[int, int]:
        """(H, W) the detector runs at for frames of ``shape``: its fixed size, or for a dynamic
        input the frame's aspect with the longer side at the exported size, padded to the stride
        (ultralytics' rectangular inference: 1080p -> 384x640)."""
        if not self.dynamic:
            return self.spec.height, self.spec.width
        h, w = shape[:2]
        side = max(self.spec.height, self.spec.width)
        r = side / max(h, w)
        nh, nw = int(round(h * r)), int(round(w * r))
        st = self.stride
        return nh + (-nh) % st, nw + (-nw) % st

    def describe_size(self) -> str:
        if not self.dynamic:
            return f"{self.spec.height}x{self.spec.width}"
        side = max(self.spec.height, self.spec.width)
        return f"dynamic input: frame aspect, longer side {side}, stride {self.stride}"

    def _fit(self, shape) -> None:
        h, w = self.input_size(shape)
        self.letterbox = Letterbox(h, w, self.spec.pad_value, self.spec.color_order == "RGB")
        self._fitted = shape[:2]
        if self.log is not None:
            print(f"actionnet: detector input {h}x{w} for {shape[1]}x{shape[0]} frames", file=self.log)

    def infer(self, frame: np.ndarray) -> np.ndarray:
        """The raw output for one BGR frame (letterbox + one engine call)."""
        if self.dynamic and frame.shape[:2] != self._fitted:
            self._fit(frame.shape)
        return self.engine.infer(self.letterbox(frame))

    def postprocess(self, out: np.ndarray, shape) -> Detections:
        if self.dynamic and shape[:2] != self._fitted:
            self._fit(shape)
        boxes, scores, cls = decode(out, self.spec.layout, self.conf, self.class_ids)
        if self.spec.layout != "end2end":
            keep = nms(boxes, scores, cls, self.iou, self.max_det)
            boxes, scores, cls = boxes[keep], scores[keep], cls[keep]
        else:
            order = np.argsort(-scores, kind="stable")[: self.max_det]
            boxes, scores, cls = boxes[order], scores[order], cls[order]
        return Detections(self.letterbox.to_frame(boxes, shape), scores, cls)

    def __call__(self, frame: np.ndarray) -> Detections:
        return self.postprocess(self.infer(frame), frame.shape)

    def close(self) -> None:
        self.engine.close()
