"""Where results go: an annotated video file, a JSON-lines event stream.

Both are finalised whatever stops the run: the video is written to a hidden temporary file
beside the target and renamed into place only when closed, so a failed run leaves no
half-written file and a stopped run (Ctrl-C) leaves a complete, playable one. Events are
written as they happen and flushed at least once a second and on close.
"""

from __future__ import annotations

import json
import os
import sys
import time
from fractions import Fraction
from typing import Optional

import numpy as np

from .errors import OutputError

# Codec per container: H.264 where the container takes it; MPEG-4 part 2 for AVI.
_CODECS = {".avi": "mpeg4"}
_DEFAULT_CODEC = "libx264"
# Where this FFmpeg lacks an encoder (libx264 is GPL and left out of some builds): what replaces it.
_FALLBACK = {"libx264": "mpeg4"}


def add_video_stream(container, codec: str, rate, h: int, w: int):
    """A yuv420p video stream; 4:2:0 chroma wants even sizes, the encoder's scaler absorbs the odd pixel."""
    s = container.add_stream(codec, rate=rate)
    s.width, s.height = w - w % 2, h - h % 2
    s.pix_fmt = "yuv420p"
    return s


def encode_frame(container, stream, frame: np.ndarray, pts: int) -> None:
    """Encode one BGR frame at ``pts`` and mux whatever packets the encoder hands back."""
    import av

    vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
    vf.pts = pts
    for packet in stream.encode(vf):
        container.mux(packet)


def pick_codec(codec: str, available=None) -> str:
    """``codec`` if this FFmpeg can encode it, else its documented fallback (H.264 -> MPEG-4 part 2)."""
    if available is None:
        import av

        available = av.codecs_available
    if codec in available or codec not in _FALLBACK:
        return codec
    return _FALLBACK[codec]


class VideoFileSink:
    """Encodes BGR frames into ``path`` at the input's exact frame rate."""

    def __init__(self, path: str, fps, codec: Optional[str] = None, crf: int = 23, preset: str = "veryfast"):
        self.path = path
        self.rate = Fraction(fps).limit_denominator(1001000) if not isinstance(fps, Fraction) else fps
        d, base = os.path.split(os.path.abspath(path))
        self.ext = os.path.splitext(base)[1].lower()
        if not self.ext:
            raise OutputError(f"output {path} has no file extension; name it .mp4, .mkv or .avi")
        if not os.path.isdir(d):
            raise OutputError(f"cannot write {path}: folder {d} does not exist")
        if not os.access(d, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
            raise OutputError(f"cannot write {path}: permission denied")
        if os.path.isdir(path):
            raise OutputError(f"cannot write {path}: it is a folder")
        self.tmp = os.path.join(d, f".{base}.partial-{os.getpid()}{self.ext}")
        self.codec = codec or _CODECS.get(self.ext, _DEFAULT_CODEC)
        self.crf, self.preset = crf, preset
        self._container = None
        self._stream = None
        self.frames = 0

    def _open(self, h: int, w: int):
        import av

        try:
            self._container = av.open(self.tmp, mode="w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot write {self.path}: {e}") from None
        self.codec = pick_codec(self.codec)
        s = add_video_stream(self._container, self.codec, self.rate, h, w)
        if self.codec == "libx264":
            s.options = {"crf": str(self.crf), "preset": self.preset}
        s.thread_type = "AUTO"
        self._stream = s

    def write(self, frame: np.ndarray) -> None:
        if self._container is None:
            self._open(*frame.shape[:2])
        encode_frame(self._container, self._stream, frame, self.frames)
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        """Flush and move the file into place (``keep``), or delete it (a failed run)."""
        if self._container is not None:
            try:
                if keep:
                    for packet in self._stream.encode(None):
                        self._container.mux(packet)
            finally:
                self._container.close()
                self._container = None
        if keep and self.frames and os.path.exists(self.tmp):
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)


class EventSink:
    """One JSON object per line, to a file or ``-`` (stdout)."""

    def __init__(self, path: str, flush_every: float = 1.0):
        self.path = path
        if path == "-":
            self._f = sys.stdout
        else:
            try:
                self._f = open(path, "w", encoding="utf-8")
            except OSError as e:
                raise OutputError(f"cannot write events to {path}: {e.strerror}") from None
        self.flush_every = flush_every
        self._last_flush = time.monotonic()
        self.count = 0
        self.stopped = False  # the reader of stdout went away (``| head``): the run stops

    def write(self, event: dict) -> None:
        if self._f is None:
            return
        try:
            self._f.write(json.dumps(event, separators=(",", ":")) + "\n")
            self.count += 1
            now = time.monotonic()
            if now - self._last_flush >= self.flush_every:
                self._f.flush()
                self._last_flush = now
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self) -> None:
        """As Python's docs advise for SIGPIPE: point stdout at /dev/null, so that no later
        flush (ours, or the interpreter's at exit) raises again, and ask the run to stop."""
        if self._f is not sys.stdout:
            raise OutputError(f"cannot write events to {self.path}: the reader closed it")
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        self._f = None
        if not self.stopped:
            self.stopped = True
            print("actionnet: the events reader closed stdout; stopping", file=sys.stderr)

    def close(self, keep: bool = True) -> None:
        if self._f is None:
            return
        try:
            self._f.flush()
        except BrokenPipeError:
            self._reader_gone()
            return
        if self._f is not sys.stdout:
            self._f.close()
        self._f = None
