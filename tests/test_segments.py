"""Reported labels and segments (runtime/segments.py): hysteresis on scripted score sequences,
segments closed on every way a run ends, in both modes."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from actionnet.outputs import Events
from actionnet.scores import Scorer
from actionnet.segments import LabelTracker
from actionnet.sources import Source

LABELS = ["walk", "run", "sit"]
FPS = 10.0


def scripted(tops, threshold=0.3):
    """Classifications at 10 per second whose top class follows ``tops`` (None: below threshold)."""
    scorer = Scorer(LABELS, logits=False, threshold=threshold, top_k=3)
    out = []
    for i, top in enumerate(tops):
        p = np.full(3, 0.05, np.float32) if top is None else np.full(3, 0.1, np.float32)
        if top is not None:
            p[LABELS.index(top)] = 0.8
        out.append(scorer(p / p.sum() if top is not None else p, frame=3 * i, time=i / FPS))
    return out


def feed(tracker, cs):
    events, reported = [], []
    for c in cs:
        events += tracker.update(c)
        reported.append(tracker.reported)
    return events, reported


def test_bursts_shorter_than_the_minimum_are_never_reported():
    # walk, with bursts of run (0.2 s, 0.4 s), sit (0.5 s) and below-threshold (0.3 s); min 0.6 s
    tops = ["walk"] * 10 + ["run"] * 2 + ["walk"] * 5 + ["run"] * 4 + ["walk"] * 3 + ["sit"] * 5 + \
           [None] * 3 + ["walk"] * 6
    t = LabelTracker(min_duration=0.6)
    events, reported = feed(t, scripted(tops))
    assert set(reported[6:]) == {"walk"}, reported
    assert events == [] and t.changes == 0
    events = t.close("end")
    assert len(events) == 1
    seg = events[0]
    assert (seg["label"], seg["start_frame"], seg["end_frame"], seg["reason"]) == ("walk", 0, 3 * (len(tops) - 1), "end")
    assert "track_id" not in seg and 0.5 < seg["max_confidence"] <= 1


@pytest.mark.parametrize("min_duration", [0.0, 0.5, 1.0])
def test_a_real_change_is_reported_exactly_once_after_the_minimum(min_duration):
    tops = ["walk"] * 12 + ["run"] * 3 + ["walk"] * 2 + ["run"] * 20   # a short run burst, then run for good
    cs = scripted(tops)
    t = LabelTracker(min_duration=min_duration)
    events, reported = feed(t, cs)
    onset = 17  # the classification where run starts for good
    first = onset + int(round(min_duration * FPS))  # the first one at least min_duration after the onset
    # changes of the reported label once one is reported (walk, from 0 or min_duration on)
    changes = [i for i in range(1, len(reported)) if reported[i - 1] is not None and reported[i] != reported[i - 1]]
    if min_duration == 0:  # today's behaviour: every change at once
        assert changes == [12, 15, onset]
        return
    assert changes == [first] and t.changes == 1
    assert reported[first - 1] == "walk" and reported[first] == "run"
    (closed,) = events  # the walk segment, closed where run began
    assert closed["label"] == "walk" and closed["reason"] == "change"
    assert closed["start_frame"] == 0 and closed["end_frame"] == cs[onset - 1].frame
    (last,) = t.close("stop")
    assert last["label"] == "run" and last["start_frame"] == cs[onset].frame and last["reason"] == "stop"
    assert last["end_frame"] == cs[-1].frame


def test_a_drop_below_the_threshold_closes_the_segment_once_it_holds():
    cs = scripted(["sit"] * 8 + [None] * 8 + ["sit"] * 8)
    t = LabelTracker(min_duration=0.5)
    events, reported = feed(t, cs)
    assert [e["reason"] for e in events] == ["below_threshold"]
    assert events[0]["end_frame"] == cs[7].frame
    assert reported[-1] == "sit" and t.segment.start_frame == cs[16].frame
    ev = t.annotate({})
    assert ev["reported_label"] == "sit" and ev["segment_start_frame"] == cs[16].frame


def test_reset_closes_and_forgets():
    t = LabelTracker(min_duration=0.3, track_id=7)
    feed(t, scripted(["run"] * 6))
    (ev,) = t.reset("reconnect")
    assert ev["track_id"] == 7 and ev["reason"] == "reconnect" and ev["label"] == "run"
    assert t.reported is None and t.segment is None and t.close() == []


def test_the_overlay_shows_the_reported_label():
    cs = scripted(["walk"] * 12 + ["run"] * 2)
    t = LabelTracker(min_duration=1.0)
    feed(t, cs)
    shown = t.shown(cs[-1])
    assert cs[-1].label == "run" and shown.label == "walk" and shown.class_id == 0
    assert shown.confidence == pytest.approx(dict((n, c) for _, n, c in cs[-1].topk)["walk"])


# ---------------------------------------------------------------------------------------------
# Both modes, every way a run ends

def _frames(label, n, seed=0):
    from actionnet.export.synthetic import video_frames

    return video_frames(label, n, 0.8, seed=seed)


class _Frames(Source):
    """A source of frames; ``generation`` bumps at ``reconnect_at`` (a live source reconnecting)."""

    def __init__(self, frames, reconnect_at=None, stop_at=None, stop=None):
        self.frames, self.reconnect_at, self.stop_at, self.stop = frames, reconnect_at, stop_at, stop
        self.generation = 0

    def __iter__(self):
        for i, f in enumerate(self.frames):
            if i == self.reconnect_at:
                self.generation += 1
            if i == self.stop_at:
                self.stop.stopped = True
            yield f.copy(), i / self.fps


class _Sink(Events):
    def __init__(self):
        self.events, self.closed = [], False

    def write(self, e):
        self.events.append(json.loads(json.dumps(e)))

    def close(self, keep=True):
        self.closed = True


class _Stop:
    stopped = False


@pytest.mark.parametrize("how", ["end", "stop", "reconnect", "interrupt"])
def test_whole_frame_segments_close_on_every_way_a_run_ends(synthetic_model, how):
    from actionnet import ActionNet
    from actionnet.pipeline import run

    frames = _frames("red right slow", 24)
    stop = _Stop()
    src = _Frames(frames, reconnect_at=12 if how == "reconnect" else None, stop_at=16 if how == "stop" else None,
                  stop=stop)
    if how == "interrupt":
        class Interrupted(_Frames):
            def __iter__(self):
                for i, item in enumerate(_Frames.__iter__(self)):
                    if i == 18:
                        raise KeyboardInterrupt
                    yield item
        src = Interrupted(frames)
    sink = _Sink()
    net = ActionNet(model=str(synthetic_model), skip_frames=0, threshold=0.0, log=open(os.devnull, "w"))
    stats = run(src, net, events=sink, stop=stop)
    ev = sink.events
    assert sink.closed and ev[-1]["event"] == "summary"
    segs = [e for e in ev if e["event"] == "segment"]
    cls = [e for e in ev if e["event"] == "classification"]
    assert cls and all(e["reported_label"] == e["label"] for e in cls)  # min_duration 0: today's labels
    want = {"end": ["end"], "stop": ["stop"], "interrupt": ["stop"], "reconnect": ["reconnect", "end"]}[how]
    assert [s["reason"] for s in segs if s["reason"] != "change"] == want
    assert segs[-1]["end_frame"] == cls[-1]["frame"]
    if how == "reconnect":
        assert [e["frame"] for e in ev if e["event"] == "reconnect"] == [12]
        assert [s["end_frame"] for s in segs if s["reason"] == "reconnect"] == [11]
    assert stats.stopped == (how in ("stop", "interrupt"))
    assert ev[-1]["end_frame"] == stats.frames - 1  # the run's extent, for the timeline's axis
    assert ev[-1]["labels"] and ev[-1]["longest"][0]["duration"] >= segs[0]["duration"]


def test_per_person_segments_close_on_stop(tmp_path, synthetic_model):
    from actionnet.persons import PersonActionNet
    from actionnet.pipeline import run
    from detector_fakes import square_detector
    from persons_video import CONTEXT, squares_frames

    frames, _ = squares_frames([("red", "right", 0.8, 40, 20), ("blue", "left", 0.8, 200, 90)], frames=24)
    stop = _Stop()
    sink = _Sink()
    det = square_detector(tmp_path / "sq.onnx")
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, cadence=1, context=CONTEXT, threshold=0.0,
                         min_duration=0.1, log=None) as net:
        run(_Frames(frames, stop_at=20, stop=stop), net, events=sink, stop=stop)
    ev = sink.events
    segs = [e for e in ev if e["event"] == "segment"]
    cls = [e for e in ev if e["event"] == "classification"]
    assert ev[-1]["event"] == "summary" and sink.closed
    assert {s["track_id"] for s in segs if s["reason"] == "stop"} == {e["track_id"] for e in cls}
    assert all("reported_label" in e for e in cls)
    # the timeline draws a per-person run: one lane per track
    from actionnet.timeline import timeline

    path = tmp_path / "people.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in ev))
    layout = timeline(str(path), str(tmp_path / "people.png"), log=open(os.devnull, "w"))
    assert sorted(ln.key for ln, _, _ in layout.lanes) == sorted({e["track_id"] for e in cls})


def flicker_video(path):
    """True label red-left for 3 loops then red-right for 3 loops; each loop ends with a 10-frame
    rewind (a loop-back) before it jumps to its start, which flips the raw label for ~0.3 s."""
    from actionnet.export.synthetic import video_frames, write_video

    frames = []
    for label in ("red left slow", "red right slow"):
        for k in range(3):
            clip = video_frames(label, 44, 0.55, seed=k)
            frames += clip + clip[-1:-11:-1]
    return write_video(str(path), frames)


def _changes(labels):
    return sum(1 for a, b in zip(labels, labels[1:]) if a is not None and a != b)


def test_min_duration_reports_one_change_on_a_flickering_video(synthetic_model, tmp_path):
    from conftest import run_cli

    video = flicker_video(tmp_path / "flicker.mp4")
    got = {}
    for md in ("0", "1"):
        ev = tmp_path / f"e{md}.jsonl"
        r = run_cli("--model", synthetic_model, "--skip-frames=0", "--engine=onnxruntime", "--min-duration", md,
                    "--events", ev, "--headless", video)
        assert r.returncode == 0, r.stderr
        got[md] = [json.loads(line) for line in ev.read_text().splitlines()]
    raw = [e["label"] for e in got["1"] if e["event"] == "classification"]
    assert raw == [e["label"] for e in got["0"] if e["event"] == "classification"]  # the raw labels are kept
    assert _changes(raw) >= 6  # the loop-backs flip the raw label
    assert _changes([e["reported_label"] for e in got["0"] if e["event"] == "classification"]) == _changes(raw)
    reported = [e["reported_label"] for e in got["1"] if e["event"] == "classification"]
    assert _changes(reported) == 1
    segs = [e for e in got["1"] if e["event"] == "segment"]
    assert [s["label"] for s in segs] == ["red left slow", "red right slow"]
    assert segs[0]["reason"] == "change" and segs[1]["reason"] == "end"
    assert segs[0]["end_frame"] + 1 == segs[1]["start_frame"] and 140 <= segs[1]["start_frame"] <= 175
    assert got["1"][-1]["event"] == "summary" and {x["label"] for x in got["1"][-1]["labels"]} == set(raw)
    r = run_cli("timeline", tmp_path / "e1.jsonl", "-o", tmp_path / "t.png")
    assert r.returncode == 0 and "1 lane, 2 segments" in r.stderr, r.stderr


def test_the_python_api_applies_the_same_hysteresis(synthetic_model, tmp_path):
    from actionnet import ActionNet, UsageError
    from actionnet.sources import open_source

    video = flicker_video(tmp_path / "flicker.mp4")
    with pytest.raises(UsageError, match="min_duration counts seconds"):
        net = ActionNet(model=str(synthetic_model), skip_frames=0, min_duration=1.0, engine="onnxruntime")
        with open_source(str(video)) as src:
            for frame, _ in src:
                net.classify(frame)
    net = ActionNet(model=str(synthetic_model), skip_frames=0, min_duration=1.0, fps=30.0, engine="onnxruntime")
    ids, raw = [], []
    with open_source(str(video)) as src:
        for frame, _ in src:
            class_id, _ = net.classify(frame)
            if net.last is not None:
                ids.append(class_id)
                raw.append(net.last.class_id)
    names = [net.get_class_desc(i) for i in ids]
    assert _changes(raw) >= 6 and _changes(names) == 1
    assert names[-1] == "red right slow" and "red left slow" in names
    (seg,) = net.finish()
    assert seg["label"] == "red right slow" and seg["reason"] == "end"
