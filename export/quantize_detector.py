"""A person detector to INT8 (QDQ), calibrated on video frames, gated by finding the same people.

``actionnet-export quantize DETECTOR.onnx --calib VIDEO_OR_FOLDER --output D-int8.onnx`` takes
this path when the model is a detector (4-D image input). Frames are letterboxed exactly as the
runtime's :class:`~actionnet.detector.Detector` does, so calibration sees what inference sees.

Only convolutions are quantised: they are nearly all of a YOLO's work, while its head turns
grid offsets into pixel boxes and sigmoids into scores, arithmetic that INT8 would blur for no
speed.

The default number formats are the CPU's, because the issue this serves is a CPU detector
(ONNX Runtime and OpenVINO; a Jetson's TensorRT builds its detector in FP16 from the FP32 file):

* activations u8 with a zero point (``--activations u8``): what x86 INT8 kernels consume.
  Symmetric s8 activations, TensorRT's format, lost every person on OpenVINO 2026.4 on an AVX2
  CPU (objectness 0.93 -> 0.10 on the same frame) while ONNX Runtime ran the same file right;
* weights s8 symmetric per output channel, and for the convolutions that read the image, in
  **7 bits**: CPUs without VNNI (AVX2; many Zen and pre-Ice Lake Xeons) multiply u8 x s8 pairs
  into a saturating int16, and 255 x 127 x 2 overflows it. The image is where u8 inputs fill
  their range; there OpenVINO's output collapsed without the fix (objectness 0.93 -> 0.10). It
  is NNCF's default "overflow fix" (first layer only); 7 bits everywhere cost agreement
  (81% against 93% on crowded held-out frames).
* Q/DQ pairs on the inputs of convolutions only, not on their outputs, the way OpenVINO's NNCF
  places them. With Q/DQ on the outputs too (onnxruntime's default), OpenVINO found 10 people
  who are not there on 12 held-out frames of the dynamic (384x640) YOLOv5n. The cost is on ONNX
  Runtime, which fuses Q-Conv-DQ chains into QLinearConv only with the output pair: there
  this file runs right but slower than FP32 (measured in scripts/bench_persons.py).

The gate compares the INT8 detector with the FP32 one on frames held back from calibration, on
every CPU engine installed (ONNX Runtime, and OpenVINO when present): every person either model
finds clearly (score at least 0.1 over the threshold) must be found by the other (IoU >= 0.5),
on ``--min-agreement`` of them (default 97%), else nothing is written. Borderline boxes are
reported, not gated (see :class:`DetectionAgreement`).
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import dataclass
from typing import List

import numpy as np


def image_conv_weights(path: str, image: str) -> List[str]:
    """The weights of the convolutions that read the input image itself."""
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    return [n.input[1] for n in g.node if n.op_type == "Conv" and n.input[0] == image]


def is_detector(path: str) -> bool:
    """A detector takes a 4-D image; an action model a 5-D clip. An unreadable file is not a
    detector: the action-model path then reports it in its own words."""
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return False
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    meta = {p.key: p.value for p in m.metadata_props}
    if meta.get("actionnet.task") == "detector":
        return True
    return len(inputs) == 1 and len(inputs[0].type.tensor_type.shape.dim) == 4


@dataclass
class DetectionAgreement:
    """Whether two detectors find the same people, on people found clearly.

    A box scored within ``margin`` of the detector's threshold is one the FP32 model itself
    keeps on one frame and drops on the next; on real footage every disagreement between the
    INT8 and FP32 YOLOv5n was such a box (scores 0.26-0.29 at a 0.25 threshold). So the gate
    counts the people either model finds *clearly* (score >= threshold + margin): each must be
    found by the other model at all (IoU >= 0.5, any score over the threshold). Borderline
    differences are counted and reported, not gated."""

    frames: int
    reference: int  # boxes FP32 finds clearly
    found: int  # of those, found by INT8 (IoU >= 0.5)
    extra: int  # boxes INT8 finds clearly that FP32 does not find at all
    borderline: int  # boxes near the threshold that one model finds and the other does not
    margin: float

    @property
    def agreement(self) -> float:
        total = self.reference + self.extra
        return 1.0 if total == 0 else self.found / total

    def __str__(self):
        return (f"{self.found} of {self.reference} clearly found people found again, {self.extra} extra, on "
                f"{self.frames} frames: {100 * self.agreement:.1f}% agreement ({self.borderline} borderline "
                f"boxes, within {self.margin:g} of the threshold, differ)")


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


def compare(ref, test, frames, margin: float = 0.1) -> DetectionAgreement:
    """``ref`` (FP32) against ``test`` (INT8) on ``frames``; see :class:`DetectionAgreement`."""
    from actionnet.tracker import iou_matrix

    clear = ref.conf + margin
    n_ref = found = extra = borderline = 0
    for f in frames:
        a, b = ref(f), test(f)
        iou = iou_matrix(a.boxes, b.boxes) if len(a) and len(b) else np.zeros((len(a), len(b)))
        a_hit = iou.max(axis=1) >= 0.5 if len(b) else np.zeros(len(a), bool)
        b_hit = iou.max(axis=0) >= 0.5 if len(a) else np.zeros(len(b), bool)
        a_clear, b_clear = a.scores >= clear, b.scores >= clear
        n_ref += int(a_clear.sum())
        found += int((a_clear & a_hit).sum())
        extra += int((b_clear & ~b_hit).sum())
        borderline += int((~a_clear & ~a_hit).sum() + (~b_clear & ~b_hit).sum())
    return DetectionAgreement(len(frames), n_ref, found, extra, borderline, margin)


def cpu_engines() -> List[str]:
    """The CPU engines the INT8 file is checked on: ONNX Runtime always, OpenVINO when installed
    (the two run the same QDQ file with different kernels, and can disagree)."""
    import importlib.util

    return ["onnxruntime"] + (["openvino"] if importlib.util.find_spec("openvino") else [])


def quantize_detector(model: str, calib: str, output: str, frames: int = 48, holdout: float = 0.25,
                      min_agreement: float = 0.97, force: bool = False, activations: str = "u8",
                      per_channel: bool = True, method: str = "minmax", engines=None, log=sys.stderr) -> dict:
    """Quantise the detector ``model``; returns ``{engine: DetectionAgreement}`` on the held-out
    frames. Raises ModelError (and writes nothing) when any engine falls below
    ``min_agreement``, unless ``force``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from actionnet.detector import Detector
    from actionnet.errors import ModelError, UsageError
    from actionnet.files import mkstemp

    from .calibration import ClipReader

    if not 0.0 < holdout < 1.0:
        raise UsageError(f"--holdout must be between 0 and 1, got {holdout}")
    if activations not in ("u8", "s8"):
        raise UsageError(f"--activations must be u8 or s8, got {activations!r}")
    if not os.path.isfile(model):
        raise ModelError(f"model file not found: {model}")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UsageError(f"--method must be one of {', '.join(methods)}, got {method!r}")
    engines = engines or cpu_engines()
    every = int(round(1 / holdout))
    picked = read_frames(calib, frames)
    held = picked[::every]
    calib_frames = [f for i, f in enumerate(picked) if i % every]
    if not held or not calib_frames:
        raise UsageError(f"{len(picked)} frames from {calib} cannot be split into calibration and held-out "
                         "frames; raise --max-clips")
    ref = Detector(model, engine="onnxruntime", log=None)
    try:
        blobs = []
        for f in calib_frames:  # the runtime's own letterbox (and, for dynamic models, its size)
            if ref.dynamic and f.shape[:2] != ref._fitted:
                ref._fit(f.shape)
            blobs.append(ref.letterbox(f).copy())
        name = ref.engine.input.name
    finally:
        ref.close()
    print(f"actionnet-export: detector {model}: {len(blobs)} calibration frames, {len(held)} held out, "
          f"from {calib}; activations {activations}", file=log)
    u8 = activations == "u8"
    with tempfile.TemporaryDirectory(prefix="actionnet-quant-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        try:
            quant_pre_process(model, pre, skip_symbolic_shape=True)
        except Exception as e:  # pragma: no cover - depends on the model's ops
            print(f"actionnet-export: pre-processing skipped ({type(e).__name__}: {e})", file=log)
            pre = model
        q = os.path.join(tmp, "int8.onnx")
        quantize_static(pre, q, ClipReader(name, blobs), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8 if u8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], op_types_to_quantize=["Conv"],
                        extra_options={"ActivationSymmetric": not u8, "WeightSymmetric": True,
                                       "QuantizeBias": False,
                                       # 7-bit weights where the image comes in: no int16 saturation
                                       # on CPUs without VNNI
                                       "TensorQuantOverrides": {w: [{"axis": 0, "reduce_range": True}]
                                                                for w in image_conv_weights(pre, name)},
                                       # convolution inputs only, as OpenVINO's NNCF places them
                                       "OpTypesToExcludeOutputQuantization": ["Conv"]})
        qm = onnx.load(q)
        meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
        meta.update({"actionnet.precision": "int8-qdq", "actionnet.activations": activations})
        del qm.metadata_props[:]
        for k, v in meta.items():
            qm.metadata_props.add(key=k, value=v)
        onnx.save(qm, q)
        reports = {}
        for engine in engines:
            ref, test = Detector(model, engine=engine, log=None), Detector(q, engine=engine, log=None)
            try:
                reports[engine] = compare(ref, test, held)
            finally:
                ref.close()
                test.close()
            print(f"actionnet-export: INT8 vs FP32 detector on held-out frames, {engine}: {reports[engine]}",
                  file=log)
        worst = min(reports, key=lambda e: reports[e].agreement)
        if reports[worst].agreement < min_agreement:
            if not force:
                raise ModelError(f"the INT8 detector agrees with FP32 on only {100 * reports[worst].agreement:.1f}% of "
                                 f"the boxes on held-out frames on {worst} (< {100 * min_agreement:.0f}%); nothing "
                                 "written. Calibrate on more or more representative frames, "
                                 + ("try --activations u8 (the CPU format), " if not u8 else "") + "or pass --force")
            print("actionnet-export: warning: below the agreement asked for, written anyway (--force)", file=log)
        os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
        fd, part = mkstemp(dir=os.path.dirname(os.path.abspath(output)), suffix=".tmp")
        with os.fdopen(fd, "wb") as fo, open(q, "rb") as fi:
            fo.write(fi.read())
        os.replace(part, output)
    print(f"actionnet-export: wrote {output}", file=log)
    return reports
