"""Original YOLOv5 checkpoints (ultralytics/yolov5 ``yolov5n.pt``) as ultralytics 8 models.

Ultralytics 8 refuses these files: they pickle classes from YOLOv5's own ``models`` package.
Their backbone and neck are the layers of ultralytics' ``yolov5.yaml`` (v6.0 layout: Conv, C3,
SPPF, Upsample, Concat, same parameter names), only the head differs: YOLOv5's anchor-based
``Detect`` (objectness, three anchors per cell) where ultralytics 8 has its anchor-free one. So
the checkpoint is unpickled against stand-in classes (nothing of YOLOv5's code runs), layers
0-23 of ultralytics' model take its weights after a name-by-name and shape-by-shape check, and
:class:`V5Detect` re-implements YOLOv5's head, emitting ultralytics' ``[1, 4 + C, N]`` layout
(score = objectness x class score, YOLOv5's own score). The result runs in ultralytics'
predictor and tracker (``YOLO.track``) and exports through ultralytics' exporter with any
input size, rectangular or dynamic.
"""

from __future__ import annotations

import pickle
import types

from actionnet.errors import ModelError

_STANDINS: dict = {}


def _standin(module: str, name: str):
    import torch

    key = (module, name)
    if key not in _STANDINS:
        _STANDINS[key] = type(name, (torch.nn.Module,), {"__module__": "yolov5_standin." + module})
    return _STANDINS[key]


class _Unpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if module.split(".")[0] in ("models", "utils"):
            return _standin(module, name)
        return super().find_class(module, name)


_pickle = types.SimpleNamespace(Unpickler=_Unpickler, load=pickle.load, __name__="yolov5_legacy_pickle")


def _v5_detect_class():
    import torch
    from torch import nn

    class V5Detect(nn.Module):
        """YOLOv5's anchor-based head; output [B, 4 + C, N] (cx, cy, w, h in input pixels,
        then objectness x class probability), ultralytics' detection layout."""

        end2end = False

        def __init__(self, nc: int, anchors, strides, channels):
            super().__init__()
            self.nc, self.nl, self.na = nc, anchors.shape[0], anchors.shape[1]
            self.no = nc + 5
            self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in channels)
            self.register_buffer("anchors", anchors.float().clone())  # grid units, as YOLOv5 stores them
            self.register_buffer("strides", torch.as_tensor(strides, dtype=torch.float32), persistent=False)
            self.stride = self.strides
            self.f, self.i, self.type, self.np = [17, 20, 23], 24, "V5Detect", 0

        def forward(self, xs):
            out = []
            for i in range(self.nl):
                x = self.m[i](xs[i])
                bs, _, ny, nx = x.shape
                y = x.view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).sigmoid()
                gy, gx = torch.meshgrid(torch.arange(ny, dtype=y.dtype, device=y.device),
                                        torch.arange(nx, dtype=y.dtype, device=y.device), indexing="ij")
                grid = torch.stack((gx, gy), 2).view(1, 1, ny, nx, 2) - 0.5
                s = self.strides[i]
                anchor = (self.anchors[i] * s).view(1, self.na, 1, 1, 2)
                xy = (y[..., 0:2] * 2 + grid) * s
                wh = (y[..., 2:4] * 2) ** 2 * anchor
                scores = y[..., 5:] * y[..., 4:5]
                out.append(torch.cat((xy, wh, scores), -1).view(bs, -1, 4 + self.nc))
            return torch.cat(out, 1).transpose(1, 2)

    return V5Detect


def is_yolov5_checkpoint(path: str) -> bool:
    """Whether ``path`` pickles YOLOv5's own ``models.yolo`` classes (ultralytics 8 refuses it)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            data = [n for n in z.namelist() if n.endswith("data.pkl")]
            return bool(data) and b"models.yolo" in z.read(data[0])
    except (OSError, zipfile.BadZipFile):
        return False


def load_yolov5(path: str, log=None):
    """An ultralytics ``YOLO`` whose model is the YOLOv5 checkpoint at ``path`` (float32, eval)."""
    import os

    import torch

    for k, v in (("YOLO_OFFLINE", "1"), ("YOLO_AUTOINSTALL", "false"), ("YOLO_VERBOSE", "false")):
        os.environ.setdefault(k, v)
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    try:
        ckpt = torch.load(path, map_location="cpu", pickle_module=_pickle, weights_only=False)
    except Exception as e:
        raise ModelError(f"cannot read YOLOv5 checkpoint {path}: {e}") from None
    old = (ckpt.get("ema") or ckpt["model"]) if isinstance(ckpt, dict) else ckpt
    sd = {k: v.float() for k, v in old.state_dict().items()}
    if "model.24.anchors" not in sd:
        raise ModelError(f"{path}: not the YOLOv5 P5 layout (anchor head at layer 24, as yolov5n/s/m/l/x); "
                         "P6 and other variants are not rebuilt")
    head = old.model[-1]
    anchors = sd["model.24.anchors"]
    strides = [float(s) for s in head.stride]
    nc = int(head.nc)
    names = old.names if isinstance(old.names, dict) else dict(enumerate(old.names))
    yaml_name = None
    for scale in "nsmlx":  # the scale whose first conv has the checkpoint's width
        m = DetectionModel(f"yolov5{scale}.yaml", nc=nc, verbose=False)
        if m.model[0].conv.weight.shape == sd["model.0.conv.weight"].shape and \
                m.model[2].m.__len__() == len([k for k in sd if k.startswith("model.2.m.") and k.endswith("cv1.conv.weight")]):
            yaml_name = f"yolov5{scale}.yaml"
            break
    if yaml_name is None:
        raise ModelError(f"{path}: no scale of ultralytics' yolov5.yaml has its layer layout")
    new_sd = m.state_dict()
    for k, v in new_sd.items():
        if not k.startswith("model.24."):
            if k not in sd or sd[k].shape != v.shape:
                raise ModelError(f"{path}: layer {k} does not match ultralytics' {yaml_name} "
                                 f"({tuple(sd[k].shape) if k in sd else 'missing'} vs {tuple(v.shape)})")
    extra = [k for k in sd if not k.startswith("model.24.") and k not in new_sd]
    if extra:
        raise ModelError(f"{path}: layers {extra[:3]} have no place in ultralytics' {yaml_name}")
    channels = [sd[f"model.24.m.{i}.weight"].shape[1] for i in range(anchors.shape[0])]
    det = _v5_detect_class()(nc, anchors, strides, channels)
    m.model[-1] = det
    m.load_state_dict({k: v for k, v in sd.items() if k in m.state_dict() or k.startswith("model.24.")}, strict=True)
    # BatchNorm eps/momentum are not in the state dict: take YOLOv5's
    olds = dict(old.named_modules())
    for name, mod in m.named_modules():
        if isinstance(mod, torch.nn.BatchNorm2d) and name in olds:
            mod.eps, mod.momentum = olds[name].eps, olds[name].momentum
    m.stride = torch.tensor(strides)
    m.names = names
    m.eval().float()
    yolo = YOLO(yaml_name, verbose=False)
    args = dict(getattr(yolo.model, "args", {}) or {})
    yolo.model = m
    m.args = args
    m.task = "detect"
    if log is not None:
        print(f"actionnet: {os.path.basename(path)} is an original YOLOv5 checkpoint: rebuilt as ultralytics' "
              f"{yaml_name} layers 0-23 + YOLOv5's anchor head ({nc} classes)", file=log)
    return yolo
