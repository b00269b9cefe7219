"""A person detector to INT8 (QDQ), calibrated on video frames, gated by finding the same people.

``actionnet-export quantize DETECTOR.onnx --calib VIDEO_OR_FOLDER --output D-int8.onnx`` takes
this path when the model is a detector (4-D image input). Frames are letterboxed exactly as the
runtime's :class:`~actionnet.detector.Detector` does, so calibration sees what inference sees.

Only convolutions are quantised: they are nearly all of a YOLO's work, while its head turns
grid offsets into pixel boxes and sigmoids into scores, arithmetic that INT8 would blur for no
speed. The gate compares the INT8 detector with the FP32 one on frames held back from
calibration: every person the FP32 model finds must be found (IoU >= 0.5) by the INT8 model, and
vice versa, on ``--min-agreement`` of them (default 97%), else nothing is written.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import List

import numpy as np


def head_convs(path: str) -> List[str]:
    """The convolutions after which no other convolution runs: the detection head's outputs
    (box offsets, objectness and class logits before their sigmoids). Kept in float: an int8
    step there moves scores across the threshold (OpenVINO lost a person at 0.93 with them)."""
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    consumers = {}
    for n in g.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    heads = []
    for n in g.node:
        if n.op_type != "Conv":
            continue
        seen, todo, feeds_conv = set(), list(n.output), False
        while todo and not feeds_conv:
            t = todo.pop()
            for c in consumers.get(t, ()):
                if id(c) in seen:
                    continue
                seen.add(id(c))
                feeds_conv = c.op_type == "Conv"
                todo += list(c.output)
        if not feeds_conv and n.name:
            heads.append(n.name)
    return heads


def is_detector(path: str) -> bool:
    """A detector takes a 4-D image; an action model a 5-D clip."""
    import onnx

    m = onnx.load(path, load_external_data=False)
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    meta = {p.key: p.value for p in m.metadata_props}
    if meta.get("actionnet.task") == "detector":
        return True
    return len(inputs) == 1 and len(inputs[0].type.tensor_type.shape.dim) == 4


@dataclass
class DetectionAgreement:
    frames: int
    reference: int  # boxes the FP32 detector found
    found: int  # of those, found again by INT8 (IoU >= 0.5)
    extra: int  # INT8 boxes with no FP32 box

    @property
    def agreement(self) -> float:
        total = self.reference + self.extra
        return 1.0 if total == 0 else self.found / total

    def __str__(self):
        return (f"{self.found} of {self.reference} boxes found again, {self.extra} extra, on {self.frames} frames: "
                f"{100 * self.agreement:.1f}% agreement")


def read_frames(calib: str, count: int) -> List[np.ndarray]:
    """``count`` frames spread over a video, an image folder or a folder of videos."""
    from actionnet.errors import InputError
    from actionnet.sources import VIDEO_EXTENSIONS, open_source

    paths = [calib]
    if os.path.isdir(calib):
        videos = sorted(os.path.join(calib, f) for f in os.listdir(calib) if f.lower().endswith(VIDEO_EXTENSIONS))
        paths = videos or [calib]
    per = max(1, -(-count // len(paths)))  # frames from each video, spread over it
    frames: List[np.ndarray] = []
    for p in paths:
        with open_source(p) as src:
            n = src.frame_count
            if n:  # keep only the frames picked: a long video does not sit in memory
                want = set(np.linspace(0, n - 1, min(per, n)).round().astype(int).tolist())
                frames += [f for i, (f, _) in enumerate(src) if i in want]
            else:
                got = [f for f, _ in src]
                frames += [got[i] for i in np.linspace(0, len(got) - 1, min(per, len(got))).round().astype(int)]
    if not frames:
        raise InputError(f"no frames in {calib}")
    return frames[:count]


def compare(ref, test, frames) -> DetectionAgreement:
    from actionnet.tracker import iou_matrix

    n_ref = found = extra = 0
    for f in frames:
        a, b = ref(f).boxes, test(f).boxes
        n_ref += len(a)
        if len(a) and len(b):
            iou = iou_matrix(a, b)
            found += int((iou.max(axis=1) >= 0.5).sum())
            extra += int((iou.max(axis=0) < 0.5).sum())
        else:
            extra += len(b)
    return DetectionAgreement(len(frames), n_ref, found, extra)


def quantize_detector(model: str, calib: str, output: str, frames: int = 48, holdout: float = 0.25,
                      min_agreement: float = 0.97, force: bool = False, log=sys.stderr) -> DetectionAgreement:
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from actionnet.detector import Detector
    from actionnet.errors import ModelError, UsageError

    from .calibration import ClipReader

    if not 0.0 < holdout < 1.0:
        raise UsageError(f"--holdout must be between 0 and 1, got {holdout}")
    ref = Detector(model, engine="onnxruntime", log=None)
    try:
        picked = read_frames(calib, frames)
        held = picked[::int(round(1 / holdout))]
        calib_frames = [f for i, f in enumerate(picked) if i % int(round(1 / holdout))]
        blobs = []
        for f in calib_frames:  # the runtime's own letterbox (and, for dynamic models, its size)
            if ref.dynamic and f.shape[:2] != ref._fitted:
                ref._fit(f.shape)
            blobs.append(ref.letterbox(f).copy())
        name = ref.engine.input.name
        print(f"actionnet-export: detector {model}: {len(blobs)} calibration frames, {len(held)} held out, "
              f"from {calib}", file=log)
        with tempfile.TemporaryDirectory(prefix="actionnet-quant-") as tmp:
            pre = os.path.join(tmp, "pre.onnx")
            try:
                quant_pre_process(model, pre, skip_symbolic_shape=True)
            except Exception as e:  # pragma: no cover - depends on the model's ops
                print(f"actionnet-export: pre-processing skipped ({type(e).__name__}: {e})", file=log)
                pre = model
            q = os.path.join(tmp, "int8.onnx")
            quantize_static(pre, q, ClipReader(name, blobs), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"],
                            nodes_to_exclude=head_convs(pre),
                            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True,
                                           "QuantizeBias": False})
            qm = onnx.load(q)
            src = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
            src["actionnet.precision"] = "int8-qdq"
            del qm.metadata_props[:]
            for k, v in src.items():
                qm.metadata_props.add(key=k, value=v)
            onnx.save(qm, q)
            test = Detector(q, engine="onnxruntime", log=None)
            try:
                report = compare(ref, test, held)
            finally:
                test.close()
            print(f"actionnet-export: INT8 vs FP32 detector on held-out frames: {report}", file=log)
            if report.agreement < min_agreement:
                if not force:
                    raise ModelError(f"the INT8 detector agrees with FP32 on only {100 * report.agreement:.1f}% of "
                                     f"the boxes on held-out frames (< {100 * min_agreement:.0f}%); nothing written. "
                                     "Calibrate on more or more representative frames, or pass --force")
                print("actionnet-export: warning: below the agreement asked for, written anyway (--force)", file=log)
            from actionnet.files import mkstemp

            fd, part = mkstemp(dir=os.path.dirname(os.path.abspath(output)) or ".", suffix=".tmp")
            with os.fdopen(fd, "wb") as fo, open(q, "rb") as fi:
                fo.write(fi.read())
            os.replace(part, output)
    finally:
        ref.close()
    print(f"actionnet-export: wrote {output}", file=log)
    return report
