"""``actionnet timeline EVENTS.jsonl -o timeline.png``: a run's events as one picture.

One lane per track (one lane, "scene", for a whole-frame run), each action segment a coloured
bar, the top-1 confidence of every classification a dark line over the lane, reconnects as red
lines across all lanes and dropped frames as orange marks on the time axis, with a legend of the
labels by total time. Drawn from the events alone (nothing is re-run) with OpenCV, which the base
install has: no plotting library in the runtime. ``-o timeline.html`` writes the same picture in a
page with a tooltip per segment and a table of segments.

Events files from runs that were killed (segments still open) or written before whole-frame runs
had segments still draw: a lane with no closed segment is cut from its classifications' reported
labels, and an open segment is drawn up to its last classification.
"""

from __future__ import annotations

import argparse
import base64
import html
import json
import math
import os
import sys
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import cv2
import numpy as np

from .errors import ActionNetError, InputError, OutputError, UsageError

# distinguishable colours (BGR), from Tableau 10 and 20; a label keeps its colour within a picture
PALETTE = [(180, 119, 31), (14, 127, 255), (44, 160, 44), (40, 39, 214), (189, 103, 148), (75, 86, 140),
           (194, 119, 227), (34, 189, 188), (207, 190, 23), (127, 127, 127), (232, 199, 174), (120, 187, 255),
           (138, 223, 152), (150, 152, 255), (213, 176, 197), (148, 156, 196), (210, 182, 247), (141, 219, 219),
           (229, 218, 158), (199, 199, 199)]
WHITE, LANE_BG, LANE_LIVE, INK, GRID = (255, 255, 255), (246, 246, 246), (228, 228, 228), (40, 40, 40), (210, 210, 210)
RECONNECT, DROPPED, CONF_LINE = (0, 0, 220), (147, 20, 255), (30, 30, 30)
FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass
class Lane:
    key: Optional[int]  # track id; None for the whole-frame lane
    segments: List[Tuple[float, float, str, dict]] = field(default_factory=list)  # start, end, label, event
    confidence: List[Tuple[float, float]] = field(default_factory=list)  # (time, top-1 confidence)
    classifications: List[dict] = field(default_factory=list)

    @property
    def name(self) -> str:
        return "scene" if self.key is None else f"#{self.key}"

    @property
    def first(self) -> float:
        ts = [t for t, _ in self.confidence] + [s for s, _, _, _ in self.segments]
        return min(ts) if ts else 0.0

    @property
    def last(self) -> float:
        ts = [t for t, _ in self.confidence] + [e for _, e, _, _ in self.segments]
        return max(ts) if ts else 0.0

    @property
    def busy(self) -> float:
        return sum(e - s for s, e, _, _ in self.segments)


@dataclass
class Events:
    lanes: Dict[Optional[int], Lane]
    reconnects: List[float]
    dropped: List[Tuple[float, int]]  # (time, frames dropped)
    skipped: int  # lines that were not JSON (a run killed mid-line)
    end_time: Optional[float] = None  # the summary's: the time of the run's last frame

    @property
    def end(self) -> float:
        ts = [lane.last for lane in self.lanes.values()] + self.reconnects + [t for t, _ in self.dropped]
        ts += [self.end_time] if self.end_time is not None else []
        return max(ts) if ts else 0.0


def load(path: str) -> Events:
    """Read an ``--events`` file of either mode."""
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read events {path}: {e.strerror}") from None
    lanes: Dict[Optional[int], Lane] = {}
    reconnects: List[float] = []
    dropped: List[Tuple[float, int]] = []
    skipped = 0
    end_time = None
    with f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                e = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if not isinstance(e, dict):
                skipped += 1
                continue
            kind = e.get("event", "classification" if "confidence" in e and "frame" in e else None)
            if kind == "summary" and isinstance(e.get("end_time"), (int, float)):
                end_time = float(e["end_time"])
            try:
                _add(e, kind, lanes, reconnects, dropped)
            except (KeyError, TypeError, ValueError) as err:
                raise InputError(f"{path} line {number}: a {kind} event without a valid {err}; "
                                 f"is it an actionnet events file?") from None
    if not lanes:
        raise InputError(f"{path} holds no classification or segment events (write one with actionnet --events)")
    for lane in lanes.values():
        _complete(lane)
    return Events(lanes, reconnects, dropped, skipped, end_time)


def _add(e: dict, kind, lanes, reconnects, dropped) -> None:
    if kind == "classification":
        lane = lanes.setdefault(e.get("track_id"), Lane(e.get("track_id")))
        lane.confidence.append((float(e["time"]), float(e["confidence"])))
        lane.classifications.append(e)
    elif kind == "segment":
        lane = lanes.setdefault(e.get("track_id"), Lane(e.get("track_id")))
        lane.segments.append((float(e["start_time"]), float(e["end_time"]), str(e["label"]), e))
    elif kind == "reconnect":
        reconnects.append(float(e["time"]))
    elif kind == "dropped":
        dropped.append((float(e["time"]), int(e.get("count", 1))))


def _complete(lane: Lane) -> None:
    """Segments the file does not close: an open one at the end (a killed run), or all of them
    (an events file from before whole-frame segments) cut from the reported labels."""
    lane.confidence.sort()
    cls = lane.classifications
    if not cls:
        return
    closed = {(s[3].get("start_frame"), s[2]) for s in lane.segments}
    if lane.segments:
        last = cls[-1]
        label, start = last.get("reported_label"), last.get("segment_start_frame")
        if label and start is not None and (start, label) not in closed:
            lane.segments.append((float(last["segment_start_time"]), float(last["time"]), label,
                                  {"label": label, "start_frame": start, "end_frame": last["frame"], "open": True}))
        return
    run = None
    for e in cls:
        label = e.get("reported_label", e.get("label"))
        if run is not None and run[2] == label:
            run[1] = float(e["time"])
            continue
        if run is not None and run[2]:
            lane.segments.append((run[0], run[1], run[2], {"label": run[2], "derived": True}))
        run = [float(e["time"]), float(e["time"]), label]
    if run is not None and run[2]:
        lane.segments.append((run[0], run[1], run[2], {"label": run[2], "derived": True}))


def colours(events: Events) -> Dict[str, tuple]:
    """Label -> BGR colour: the labels with most time first, so the main actions get the most
    distinct colours; labels past the palette share its colours."""
    totals: Dict[str, float] = {}
    for lane in events.lanes.values():
        for s, e, label, _ in lane.segments:
            totals[label] = totals.get(label, 0.0) + (e - s)
    order = sorted(totals, key=lambda k: (-totals[k], k))
    return {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(order)}


def _clock(t: float, step: float) -> str:
    m, s = divmod(t, 60.0)
    if step < 1:
        return f"{int(m)}:{s:04.1f}"
    return f"{int(m)}:{int(round(s)):02d}"


def _tick_step(span: float, px: int) -> float:
    want = span / max(1, px / 110)  # a label every ~110 px
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if step >= want:
            return step
    return 3600 * math.ceil(want / 3600)


@dataclass
class Layout:
    """Where things were drawn: for tooltips in the HTML page and for tests reading pixels."""

    x0: int
    x1: int
    t0: float
    t1: float
    lanes: List[Tuple[Lane, int, int]]  # lane, top y, bottom y
    colours: Dict[str, tuple]
    hidden: int  # lanes left out (--max-lanes)

    def x(self, t: float) -> int:
        return int(round(self.x0 + (t - self.t0) / max(1e-9, self.t1 - self.t0) * (self.x1 - self.x0)))


def render(events: Events, width: int = 1400, lane_height: int = 34, max_lanes: int = 12,
           title: str = "") -> Tuple[np.ndarray, Layout]:
    """The picture (BGR uint8) and its layout."""
    lanes = list(events.lanes.values())
    hidden = 0
    if len(lanes) > max_lanes:  # keep the tracks that did the most; the rest are counted in the title
        keep = sorted(lanes, key=lambda ln: -(ln.busy or (ln.last - ln.first)))[:max_lanes]
        hidden = len(lanes) - len(keep)
        lanes = keep
    lanes.sort(key=lambda ln: (ln.key is not None, ln.first, ln.key or 0))
    cmap = colours(events)
    t1 = max(events.end, 1e-3)
    label_w = 64
    x0, x1 = label_w + 10, width - 20
    gap, top = 6, 44
    lanes_bottom = top + len(lanes) * (lane_height + gap)
    axis_y = lanes_bottom + 4
    # the legend: swatches wrapped in rows
    totals: Dict[str, float] = {}
    for ln in events.lanes.values():
        for s, e, label, _ in ln.segments:
            totals[label] = totals.get(label, 0.0) + (e - s)
    entries = [(cmap[k], f"{k} {totals[k]:.0f} s") for k in cmap]
    entries += [(CONF_LINE, "top-1 confidence"), (RECONNECT, f"reconnect ({len(events.reconnects)})"),
                (DROPPED, f"dropped frames ({sum(n for _, n in events.dropped)})")]
    rows, row, used = [], [], x0
    for colour, text in entries:
        w = 22 + cv2.getTextSize(text, FONT, 0.45, 1)[0][0] + 18
        if row and used + w > x1:
            rows.append(row)
            row, used = [], x0
        row.append((colour, text, w))
        used += w
    if row:
        rows.append(row)
    legend_y = axis_y + 40
    height = legend_y + 22 * len(rows) + 8
    img = np.full((height, width, 3), WHITE, np.uint8)
    layout = Layout(x0, x1, 0.0, t1, [], cmap, hidden)

    head = title or "actionnet timeline"
    n_tracks = sum(1 for ln in events.lanes.values() if ln.key is not None)
    info = f"{_clock(t1, 1)} long, " + (f"{n_tracks} tracks" if n_tracks else "whole frame") + \
           (f" ({hidden} shortest not shown)" if hidden else "") + f", {len(cmap)} label{'s' if len(cmap) != 1 else ''}"
    cv2.putText(img, head, (x0, 20), FONT, 0.6, INK, 1, cv2.LINE_AA)
    cv2.putText(img, info, (x0, 37), FONT, 0.45, (90, 90, 90), 1, cv2.LINE_AA)

    step = _tick_step(t1, x1 - x0)
    ticks = [i * step for i in range(int(t1 / step) + 1)]
    for t in ticks:  # grid first, lanes over it
        cv2.line(img, (layout.x(t), top - 2), (layout.x(t), axis_y), GRID, 1)
    for i, ln in enumerate(lanes):
        y0 = top + i * (lane_height + gap)
        y1 = y0 + lane_height
        layout.lanes.append((ln, y0, y1))
        cv2.rectangle(img, (x0, y0), (x1, y1), LANE_BG, -1)
        cv2.rectangle(img, (layout.x(ln.first), y0), (max(layout.x(ln.last), layout.x(ln.first) + 1), y1),
                      LANE_LIVE, -1)  # while the track existed
        for s, e, label, _ in ln.segments:
            xa, xb = layout.x(s), layout.x(e)
            cv2.rectangle(img, (xa, y0), (max(xb, xa + 1), y1), cmap[label], -1)
        pts = [(layout.x(t), int(round(y1 - 2 - c * (lane_height - 4)))) for t, c in ln.confidence]
        if len(pts) > 1:
            cv2.polylines(img, [np.array(pts, np.int32)], False, CONF_LINE, 1, cv2.LINE_AA)
        elif pts:
            cv2.circle(img, pts[0], 1, CONF_LINE, -1)
        (tw, th), _ = cv2.getTextSize(ln.name, FONT, 0.5, 1)
        cv2.putText(img, ln.name, (max(2, label_w - tw), (y0 + y1 + th) // 2), FONT, 0.5, INK, 1, cv2.LINE_AA)
    for t in events.reconnects:
        x = layout.x(t)
        cv2.line(img, (x, top - 4), (x, axis_y), RECONNECT, 2)
    cv2.line(img, (x0, axis_y), (x1, axis_y), INK, 1)
    for t in ticks:
        x = layout.x(t)
        cv2.line(img, (x, axis_y), (x, axis_y + 5), INK, 1)
        text = _clock(t, step)
        tw = cv2.getTextSize(text, FONT, 0.42, 1)[0][0]
        cv2.putText(img, text, (min(max(0, x - tw // 2), width - tw - 1), axis_y + 20), FONT, 0.42, INK, 1,
                    cv2.LINE_AA)
    for t, n in events.dropped:
        x = layout.x(t)
        h = 4 + min(8, int(2 * math.log2(1 + n)))
        cv2.fillPoly(img, [np.array([(x, axis_y - 1), (x - 4, axis_y - 1 - h), (x + 4, axis_y - 1 - h)], np.int32)],
                     DROPPED)
    for r, row in enumerate(rows):
        x, y = x0, legend_y + 22 * r
        for colour, text, w in row:
            if colour == CONF_LINE:
                cv2.line(img, (x, y - 4), (x + 16, y - 4), colour, 1, cv2.LINE_AA)
            elif colour == RECONNECT:
                cv2.line(img, (x + 8, y - 11), (x + 8, y + 3), colour, 2)
            elif colour == DROPPED:
                cv2.fillPoly(img, [np.array([(x + 8, y + 2), (x + 3, y - 9), (x + 13, y - 9)], np.int32)], colour)
            else:
                cv2.rectangle(img, (x, y - 11), (x + 16, y + 3), colour, -1)
            cv2.putText(img, text, (x + 22, y), FONT, 0.45, INK, 1, cv2.LINE_AA)
            x += w
    return img, layout


def write_html(path: str, img: np.ndarray, layout: Layout, title: str) -> None:
    """The picture in a page: a tooltip per segment (an image map) and a table of segments."""
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise OutputError(f"cannot encode the timeline for {path}")
    areas, rows = [], []
    for ln, y0, y1 in layout.lanes:
        for s, e, label, ev in ln.segments:
            xa, xb = layout.x(s), max(layout.x(e), layout.x(s) + 1)
            tip = f"{ln.name} {label}: {s:.2f}-{e:.2f} s"
            if ev.get("max_confidence") is not None:
                tip += f", max {ev['max_confidence']:.2f}"
            areas.append(f'<area shape="rect" coords="{xa},{y0},{xb},{y1}" title="{html.escape(tip)}" alt="">')
            conf = ev.get("max_confidence")
            rows.append(f"<tr><td>{html.escape(ln.name)}</td><td>{html.escape(label)}</td><td>{s:.2f}</td>"
                        f"<td>{e:.2f}</td><td>{e - s:.2f}</td><td>{'' if conf is None else f'{conf:.3f}'}</td>"
                        f"<td>{html.escape(str(ev.get('reason', 'open' if ev.get('open') else '')))}</td></tr>")
    page = f"""<!doctype html><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font:14px sans-serif;margin:16px}}table{{border-collapse:collapse}}td,th{{padding:2px 8px;
border-bottom:1px solid #ddd;text-align:left}}</style>
<h3>{html.escape(title)}</h3>
<img src="data:image/png;base64,{base64.b64encode(png.tobytes()).decode()}" usemap="#segments" alt="timeline">
<map name="segments">{''.join(areas)}</map>
<table><tr><th>lane</th><th>label</th><th>start s</th><th>end s</th><th>seconds</th><th>max confidence</th>
<th>closed by</th></tr>{''.join(rows)}</table>
"""
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror}") from None


def timeline(events_path: str, output: str, width: int = 1400, max_lanes: int = 12, title: Optional[str] = None,
             log=sys.stderr) -> Layout:
    """Draw ``events_path`` into ``output`` (.png, .jpg or .html)."""
    ext = os.path.splitext(output)[1].lower()
    if ext not in (".png", ".jpg", ".jpeg", ".html", ".htm"):
        raise UsageError(f"-o must end in .png, .jpg or .html, got {output!r}")
    if width < 400 or max_lanes < 1:
        raise UsageError("need --width >= 400 and --max-lanes >= 1")
    events = load(events_path)
    title = title or os.path.basename(events_path)
    img, layout = render(events, width=width, max_lanes=max_lanes, title=title)
    if ext in (".html", ".htm"):
        write_html(output, img, layout, title)
    else:
        try:
            ok = cv2.imwrite(output, img, [cv2.IMWRITE_PNG_COMPRESSION, 9] if ext == ".png" else [])
        except cv2.error:
            ok = False
        if not ok:
            raise OutputError(f"cannot write {output}")
    if events.skipped:
        print(f"actionnet timeline: skipped {events.skipped} lines that were not JSON", file=log)
    n = sum(len(ln.segments) for ln in events.lanes.values())
    k = len(layout.lanes)
    print(f"actionnet timeline: {k} lane{'s' if k != 1 else ''}, {n} segments, {len(events.reconnects)} reconnects "
          f"-> {output}", file=log)
    return layout


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="actionnet timeline", allow_abbrev=False,
                                description="Draw an actionnet --events file: one lane per track, segments as "
                                            "coloured bars, confidence, reconnects and dropped frames.")
    p.add_argument("events", help="events file written by actionnet --events (either mode)")
    p.add_argument("-o", "--output", default="timeline.png", help="timeline.png (or .jpg, or .html with tooltips)")
    p.add_argument("--width", type=int, default=1400, help="picture width in pixels (default 1400)")
    p.add_argument("--max-lanes", type=int, default=12,
                   help="most tracks drawn; the busiest are kept (default 12)")
    p.add_argument("--title", help="title line (default: the events file's name)")
    args = p.parse_args(argv)
    try:
        timeline(args.events, args.output, width=args.width, max_lanes=args.max_lanes, title=args.title)
    except ActionNetError as e:
        print(f"actionnet timeline: error: {e}", file=sys.stderr)
        return e.exit_code
    return 0
