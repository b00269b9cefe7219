"""The run loop (runtime/pipeline.py): one loop for every analyser, the frame rate it draws, and
what it finalises however it ends."""

from __future__ import annotations

import time

import numpy as np
import pytest

from actionnet.outputs import Events, Output
from actionnet.pipeline import Analyser, FpsMeter, StageTimer, run, summary_line


class Costly(Analyser):
    """Every other frame costs ``slow`` seconds, the rest ``fast``: what ``--skip-frames 1``
    does to a whole-frame run (a stored frame is classified, a skipped one is not)."""

    def __init__(self, fast=0.002, slow=0.03):
        self.timer, self.fast, self.slow = StageTimer(), fast, slow
        self.drawn, self.n = [], 0
        self.finished = self.restarted = 0

    def process(self, frame, t):
        time.sleep(self.slow if self.n % 2 else self.fast)
        self.n += 1
        if self.n % 2 == 0:
            self.classifications += 1
            return [{"frame": self.n - 1, "label": "x"}]
        return []

    def annotate(self, frame, fps=None):
        self.drawn.append(fps)
        return frame

    def restart(self):
        self.restarted += 1
        return []

    def finish(self, reason="end"):
        self.finished += 1
        return [{"event": "segment", "label": "x"}]


class Frames(Output):
    def __init__(self):
        self.written, self.kept = 0, None

    def write(self, frame):
        self.written += 1

    def close(self, keep=True):
        self.kept = keep


class Lines(Events):
    def __init__(self):
        self.lines, self.closed = [], 0

    def write(self, event):
        self.lines.append(event)

    def close(self, keep=True):
        self.closed += 1


def frames(n):
    f = np.zeros((8, 8, 3), np.uint8)
    return ((f.copy(), i / 30) for i in range(n))


def test_the_frame_rate_drawn_is_the_rate_measured():
    """Averaging per-frame 1/dt drew 10-50x the real rate when cheap and costly frames alternate;
    the rate is frames over time."""
    a, out = Costly(), Frames()
    stats = run(frames(80), a, output=out)
    drawn = [f for f in a.drawn[40:] if f is not None]
    assert drawn and stats.fps > 0
    for fps in drawn:
        assert abs(fps - stats.fps) <= 0.1 * stats.fps, (fps, stats.fps)
    assert out.written == 80 and out.kept is True


def test_fps_meter_counts_frames_over_their_span():
    m = FpsMeter(window=4)
    assert m.fps is None
    for t in (0.0, 0.1, 0.3, 0.4, 0.5, 0.6):
        m.tick(t)
    assert m.fps == pytest.approx(4 / 0.5)  # the last 5 ticks: 4 intervals over 0.5 s


def test_the_analysers_last_events_are_written_before_the_events_close():
    a, ev = Costly(fast=0, slow=0), Lines()
    stats = run(frames(6), a, events=ev)
    assert stats.frames == 6 and stats.classifications == 3
    assert [e.get("event") for e in ev.lines] == [None, None, None, "segment"]
    assert a.finished == 1 and ev.closed == 1


def test_an_output_error_removes_the_video_and_still_closes_the_events():
    from actionnet.errors import OutputError

    class Full(Frames):
        def write(self, frame):
            if self.written == 3:
                raise OutputError("cannot write out.mp4: No space left on device")
            self.written += 1

    a, out, ev = Costly(fast=0, slow=0), Full(), Lines()
    with pytest.raises(OutputError):
        run(frames(10), a, output=out, events=ev)
    assert out.kept is False and ev.closed == 1 and ev.lines[-1]["event"] == "segment"


def test_summary_line_says_one_not_ones():
    a = Costly()
    a.classifications = 1
    stats = run(frames(1), a)
    line = summary_line(stats, a)
    assert line.startswith("1 frame, ") and "1 classification," not in line and line.endswith("1 classification")
