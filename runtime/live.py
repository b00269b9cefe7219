"""Reconnecting live sources: a camera or stream that drops is reopened with backoff.

:class:`Reconnecting` wraps a factory that opens the source. When the open source raises
:class:`~actionnet.sources.StreamLost` (or a reopen fails), it waits 0.25 s, 0.5 s, 1 s ... (at most
``max_delay``) and tries again, until ``timeout`` seconds have passed since the stream was lost;
then it raises one clear :class:`~actionnet.errors.InputError`. A clean end of stream ends the
iteration and the run. A network stream that ends (:class:`~actionnet.sources.StreamEnded`:
FFmpeg cannot tell a server that closed the stream from one that crashed) gets the same reconnect
window, and if it does not come back the run ends cleanly rather than with an error.
``timeout=0`` turns reconnecting off. Each successful reconnect bumps ``generation``; the pipeline sees that and
resets the frame buffer, so no clip mixes frames from before and after the gap. Times stay
monotonic across reconnects (a restarted stream starts its clock at zero again).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Callable, Optional

from .errors import InputError, UsageError
from .sources import Source, StreamEnded, StreamLost


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
        self.rate = getattr(s, "rate", s.fps)
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


def _close_quietly(src: Source):
    try:
        src.close()
    except Exception:
        pass


# --------------------------------------------------------------------------------------------
# CLI wiring: kept here so the CLI gains only a few lines.


def add_input_arguments(p) -> None:
    """``--input-width`` and friends (jetson-inference's names) and ``--reconnect-timeout``."""
    g = p.add_argument_group("input (cameras and streams)")
    g.add_argument("--input-width", type=int, help="capture width (V4L2, CSI; default: the camera's)")
    g.add_argument("--input-height", type=int, help="capture height (V4L2, CSI; default: the camera's)")
    g.add_argument("--input-rate", type=float, help="capture frame rate (V4L2, CSI)")
    g.add_argument("--input-codec", help="V4L2: mjpeg, yuyv, h264, raw (default: MJPG where offered); "
                                         "RTP: h264, h265, mjpeg, mpeg4 (default h264)")
    g.add_argument("--input-flip", type=int, default=0, help="CSI: nvvidconv flip-method 0-7 (default 0)")
    g.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="seconds to keep reconnecting a lost camera or stream before giving up (default 30)")


def source_options(args):
    from .sources import SourceOptions

    for name in ("input_width", "input_height", "input_rate"):
        v = getattr(args, name)
        if v is not None and v <= 0:
            raise UsageError(f"--{name.replace('_', '-')} must be positive, got {v:g}")
    if args.reconnect_timeout < 0:
        raise UsageError(f"--reconnect-timeout must be >= 0, got {args.reconnect_timeout:g}")
    return SourceOptions(width=args.input_width, height=args.input_height, fps=args.input_rate,
                         codec=args.input_codec, flip=args.input_flip)


def open_input(args, log=sys.stderr):
    """The CLI's source: live ones reconnect; all are read on a capture thread."""
    from .capture import Capture
    from .sources import open_source

    opts = source_options(args)
    src = open_source(args.input, opts)
    if src.live:
        src = Reconnecting(lambda: open_source(args.input, opts), timeout=args.reconnect_timeout, log=log, source=src)
    return Capture(src)


def open_video_output(args, source, log=sys.stderr):
    """The CLI's output: the named one, or a window when none is named and not ``--headless``."""
    from .outputs import open_output

    uri = args.output or ("display://0" if not args.headless else None)
    if uri is None:
        return None
    return open_output(uri, getattr(source, "rate", source.fps), log=log, headless=args.headless)


def check_paths(args) -> None:
    """Refuse, before anything is opened, outputs that would overwrite the input or each other."""
    import os

    if args.output and os.path.abspath(args.output) == os.path.abspath(args.input):
        raise UsageError("output would overwrite the input; choose another output path")
    if args.events and args.events != "-":
        for what, path in (("input", args.input), ("output", args.output)):
            if path and os.path.abspath(args.events) == os.path.abspath(path):
                raise UsageError(f"--events would overwrite the {what} {path}; choose another events file")


def run_with_outputs(args, source, net, loop, banner: str, log=sys.stderr):
    """Open the events and the video only now that the source and the model are known good, run
    ``loop(source, net, video=, events=, progress=, stop=)`` under the stop handler, and on any
    failure remove what was half-written: the one place both run modes get this right."""
    from .pipeline import Progress, StopFlag
    from .sinks import EventSink

    video = events = None
    try:
        if args.events:
            events = EventSink(args.events)
        video = open_video_output(args, source, log)
        print(f"actionnet: {source.describe()} -> {args.output or '-'}; {banner}", file=log)
        progress = Progress(source.frame_count, log) if not args.no_progress and log.isatty() else None
        with StopFlag() as stop:
            return loop(source, net, video=video, events=events, progress=progress, stop=stop)
    except BaseException:
        if video is not None:
            video.close(keep=False)
        if events is not None:
            events.close()
        raise
