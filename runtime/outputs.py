"""Where results go, named by URI as jetson-utils' ``videoOutput``: one factory, one small interface.

Every frame output is an :class:`Output`: ``write(frame)`` (a BGR uint8 frame, already
annotated), ``close(keep)`` (finalise; ``keep=False`` after a failed run deletes what a file
output wrote) and ``stopped`` (the user closed the window). URIs:

- ``display://N``: an OpenCV window; with no display (no ``DISPLAY``/``WAYLAND_DISPLAY``, or an
  OpenCV built without a GUI such as ``opencv-python-headless``) the run goes on headless and
  says so once. Closing the window or pressing q/Esc asks the run to stop.
- ``file.mp4|.mkv|.avi|.flv|.mov``: :class:`VideoFileSink` (H.264 through PyAV's libx264; MPEG-4
  part 2 where this FFmpeg has no libx264). Written to a hidden temporary file beside the target
  and renamed into place only when closed, so a failed run (a full disk too) leaves no
  half-written file and a stopped run (Ctrl-C) leaves a complete, playable one.
- ``dir/%05d.jpg`` (any printf pattern with an image extension): an image sequence.
- ``rtp://host:port``: H.264 RTP over UDP; the SDP a player needs is printed and written to
  ``actionnet-PORT.sdp`` in the temporary folder.
- ``rtsp://@:port/path``: an RTSP server on all addresses (``rtsp://host:port/path`` binds host),
  see :mod:`actionnet.rtspserve`.
- ``webrtc://@:port/name``: a page with the video (WebRTC) and the live labels, segments and
  timeline, see :mod:`actionnet.web` (the ``[web]`` extra); its ``events`` joins the run's events.

Events go to an :class:`EventSink`: one JSON object per line, written as they happen, flushed at
least once a second and on close, and whole lines only: a write that fails (a full disk) cuts
the file back to its last complete line.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from fractions import Fraction
from typing import Optional, Sequence

import numpy as np

from .errors import OutputError, UsageError
from .sources import IMAGE_EXTENSIONS, parse_host_port, rtp_sdp


class Output:
    """A place frames go. ``stopped`` turns true when the user asks the run to end there."""

    stopped: bool = False

    def write(self, frame: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def write_at(self, frame: np.ndarray, time: float) -> None:
        """``frame`` captured at ``time`` seconds (a live source's clock). Only a recording needs
        the time (:class:`VideoFileSink`); what people watch as it comes (a window, RTP, RTSP, a
        page) shows each frame when it arrives, so by default this is :meth:`write`."""
        self.write(frame)

    def close(self, keep: bool = True) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        self.close(keep=exc_type is None or issubclass(exc_type, KeyboardInterrupt))


class NullOutput(Output):
    """A window that cannot open (headless machine): frames are dropped, the run goes on."""

    def write(self, frame: np.ndarray) -> None:
        pass


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


def _rate(fps) -> Fraction:
    return fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001000)


class _EncodingSink(Output):
    """An Output that H.264/MPEG-encodes frames through PyAV into a container opened on the first
    frame (its size is known only then). Subclasses open the container and say, in one line,
    what failed. They set ``_container = _stream = None`` and ``frames = 0``."""

    def _open(self, h: int, w: int) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _failed(self, err: Exception) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def write(self, frame: np.ndarray) -> None:
        self._encode(frame, self.frames)

    def _encode(self, frame: np.ndarray, pts: int) -> None:
        import av

        if self._container is None:
            self._open(*frame.shape[:2])
        try:
            encode_frame(self._container, self._stream, frame, pts)
        except (av.error.FFmpegError, OSError) as e:  # a full disk, a removed folder, a closed socket
            raise OutputError(self._failed(e)) from None
        self.frames += 1


class VideoFileSink(_EncodingSink):
    """Encodes BGR frames into ``path`` at the input's exact frame rate.

    A recording of a live source keeps real time: frames written with :meth:`write_at` (the run
    loop does so for a camera, a stream or ``--live``) carry their capture time as presentation
    timestamps, so frames the analyser dropped leave a gap in time and an hour of camera plays
    for an hour. Why timestamps rather than repeating the last annotated frame where frames were
    dropped: the file stays as small as what was analysed (no re-encoded duplicates, no encoder
    time spent on them while the run is already behind), and it is exact, where repeats can
    only fill whole frames; mp4, mov, mkv and flv store variable frame rate as such (AVI, a
    constant-rate container, fills the gaps with empty frames itself). The timestamps stay on
    the nominal frame grid (time base 1/fps, rounded), so players that read the rate see the
    camera's. B-frames are off for such a recording: the muxer derives decode times by
    reordering presentation times, and across a gap that put mp4's duration short. Live RTP and
    RTSP outputs stay constant-rate (:meth:`Output.write_at`): a viewer plays them as they come.
    Frames written with :meth:`write` (any file source not played live) are numbered 0, 1, 2...:
    every frame, at the input's rate, exactly as the input.
    """

    def __init__(self, path: str, fps, codec: Optional[str] = None, crf: int = 23, preset: str = "veryfast"):
        self.path = path
        self.rate = _rate(fps)
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
        self.timed = False  # written with write_at: presentation times from the capture clock
        self._t0: Optional[float] = None  # capture time that maps to pts 0
        self._pts = -1  # the last pts written
        self._last_time = None

    def write_at(self, frame: np.ndarray, time: float) -> None:
        if self._t0 is None:
            self.timed, self._t0 = True, time
        elif time < self._last_time:  # the source's clock restarted (a reconnect): go on right after
            self._t0 = time - (self._pts + 1) / self.rate
        self._last_time = time
        # strictly increasing: two frames within one frame period (a camera faster than it says)
        # take consecutive slots
        pts = max(int(round((time - self._t0) * self.rate)), self._pts + 1)
        self._encode(frame, pts)
        self._pts = pts

    def _open(self, h: int, w: int):
        import av

        try:
            self._container = av.open(self.tmp, mode="w")
        except (av.error.FFmpegError, OSError, ValueError) as e:
            raise OutputError(f"cannot write {self.path}: {e}") from None
        self.codec = pick_codec(self.codec)
        s = add_video_stream(self._container, self.codec, self.rate, h, w)
        if self.codec == "libx264":
            s.options = {"crf": str(self.crf), "preset": self.preset, **({"bf": "0"} if self.timed else {})}
        s.thread_type = "AUTO"
        self._stream = s

    def _failed(self, err: Exception) -> str:
        return f"cannot write {self.path}: {_reason(err)}"

    def close(self, keep: bool = True) -> None:
        """Flush and move the file into place (``keep``), or delete it (a failed run). A flush
        that fails (a full disk) deletes the partial file and says why."""
        import av

        failed = None
        if self._container is not None:
            try:
                if keep:
                    for packet in self._stream.encode(None):
                        self._container.mux(packet)
            except (av.error.FFmpegError, OSError) as e:
                failed = e
            finally:
                try:
                    self._container.close()
                except (av.error.FFmpegError, OSError) as e:
                    failed = failed or e
                self._container = None
        if keep and failed is None and self.frames and os.path.exists(self.tmp):
            os.replace(self.tmp, self.path)
        elif os.path.exists(self.tmp):
            os.remove(self.tmp)
        if failed is not None and keep:
            raise OutputError(f"cannot write {self.path}: {_reason(failed)}; nothing was kept")


def _reason(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e) or type(e).__name__


class Events:
    """Where events go. ``stopped`` turns true when their reader went away (the run stops)."""

    stopped: bool = False

    def write(self, event: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self, keep: bool = True) -> None:
        pass


class EventSink(Events):
    """One JSON object per line, to a file or ``-`` (stdout); whole lines only.

    Lines are kept in memory and written together at least once a second: a file write that
    fails (a full disk) cuts the file back to the end of its last whole line and raises one
    :class:`OutputError`, so a reader never meets half a line.
    """

    def __init__(self, path: str, flush_every: float = 1.0):
        self.path = path
        if path == "-":
            self._f = sys.stdout
        else:
            try:
                self._f = open(path, "wb", buffering=0)
            except OSError as e:
                raise OutputError(f"cannot write events to {path}: {e.strerror}") from None
        self.flush_every = flush_every
        self._last_flush = time.monotonic()
        self._pending: list = []
        self._good = 0  # bytes of whole lines in the file
        self.count = 0
        self.stopped = False  # the reader of stdout went away (``| head``): the run stops

    def write(self, event: dict) -> None:
        if self._f is None:
            return
        self._pending.append(json.dumps(event, separators=(",", ":")) + "\n")
        self.count += 1
        if time.monotonic() - self._last_flush >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        if self._f is None:
            return
        lines, self._pending = "".join(self._pending), []
        self._last_flush = time.monotonic()
        try:
            if self._f is sys.stdout:
                if lines:
                    self._f.write(lines)
                self._f.flush()
            elif lines:
                data = lines.encode("utf-8")
                view = memoryview(data)
                while view:
                    view = view[self._f.write(view):]
                self._good += len(data)
        except BrokenPipeError:
            self._reader_gone()
        except OSError as e:
            self._cut_back()
            raise OutputError(f"cannot write events to {self.path}: {e.strerror or e}") from None

    def _cut_back(self) -> None:
        """Drop the part of a line a failed write left; close the file."""
        f, self._f = self._f, None
        try:
            os.ftruncate(f.fileno(), self._good)
        except OSError:
            pass
        try:
            f.close()
        except OSError:
            pass

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
        self.flush()
        if self._f is not None and self._f is not sys.stdout:
            self._f.close()
        self._f = None


class EventFanout(Events):
    """Every event to every sink, in order: ``--events`` given more than once (a file and a
    broker), plus an output that shows the events itself. Each sink is closed even when another
    fails to; the first failure is raised after all are closed."""

    def __init__(self, sinks: Sequence[Events] = ()):
        self.sinks = list(sinks)

    def add(self, sink: Events) -> None:
        self.sinks.append(sink)

    @property
    def stopped(self) -> bool:
        return any(s.stopped for s in self.sinks)

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def write(self, event: dict) -> None:
        for s in self.sinks:
            s.write(event)

    def close(self, keep: bool = True) -> None:
        first = None
        for s in self.sinks:
            try:
                s.close(keep)
            except BaseException as e:  # noqa: BLE001 - the others still get closed, Ctrl-C included
                first = first or e
        if first is not None:
            raise first


def open_events(uris: Sequence[str], log=sys.stderr, mqtt=None) -> EventFanout:
    """The sinks ``--events`` names: a file, ``-`` (stdout), or a URI whose scheme names a sink:
    ``mqtt://``, ``mqtts://`` (:class:`~actionnet.mqtt.MqttSink`, options from ``mqtt``, a
    :class:`~actionnet.config.MqttOptions`)."""
    from .config import is_uri, redact

    sinks = EventFanout()
    try:
        for uri in uris:
            if not is_uri(uri):
                sinks.add(EventSink(uri))
                continue
            scheme = uri.split("://", 1)[0].lower()
            if scheme in ("mqtt", "mqtts"):  # paho-mqtt, the [mqtt] extra, is needed only from here on
                from .mqtt import MqttSink

                sinks.add(MqttSink(uri, log=log, **(vars(mqtt) if mqtt is not None else {})))
                continue
            raise UsageError(f"--events {redact(uri)}: unknown scheme {scheme}:// (a file, - for stdout, mqtt://, "
                             f"mqtts://)")
    except BaseException:
        sinks.close()
        raise
    return sinks


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


class DisplaySink(Output):
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


class ImageSequenceSink(Output):
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


class SingleImageSink(Output):
    """``out.jpg``: the one annotated picture of a one-image input (a photo in, the photo out).

    The frame is written when the run ends, so an interrupted run leaves nothing half-made; an
    input of more than one frame is refused at its second frame with the way to keep them all."""

    def __init__(self, path: str):
        import cv2

        self._cv2, self.path, self.frame, self.frames = cv2, path, None, 0

    def write(self, frame: np.ndarray) -> None:
        self.frames += 1
        if self.frames > 1:
            stem, ext = os.path.splitext(self.path)
            raise OutputError(f"output {self.path} holds one image but the input has more frames; "
                              f"write them as {stem}/%05d{ext} or to a video")
        self.frame = frame.copy()

    def close(self, keep: bool = True) -> None:
        if keep and self.frame is not None:
            if not self._cv2.imwrite(self.path, self.frame):
                raise OutputError(f"cannot write image {self.path}")
            self.frame = None


def is_single_image(uri: str) -> bool:
    return "%" not in uri and "://" not in uri and uri.lower().endswith(IMAGE_EXTENSIONS)


class RtpSink(_EncodingSink):
    """H.264 over RTP/UDP through PyAV's rtp muxer, tuned for latency (no B-frames, 1 s GOP).

    x264 repeats SPS/PPS at every keyframe here (no global header), so a receiver that joins late
    starts decoding at the next keyframe.
    """

    def __init__(self, host: str, port: int, fps, uri: Optional[str] = None, log=None, sdp_file: bool = True):
        self.host, self.port = host, port
        self.uri = uri or f"rtp://{host}:{port}"
        self.rate = _rate(fps)
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

    def _failed(self, err: Exception) -> str:
        return f"streaming to {self.uri} failed: {err}"

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


class RtspSink(Output):
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


def open_output(uri: str, fps=30.0, log=sys.stderr, headless: bool = False,
                web_token: Optional[str] = None) -> Optional[Output]:
    """The output for ``uri``, or None for a display that cannot (or must not) open.
    ``web_token`` is what a ``webrtc://`` page asks of its viewers (``--web-token``)."""
    if uri.startswith("webrtc://"):  # imported here: the runtime without the [web] extra is unchanged
        from .web import WebOutput

        return WebOutput(uri, fps, token=web_token, log=log)
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
    if is_single_image(uri):
        return SingleImageSink(uri)
    if uri.endswith(("/", os.sep)) or (os.path.isdir(uri) and not os.path.splitext(uri)[1]):
        # an image folder (out/, or an existing folder named without an extension): numbered JPEGs
        return ImageSequenceSink(os.path.join(uri, "%05d.jpg"))
    return VideoFileSink(uri, fps)


def video_output(uri: str, fps=30.0, log=sys.stderr, web_token: Optional[str] = None) -> Output:
    """An output as the ``actionnet`` command opens it (jetson-utils' ``videoOutput``); a window
    on a machine without a display is a :class:`NullOutput`, so the caller's loop runs as is."""
    return open_output(uri, fps, log=log, web_token=web_token) or NullOutput()
