"""Outputs when the disk fills up: one line naming the file and the reason, no partial video,
an events file of whole lines only, a non-zero exit."""

from __future__ import annotations

import errno
import json
import os

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
