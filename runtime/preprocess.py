"""Frame preparation, driven by the model's spec: crop box, resize, colour order, normalise.

Per frame the runtime does one ``cv2.resize`` of a crop *view* of the source frame straight into
the frame buffer's slot (plus a colour swap on the small image when the model wants RGB):
cropping in source coordinates first means the full-size frame is never resized. The crop box
is computed once per source size.

Frames enter as OpenCV does them: uint8, H x W x 3, BGR.
"""

from __future__ import annotations

import cv2
import numpy as np

from .spec import ModelSpec


def crop_box(src_h: int, src_w: int, spec_mode: str, resize_size, out_h: int, out_w: int):
    """Source-pixel box (y0, y1, x0, x1) whose resize to (out_h, out_w) equals the spec's
    "resize then centre-crop" on the whole frame; for letterbox the destination box instead."""
    if spec_mode == "squash" or spec_mode == "letterbox":
        return 0, src_h, 0, src_w
    if spec_mode == "short_side":
        scale = resize_size[0] / min(src_h, src_w)
        sy = sx = scale
    else:  # resize_crop: squash to (rh, rw), then centre-crop
        rh, rw = resize_size
        sy, sx = rh / src_h, rw / src_w
    ch = min(src_h, max(1, round(out_h / sy)))
    cw = min(src_w, max(1, round(out_w / sx)))
    y0 = (src_h - ch) // 2
    x0 = (src_w - cw) // 2
    return y0, y0 + ch, x0, x0 + cw


class FramePreparer:
    """Writes one source frame, prepared for the model, into a caller-owned uint8 array."""

    def __init__(self, spec: ModelSpec, pad_value: int = 0):
        self.spec = spec
        self.size = (spec.height, spec.width)
        self.swap = spec.color_order == "RGB"
        self.pad_value = pad_value
        self._geom = None  # (src shape, box, interpolation, letterbox dst box)
        self._tmp = np.empty((spec.height, spec.width, 3), np.uint8)

    def _geometry(self, shape):
        h, w = shape[:2]
        oh, ow = self.size
        box = crop_box(h, w, self.spec.resize_mode, self.spec.resize_size, oh, ow)
        dst = (0, oh, 0, ow)
        if self.spec.resize_mode == "letterbox":
            s = min(oh / h, ow / w)
            nh, nw = max(1, round(h * s)), max(1, round(w * s))
            y0, x0 = (oh - nh) // 2, (ow - nw) // 2
            dst = (y0, y0 + nh, x0, x0 + nw)
        shrink = (box[1] - box[0]) > (dst[1] - dst[0])
        interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        self._geom = (shape, box, interp, dst)
        return self._geom

    def __call__(self, frame: np.ndarray, out: np.ndarray) -> np.ndarray:
        geom = self._geom if self._geom is not None and self._geom[0] == frame.shape else self._geometry(frame.shape)
        _, (y0, y1, x0, x1), interp, (dy0, dy1, dx0, dx1) = geom
        src = frame[y0:y1, x0:x1]
        if (dy0, dy1, dx0, dx1) != (0, self.size[0], 0, self.size[1]):
            out[...] = self.pad_value
        target = out[dy0:dy1, dx0:dx1]
        dsize = (dx1 - dx0, dy1 - dy0)
        if self.swap:
            tmp = self._tmp[: dsize[1], : dsize[0]]
            cv2.resize(src, dsize, dst=tmp, interpolation=interp)
            target[...] = tmp[..., ::-1]
        elif target.flags.c_contiguous:
            cv2.resize(src, dsize, dst=target, interpolation=interp)
        else:
            target[...] = cv2.resize(src, dsize, interpolation=interp)
        return out


class HostNormalizer:
    """uint8 window [T, H, W, C] -> float32 [1, C, T, H, W], ``(x / scale - mean) / std``, into
    one preallocated array. Only for models that do not normalise in their graph."""

    def __init__(self, spec: ModelSpec, batch: int = 1):
        t, h, w = spec.clip_length, spec.height, spec.width
        self.out = np.empty((batch, 3, t, h, w), np.float32)
        std = np.asarray(spec.std, np.float32)
        self._a = (1.0 / (spec.value_scale * std)).reshape(3, 1, 1, 1)
        self._b = (-np.asarray(spec.mean, np.float32) / std).reshape(3, 1, 1, 1)

    def __call__(self, window: np.ndarray, index: int = 0) -> np.ndarray:
        dst = self.out[index]
        np.multiply(window.transpose(3, 0, 1, 2), self._a, out=dst)
        dst += self._b
        return self.out


def normalize_reference(window: np.ndarray, spec: ModelSpec) -> np.ndarray:
    """Plain-numpy reference of what a model's input should be, for tests and parity checks."""
    x = window.astype(np.float64) / spec.value_scale
    x = (x - np.asarray(spec.mean)) / np.asarray(spec.std)
    return x.transpose(3, 0, 1, 2)[None].astype(np.float32)
