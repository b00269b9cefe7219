"""``actionnet-export yolo MODEL --output x.onnx``: an ultralytics YOLO detector -> self-describing ONNX.

Pose models (``yolo11n-pose.pt``, ``yolov8n-pose.yaml``) export the same way: their output is the
yolov8 layout with K x D keypoint rows after the class scores, and ``actionnet.keypoints`` records
``[K, D]`` so the runtime decodes them (:mod:`actionnet.pose`).

MODEL is an ultralytics checkpoint (``yolo11n.pt``, ``yolov8n.pt``, ``yolo26n.pt``) or a model
YAML (``yolov8n.yaml``: random weights, for tests). Ultralytics' own exporter writes the graph
(it knows its heads: YOLOv8/11 give ``[1, 4 + C, N]``, YOLO26 and YOLOv10 an end-to-end
``[1, N, 6]``); this step reads the layout from the output shape, stamps the class names, input
size and layout into ``metadata_props`` (:class:`actionnet.detector.DetectorSpec`), checks the
file with the ONNX checker and an ONNX Runtime run, and only then moves it into place.

Original YOLOv5 checkpoints (``yolov5n.pt`` from ultralytics/yolov5), which ultralytics 8
refuses, are rebuilt as ultralytics models first (:mod:`actionnet.export.yolov5_legacy`).

``--imgsz H W`` exports a rectangular input (384 640 for 16:9 video: 40 % fewer pixels than
640 x 640), ``--dynamic`` an input whose size the runtime fits to each frame's aspect.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile

from actionnet.errors import ModelError

HELP = "export an ultralytics YOLO detector or pose model (.pt or .yaml) to self-describing ONNX for --persons"


def add_arguments(p) -> None:
    p.add_argument("model", help="ultralytics checkpoint (.pt) or model YAML (.yaml, random weights)")
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--imgsz", type=int, nargs="+", default=[640], metavar="N",
                   help="input size in pixels, multiples of 32: one number (square) or H W, e.g. 384 640 for "
                        "16:9 video (default 640); with --dynamic the longer side the runtime fits frames to")
    p.add_argument("--dynamic", action="store_true",
                   help="a dynamic input size: the runtime letterboxes each frame to its own aspect "
                        "(1080p -> 384x640) instead of padding it to a square")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")


def run(args) -> int:
    if len(args.imgsz) > 2:
        raise ModelError(f"--imgsz takes one size or H W, got {' '.join(map(str, args.imgsz))}")
    imgsz = args.imgsz[0] if len(args.imgsz) == 1 else tuple(args.imgsz)
    spec = export_yolo(args.model, args.output, imgsz=imgsz, opset=args.opset, dynamic=args.dynamic)
    size = f"dynamic input up to {max(spec.height, spec.width)}" if args.dynamic else f"{spec.height}x{spec.width} input"
    print(f"actionnet-export: wrote {args.output}: {spec.layout} layout, {size}, "
          f"{len(spec.labels)} classes ({', '.join(spec.labels[:3])}{', ...' if len(spec.labels) > 3 else ''})",
          file=sys.stderr)
    return 0


@contextlib.contextmanager
def _quiet_ultralytics():
    # no network calls, no pip installs behind the user's back, no banner
    for k, v in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "false"), ("YOLO_VERBOSE", "false")):
        os.environ.setdefault(k, v)
    yield


def load_yolo(model: str):
    """An ultralytics ``YOLO`` object from a .pt or .yaml, with clear errors."""
    with _quiet_ultralytics():
        from ultralytics import YOLO

    name = os.path.basename(model)
    if model.endswith(".pt") and not os.path.isfile(model):
        raise ModelError(f"checkpoint not found: {model} (no downloads here; pass a local .pt or a .yaml)")
    if model.endswith(".pt"):
        from actionnet.export.yolov5_legacy import is_yolov5_checkpoint, load_yolov5

        if is_yolov5_checkpoint(model):
            return load_yolov5(model, log=sys.stderr)
    if not model.endswith((".pt", ".yaml", ".yml")):
        raise ModelError(f"{model}: expected an ultralytics .pt checkpoint or a model .yaml")
    try:
        yolo = YOLO(model)
    except Exception as e:  # ultralytics raises many types (TypeError for old YOLOv5 .pt files, ...)
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        hint = ("; an original YOLOv5 checkpoint needs YOLOv5's own export.py, and the runtime reads that ONNX as is"
                if "yolov5" in name.lower() else "")
        raise ModelError(f"ultralytics cannot load {name}: {msg.lstrip('❌ ').strip()}{hint}") from None
    if yolo.task not in ("detect", "pose"):
        raise ModelError(f"{name} is a {yolo.task} model; --persons needs a detect or pose model")
    return yolo


def export_yolo(model, output: str, imgsz=640, opset: int = 17, dynamic: bool = False):
    """Export ``model`` (a .pt/.yaml path, or an already loaded ultralytics ``YOLO``) to ``output``;
    returns the :class:`~actionnet.detector.DetectorSpec` written into it."""
    import onnx

    from actionnet.detector import COCO80, DetectorSpec, infer_layout

    hw = (imgsz, imgsz) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    if len(hw) != 2 or any(v % 32 or v < 32 for v in hw):
        raise ModelError(f"--imgsz must be a multiple of 32 (one size, or H W), got {imgsz}")
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise ModelError(f"cannot write {output}: folder {out_dir} does not exist")
    yolo = load_yolo(model) if isinstance(model, str) else model
    names = yolo.names
    labels = tuple(names[i] for i in range(len(names))) if isinstance(names, dict) else tuple(names)
    if len(labels) == 80 and all(n == str(i) for i, n in enumerate(labels)):
        labels = COCO80  # a model YAML carries no names; ultralytics' bundled YAMLs are COCO-80
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-yolo-") as tmp:
        # ultralytics writes next to its source (the cwd for a YAML): do it in a scratch folder
        if isinstance(model, str) and model.endswith(".pt"):
            src = os.path.join(tmp, os.path.basename(model))
            shutil.copy(model, src)
            yolo = load_yolo(src)
        # ultralytics' exporter writes next to ``pt_path`` (or the YAML): point it into the
        # scratch folder, whatever the model was loaded from (never beside a user's checkpoint)
        yolo.model.pt_path = os.path.join(tmp, os.path.splitext(os.path.basename(str(model)))[0] + ".pt"
                                          if isinstance(model, str) else "model.pt")
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            with _quiet_ultralytics():
                # nms=False: end-to-end heads (YOLO26, YOLOv10) export their NMS-free [1, N, 6] output
                written = yolo.export(format="onnx", imgsz=list(hw), opset=opset, simplify=False, dynamic=dynamic,
                                      nms=False, verbose=False)
        except Exception as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"ultralytics could not export {os.path.basename(str(model))}: {msg}") from None
        finally:
            os.chdir(cwd)
        written = os.path.join(tmp, written) if not os.path.isabs(written) else written
        if os.path.dirname(os.path.abspath(written)) != os.path.abspath(tmp):
            raise ModelError(f"ultralytics wrote {written}, outside the scratch folder; not moving it")
        m = onnx.load(written)
        dims = _output_shape(written, hw) if dynamic else [d.dim_value for d in m.graph.output[0].type.tensor_type.shape.dim]
        kpt = _keypoint_shape(yolo)
        if kpt is not None:  # pose: [1, 4 + C + K*D, N], the yolov8 layout with keypoint rows after the classes
            layout, n = "yolov8", dims[1] - 4 - kpt[0] * kpt[1]
        else:
            layout, n = infer_layout(tuple(dims))
        if layout != "end2end" and n != len(labels):
            raise ModelError(f"exported output {dims} has {n} classes but the model names {len(labels)}")
        spec = DetectorSpec(layout, hw[0], hw[1], labels)
        keep = [p for p in m.metadata_props if not p.key.startswith("actionnet.")]
        del m.metadata_props[:]
        m.metadata_props.extend(keep)  # ultralytics' own (names, stride, imgsz) stay
        for k, v in spec.to_metadata().items():
            m.metadata_props.add(key=k, value=v)
        if kpt is not None:
            from actionnet.pose import KEYPOINTS_KEY

            m.metadata_props.add(key=KEYPOINTS_KEY, value=json.dumps(list(kpt)))
        onnx.checker.check_model(m)
        onnx.save(m, written)
        _smoke(written, spec)
        os.replace(written, output)
    return spec


def _output_shape(path: str, hw) -> list:
    """A dynamic export's output shape at ``hw`` (its symbolic dims hide the layout)."""
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    x = np.zeros((1, 3, *hw), np.float32)
    return list(sess.run(None, {sess.get_inputs()[0].name: x})[0].shape)


def _keypoint_shape(yolo):
    """(K, D) of a pose model's head (17, 3 for COCO), None for a detect model."""
    if yolo.task != "pose":
        return None
    head = yolo.model.model[-1]
    return tuple(int(v) for v in head.kpt_shape)


def _smoke(path: str, spec) -> None:
    """One ONNX Runtime run through the runtime's own detector on a grey frame."""
    import numpy as np

    from actionnet.pose import open_detector

    det = open_detector(path, classes=None, log=None)
    try:
        det(np.full((spec.height, spec.width, 3), 114, np.uint8))
    finally:
        det.close()
