"""The run loop: source -> analyser -> events and output, timed per stage, stoppable at any frame.

One loop serves every mode. What changes between whole-frame and per-person recognition is the
:class:`Analyser` (``ActionNet``, ``PersonActionNet``): it takes a frame and returns the events
that frame produced, draws its results, and closes what is open at the end. The loop owns
everything around it: reading, reconnect handling, timing, the frame rate, progress, stops and
finalising the outputs.

A stop request (SIGINT or SIGTERM through :class:`StopFlag`, KeyboardInterrupt, a closed window
or a reader that left ``--events=-``) ends the loop between frames; the output is then finalised,
so a video is complete and playable, and the events are flushed after the analyser's last words
(open segments). A source or output error mid-run deletes the partial video (nothing
half-written) and propagates.
"""

from __future__ import annotations

import collections
import signal
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import numpy as np

from .outputs import Events, Output
from .segments import SegmentSummary, StreamMarks, end_events
from .sources import Source, as_source


class StageTimer:
    """Seconds and calls per named stage; cheap enough for the hot path (two perf_counter calls)."""

    def __init__(self):
        self.total: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.total[stage] = self.total.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1

    def mean_ms(self, stage: str) -> float:
        return 1000.0 * self.total.get(stage, 0.0) / max(1, self.calls.get(stage, 0))

    def table(self) -> str:
        rows = [f"{'stage':<10} {'calls':>7} {'total s':>9} {'mean ms':>9}"]
        for k in self.total:
            rows.append(f"{k:<10} {self.calls[k]:>7} {self.total[k]:>9.3f} {self.mean_ms(k):>9.3f}")
        return "\n".join(rows)


class Analyser:
    """What the loop drives: whole-frame (:class:`~actionnet.net.ActionNet`) and per-person
    (:class:`~actionnet.persons.PersonActionNet`) recognition both implement it.

    Events are plain dicts, one JSON line each (DESIGN.md "Events").
    """

    timer: StageTimer
    classifications: int = 0  # classifications made so far (per person in per-person mode)
    segment_summary: Optional[SegmentSummary] = None  # closed segments, for the run's summary

    def process(self, frame: np.ndarray, time: float) -> List[dict]:
        """Take one BGR frame; the events it produced."""
        raise NotImplementedError

    def restart(self) -> List[dict]:
        """The source reconnected: no clip may span the gap. Start fresh windows (frame numbers
        keep counting) and return the events this closes."""
        raise NotImplementedError

    def finish(self, reason: str = "end") -> List[dict]:
        """The run ends (``reason``: ``end`` when its source ended, ``stop`` when it was stopped):
        the events this closes. Should a classification still running fail, the error is raised
        after the segments are closed, carrying the closing events as ``events``."""
        return []

    def annotate(self, frame: np.ndarray, fps: Optional[float] = None) -> np.ndarray:
        """Draw the latest results on ``frame`` in place."""
        return frame

    def status(self) -> str:
        """A few words for the progress bar."""
        return ""

    def summary(self) -> str:
        """What the run found, for the last line it prints."""
        return f"{self.classifications} {plural(self.classifications, 'classification')}"

    def describe(self) -> str:
        """What analyses the frames, for the line printed at the start of a run."""
        return type(self).__name__

    def close(self) -> None:
        """Release the engines."""


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


class FpsMeter:
    """Frames per second over the last ``window`` frames: their count over their time span.

    Averaging the time and then inverting is what a rate is; averaging per-frame ``1/dt`` is
    not: with ``--skip-frames 1`` every other frame costs a few milliseconds and its huge
    ``1/dt`` dominated the mean (hundreds of fps drawn on a 6 fps run).
    """

    def __init__(self, window: int = 32):
        self._times: collections.deque = collections.deque(maxlen=window + 1)

    def tick(self, now: Optional[float] = None) -> None:
        self._times.append(time.perf_counter() if now is None else now)

    @property
    def fps(self) -> Optional[float]:
        if len(self._times) < 2:
            return None
        span = self._times[-1] - self._times[0]
        return (len(self._times) - 1) / span if span > 0 else None


@dataclass
class RunStats:
    frames: int = 0
    classifications: int = 0
    dropped: int = 0  # live sources: frames the capture thread replaced before they were processed
    skipped: int = 0  # frames the source could not read and left out (unreadable pictures)
    seconds: float = 0.0
    stopped: bool = False
    timer: StageTimer = field(default_factory=StageTimer)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def run(source, analyser: Analyser, output: Optional[Output] = None, events: Optional[Events] = None,
        progress: Optional[Progress] = None, stop: Optional[StopFlag] = None) -> RunStats:
    """Process ``source`` (a :class:`~actionnet.sources.Source`, or any iterable of
    ``(frame, time)``) to its end or a stop request; finalise ``output`` and ``events``."""
    source: Source = as_source(source)
    timer = analyser.timer
    stats = RunStats(timer=timer)
    clock = time.perf_counter
    meter = FpsMeter()
    keep = interrupted = False
    generation = source.generation
    # a recording of a live source keeps real time: each frame carries its capture time (frames
    # dropped while behind leave gaps, VideoFileSink.write_at); a file's frames stay numbered
    stamped = source.live and hasattr(output, "write_at")
    marks = StreamMarks(source)  # reconnect and dropped-frame lines for the timeline
    start = clock()
    if stop is not None:  # a capture thread: stop even while waiting for a frame
        source.stop_when(lambda: stop.stopped)
    try:
        frames = iter(source)
        while not _stop_requested(stop, output, events):
            t0 = clock()
            try:
                frame, t = next(frames)
            except StopIteration:
                break
            timer.add("decode", clock() - t0)
            produced = marks.check(stats.frames, t)
            if source.generation != generation:  # a live source reconnected: no clip spans the gap
                generation = source.generation
                produced += analyser.restart()
                produced.append(marks.reconnect(stats.frames, t))
            before = analyser.classifications
            produced += analyser.process(frame, t)
            stats.classifications += analyser.classifications - before
            if events is not None:
                for e in produced:
                    events.write(e)
            if output is not None:
                t2 = clock()
                analyser.annotate(frame, meter.fps)
                t3 = clock()
                timer.add("draw", t3 - t2)
                if stamped:
                    output.write_at(frame, t)
                else:
                    output.write(frame)
                timer.add("encode", clock() - t3)
            stats.frames += 1
            meter.tick()
            if progress is not None:
                progress.update(analyser.status())
        keep = True
    except KeyboardInterrupt:
        keep = interrupted = True
    finally:
        stats.stopped = bool(stop and stop.stopped) or interrupted or bool(events and events.stopped)
        stats.seconds = clock() - start
        stats.dropped = source.dropped
        stats.skipped = source.skipped
        if progress is not None:
            progress.close()
        try:
            if output is not None:
                output.close(keep=keep)
        finally:
            if events is not None:
                failed = None
                try:
                    try:
                        closing = analyser.finish("stop" if stats.stopped else "end")
                    except Exception as e:  # the last background classification failed: the
                        closing, failed = getattr(e, "events", []), e  # segments still close
                    for e in end_events(closing, analyser.segment_summary, marks):
                        if e.get("event") == "summary":  # always written, so 0 reads as "none", not "not counted"
                            e["skipped"] = stats.skipped
                        events.write(e)
                finally:
                    events.close()
                if failed is not None:
                    raise failed
            else:  # open segments still close: the run's summary counts them
                analyser.finish("stop" if stats.stopped else "end")
    return stats


def _stop_requested(stop, output, events) -> bool:
    """A signal came, the window was closed, or the reader of the events left."""
    return bool(stop and stop.stopped) or bool(output and output.stopped) or bool(events and events.stopped)


def plural(n: int, word: str) -> str:
    return word if n == 1 else word + "s"


def summary_line(stats: RunStats, analyser: Analyser) -> str:
    """The run's last line: frames, what was found, speed, drops, and whether it was stopped."""
    line = f"{stats.frames} {plural(stats.frames, 'frame')}, {stats.fps:.1f} fps, {analyser.summary()}"
    if stats.dropped:
        line += f"; {stats.dropped} frames dropped (inference slower than the live source)"
    if stats.skipped:
        line += f"; {stats.skipped} unreadable {plural(stats.skipped, 'image')} skipped"
    return ("stopped: " if stats.stopped else "") + line


__all__ = ["Analyser", "FpsMeter", "Progress", "RunStats", "StageTimer", "StopFlag", "run", "summary_line"]
