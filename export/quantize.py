"""``actionnet-export quantize``: FP32 ONNX -> INT8 QDQ ONNX, calibrated on real clips, gated by
agreement on clips held back from calibration.

Explicit quantisation (QuantizeLinear/DequantizeLinear pairs with scales in the file) rather
than a calibrator inside each engine builder, so one file serves every backend: ONNX Runtime
runs it on the CPU, OpenVINO turns it into INT8 kernels, TensorRT builds an INT8 engine from it.
Defaults follow what TensorRT accepts: signed INT8, symmetric activations and weights, weights
per output channel. Calibration is ``onnxruntime.quantization.quantize_static`` (a maintained
implementation; nothing here is hand-rolled).

The gate: top-1 agreement with the FP32 model on held-out clips below ``--min-agreement``
(default 97%) writes nothing and exits 1, unless ``--force``.
"""

from __future__ import annotations

import os
import sys
import tempfile

HELP = "quantize an ONNX model to INT8 (QDQ), calibrated on clips, checked on held-out clips"


def add_arguments(p):
    p.add_argument("model", help="FP32 ONNX written by actionnet-export (carries its preprocessing)")
    p.add_argument("--calib", required=True, help="folder of videos, images or image folders (a detector: a video "
                   "or a folder of videos or images)")
    p.add_argument("--output", required=True, help="INT8 QDQ ONNX to write")
    p.add_argument("--skip-frames", type=int, help="frames dropped between stored frames (default: the model's training stride, else 1)")
    p.add_argument("--max-clips", type=int, default=64, help="clips read from the folder (a detector: frames; default 64)")
    p.add_argument("--holdout", type=float, default=0.25, help="fraction of clips held back for the check (default 0.25)")
    p.add_argument("--min-agreement", type=float, default=0.97, help="top-1 agreement required (a detector: the share of clearly found people found again; "
                   "default 0.97)")
    p.add_argument("--force", action="store_true", help="write the model even below --min-agreement")
    p.add_argument("--method", choices=("minmax", "entropy", "percentile"), default="minmax",
                   help="calibration method (default minmax)")
    p.add_argument("--per-tensor", action="store_true", help="one weight scale per tensor, not per channel")
    p.add_argument("--activations", choices=("s8", "u8"),
                   help="activation type: s8 symmetric (TensorRT needs it; the default for action models) or u8 "
                   "with a zero point (CPUs only; the default for detectors, see export/quantize_detector.py)")


def quantize(model: str, calib: str, output: str, skip_frames=None, max_clips: int = 64, holdout: float = 0.25,
             min_agreement: float = 0.97, force: bool = False, method: str = "minmax", per_channel: bool = True,
             activations: str = "s8", log=sys.stderr):
    """Quantise ``model``; returns the :class:`~actionnet.export.agreement.Agreement` on the
    held-out clips. Raises ModelError (and writes nothing) below ``min_agreement`` unless
    ``force``."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from actionnet.engines.onnxruntime import OnnxRuntimeEngine
    from actionnet.errors import ModelError, UsageError

    from .agreement import compare, outputs
    from .calibration import ClipReader, clips_from, spec_of, split

    if not 0.0 < holdout < 1.0:
        raise UsageError(f"--holdout must be between 0 and 1, got {holdout}")
    if not os.path.isfile(model):
        raise ModelError(f"model file not found: {model}")
    spec = spec_of(model)
    clips = clips_from(calib, spec, skip_frames, max_clips)
    calib_clips, held = split(clips, holdout)
    print(f"actionnet-export: {len(calib_clips)} calibration clips, {len(held)} held out, from {calib}", file=log)

    methods = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
               "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory(prefix="actionnet-quant-") as tmp:
        pre = os.path.join(tmp, "pre.onnx")
        try:  # shape inference + folding, as onnxruntime recommends before quantize_static
            quant_pre_process(model, pre, skip_symbolic_shape=True)
        except Exception as e:  # pragma: no cover - depends on the model's ops
            print(f"actionnet-export: pre-processing skipped ({type(e).__name__}: {e})", file=log)
            pre = model
        q = os.path.join(tmp, "int8.onnx")
        s8 = activations == "s8"
        head = classifier_head(pre)
        quantize_static(pre, q, ClipReader(spec.input_name, calib_clips), quant_format=QuantFormat.QDQ, per_channel=per_channel,
                        activation_type=QuantType.QInt8 if s8 else QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=methods[method], nodes_to_exclude=head,
                        # biases stay float: TensorRT fuses them into its INT8 convolutions and takes
                        # no INT32 DequantizeLinear for them
                        extra_options={"ActivationSymmetric": s8, "WeightSymmetric": True, "QuantizeBias": False})
        mark_quantized(model, q, activations)
        with OnnxRuntimeEngine(model, providers=["CPUExecutionProvider"]) as ref, \
                OnnxRuntimeEngine(q, providers=["CPUExecutionProvider"]) as test:
            report = compare(outputs(ref, held, spec.output_name), outputs(test, held, spec.output_name))
        print(f"actionnet-export: INT8 vs FP32 on held-out clips: {report}", file=log)
        if not report.ok(min_agreement):
            if not force:
                raise ModelError(f"INT8 model agrees with FP32 on only {100 * report.top1:.1f}% of held-out clips "
                                 f"(< {100 * min_agreement:.0f}%); nothing written. Calibrate on more or more "
                                 "representative clips, try --method entropy, or pass --force")
            print(f"actionnet-export: warning: below {100 * min_agreement:.0f}% agreement, written anyway (--force)",
                  file=log)
        move_into_place(q, output)
    print(f"actionnet-export: wrote {output}", file=log)
    return report


def mark_quantized(model: str, q: str, activations: str) -> None:
    """The QDQ file describes itself like its source: the spec copied, the precision and the
    activation type marked (the TensorRT builder refuses u8, the detector's ``auto`` reads it)."""
    import onnx

    qm = onnx.load(q)
    meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    meta.update({"actionnet.precision": "int8-qdq", "actionnet.activations": activations})
    del qm.metadata_props[:]
    for k, v in meta.items():
        qm.metadata_props.add(key=k, value=v)
    onnx.save(qm, q)


def move_into_place(q: str, output: str) -> None:
    """Copy the finished file to ``output`` through a temporary file beside it: a failed write
    leaves neither a partial model nor the temporary file."""
    from actionnet.errors import OutputError
    from actionnet.files import mkstemp

    part = None
    try:
        out_dir = os.path.dirname(os.path.abspath(output))
        os.makedirs(out_dir, exist_ok=True)
        fd, part = mkstemp(dir=out_dir, suffix=".tmp")
        with os.fdopen(fd, "wb") as fo, open(q, "rb") as fi:
            fo.write(fi.read())
        os.replace(part, output)
    except OSError as e:
        if part and os.path.exists(part):
            os.unlink(part)
        raise OutputError(f"cannot write {output}: {e.strerror or e}") from None


def classifier_head(path: str) -> list:
    """The fully connected layers that produce the scores, kept in float.

    Quantising the last layer costs accuracy for no speed: it is a few thousand MACs of the
    billions a 3D CNN runs, and its int8 output error lands on the scores directly (on the
    synthetic test model: max |logit diff| 1.6 with it, 0.09 without, same calibration).
    """
    import onnx

    g = onnx.load(path, load_external_data=False).graph
    producer = {o: n for n in g.node for o in n.output}
    passthrough = {"Identity", "Reshape", "Flatten", "Squeeze", "Softmax", "Transpose", "Cast"}
    head = []
    for out in g.output:
        n = producer.get(out.name)
        while n is not None and n.op_type in passthrough:
            n = producer.get(n.input[0])
        if n is not None and n.op_type in ("Gemm", "MatMul") and n.name:
            head.append(n.name)
    return head


def run(args) -> int:
    # log=sys.stderr as it is now, not the default bound at import: main() called in-process
    # (tests, notebooks) may have replaced it since
    from .quantize_detector import is_detector, quantize_detector

    if os.path.isfile(args.model) and is_detector(args.model):
        # a person detector: calibrated on frames, gated on finding the same people
        quantize_detector(args.model, args.calib, args.output, frames=args.max_clips, holdout=args.holdout,
                          min_agreement=args.min_agreement, force=args.force, activations=args.activations or "u8",
                          per_channel=not args.per_tensor, method=args.method, log=sys.stderr)
        return 0
    quantize(args.model, args.calib, args.output, skip_frames=args.skip_frames, max_clips=args.max_clips,
             holdout=args.holdout, min_agreement=args.min_agreement, force=args.force, method=args.method,
             per_channel=not args.per_tensor, activations=args.activations or "s8", log=sys.stderr)
    return 0
