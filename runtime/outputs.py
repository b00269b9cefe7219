"""Outputs named by URI, as jetson-inference's ``videoOutput``: one factory, one small interface.

Every output has ``write(frame)`` (a BGR uint8 frame, already annotated) and ``close(keep)``
(finalise; ``keep=False`` after a failed run deletes what a file output wrote). URIs:

- ``display://N``: an OpenCV window; with no display (no ``DISPLAY``/``WAYLAND_DISPLAY``, or an
  OpenCV built without a GUI such as ``opencv-python-headless``) the run goes on headless and
  says so once. Closing the window or pressing q/Esc asks the run to stop.
- ``file.mp4|.mkv|.avi|.flv|.mov``: :class:`~actionnet.sinks.VideoFileSink` (H.264 through PyAV's
  libx264; MPEG-4 part 2 where this FFmpeg has no libx264).
- ``dir/%05d.jpg`` (any printf pattern with an image extension): an image sequence.
- ``rtp://host:port``: H.264 RTP over UDP; the SDP a player needs is printed and written to
  ``actionnet-PORT.sdp`` in the temporary folder.
- ``rtsp://@:port/path``: an RTSP server on all addresses (``rtsp://host:port/path`` binds host),
  see :mod:`actionnet.rtspserve`.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from fractions import Fraction
from typing import Optional

import numpy as np

from .errors import OutputError, UsageError
from .sinks import VideoFileSink, add_video_stream, encode_frame, pick_codec
from .sources import IMAGE_EXTENSIONS, parse_host_port, rtp_sdp


def display_available(cv2=None, env=None) -> bool:
    """Whether a window can open: a display server is named and OpenCV has a GUI backend."""
    env = os.environ if env is None else env
    if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")):
        return False
    if cv2 is None:
        import cv2
    info = cv2.getBuildInformation()
    gui = re.search(r"GUI:\s+(\S+)", info)
    return bool(gui) and gui.group(1).upper() not in ("NONE", "NO")


class DisplaySink:
    """An OpenCV window. ``stopped`` turns true when the user closes it or presses q or Esc."""

    def __init__(self, index: int = 0, title: str = "actionnet"):
        import cv2

        self._cv2 = cv2
        self.title = f"{title} (display {index})" if index else title
        self.stopped = False
        self._shown = False

    def write(self, frame: np.ndarray) -> None:
        cv2 = self._cv2
        cv2.imshow(self.title, frame)
        key = cv2.waitKey(1) & 0xFF
        if key in (ord("q"), 27):
            self.stopped = True
        if self._shown and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            self.stopped = True
        self._shown = True

    def close(self, keep: bool = True) -> None:
        if self._shown:
            self._cv2.destroyWindow(self.title)
            self._cv2.waitKey(1)
            self._shown = False


class ImageSequenceSink:
    """``out/%05d.jpg``: one image per frame, numbered from 0; the folder is made if missing."""

    def __init__(self, pattern: str):
        import cv2

        self._cv2 = cv2
        self.pattern = pattern
        try:
            pattern % 0
        except (TypeError, ValueError):
            raise UsageError(f"output {pattern}: expected one printf number such as %05d") from None
        folder = os.path.dirname(os.path.abspath(pattern))
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise OutputError(f"cannot write {pattern}: {e.strerror}") from None
        self.frames = 0
        self.written = []

    def write(self, frame: np.ndarray) -> None:
        path = self.pattern % self.frames
        if not self._cv2.imwrite(path, frame):
            raise OutputError(f"cannot write image {path}")
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        if not keep:
            for i in range(self.frames):
                try:
                    os.remove(self.pattern % i)
                except OSError:
                    pass


class RtpSink:
    """H.264 over RTP/UDP through PyAV's rtp muxer, tuned for latency (no B-frames, 1 s GOP).

    x264 repeats SPS/PPS at every keyframe here (no global header), so a receiver that joins late
    starts decoding at the next keyframe.
    """

    def __init__(self, host: str, port: int, fps, uri: Optional[str] = None, log=None, sdp_file: bool = True):
        self.host, self.port = host, port
        self.uri = uri or f"rtp://{host}:{port}"
        self.rate = Fraction(fps).limit_denominator(1001000) if not isinstance(fps, Fraction) else fps
        self.log = log
        self._container = self._stream = None
        self.frames = 0
        self.sdp = rtp_sdp(host, port, "h264")
        self.sdp_path = None
        if sdp_file:
            self.sdp_path = os.path.join(tempfile.gettempdir(), f"actionnet-{port}.sdp")
            with open(self.sdp_path, "w") as f:
                f.write(self.sdp)
            if log is not None:
                print(f"actionnet: streaming RTP to {host}:{port}; play with: ffplay -protocol_whitelist "
                      f"file,udp,rtp {self.sdp_path}", file=log)

    def _open(self, h: int, w: int):
        import av

        try:
            self._container = av.open(f"rtp://{self.host}:{self.port}", mode="w", format="rtp")
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"cannot stream to {self.uri}: {e}") from None
        codec = pick_codec("libx264")
        if codec != "libx264":
            raise OutputError("RTP output needs H.264 (libx264), which this FFmpeg lacks")
        s = add_video_stream(self._container, codec, self.rate, h, w)
        gop = max(1, int(round(float(self.rate))))
        s.options = {"preset": "ultrafast", "tune": "zerolatency", "g": str(gop), "bf": "0"}
        self._stream = s

    def write(self, frame: np.ndarray) -> None:
        import av

        if self._container is None:
            self._open(*frame.shape[:2])
        try:
            encode_frame(self._container, self._stream, frame, self.frames)
        except (av.error.FFmpegError, OSError) as e:
            raise OutputError(f"streaming to {self.uri} failed: {e}") from None
        self.frames += 1

    def close(self, keep: bool = True) -> None:
        if self._container is not None:
            try:
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
            except Exception:
                pass
            finally:
                self._container.close()
                self._container = None
        if self.sdp_path is not None:  # the stream is over: a player given this file would wait forever
            try:
                os.remove(self.sdp_path)
            except OSError:
                pass
            self.sdp_path = None


class RtspSink:
    """``rtsp://@:port/path``: an RTSP server (gst-rtsp-server helper) fed by an RTP sink on loopback."""

    def __init__(self, uri: str, fps, log=None):
        from .rtspserve import RtspServer

        host, port = parse_host_port(uri)
        path = re.sub(r"^[a-z]+://[^/]*", "", uri) or "/"
        self.server = RtspServer(port, path, host=host).start()
        self.rtp = RtpSink("127.0.0.1", self.server.rtp_port, fps, uri=uri, sdp_file=False)
        self.url = self.server.url
        if log is not None:
            print(f"actionnet: serving {self.url}", file=log)

    @property
    def frames(self) -> int:
        return self.rtp.frames

    def write(self, frame: np.ndarray) -> None:
        self.rtp.write(frame)

    def close(self, keep: bool = True) -> None:
        try:
            self.rtp.close(keep)
        finally:
            self.server.stop()


def is_image_pattern(uri: str) -> bool:
    return "%" in uri and uri.lower().endswith(IMAGE_EXTENSIONS)


def open_output(uri: str, fps=30.0, log=sys.stderr, headless: bool = False):
    """The output for ``uri``, or None for a display that cannot (or must not) open."""
    if uri.startswith("display://"):
        index = uri[len("display://"):] or "0"
        if not index.isdigit():
            raise UsageError(f"{uri}: expected display://N")
        if headless:
            return None
        if not display_available():
            print("actionnet: no display here (no DISPLAY, or OpenCV without a GUI): running headless", file=log)
            return None
        return DisplaySink(int(index))
    if uri.startswith("rtsp://"):
        return RtspSink(uri, fps, log=log)
    if uri.startswith("rtp://"):
        host, port = parse_host_port(uri)
        if host == "0.0.0.0":
            raise UsageError(f"{uri}: RTP output needs a destination address, as in rtp://192.168.1.10:5000")
        return RtpSink(host, port, fps, uri=uri, log=log)
    if is_image_pattern(uri):
        return ImageSequenceSink(uri)
    return VideoFileSink(uri, fps)
