"""``actionnet timeline``: synthetic events files drawn, and the picture read back pixel by pixel."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from actionnet.timeline import CONF_LINE, DROPPED, LANE_BG, RECONNECT, load, render, timeline
from conftest import run_cli

ACTIONS = ["walk", "run", "sit", "wave"]


def write_events(path, tracks, reconnect_at=None, dropped_at=None, whole_frame=False):
    """``tracks``: {track_id: [(label, start_s, end_s), ...]}; classifications every 0.5 s inside
    each segment with confidence 0.6, and the segment lines; the run's own markers."""
    lines = []
    for tid, segs in tracks.items():
        for label, a, b in segs:
            for t in np.arange(a, b + 1e-9, 0.5):
                e = {"frame": int(t * 30), "time": float(t), "label": label, "class_id": ACTIONS.index(label),
                     "confidence": 0.6, "topk": [], "event": "classification", "reported_label": label}
                if not whole_frame:
                    e.update(track_id=tid, box=[0, 0, 10, 10])
                lines.append(e)
            seg = {"event": "segment", "label": label, "start_frame": int(a * 30), "start_time": a,
                   "end_frame": int(b * 30), "end_time": b, "max_confidence": 0.6, "reason": "change"}
            if not whole_frame:
                seg["track_id"] = tid
            lines.append(seg)
    if reconnect_at is not None:
        lines.append({"event": "reconnect", "frame": int(reconnect_at * 30), "time": reconnect_at})
    if dropped_at is not None:
        lines.append({"event": "dropped", "frame": int(dropped_at * 30), "time": dropped_at, "count": 40})
    lines.sort(key=lambda e: e.get("time", e.get("end_time", 0)))
    path.write_text("\n".join(json.dumps(e) for e in lines) + "\n")
    return path


FIVE = {  # ten minutes, five people, some gaps
    1: [("walk", 0, 200), ("run", 205, 400), ("walk", 405, 600)],
    2: [("sit", 10, 590)],
    4: [("wave", 30, 90), ("walk", 95, 300)],
    7: [("run", 300, 480), ("sit", 485, 560)],
    9: [("walk", 120, 600)],
}


def _lane_colour(img, layout, tid, t):
    ln, y0, y1 = next(item for item in layout.lanes if item[0].key == tid)
    return tuple(int(v) for v in img[y0 + 1, layout.x(t)])  # the top row: above the confidence line


def test_five_people_ten_minutes_lanes_and_colours(tmp_path):
    ev = load(str(write_events(tmp_path / "e.jsonl", FIVE, reconnect_at=250.0, dropped_at=320.0)))
    img, layout = render(ev)
    assert [ln.key for ln, _, _ in layout.lanes] == [1, 2, 4, 9, 7]  # by first appearance
    tops = [y0 for _, y0, _ in layout.lanes]
    assert tops == sorted(tops) and len(set(np.diff(tops))) == 1  # evenly stacked, none overlapping
    cols = layout.colours
    assert len(set(cols.values())) == len(ACTIONS)  # four labels, four colours
    for tid, segs in FIVE.items():
        for label, a, b in segs:
            assert _lane_colour(img, layout, tid, (a + b) / 2) == cols[label], (tid, label)
    # before a track appears, its lane is background
    assert _lane_colour(img, layout, 7, 100.0) == LANE_BG
    # the reconnect crosses every lane; dropped frames are marked above the axis
    xr = layout.x(250.0)
    y_mid = [(y0 + y1) // 2 for _, y0, y1 in layout.lanes]
    assert all(tuple(int(v) for v in img[y, xr]) == RECONNECT for y in y_mid)
    axis_y = layout.lanes[-1][2] + 6 + 4
    xd = layout.x(320.0)
    assert tuple(int(v) for v in img[axis_y - 3, xd]) == DROPPED
    # the confidence line: at 0.6 of each lane's height, dark where a classification was
    ln, y0, y1 = layout.lanes[1]
    yc = int(round(y1 - 2 - 0.6 * (y1 - y0 - 4)))
    col = img[yc - 1:yc + 2, layout.x(300.0)].astype(int)
    bar = np.array(cols["sit"])
    assert col.sum(axis=1).min() < 0.5 * bar.sum()  # a dark line across the sit bar
    assert abs(col.sum(axis=1).min() - 3 * CONF_LINE[0]) < 120


def test_whole_frame_is_one_lane_and_the_cli_writes_png_and_html(tmp_path):
    path = write_events(tmp_path / "w.jsonl", {None: [("walk", 0, 4), ("run", 4.5, 9)]}, whole_frame=True)
    png, page = tmp_path / "t.png", tmp_path / "t.html"
    r = run_cli("timeline", path, "-o", png)
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(png))
    assert img is not None and img.shape[1] == 1400
    _, layout = render(load(str(path)))
    assert [ln.name for ln, _, _ in layout.lanes] == ["scene"]
    assert _lane_colour(img, layout, None, 2.0) == layout.colours["walk"]
    assert _lane_colour(img, layout, None, 7.0) == layout.colours["run"] != layout.colours["walk"]
    r = run_cli("timeline", path, "-o", page)
    assert r.returncode == 0 and 'title="scene walk: 0.00-4.00 s' in page.read_text()


def test_open_segments_and_old_files_still_draw(tmp_path):
    """A killed run leaves its last segment open; a file from before whole-frame segments has
    only classifications: both are drawn from the reported labels."""
    old = tmp_path / "old.jsonl"
    old.write_text("".join(json.dumps({"frame": i, "time": i / 10, "label": "run" if i >= 20 else "walk",
                                       "class_id": 0, "confidence": 0.9, "topk": []}) + "\n" for i in range(40))
                   + '{"frame": 40, "ti')  # cut mid-line
    ev = load(str(old))
    assert ev.skipped == 1
    (lane,) = ev.lanes.values()
    assert [(s, e, lab) for s, e, lab, _ in lane.segments] == [(0.0, 1.9, "walk"), (2.0, 3.9, "run")]
    killed = write_events(tmp_path / "k.jsonl", {3: [("sit", 0, 5)]})
    with open(killed, "a") as f:
        for t in (5.5, 6.0):
            f.write(json.dumps({"event": "classification", "track_id": 3, "frame": int(t * 30), "time": t,
                                "label": "wave", "confidence": 0.7, "reported_label": "wave",
                                "segment_start_frame": 165, "segment_start_time": 5.5}) + "\n")
    (lane,) = load(str(killed)).lanes.values()
    assert lane.segments[-1][:3] == (5.5, 6.0, "wave")


@pytest.mark.parametrize("content,message", [(None, "cannot read events"), ("", "no classification or segment"),
                                             ('{"event": "segment", "label": "x"}\n', "line 1")])
def test_bad_events_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "e.jsonl"
    if content is not None:
        path.write_text(content)
    r = run_cli("timeline", path, "-o", tmp_path / "t.png")
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_too_many_tracks_keep_the_busiest(tmp_path):
    tracks = {i: [("walk", i, i + (30 if i % 2 else 2))] for i in range(1, 21)}
    layout = timeline(str(write_events(tmp_path / "e.jsonl", tracks)), str(tmp_path / "t.png"), max_lanes=6)
    assert len(layout.lanes) == 6 and layout.hidden == 14
    assert all(ln.key % 2 == 1 for ln, _, _ in layout.lanes)
