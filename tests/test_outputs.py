"""Outputs: when the disk fills up, one line naming the file and the reason, no partial video,
an events file of whole lines only, a non-zero exit; a recording of a live source keeps real time."""

from __future__ import annotations

import errno
import json
import os
import time

import pytest

from actionnet.errors import OutputError
from actionnet.outputs import EventSink


class FullDisk:
    """A raw file that takes ``room`` more bytes, writes part of the next write, then fails as a
    full disk does (ENOSPC)."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, data):
        if len(data) > self.room:
            n = self.f.write(bytes(data[:self.room]))
            self.room = 0
            if n:
                return n
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return self.f.write(data)

    def fileno(self):
        return self.f.fileno()

    def close(self):
        self.f.close()


def test_events_file_keeps_whole_lines_when_the_disk_fills(tmp_path):
    path = tmp_path / "ev.jsonl"
    sink = EventSink(str(path), flush_every=0.0)
    sink.write({"frame": 0, "label": "a"})
    sink._f = FullDisk(sink._f, room=30)  # room for part of the next line only
    with pytest.raises(OutputError, match=r"ev\.jsonl: No space left on device"):
        sink.write({"frame": 1, "label": "a much longer label than there is room for"})
    text = path.read_text()
    assert text.endswith("\n")
    assert [json.loads(line)["frame"] for line in text.splitlines()] == [0]
    sink.close()  # nothing more to do, no second error


def test_full_disk_mid_run_is_one_line_no_partial_video(monkeypatch, capsys, tmp_path, synthetic_model,
                                                        synthetic_video):
    from actionnet import outputs
    from actionnet.cli import main

    video = str(synthetic_video("red left slow"))  # written before the disk "fills"
    real = outputs.encode_frame
    calls = []

    def encode(container, stream, frame, pts):
        calls.append(pts)
        if pts == 12:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(container, stream, frame, pts)

    monkeypatch.setattr(outputs, "encode_frame", encode)
    out, ev = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    code = main(["--model", str(synthetic_model), "--skip-frames=0", "--no-progress", "--events", str(ev),
                 video, str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code != 0
    assert err[-1] == f"actionnet: error: cannot write {out}: No space left on device", err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["ev.jsonl"]
    lines = [json.loads(line) for line in ev.read_text().splitlines()]  # whole lines only
    assert lines and all(e["label"] for e in lines if e["event"] == "classification")


def test_full_disk_while_finalising_the_video(tmp_path):
    """The flush at the end (the encoder's last packets, the container's index) can fail too."""
    import numpy as np

    from actionnet.outputs import VideoFileSink

    sink = VideoFileSink(str(tmp_path / "v.mp4"), 30)
    for i in range(3):
        sink.write(np.zeros((32, 32, 3), np.uint8))

    class Full:
        def encode(self, frame):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    sink._stream = Full()
    with pytest.raises(OutputError, match="v.mp4: No space left on device"):
        sink.close()
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------------
# A recording of a live source keeps real time (issue 27)


def _video_info(path):
    """(frames decoded, duration in seconds from the last frame's time plus one frame, the
    container's duration, the stream's average rate)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts = [f.pts for f in c.decode(s)]
        rate = s.average_rate
        last = float((pts[-1] - pts[0]) * s.time_base) + 1 / float(s.guessed_rate or rate)
        return len(pts), last, c.duration / 1e6, rate


@pytest.mark.parametrize("ext", ["mp4", "mkv", "avi"])
def test_frames_written_with_their_time_leave_gaps_in_time(tmp_path, ext):
    """Frames 0, 1, 2, 5, 9, 29 of a 30 fps camera (the others dropped) last one second, not six
    frames' worth; a clock that restarts (a reconnect) goes on after the last frame."""
    import numpy as np

    from actionnet.outputs import VideoFileSink

    out = tmp_path / f"v.{ext}"
    sink = VideoFileSink(str(out), 30)
    for k in (0, 1, 2, 5, 9, 29):
        sink.write_at(np.full((32, 32, 3), 8 * k, np.uint8), 100.0 + k / 30 + 0.004)
    sink.close()
    n, last, container, _ = _video_info(out)
    assert n >= 6 and last == pytest.approx(1.0, abs=0.02), (n, last)
    assert container == pytest.approx(1.0, abs=0.04), container

    sink = VideoFileSink(str(out), 30)
    for t in (5.0, 5.1, 0.0, 0.1):  # the source's clock went back to 0 at a reconnect
        sink.write_at(np.zeros((32, 32, 3), np.uint8), t)
    sink.close()
    assert _video_info(out)[1] == pytest.approx((3 + 1 + 3 + 1) / 30, abs=0.02)


class _SlowAnalyser:
    """An analyser that takes ``seconds`` per frame: slower than the footage it is given."""

    def __init__(self, seconds):
        from actionnet.pipeline import StageTimer

        self.seconds, self.timer, self.classifications, self.segment_summary = seconds, StageTimer(), 0, None

    def process(self, frame, t):
        time.sleep(self.seconds)
        return []

    def restart(self):
        return []

    def finish(self, reason="end"):
        return []

    def annotate(self, frame, fps=None):
        return frame


def test_a_live_recording_lasts_as_long_as_the_footage_though_frames_were_dropped(tmp_path):
    from actionnet.export.synthetic import video_frames, write_video
    from actionnet.outputs import VideoFileSink
    from actionnet.pipeline import run
    from actionnet.sources import SourceOptions, video_source

    footage = write_video(str(tmp_path / "fast.mp4"), video_frames("red left slow", 150, 0.1), fps=100)  # 1.5 s
    out = tmp_path / "live.mp4"
    src = video_source(footage, SourceOptions(live=True))
    try:
        stats = run(src, _SlowAnalyser(0.025), output=VideoFileSink(str(out), src.rate))  # 40 fps at most
    finally:
        src.close()
    assert stats.dropped > 30 and stats.frames + stats.dropped == 150, (stats.frames, stats.dropped)
    n, last, container, _ = _video_info(out)
    assert n == stats.frames
    assert last == pytest.approx(1.5, rel=0.03) and container == pytest.approx(1.5, rel=0.03), (last, container)

    # the same footage as a file: every frame, the input's count and rate, as before
    plain = tmp_path / "plain.mp4"
    src = video_source(footage)
    try:
        stats = run(src, _SlowAnalyser(0.0), output=VideoFileSink(str(plain), src.rate))
    finally:
        src.close()
    n, last, _, rate = _video_info(plain)
    assert stats.dropped == 0 and n == 150 and rate == 100 and last == pytest.approx(1.5, rel=0.01)


def test_event_fanout_closes_every_sink_even_through_ctrl_c():
    """A Ctrl-C while the first sink closes (a file flushing) must not skip the broker after it:
    its queue would be neither drained nor saved. The interrupt still reaches the caller."""
    from actionnet.outputs import EventFanout, Events

    closed = []

    class Sink(Events):
        def __init__(self, name, fail=None):
            self.name, self.fail = name, fail

        def write(self, event):
            pass

        def close(self, keep=True):
            closed.append(self.name)
            if self.fail:
                raise self.fail

    fan = EventFanout([Sink("file", KeyboardInterrupt()), Sink("broker")])
    with pytest.raises(KeyboardInterrupt):
        fan.close()
    assert closed == ["file", "broker"]
