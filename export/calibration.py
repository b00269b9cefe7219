"""Model-ready clips from a folder of videos or frames, fed exactly as the runtime feeds them.

Calibration and agreement checks are only worth something if the clips go through the same
preparation as at run time, so this reads the model's own spec (its ONNX metadata) and uses
the runtime's frame preparation: resize mode, colour order, layout, normalisation. A folder
may hold video files, image files (one sequence, in name order) and sub-folders of images (one
sequence each).
"""

from __future__ import annotations

import os
from typing import Iterator, List, Optional

import numpy as np

from actionnet.engines.onnxmeta import read_metadata
from actionnet.errors import InputError, ModelError
from actionnet.preprocess import FramePreparer, HostNormalizer
from actionnet.sources import IMAGE_EXTENSIONS as IMAGE_EXT, VIDEO_EXTENSIONS as VIDEO_EXT
from actionnet.spec import ModelSpec


def spec_of(onnx_path: str) -> ModelSpec:
    spec = ModelSpec.from_metadata(read_metadata(onnx_path))
    if spec is None:
        raise ModelError(f"{onnx_path} carries no actionnet metadata, so its preprocessing is unknown; "
                         "annotate it first: actionnet-export onnx MODEL.onnx --labels LABELS.txt ...")
    return spec


def sources_in(folder: str) -> List[str]:
    """Video files, and image sequences (a folder's images as one glob), in name order."""
    if not os.path.isdir(folder):
        raise InputError(f"calibration folder not found: {folder}")
    out = []
    names = sorted(os.listdir(folder))
    if any(n.lower().endswith(IMAGE_EXT) for n in names):
        out.append(folder)
    for n in names:
        p = os.path.join(folder, n)
        if os.path.isfile(p) and n.lower().endswith(VIDEO_EXT):
            out.append(p)
        elif os.path.isdir(p) and any(m.lower().endswith(IMAGE_EXT) for m in os.listdir(p)):
            out.append(p)
    if not out:
        raise InputError(f"no videos or images in {folder} (videos: {', '.join(VIDEO_EXT)}; images: "
                         f"{', '.join(IMAGE_EXT)})")
    return out


def _frames(src: str) -> Iterator[np.ndarray]:
    from actionnet.sources import open_source

    with open_source(src) as source:  # a video file, or a folder of images in name order
        for frame, _ in source:
            yield frame


def clips_from(folder: str, spec: ModelSpec, skip_frames: Optional[int] = None, max_clips: Optional[int] = None,
               per_source: Optional[int] = None) -> List[np.ndarray]:
    """Model inputs [1, ...] of consecutive, non-overlapping windows of T stored frames
    (``skip_frames`` dropped between stored frames, as ``actionnet --skip-frames``)."""
    if skip_frames is None:  # the stride the model was trained at, as the runtime takes it
        skip_frames = spec.skip_frames if spec.skip_frames is not None else 1
    prepare = FramePreparer(spec)
    norm = None if spec.raw_input else HostNormalizer(spec)
    t = spec.clip_length
    clips: List[np.ndarray] = []
    for src in sources_in(folder):
        window = np.empty((t, spec.height, spec.width, 3), np.uint8)
        k = n = 0
        for i, frame in enumerate(_frames(src)):
            if i % (skip_frames + 1):
                continue
            prepare(frame, window[k])
            k += 1
            if k == t:
                clips.append(window[None].copy() if norm is None else norm(window).copy())
                k, n = 0, n + 1
                if (per_source and n >= per_source) or (max_clips and len(clips) >= max_clips):
                    break
        if max_clips and len(clips) >= max_clips:
            break
    if not clips:
        raise InputError(f"no clip of {t} frames (skip {skip_frames}) could be read from {folder}")
    return clips


def split(clips: List[np.ndarray], holdout: float = 0.25):
    """(calibration, held out): every k-th clip held back, so both halves span every source."""
    if len(clips) < 2:
        raise InputError(f"{len(clips)} clip found; calibration and the held-out check need at least 2")
    k = max(2, int(round(1.0 / holdout)))
    held = [c for i, c in enumerate(clips) if i % k == k - 1]
    calib = [c for i, c in enumerate(clips) if i % k != k - 1]
    return calib, held


class ClipReader:
    """onnxruntime.quantization's CalibrationDataReader protocol over prepared clips."""

    def __init__(self, input_name: str, clips: List[np.ndarray]):
        self.input_name = input_name
        self.clips = clips
        self._it = iter(clips)

    def get_next(self):
        clip = next(self._it, None)
        return None if clip is None else {self.input_name: clip}

    def rewind(self):
        self._it = iter(self.clips)
