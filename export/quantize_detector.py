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
    """A detector takes one 4-D image and gives 3-D boxes (YOLO's [1, N, 5+C], [1, 4+C, N] or
    [1, N, 6]); an action model takes a 5-D clip. The file's own ``actionnet.task`` decides when
    present. An unreadable file is not a detector: the action-model path then reports it in its
    own words."""
    import onnx

    try:
        m = onnx.load(path, load_external_data=False)
    except Exception:
        return False
    meta = {p.key: p.value for p in m.metadata_props}
    if "actionnet.task" in meta:
        return meta["actionnet.task"] == "detector"
    init = {i.name for i in m.graph.initializer}
    inputs = [i for i in m.graph.input if i.name not in init]
    def rank(v):
        return len(v.type.tensor_type.shape.dim)

    return len(inputs) == 1 and rank(inputs[0]) == 4 and len(m.graph.output) >= 1 and rank(m.graph.output[0]) == 3


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
    """``count`` frames spread over a video, an image folder or a folder of videos. Memory holds
    at most about ``2 * count`` frames whatever the length: a video that does not say how many
    frames it has is thinned as it is read."""
    from actionnet.errors import InputError
    from actionnet.sources import VIDEO_EXTENSIONS, open_source

    if not os.path.exists(calib):
        raise InputError(f"--calib {calib}: no such file or folder (give a video, or a folder of videos or images)")
    paths = [calib]
    if os.path.isdir(calib):
        videos = sorted(os.path.join(calib, f) for f in os.listdir(calib) if f.lower().endswith(VIDEO_EXTENSIONS))
        paths = videos or [calib]
    per = max(1, -(-count // len(paths)))  # frames from each video, spread over it
    frames: List[np.ndarray] = []
    for p in paths:
        with open_source(p) as src:
            n = src.frame_count
            if n:  # keep only the frames picked
                want = set(np.linspace(0, n - 1, min(per, n)).round().astype(int).tolist())
                frames += [f for i, (f, _) in enumerate(src) if i in want]
                continue
            kept, stride = [], 1  # unknown length: every stride-th frame, stride doubling as needed
            for i, (f, _) in enumerate(src):
                if i % stride == 0:
                    kept.append(f)
                    if len(kept) >= 2 * per:
                        kept, stride = kept[::2], stride * 2
            frames += [kept[i] for i in np.unique(np.linspace(0, len(kept) - 1, min(per, len(kept))).round().astype(int))] if kept else []
    if not frames:
        raise InputError(f"no frames in {calib}")
    return frames[:count]


def split(frames: list, holdout: float):
    """(calibration, held-out): ``holdout`` of the frames, spread evenly, are held back."""
    n = len(frames)
    held = set(np.linspace(0, n - 1, min(n - 1, max(1, round(n * holdout)))).round().astype(int).tolist())
    return [f for i, f in enumerate(frames) if i not in held], [frames[i] for i in sorted(held)]


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


def open_detector(path: str, engine: str):
    """The runtime's detector as ``--persons`` runs it (the person class), or with every class
    for a detector that has no person class."""
    from actionnet.detector import Detector
    from actionnet.errors import UsageError

    try:
        return Detector(path, engine=engine, log=None)
    except UsageError:
        return Detector(path, engine=engine, classes=None, log=None)


def quantize_detector(model: str, calib: str, output: str, frames: int = 48, holdout: float = 0.25,
                      min_agreement: float = 0.97, force: bool = False, activations: str = "u8",
                      per_channel: bool = True, method: str = "minmax", engines=None, log=sys.stderr) -> dict:
    """Quantise the detector ``model``; returns ``{engine: DetectionAgreement}`` on the held-out
    frames. Raises ModelError (and writes nothing) when any engine falls below
    ``min_agreement``, or nobody is clearly found on the held-out frames, unless ``force``."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from actionnet.errors import ModelError, OutputError, UsageError

    from .calibration import ClipReader
    from .quantize import mark_quantized, move_into_place

    if not 0.0 < holdout < 1.0:
        raise UsageError(f"--holdout must be between 0 and 1, got {holdout}")
    if frames < 2:
        raise UsageError(f"--max-clips must be at least 2 for a detector (frames to calibrate on and to check), got {frames}")
    if activations not in ("u8", "s8"):
        raise UsageError(f"--activations must be u8 or s8, got {activations!r}")
    if not os.path.isfile(model):
        raise ModelError(f"model file not found: {model}")
    if not any(n.op_type == "Conv" for n in onnx.load(model, load_external_data=False).graph.node):
        raise ModelError(f"{model} has no convolutions: nothing for the detector path to quantise")
    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    if method not in methods:
        raise UsageError(f"--method must be one of {', '.join(methods)}, got {method!r}")
    out_dir = os.path.dirname(os.path.abspath(output))
    try:  # before minutes of calibration, not after
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise OutputError(f"cannot write {output}: {e.strerror}") from None
    if not os.access(out_dir, os.W_OK):
        raise OutputError(f"cannot write {output}: {out_dir} is not writable")
    u8 = activations == "u8"
    if engines is None:
        # s8 is TensorRT's format, not OpenVINO's (it lost every person with it on an AVX2 CPU)
        engines = cpu_engines() if u8 else ["onnxruntime"]
    picked = read_frames(calib, frames)
    if len(picked) < 2:
        raise UsageError(f"{calib} gave {len(picked)} frame; a detector needs at least 2 (calibration and check)")
    calib_frames, held = split(picked, holdout)
    ref = open_detector(model, "onnxruntime")
    try:
        blobs = []
        for f in calib_frames:  # the runtime's own letterbox (and, for dynamic models, its size)
            if ref.dynamic and f.shape[:2] != ref._fitted:
                ref._fit(f.shape)
            blobs.append(ref.letterbox(f).copy())
        name = ref.engine.input.name
    finally:
        ref.close()
    if method != "minmax" and len({b.shape for b in blobs}) > 1:
        raise UsageError(f"--method {method} needs frames of one shape, and this dynamic detector letterboxes "
                         f"{len({b.shape for b in blobs})} shapes from {calib}; use --method minmax")
    print(f"actionnet-export: detector {model}: {len(blobs)} calibration frames, {len(held)} held out, "
          f"from {calib}; activations {activations}", file=log)
    with tempfile.TemporaryDirectory(prefix="actionnet-quant-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        try:
            quant_pre_process(model, pre, skip_symbolic_shape=True)
        except Exception as e:  # pragma: no cover - depends on the model's ops
            print(f"actionnet-export: pre-processing skipped ({type(e).__name__}: {e})", file=log)
            pre = model
        first = image_conv_weights(pre, name)
        if not first:
            print("actionnet-export: warning: no convolution reads the image directly, so no 7-bit weights; "
                  "CPUs without VNNI may saturate (the gate below checks)", file=log)
        q = os.path.join(tmp, "int8.onnx")
        quantize_static(pre, q, ClipReader(name, blobs), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QUInt8 if u8 else QuantType.QInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], op_types_to_quantize=["Conv"],
                        extra_options={"ActivationSymmetric": not u8, "WeightSymmetric": True,
                                       "QuantizeBias": False,
                                       # 7-bit weights where the image comes in: no int16 saturation
                                       # on CPUs without VNNI
                                       "TensorQuantOverrides": {w: [dict({"reduce_range": True},
                                                                         **({"axis": 0} if per_channel else {}))]
                                                                for w in first},
                                       # convolution inputs only, as OpenVINO's NNCF places them
                                       "OpTypesToExcludeOutputQuantization": ["Conv"]})
        mark_quantized(model, q, activations)
        reports = {}
        for engine in engines:
            ref, test = open_detector(model, engine), open_detector(q, engine)
            try:
                reports[engine] = compare(ref, test, held)
            finally:
                ref.close()
                test.close()
            print(f"actionnet-export: INT8 vs FP32 detector on held-out frames, {engine}: {reports[engine]}",
                  file=log)
        if not u8:
            print("actionnet-export: s8 activations (TensorRT's format) checked on ONNX Runtime only; OpenVINO "
                  "may run them wrong on CPUs without VNNI", file=log)
        worst = min(reports, key=lambda e: reports[e].agreement)
        people = min(r.reference + r.extra for r in reports.values())
        problem = None
        if people == 0:
            problem = ("nobody is clearly found on the held-out frames, so nothing was checked; calibrate on frames "
                       "with people in them")
        elif reports[worst].agreement < min_agreement:
            problem = (f"the INT8 detector agrees with FP32 on only {100 * reports[worst].agreement:.1f}% of the "
                       f"clearly found people on held-out frames on {worst} (< {100 * min_agreement:.0f}%); "
                       "calibrate on more or more representative frames")
        if problem and not force:
            raise ModelError(problem + "; nothing written (--force writes it anyway)")
        if problem:
            print(f"actionnet-export: warning: {problem}; written anyway (--force)", file=log)
        elif people < 10:
            print(f"actionnet-export: warning: only {people} clearly found people on the held-out frames: a weak "
                  "check; calibrate on more frames with people (--max-clips)", file=log)
        move_into_place(q, output)
    print(f"actionnet-export: wrote {output}", file=log)
    return reports
