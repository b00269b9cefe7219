"""The progress bar for files: a single rewritten line that ends at 100% and the frame count."""

from __future__ import annotations

import io

from actionnet.pipeline import Progress


def test_progress_counts_to_the_total_on_one_line():
    out = io.StringIO()
    p = Progress(40, out, every=0.0)
    for _ in range(40):
        p.update("red right slow")
    p.close()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1  # redrawn in place with \r
    last = text.rstrip("\n").split("\r")[-1]
    assert "100.0% 40/40 frames" in last and "#" * 30 in last
    assert "red right slow" in text


def test_progress_without_a_frame_count_counts_frames():
    out = io.StringIO()
    p = Progress(None, out, every=0.0)
    for _ in range(7):
        p.update()
    p.close()
    assert out.getvalue().rstrip("\n").split("\r")[-1].startswith("7 frames")
