"""The run loop: source -> ActionNet -> sinks, timed per stage, stoppable at any frame.

A stop request (SIGINT or SIGTERM through :class:`StopFlag`, or KeyboardInterrupt) ends the loop
between frames; the sinks are then finalised, so the output video is complete and playable and
the events are flushed. A source error mid-run deletes the partial video (nothing half-written)
and propagates.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from .net import ActionNet, StageTimer
from .overlay import Overlay
from .segments import StreamMarks, end_events
from .sources import Source


class StopFlag:
    """Turns the first SIGINT/SIGTERM into a polite stop; a second SIGINT interrupts at once."""

    def __init__(self):
        self.stopped = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def _handle(self, signum, frame):
        if self.stopped and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.stopped = True

    def __exit__(self, *exc):
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Progress:
    """A one-line progress bar on stderr for files (frame count known)."""

    def __init__(self, total: Optional[int], stream=sys.stderr, every: float = 0.25):
        self.total, self.stream, self.every = total, stream, every
        self.n = 0
        self._start = self._last = time.monotonic()

    def update(self, extra: str = "") -> None:
        self.n += 1
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self._draw(now, extra)

    def _draw(self, now, extra):
        fps = self.n / max(1e-9, now - self._start)
        if self.total:
            frac = min(1.0, self.n / self.total)
            bar = "#" * int(frac * 30)
            line = f"\r[{bar:<30}] {frac * 100:5.1f}% {self.n}/{self.total} frames {fps:6.1f} fps {extra}"
        else:
            line = f"\r{self.n} frames {fps:6.1f} fps {extra}"
        self.stream.write(line[:150])
        self.stream.flush()

    def close(self) -> None:
        self._draw(time.monotonic(), "")
        self.stream.write("\n")
        self.stream.flush()


@dataclass
class RunStats:
    frames: int = 0
    classifications: int = 0
    dropped: int = 0  # live sources: frames the capture thread replaced before they were processed
    seconds: float = 0.0
    stopped: bool = False
    timer: StageTimer = field(default_factory=StageTimer)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run(source: Source, net: ActionNet, video=None, events=None, overlay: Optional[Overlay] = None,
        progress: Optional[Progress] = None, stop: Optional[StopFlag] = None) -> RunStats:
    """Process ``source`` to its end (or a stop request); finalise ``video`` and ``events``."""
    stats = RunStats(timer=net.timer)
    timer = net.timer
    overlay = overlay or Overlay()
    clock = time.perf_counter
    keep = interrupted = False
    fps_avg = None
    generation = getattr(source, "generation", 0)
    marks = StreamMarks(source)
    start = last = clock()
    if stop is not None and hasattr(source, "stop_when"):  # a capture thread: stop even while waiting
        source.stop_when(lambda: stop.stopped)
    try:
        frames = iter(source)
        while running(stop, video, events):
            t0 = clock()
            try:
                frame, t = next(frames)
            except StopIteration:
                break
            t1 = clock()
            timer.add("decode", t1 - t0)
            produced = marks.check(net.frames, t)
            if getattr(source, "generation", 0) != generation:  # a live source reconnected:
                generation = source.generation  # start a fresh window, no clip spans the gap
                seen = net.frames
                produced += net.reset("reconnect")  # the open segment ends at the gap
                net.frames = seen  # frame numbers in events stay monotonic
                produced.append(marks.reconnect(seen, t))
            result = net.update(frame, t)
            if result is not None:
                stats.classifications += 1
            if events is not None:
                for e in produced + net.events:
                    events.write(e)
            if video is not None:
                t2 = clock()
                overlay.annotate(frame, net.reported, fps_avg, net.collecting)
                t3 = clock()
                timer.add("draw", t3 - t2)
                video.write(frame)
                timer.add("encode", clock() - t3)
            stats.frames += 1
            now = clock()
            dt = now - last
            last = now
            if dt > 0:
                fps_avg = 1.0 / dt if fps_avg is None else 0.9 * fps_avg + 0.1 / dt
            if progress is not None:
                shown = net.reported
                progress.update(shown.label or "" if shown else "")
        keep = True
    except KeyboardInterrupt:
        keep = interrupted = True
    finally:
        end_run(stats, source, start, stop, interrupted, events, progress, video, keep)
        closing = net.finish("stop" if stats.stopped else "end")  # open segments close however the run ends
        if events is not None:
            try:
                for e in end_events(closing, net.summary, marks):
                    events.write(e)
            finally:
                events.close()
    return stats


def running(stop, video, events) -> bool:
    """Go on unless a signal came, the window was closed, or the reader of the events left."""
    return not (stop and stop.stopped) and not getattr(video, "stopped", False) \
        and not getattr(events, "stopped", False)


def end_run(stats: RunStats, source, start: float, stop, interrupted: bool, events, progress, video,
            keep: bool) -> None:
    """What every run loop does on its way out, however it ends: why it stopped (a signal, Ctrl-C,
    or a reader that closed the events pipe), its duration and drops, and the video finalised
    (``keep``) or removed. Events are left to the caller, which may have last words to write."""
    stats.stopped = bool(stop and stop.stopped) or interrupted or getattr(events, "stopped", False)
    stats.seconds = time.perf_counter() - start
    stats.dropped = getattr(source, "dropped", 0)
    if progress is not None:
        progress.close()
    if video is not None:
        video.close(keep=keep)
