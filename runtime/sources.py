"""Frame sources named by URI, behind one iterator interface.

A source yields ``(frame, time)`` pairs: ``frame`` is a uint8 H x W x 3 BGR array the caller
owns (it may draw on it), ``time`` the frame's presentation time in seconds. ``fps`` and
``frame_count`` describe the stream (``frame_count`` is None where unknown, as for live
streams). A source that cannot open raises :class:`InputError` with one clear line; one that
fails mid-stream raises it too, saying after which frame; a clean end of stream just ends the
iteration.

:func:`open_source` is the one factory. URIs follow jetson-inference (``videoSource``):

- ``/dev/videoN`` or ``v4l2:///dev/videoN``: a V4L2 camera through FFmpeg's v4l2 demuxer (PyAV),
  asking for MJPG first (USB cameras deliver large sizes at full rate only compressed) and
  falling back to the camera's default format;
- ``csi://N``: a Jetson CSI camera through GStreamer's ``nvarguscamerasrc`` (needs an OpenCV
  built with GStreamer, as JetPack's is);
- ``rtsp://host[:port]/path`` and ``rtp://[@]host:port``: network streams through FFmpeg;
- files, image folders and globs.

Live sources (``live = True``) never end on their own except by a clean end of stream; when they
fail mid-stream they raise :class:`StreamLost` so that :class:`Reconnecting` can reopen them. The
pipeline-string and option builders are pure functions so they can be tested without a camera.

:func:`video_source` is what the ``actionnet`` command and the Python API open: the source,
reconnecting when live, read on a capture thread.
"""

from __future__ import annotations

import glob
import os
import re
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Tuple

import numpy as np

from .config import redact
from .errors import InputError, MissingLibraryError, UsageError

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".avi", ".flv", ".mov", ".webm", ".m4v", ".ts", ".mpg", ".mpeg")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class Source:
    """What the run loop reads: ``(frame, time)`` pairs, plus what it may ask of a stream.

    Every member the loop uses is declared here with its default, so a source says what it is
    by overriding, never by having or lacking an attribute.
    """

    uri: str = ""
    fps: float = 30.0
    frame_count: Optional[int] = None
    width: int = 0
    height: int = 0
    live: bool = False  # a camera or stream: frames arrive in real time and may be dropped
    kind: str = ""  # what a source that is not live is, for the start-up line: "file", "images"
    skipped: int = 0  # frames that could not be read and were left out (unreadable pictures)
    generation: int = 0  # bumped at each reconnect: no clip may mix frames from before and after
    dropped: int = 0  # frames a capture thread replaced before they were read (live sources)
    _rate: Optional[Fraction] = None

    @property
    def rate(self) -> Fraction:
        """The exact frame rate (29.97 is 30000/1001): what a file output is written at."""
        return self._rate if self._rate is not None else Fraction(self.fps).limit_denominator(1001)

    @rate.setter
    def rate(self, value) -> None:
        self._rate = Fraction(value)

    def __iter__(self) -> Iterator[Tuple[np.ndarray, float]]:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def interrupt(self) -> None:
        """Stop waiting (for a frame, for a reconnect); called from another thread."""

    def stop_when(self, predicate: Callable[[], bool]) -> None:
        """Let a wait for the next frame end early once ``predicate()`` is true (a stop request)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def describe(self) -> str:
        # What the source is decides "live", never a missing frame count: a file whose header does
        # not count its frames (FFV1 in Matroska, some AVIs) is still read exactly, frame by frame.
        if self.live:
            n = "live"
        else:
            n = f"{self.frame_count} frames" if self.frame_count is not None else "frame count unknown"
            n = f"{self.kind}, {n}" if self.kind else n
        return f"{self.uri} ({self.width}x{self.height}, {self.fps:.2f} fps, {n})"


class IterableSource(Source):
    """Any iterable of ``(frame, time)`` as a source (frames made in memory, generators)."""

    def __init__(self, frames: Iterable[Tuple[np.ndarray, float]], uri: str = "<frames>", fps: float = 30.0):
        self._frames, self.uri, self.fps = frames, uri, fps

    def __iter__(self):
        return iter(self._frames)


def as_source(obj) -> Source:
    """``obj`` if it is a :class:`Source`, else an iterable of ``(frame, time)`` wrapped as one."""
    return obj if isinstance(obj, Source) else IterableSource(obj)


class VideoFileSource(Source):
    """Any container FFmpeg reads (mp4, mkv, avi, flv, ...), decoded by PyAV on its own threads."""

    kind = "file"

    def __init__(self, path: str, threads: Optional[int] = None):
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
        if threads:  # several cameras in one process already use every core, one decoder each
            s.codec_context.thread_count = threads
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
        if self.frame_count and self.frame_count - n > max(2, self.frame_count // 50):
            # A cut file with its index first (mp4 "faststart") decodes up to the cut and ends
            # without an error; the index still counts every frame. A few frames short is normal
            # (edit lists drop encoder priming frames), a large gap is a truncated file.
            raise InputError(f"video {self.uri} is truncated: it ends after {n} of {self.frame_count} frames")

    def close(self):
        self._container.close()


class ImageFolderSource(Source):
    """A folder of images (sorted by name) or a glob pattern, at a nominal frame rate.

    A picture that cannot be read is skipped with a warning on ``log`` and counted in
    ``skipped``, as a dropped frame would be: one bad file in a folder of photos must not cost
    the labels of all the others. Only a source with no readable picture at all is an error.
    Times stay those of the files' places in the sequence, so a gap shows where a frame is missing.
    """

    kind = "images"

    def __init__(self, pattern: str, fps: float = 30.0, log=sys.stderr):
        import cv2

        self._cv2 = cv2
        self.uri = pattern
        self.log = log
        if os.path.isdir(pattern):
            files = [os.path.join(pattern, f) for f in os.listdir(pattern)]
        elif not any(c in pattern for c in "*?[") and not os.path.exists(pattern):
            raise InputError(f"input not found: {pattern}")
        else:
            files = glob.glob(pattern)
        self.files: List[str] = sorted(f for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if not self.files:
            raise InputError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {pattern}")
        self.fps = fps
        self.frame_count = len(self.files)
        # the picture size is the first readable one's; the unreadable ones before it are warned
        # about when the frames are read, not twice
        first = next((img for img in map(self._read, self.files) if img is not None), None)
        if first is None:
            if len(self.files) == 1:
                raise InputError(f"cannot read image {self.files[0]}")
            raise InputError(f"cannot read any of the {len(self.files)} images in {pattern} "
                             f"(the first: {self.files[0]})")
        self.height, self.width = first.shape[:2]

    def _read(self, path):
        return self._cv2.imread(path, self._cv2.IMREAD_COLOR)

    def __iter__(self):
        read = 0
        for i, f in enumerate(self.files):
            img = self._read(f)
            if img is None:  # deleted, emptied or corrupt since the folder was listed
                self.skipped += 1
                if self.log is not None:
                    print(f"actionnet: warning: skipped {f}: cannot read image", file=self.log)
                continue
            read += 1
            yield img, i / self.fps
        if read == 0:
            raise InputError(f"cannot read any of the {len(self.files)} images in {self.uri}")


def _av_reason(e: Exception) -> str:
    msg = getattr(e, "strerror", None) or str(e)
    return msg.split(": '")[0].strip() or type(e).__name__



# --------------------------------------------------------------------------------------------
# Live sources


class StreamLost(InputError):
    """A live source that failed mid-stream (camera unplugged, server gone): worth reconnecting."""


class StreamEnded(StreamLost):
    """A network stream that ended. FFmpeg reports a server that closed the stream and one that
    crashed alike (end of file), so it is worth one reconnect window; if the stream does not come
    back within it, the run ends cleanly."""


@dataclass
class SourceOptions:
    """What a user may ask of a live source (``--input-width`` and friends); None: the device's choice."""

    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    codec: Optional[str] = None  # V4L2: mjpeg, yuyv, h264, raw; RTP: h264, h265, mjpeg, mpeg4
    timeout: float = 5.0  # seconds without data before a network read counts as lost
    flip: int = 0  # CSI: nvvidconv flip-method (0-7)
    live: bool = False  # a file or image folder played at its own rate, as a camera sends it (--live)
    loop: int = 1  # times a file or image folder is played; -1 for ever (--input-loop)
    decode_threads: Optional[int] = None  # a file's FFmpeg threads; None: FFmpeg's choice (one per core, +1)


_V4L2_FORMATS = {"mjpeg": "mjpeg", "mjpg": "mjpeg", "yuyv": "yuyv422", "yuyv422": "yuyv422", "h264": "h264",
                 "raw": None}
_RTP_CODECS = {"h264": ("H264", 96), "h265": ("H265", 96), "hevc": ("H265", 96), "mjpeg": ("JPEG", 26),
               "mpeg4": ("MP4V-ES", 96), "vp8": ("VP8", 96)}


def parse_source_uri(uri: str) -> Tuple[str, str]:
    """``(kind, location)`` for a source URI: kind is v4l2, csi, rtsp, rtp, images or file."""
    if uri.startswith("v4l2://"):
        rest = uri[len("v4l2://"):]
        return "v4l2", rest if rest.startswith("/") else f"/dev/video{_index(rest, uri)}"
    if re.fullmatch(r"/dev/video\d+", uri):
        return "v4l2", uri
    if uri.startswith("csi://"):
        return "csi", str(_index(uri[len("csi://"):], uri))
    if uri.startswith(("rtsp://", "rtsps://")):
        return "rtsp", uri
    if uri.startswith("rtp://"):
        host, port = parse_host_port(uri)
        return "rtp", f"{host}:{port}"
    if os.path.isdir(uri) or any(c in uri for c in "*?[") or uri.lower().endswith(IMAGE_EXTENSIONS):
        return "images", uri  # a folder, a glob, or one photo (a folder of one)
    return "file", uri


def _index(s: str, uri: str) -> int:
    if not s.isdigit():
        raise UsageError(f"{uri}: expected a camera number, as in csi://0 or v4l2:///dev/video0")
    return int(s)


def parse_host_port(uri: str) -> Tuple[str, int]:
    """``rtp://@:5000`` -> ("0.0.0.0", 5000); ``rtp://239.0.0.1:5000`` -> ("239.0.0.1", 5000)."""
    m = re.fullmatch(r"[a-z]+://(@?)([^:/]*)?:(\d+)(/.*)?", uri)
    if not m:
        raise UsageError(f"{uri}: expected scheme://host:port (or scheme://@:port to listen on all addresses)")
    host = m.group(2) or "0.0.0.0"
    return host, int(m.group(3))


def v4l2_av_options(options: SourceOptions, mjpeg: bool = True) -> Dict[str, str]:
    """FFmpeg v4l2 demuxer options: size, rate and pixel format (MJPG unless told otherwise)."""
    o: Dict[str, str] = {}
    if options.width or options.height:
        if not (options.width and options.height):
            raise UsageError("--input-width and --input-height go together")
        o["video_size"] = f"{options.width}x{options.height}"
    if options.fps:
        o["framerate"] = _rate(options.fps)
    codec = (options.codec or "").lower()
    if codec:
        if codec not in _V4L2_FORMATS:
            raise UsageError(f"--input-codec={options.codec} is not a V4L2 format; use one of {', '.join(_V4L2_FORMATS)}")
        if _V4L2_FORMATS[codec]:
            o["input_format"] = _V4L2_FORMATS[codec]
    elif mjpeg:
        o["input_format"] = "mjpeg"
    return o


def csi_gst_pipeline(sensor_id: int, options: SourceOptions) -> str:
    """The GStreamer pipeline for a Jetson CSI camera: Argus in NVMM memory, converted to BGR."""
    w, h = options.width or 1280, options.height or 720
    fps = options.fps or 30
    if not 0 <= options.flip <= 7:
        raise UsageError(f"flip-method must be 0-7, got {options.flip}")
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM),width={w},height={h},framerate={_gst_rate(fps)},format=NV12 ! "
            f"nvvidconv flip-method={options.flip} ! video/x-raw,format=BGRx ! "
            f"videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false")


def rtp_sdp(host: str, port: int, codec: str = "h264") -> str:
    """The SDP that tells FFmpeg what an RTP port carries (RTP itself does not say)."""
    key = codec.lower()
    if key not in _RTP_CODECS:
        raise UsageError(f"--input-codec={codec} cannot be received over RTP; use one of {', '.join(_RTP_CODECS)}")
    name, pt = _RTP_CODECS[key]
    lines = ["v=0", f"o=- 0 0 IN IP4 {host}", "s=actionnet", f"c=IN IP4 {host}", "t=0 0",
             f"m=video {port} RTP/AVP {pt}"]
    if pt >= 96:
        lines.append(f"a=rtpmap:{pt} {name}/90000")
    return "\r\n".join(lines) + "\r\n"


def rtsp_av_options(options: SourceOptions) -> Dict[str, str]:
    """RTSP over TCP (no lost UDP packets on busy networks), with a socket timeout in microseconds."""
    return {"rtsp_transport": "tcp", "timeout": str(int(options.timeout * 1e6))}


def _rate(fps: float) -> str:
    f = Fraction(fps).limit_denominator(1001)
    return str(f.numerator) if f.denominator == 1 else f"{f.numerator}/{f.denominator}"


def _gst_rate(fps: float) -> str:
    f = Fraction(fps).limit_denominator(1001)
    return f"{f.numerator}/{f.denominator}"


class AVLiveSource(Source):
    """A live stream FFmpeg opens (V4L2, RTSP, RTP): frames as they arrive, times from the stream.

    Decoding stays single-threaded per frame (slice threads only): frame threads would hold back
    several frames, which on a live source is latency for nothing.
    """

    live = True

    def __init__(self, url: str, uri: str, fmt: Optional[str] = None, options: Optional[Dict[str, str]] = None,
                 timeout: float = 5.0, what: str = "stream", end_may_be_loss: bool = False):
        import av

        self.uri, self.url, self.what = redact(uri), url, what  # the uri is what is printed
        self.end_may_be_loss = end_may_be_loss
        try:
            self._container = av.open(url, format=fmt, options=options or {}, timeout=(timeout, timeout))
        except (av.error.FFmpegError, OSError) as e:
            raise InputError(f"cannot open {what} {uri}: {_av_reason(e)}") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"{uri} has no video stream")
        self._stream = s = self._container.streams.video[0]
        rate = s.average_rate or s.guessed_rate or s.base_rate or Fraction(30)
        self.rate = Fraction(rate)
        self.fps = float(rate)
        self.width, self.height = s.codec_context.width, s.codec_context.height
        self.frame_count = None

    def __iter__(self):
        import av

        n = 0
        tb = self._stream.time_base
        t0 = None
        try:
            for frame in self._container.decode(self._stream):
                if frame.pts is not None and tb:
                    t = float(frame.pts * tb)
                    t0 = t if t0 is None else t0
                    t -= t0
                else:
                    t = n / self.fps
                yield frame.to_ndarray(format="bgr24"), t
                n += 1
        except (av.error.FFmpegError, OSError) as e:
            raise StreamLost(f"{self.what} {self.uri} lost after frame {n}: {_av_reason(e)}") from None
        if self.end_may_be_loss:
            raise StreamEnded(f"{self.what} {self.uri} ended after frame {n}")

    def close(self):
        self._container.close()


class GstCaptureSource(Source):
    """A GStreamer pipeline ending in appsink, read through OpenCV (CSI cameras on Jetson)."""

    live = True

    def __init__(self, pipeline: str, uri: str, fps: float = 30.0):
        import cv2

        self.uri, self.pipeline, self.fps = uri, pipeline, fps
        if not gstreamer_in_opencv(cv2):
            raise MissingLibraryError(f"{uri} needs OpenCV built with GStreamer (JetPack's system OpenCV is; the "
                                      "opencv-python wheels are not): use the system python3-opencv")
        self._cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
        if not self._cap.isOpened():
            raise InputError(f"cannot open camera {uri} (GStreamer pipeline did not start: {pipeline})")
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def __iter__(self):
        import time

        n = 0
        start = time.monotonic()
        while True:
            ok, frame = self._cap.read()
            if not ok:
                raise StreamLost(f"camera {self.uri} stopped delivering frames after frame {n}")
            yield frame, time.monotonic() - start
            n += 1

    def close(self):
        self._cap.release()


def gstreamer_in_opencv(cv2) -> bool:
    """Whether this OpenCV can open GStreamer pipelines (its build information says so)."""
    return bool(re.search(r"GStreamer:\s+YES", cv2.getBuildInformation()))


def open_v4l2(device: str, options: SourceOptions) -> Source:
    """A V4L2 camera: MJPG first where no format was asked for, else the camera's default format."""
    if not os.path.exists(device):
        raise InputError(f"camera not found: {device} does not exist (is the camera attached? `ls /dev/video*`)")
    if not os.access(device, os.R_OK | os.W_OK):
        raise InputError(f"cannot open camera {device}: permission denied (add yourself to the 'video' group)")
    tries = [v4l2_av_options(options)]
    if not options.codec:
        tries.append(v4l2_av_options(options, mjpeg=False))
    err = None
    for opts in tries:
        try:
            return AVLiveSource(device, device, fmt="v4l2", options=opts, timeout=options.timeout, what="camera")
        except InputError as e:
            err = e
    raise err


def open_source(uri: str, options: Optional[SourceOptions] = None, log=sys.stderr) -> Source:
    """The source for ``uri`` (see the module docstring for the URI forms); ``log`` hears about
    pictures of an image folder that cannot be read."""
    options = options or SourceOptions()
    kind, where = parse_source_uri(uri)
    if kind == "v4l2":
        return open_v4l2(where, options)
    if kind == "csi":
        return GstCaptureSource(csi_gst_pipeline(int(where), options), uri, fps=options.fps or 30.0)
    if kind == "rtsp":
        return AVLiveSource(uri, uri, options=rtsp_av_options(options), timeout=options.timeout, end_may_be_loss=True)
    if kind == "rtp":
        host, port = where.rsplit(":", 1)
        sdp = rtp_sdp(host, int(port), options.codec or "h264")
        fd, path = tempfile.mkstemp(suffix=".sdp", prefix="actionnet-")
        with os.fdopen(fd, "w") as f:
            f.write(sdp)
        try:
            return AVLiveSource(path, uri, fmt="sdp", options={"protocol_whitelist": "file,udp,rtp"},
                                timeout=options.timeout, end_may_be_loss=True)
        finally:
            os.remove(path)
    if kind == "images":
        return ImageFolderSource(uri, fps=options.fps or 30.0, log=log)
    return VideoFileSource(uri, options.decode_threads)


# --------------------------------------------------------------------------------------------
# Reconnecting: a camera or stream that drops is reopened with backoff.
#
# When the open source raises StreamLost (or a reopen fails), Reconnecting waits 0.25 s, 0.5 s,
# 1 s ... (at most ``max_delay``) and tries again, until ``timeout`` seconds have passed since the
# stream was lost; then it raises one clear InputError. A clean end of stream ends the iteration
# and the run. A network stream that ends (StreamEnded: FFmpeg cannot tell a server that closed
# the stream from one that crashed) gets the same reconnect window, and if it does not come back
# the run ends cleanly rather than with an error. ``timeout=0`` turns reconnecting off. Each
# successful reconnect bumps ``generation``; the run loop sees that and starts fresh windows, so
# no clip mixes frames from before and after the gap. Times stay monotonic across reconnects (a
# restarted stream starts its clock at zero again).


class Reconnecting(Source):
    live = True

    def __init__(self, open_source: Callable[[], Source], timeout: float = 30.0, log=sys.stderr,
                 first_delay: float = 0.25, max_delay: float = 4.0, source: Optional[Source] = None):
        self._open = open_source
        self.timeout, self.log = timeout, log
        self.first_delay, self.max_delay = first_delay, max_delay
        self.generation = 0
        self.reconnects = 0
        self._closed = threading.Event()
        self._src = source if source is not None else open_source()
        self._copy_info(self._src)

    def _copy_info(self, s: Source):
        self.uri, self.fps, self.width, self.height = s.uri, s.fps, s.width, s.height
        self.rate = s.rate
        self.frame_count = None

    def __iter__(self):
        offset = 0.0
        last_t = 0.0
        lost_since = None  # a reopened stream is back only once a frame arrives
        while True:
            src = self._src
            try:
                for frame, t in src:
                    lost_since = None
                    last_t = t + offset
                    yield frame, last_t
                return  # clean end of stream
            except StreamLost as e:
                lost = e
                if self.timeout <= 0:
                    if isinstance(e, StreamEnded):
                        return
                    raise
                if lost_since is None:
                    lost_since = time.monotonic()
                print(f"actionnet: {e}; reconnecting (up to {self.timeout:g} s)", file=self.log)
            _close_quietly(src)
            try:
                self._src = self._reconnect(lost_since, str(lost))
            except InputError:
                if isinstance(lost, StreamEnded) and not self._closed.is_set():
                    print(f"actionnet: {self.uri} did not come back: end of stream", file=self.log)
                    return
                raise
            self._copy_info(self._src)
            offset = last_t + 1.0 / max(self.fps, 1e-3)

    def _reconnect(self, since: Optional[float] = None, reason: str = "lost") -> Source:
        """A reopened source; InputError once ``timeout`` seconds have passed ``since`` the loss
        (a stream that reopens but sends nothing keeps that clock running)."""
        start = time.monotonic() if since is None else since
        delay = self.first_delay
        while True:
            if time.monotonic() - start >= self.timeout:
                raise InputError(f"{self.uri} is gone and did not come back within {self.timeout:g} s "
                                 f"(--reconnect-timeout); last error: {reason}")
            if self._closed.wait(delay):
                raise StreamLost(f"{self.uri}: closed while reconnecting")
            try:
                src = self._open()
            except InputError as e:
                reason = str(e)
            else:
                if self._closed.is_set():
                    _close_quietly(src)
                    raise StreamLost(f"{self.uri}: closed while reconnecting")
                self.generation += 1
                self.reconnects += 1
                print(f"actionnet: reconnected to {self.uri} after {time.monotonic() - start:.1f} s", file=self.log)
                return src
            if time.monotonic() - start + delay >= self.timeout:
                raise InputError(f"{self.uri} is gone and did not come back within {self.timeout:g} s "
                                 f"(--reconnect-timeout); last error: {reason}")
            delay = min(delay * 2, self.max_delay)

    def interrupt(self):
        """Stop waiting to reconnect (from another thread); :meth:`close` still closes."""
        self._closed.set()

    def close(self):
        self._closed.set()
        _close_quietly(self._src)

    def describe(self) -> str:
        return self._src.describe()


class Replay(Source):
    """A file or image folder played ``loops`` times over (``--input-loop``, -1 for ever, as
    jetson-utils' option) and, with ``live``, at its own frame rate on the wall clock (``--live``).

    Recorded footage played live is how a deployment is tried before the camera is up, and how
    keeping up with a camera is measured: frame k is due k / fps after the first, and a consumer
    that falls behind meets the capture thread's live policy (the newest frame wins, the others
    are counted as dropped), exactly as with RTSP or V4L2. Without ``live`` every frame of every
    loop is processed, as for any file. Times run on across loops, so segments and the timeline
    see one continuous recording.
    """

    def __init__(self, open_once: Callable[[], Source], first: Source, loops: int = 1, live: bool = False,
                 clock=time.monotonic, sleep=time.sleep):
        self._open, self._src = open_once, first
        self.loops, self.live = loops, live
        self._clock, self._sleep = clock, sleep
        self.uri, self.fps, self.rate, self.kind = first.uri, first.fps, first.rate, first.kind
        self.width, self.height = first.width, first.height
        n = first.frame_count
        self.frame_count = n * loops if n and loops > 0 else None
        self._skipped = 0  # unreadable pictures of the plays before this one

    @property
    def skipped(self) -> int:
        return self._skipped + self._src.skipped

    def __iter__(self):
        start, k, offset, loop = None, 0, 0.0, 0
        while self.loops < 0 or loop < self.loops:
            if loop:
                self._skipped += self._src.skipped
                _close_quietly(self._src)
                self._src = self._open()
            last, played = 0.0, k
            for frame, t in self._src:
                if self.live:
                    now = self._clock()
                    start = now if start is None else start
                    wait = start + k / self.fps - now
                    if wait > 0:
                        self._sleep(wait)
                yield frame, offset + t
                k, last = k + 1, t
            if k == played:  # a play without a frame (every picture unreadable now): never spin on it
                raise InputError(f"{self.uri} gave no frame on play {loop + 1}")
            offset += last + 1.0 / self.fps
            loop += 1

    def close(self):
        self._src.close()

    def describe(self) -> str:
        how = ["played live" if self.live else "", "looped for ever" if self.loops < 0 else
               (f"played {self.loops} times" if self.loops > 1 else "")]
        n = f"{self.frame_count} frames" if self.frame_count else "frame count unknown"
        return (f"{self.uri} ({self.width}x{self.height}, {self.fps:.2f} fps, {self.kind}, {n}"
                + "".join(f", {h}" for h in how if h) + ")")


def _close_quietly(src: Source):
    try:
        src.close()
    except Exception:
        pass


def video_source(uri: str, options: Optional[SourceOptions] = None, reconnect_timeout: float = 30.0,
                 log=sys.stderr) -> Source:
    """A source as the ``actionnet`` command opens it (jetson-utils' ``videoSource``): live
    cameras and streams reconnect for ``reconnect_timeout`` seconds, and every source is read on
    its own thread (:class:`~actionnet.capture.Capture`) so that decoding overlaps inference."""
    from .capture import Capture

    options = options or SourceOptions()
    src = open_source(uri, options, log=log)
    camera = src.live  # a replayed file is paced like a camera but never reconnects like one
    if options.live or options.loop != 1:
        if camera:
            _close_quietly(src)
            raise UsageError(f"--live and --input-loop replay a file or image folder; {uri} is live already")
        src = Replay(lambda: open_source(uri, options, log=log), src, loops=options.loop, live=options.live)
    if camera and reconnect_timeout > 0:
        src = Reconnecting(lambda: open_source(uri, options, log=log), timeout=reconnect_timeout, log=log, source=src)
    return Capture(src)
