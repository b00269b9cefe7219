"""Frame sources named by URI, behind one iterator interface.

A source yields ``(frame, time)`` pairs: ``frame`` is a uint8 H x W x 3 BGR array the caller
owns (it may draw on it), ``time`` the frame's presentation time in seconds. ``fps`` and
``frame_count`` describe the stream (``frame_count`` is None where unknown, as for live
streams). A source that cannot open raises :class:`InputError` with one clear line; one that
fails mid-stream raises it too, saying after which frame; a clean end of stream just ends the
iteration.

:func:`open_source` is the one factory; live sources (V4L2, CSI, RTSP) slot in beside these.
"""

from __future__ import annotations

import glob
import os
from fractions import Fraction
from typing import Iterator, List, Optional, Tuple

import numpy as np

from .errors import InputError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".flv", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Source:
    uri: str = ""
    fps: float = 30.0
    frame_count: Optional[int] = None
    width: int = 0
    height: int = 0
    live: bool = False

    def __iter__(self) -> Iterator[Tuple[np.ndarray, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        n = f"{self.frame_count} frames" if self.frame_count is not None else "live"
        return f"{self.uri} ({self.width}x{self.height}, {self.fps:.2f} fps, {n})"


class VideoFileSource(Source):
    """Any container FFmpeg reads (mp4, mkv, avi, flv, ...), decoded by PyAV on its own threads."""

    def __init__(self, path: str):
        import av

        self.uri = path
        if not os.path.exists(path):
            raise InputError(f"input not found: {path}")
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            raise InputError(f"input is empty (0 bytes): {path}")
        try:
            self._container = av.open(path)
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise InputError(f"cannot read video {path}: {_av_reason(e)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{path} has no video stream")
        self._stream = s = self._container.streams.video[0]
        s.thread_type = "AUTO"
        rate = s.average_rate or s.guessed_rate or Fraction(30)
        self.rate = Fraction(rate)
        self.fps = float(rate)
        self.width, self.height = s.codec_context.width, s.codec_context.height
        self.frame_count = s.frames or None
        if self.width <= 0 or self.height <= 0:
            self._container.close()
            raise InputError(f"cannot read video {path}: the video stream has no picture size")

    def __iter__(self):
        import av

        n = 0
        tb = self._stream.time_base
        try:
            for frame in self._container.decode(self._stream):
                t = float(frame.pts * tb) if frame.pts is not None and tb else n / self.fps
                yield frame.to_ndarray(format="bgr24"), t
                n += 1
        except (av.error.FFmpegError, OSError) as e:
            raise InputError(f"video {self.uri} is corrupt or truncated after frame {n}: {_av_reason(e)}") from None
        if n == 0:
            raise InputError(f"video {self.uri} contains no decodable frames")

    def close(self):
        self._container.close()


class ImageFolderSource(Source):
    """A folder of images (sorted by name) or a glob pattern, at a nominal frame rate."""

    def __init__(self, pattern: str, fps: float = 30.0):
        import cv2

        self._cv2 = cv2
        self.uri = pattern
        if os.path.isdir(pattern):
            files = [os.path.join(pattern, f) for f in os.listdir(pattern)]
        else:
            files = glob.glob(pattern)
        self.files: List[str] = sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if not self.files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {pattern}")
        self.fps = fps
        self.frame_count = len(self.files)
        first = self._read(self.files[0])
        self.height, self.width = first.shape[:2]

    def _read(self, path):
        img = self._cv2.imread(path, self._cv2.IMREAD_COLOR)
        if img is None:
            raise InputError(f"cannot read image {path}")
        return img

    def __iter__(self):
        for i, f in enumerate(self.files):
            yield self._read(f), i / self.fps


def _av_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(": '")[0].strip() or type(e).__name__


def open_source(uri: str) -> Source:
    """The source for ``uri``: a video file, an image folder or a glob of images."""
    if uri.startswith(("csi://", "rtsp://", "rtp://", "v4l2://")) or uri.startswith("/dev/video"):
        if uri.startswith("/dev/video") and not os.path.exists(uri):
            raise InputError(f"camera not found: {uri} does not exist (is the camera attached? `ls /dev/video*`)")
        raise InputError(f"live source {uri} is not supported by this build yet; use a video file or an image folder")
    if os.path.isdir(uri) or any(c in uri for c in "*?["):
        return ImageFolderSource(uri)
    return VideoFileSource(uri)
