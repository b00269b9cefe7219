"""Per-person mode end to end: two squares moving different ways each get their own label."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter, defaultdict

import numpy as np
import pytest

from actionnet.persons import PersonActionNet, square_crop
from conftest import run_cli
from detector_fakes import square_detector
from persons_video import CONTEXT, squares_frames

MOVERS = [("red", "right", 0.8, 40, 20), ("blue", "left", 0.8, 200, 90)]
EXPECTED = ["red right slow", "blue left slow"]


def _run(net, frames):
    events = []
    for i, f in enumerate(frames):
        events += net.update(f, i / 30)
    return events + net.finish()


def _labels_by_track(events):
    out = defaultdict(list)
    for e in events:
        if e["event"] == "classification":
            out[e["track_id"]].append((e["label"], e["box"]))
    return out


@pytest.mark.parametrize("movers", [MOVERS, [("red", "left", 0.8, 200, 20), ("red", "right", 0.8, 40, 90)]],
                         ids=["colours-and-directions", "same-colour-opposite-directions"])
def test_each_square_gets_its_own_label(tmp_path, synthetic_model, movers):
    det = square_detector(tmp_path / "sq.onnx")
    frames, truth = squares_frames(movers, frames=40)
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0, log=None) as net:
        calls = []
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: calls.append(len(x)) or infer(x, *a)
        events = _run(net, frames)
        assert net.batched
    per_track = _labels_by_track(events)
    assert len(per_track) == 2
    expected = [f"{c} {d} slow" for c, d, *_ in movers]
    for tid, items in per_track.items():
        y = items[0][1][1]
        want = expected[0] if abs(y - movers[0][4]) < 5 else expected[1]
        labels = Counter(label for label, _ in items)
        assert labels[want] >= 0.9 * len(items), (tid, want, labels)
        assert items[0][0] == want  # the very first window of the track already
    # both tracks' windows fill on the same frame: one engine call for both, every frame
    assert calls and all(n == 2 for n in calls), calls
    segments = [e for e in events if e["event"] == "segment"]
    assert {s["label"] for s in segments} >= set(expected)
    for s in segments:
        assert s["start_frame"] <= s["end_frame"] and s["start_time"] <= s["end_time"]


def test_followed_crops_lose_the_direction(tmp_path, synthetic_model):
    """Why crops are anchored by default: a crop re-centred on the box every frame shows a
    standing square, and the model cannot tell left from right any more."""
    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=30)
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0,
                         crop_mode="follow", log=None) as net:
        per_track = _labels_by_track(_run(net, frames))
    got = [Counter(lab for lab, _ in items).most_common(1)[0][0] for items in per_track.values()]
    assert sorted(got) != sorted(EXPECTED)


def test_track_timeout_frees_the_clip_buffer(tmp_path, synthetic_model):
    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=12)
    # the blue square leaves after 12 frames; the red one goes on alone
    solo, _ = squares_frames(MOVERS[:1], frames=30)
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0,
                         track_timeout=5 / 30, log=None) as net:  # 5 frames at 30 fps
        for i, f in enumerate(frames):
            net.update(f, i / 30)
        assert len(net.states) == 2 and not net._pool
        buffers = {id(st.buffer) for st in net.states.values()}
        events = []
        for i, f in enumerate(solo[12:]):
            events += net.update(f, (12 + i) / 30)
        assert len(net.states) == 1 and len(net._pool) == 1
        assert id(net._pool[0]) in buffers
        # the evicted track's open segment was closed when it went
        assert any(e["event"] == "segment" and e["label"] == "blue left slow" for e in events)


def test_square_crop_stays_inside_the_frame():
    assert square_crop((0, 0, 10, 20), 100, 200, 1.5) == (0, 0, 30)
    assert square_crop((190, 80, 200, 100), 100, 200, 1.5) == (170, 70, 30)
    assert square_crop((0, 0, 200, 100), 100, 200, 2.0) == (50, 0, 100)  # capped at the frame
    x0, y0, side = square_crop((90, 40, 110, 60), 100, 200, 2.0)
    assert (x0 + side / 2, y0 + side / 2, side) == (100, 50, 40)


def test_cli_persons_video_and_events(tmp_path, synthetic_model):
    from actionnet.export.synthetic import write_video

    frames, _ = squares_frames(MOVERS, frames=30)
    video = write_video(str(tmp_path / "two.mp4"), frames)
    det = square_detector(tmp_path / "sq.onnx")
    out, ev = tmp_path / "out.mp4", tmp_path / "people.jsonl"
    det_engine = "openvino" if importlib.util.find_spec("openvino") else "onnxruntime"  # each where asked
    r = run_cli("--persons", "--detector", det, "--model", synthetic_model, "--skip-frames", "0",
                "--crop-context", CONTEXT, "--threshold", "0", "--events", ev, "--timings",
                "--engine", "onnxruntime", "--detector-engine", det_engine, video, out)
    assert r.returncode == 0, r.stderr
    assert "batch up to 16" in r.stderr and "2 tracks" in r.stderr
    said = next(line for line in r.stderr.splitlines() if "per person: detector" in line)
    assert f"256x256, {det_engine}, every frame)" in said and "onnxruntime" in said.split("model", 1)[1], said
    for stage in ("decode", "detect", "track", "crop", "classify", "draw"):
        assert stage in r.stderr
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    cls = [e for e in events if e["event"] == "classification"]
    assert cls and all({"track_id", "box", "label", "confidence", "topk", "frame", "time"} <= e.keys() for e in cls)
    by_track = defaultdict(Counter)
    for e in cls:
        by_track[e["track_id"]][e["label"]] += 1
    winners = sorted(c.most_common(1)[0][0] for c in by_track.values())
    assert winners == sorted(EXPECTED)
    assert [e["event"] for e in events[-3:]] == ["segment", "segment", "summary"]  # closed at the end
    from actionnet.sources import open_source

    with open_source(str(out)) as src:
        assert src.frame_count == 30 or sum(1 for _ in src) == 30


def test_persons_mode_runs_without_torch(tmp_path, synthetic_model, lean_python):
    """The per-person runtime (detector, tracker, crops, batched engine) imports no torch."""
    import subprocess

    from actionnet.export.synthetic import write_video
    from test_lean_runtime import SCRIPT

    frames, _ = squares_frames(MOVERS, frames=16)
    video = write_video(str(tmp_path / "two.mp4"), frames)
    det = square_detector(tmp_path / "sq.onnx")
    ev = tmp_path / "ev.jsonl"
    r = subprocess.run([lean_python, "-c", SCRIPT, "--persons", "--detector",
                        str(det), "--model", str(synthetic_model), "--skip-frames=0", f"--crop-context={CONTEXT}",
                        "--threshold=0", "--events", str(ev), str(video)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
    labels = {e["label"] for e in map(json.loads, ev.read_text().splitlines()) if e["event"] == "classification"}
    assert labels == set(EXPECTED)


@pytest.mark.parametrize("batch", [1, 4])
def test_foreign_fixed_batch_models(tmp_path, batch):
    """A jetson-style foreign ONNX ([B, 3, T, H, W] fixed, float, host-normalised, labels from a
    file) works per person too: batch 1 is called once per track, a fixed batch of 4 gets padded
    calls; each track gets its own colour's label."""
    from onnx_models import colour_model

    model = colour_model(tmp_path / "colour.onnx", clip_length=4, size=16, batch=batch)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=12)
    # mean 0: the square fills 4 % of its crop, and jetson's Kinetics mean would outweigh it
    with PersonActionNet(str(model), str(det), labels=str(labels), skip_frames=0, context=CONTEXT, threshold=0.0,
                         mean=(0.0, 0.0, 0.0), log=None) as net:
        assert net.batched == (batch > 1) and net.normalize is not None
        calls = []
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: calls.append(x.shape) or infer(x, *a)
        per_track = _labels_by_track(_run(net, frames))
    assert calls and all(s[0] == batch for s in calls)
    n = sum(len(v) for v in per_track.values())
    assert len(calls) == (n if batch == 1 else n // 2)  # two tracks due together: one padded call
    got = {items[0][1][1] < 60: {lab for lab, _ in items} for items in per_track.values()}
    assert got == {True: {"red"}, False: {"blue"}}


def test_reconnect_resets_tracks_without_reusing_ids(tmp_path, synthetic_model):
    """A live source that reconnects (its ``generation`` changes) starts fresh tracks and clips:
    open segments are closed, buffers pooled, and new ids never repeat old ones."""
    from actionnet.outputs import EventSink
    from actionnet.pipeline import run
    from actionnet.sources import Source

    frames, _ = squares_frames(MOVERS, frames=24)

    class Flaky(Source):
        generation = 0
        fps = 30.0

        def __iter__(self):
            for i, f in enumerate(frames):
                if i == 12:
                    self.generation += 1
                yield f, i / 30

    det = square_detector(tmp_path / "sq.onnx")
    ev = tmp_path / "ev.jsonl"
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0,
                         log=None) as net:
        stats = run(Flaky(), net, events=EventSink(str(ev)))
    events = [json.loads(line) for line in ev.read_text().splitlines()]
    assert stats.frames == 24
    before = {e["track_id"] for e in events if e["event"] == "classification" and e["frame"] < 12}
    after = {e["track_id"] for e in events if e["event"] == "classification" and e["frame"] >= 12}
    assert len(before) == 2 and len(after) == 2 and not before & after
    closed_at_reconnect = [e for e in events if e["event"] == "segment" and e["end_frame"] < 12]
    assert {e["track_id"] for e in closed_at_reconnect} == before


def test_events_reader_that_goes_away_stops_the_persons_run(tmp_path, synthetic_model):
    """As in whole-frame mode: when the reader of ``--events=-`` leaves, the run stops as on Ctrl-C."""
    from actionnet.outputs import Events
    from actionnet.pipeline import run

    frames, _ = squares_frames(MOVERS, frames=40)

    class LeavingReader(Events):  # an EventSink whose pipe broke on the first write
        stopped = False
        written = 0

        def write(self, event):
            self.written += 1
            self.stopped = True

        def close(self):
            pass

    det = square_detector(tmp_path / "sq.onnx")
    events = LeavingReader()
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0,
                         log=None) as net:
        stats = run(((f, i / 30) for i, f in enumerate(frames)), net, events=events)
    assert events.written >= 1 and stats.stopped
    assert stats.frames < 40  # it stopped at the frame of the first event, not at the end


def test_per_person_mode_draws_the_frame_rate(tmp_path, synthetic_model):
    det = square_detector(tmp_path / "sq.onnx")
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, log=None) as net:
        blank = np.zeros((240, 320, 3), np.uint8)
        without = net.annotate(blank.copy(), None)
        drawn = net.annotate(blank.copy(), 12.3)
    assert not without.any()  # no person, no rate: nothing drawn
    assert drawn[:40, :120].any()  # the rate, top left as in whole-frame mode


def test_detect_every_keeps_ids_and_labels_on_a_real_video(synthetic_model):
    """The real YOLOv5n on every 3rd frame of people_walking.mp4 (one person walks in, stays,
    walks out; the next walks in): one track per person, each gets classifications, and the
    boxes carried by the Kalman prediction between detections stay on the person."""
    from actionnet.detector import Detector
    from actionnet.sources import open_source
    from actionnet.tracker import iou_matrix
    from conftest import shared_file

    weights, video = shared_file("weights/yolov5n.onnx"), shared_file("videos/people_walking.mp4")
    net = PersonActionNet(str(synthetic_model), str(weights), detect_every=3, skip_frames=0, cadence=4, threads=1,
                          fps=10.0, track_timeout=1.0, log=None)
    events, coasted, frames, spans = [], {}, {}, {}
    with open_source(str(video)) as src:
        for i, (f, t) in enumerate(src):
            if i < 60:
                continue
            if i > 300:
                break
            events += net.update(f, t)
            for st in net.visible():
                spans.setdefault(st.id, [i, i])[1] = i
            k = net.frames - 1
            if k % 3 and k % 9 == 4:  # a sample of frames the detector skipped
                coasted[i] = [st.box.copy() for st in net.visible()]
                frames[i] = f
    events += net.finish()
    labelled = _labels_by_track(events)
    # one id per person: the first is on screen from about frame 70 to 195, the second from 230
    (a, (a0, a1)), (b, (b0, b1)) = sorted(spans.items())
    assert len(spans) == 2 and a0 < 80 and 185 < a1 < 215 and 220 < b0 < 245 and b1 == 300, spans
    assert sorted(labelled) == [a, b] and all(len(v) >= 3 for v in labelled.values()), \
        {k: len(v) for k, v in labelled.items()}
    det = Detector(str(weights), threads=1, log=None)
    checked, missed = 0, 0
    for i, boxes in coasted.items():
        truth = det(frames[i]).boxes
        if boxes:  # every carried box is on a person
            assert len(truth) and iou_matrix(np.array(boxes), truth).max(axis=1).min() > 0.6, f"frame {i}"
            checked += 1
        missed += len(truth) > len(boxes)
    assert checked >= 10 and missed <= 3, (checked, missed)  # misses only while a track confirms or leaves


def test_default_cadence_refreshes_each_label_about_twice_a_second(tmp_path, synthetic_model):
    det = square_detector(tmp_path / "sq.onnx")
    for fps, skip, want in ((30.0, 1, 8), (25.0, 0, 12), (10.0, 1, 2), (2.0, 1, 1)):
        net = PersonActionNet(str(synthetic_model), str(det), skip_frames=skip, fps=fps, threads=1, log=None)
        assert net.cadence == want and "each person classified every" in net.describe()
        assert abs(want * (skip + 1) / fps - 0.5) <= 0.5 * (skip + 1) / fps + 1e-9 or want == 1
        net.close()
    net = PersonActionNet(str(synthetic_model), str(det), skip_frames=1, cadence=3, fps=30.0, threads=1, log=None)
    assert net.cadence == 3  # --cadence overrides
    r = run_cli("--help")
    text = " ".join(r.stdout.split())
    assert "refreshed about twice a second" in text and "--detect-every" in text
    r = run_cli("--persons", "--detector", det, "--model", synthetic_model, "--detect-every", "0", "in.mp4")
    assert r.returncode == 2 and "--detect-every: expected auto or a whole number >= 1" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# --detect-every auto: keeping up with a live source (issue 27)


def _drive(ctrl, frames, detect_s, rest_s):
    """Feed ``ctrl`` ``frames`` frames, detecting on every ``ctrl.n``-th as the analyser does;
    ``detect_s`` and ``rest_s`` are callables of the frame index. The N in force per frame and
    the changes (frame, N)."""
    ns, changes, next_detect = [], [], 0
    for i in range(frames):
        d = None
        if i >= next_detect:
            next_detect, d = i + ctrl.n, detect_s(i)
        n = ctrl.step(rest_s(i), d)
        if n is not None:
            changes.append((i, n))
            next_detect = min(next_detect, i + n)
        ns.append(ctrl.n)
    return ns, changes


def test_detect_every_rises_when_the_detector_is_slow_and_falls_back_when_it_is_fast():
    from actionnet.persons import DetectEvery

    c = DetectEvery(28.0)  # a 35.7 ms budget
    ns, changes = _drive(c, 200, lambda i: 0.045, lambda i: 0.015)
    # 45/N + 15 ms fits three quarters of the budget (26.8 ms) from N = 4 on
    assert changes[0][1] == 4 and ns[-1] == 4 and c.keeps_up and len(changes) == 1, changes
    assert "detect every 4th frame to keep up with 28 fps (detector 45 ms" in c.say()
    ev = c.event(changes[0][0], 1.0)
    assert ev["event"] == "adapt" and ev["detect_every"] == 4 and ev["budget_ms"] == 35.7 and ev["keeps_up"]
    ns, more = _drive(c, 400, lambda i: 0.005, lambda i: 0.015)  # a faster detector (another engine)
    assert more and more[-1][1] == 1 and ns[-1] == 1, more
    assert c.say().startswith("detect every frame")
    ns, again = _drive(c, 400, lambda i: 0.030, lambda i: 0.015)  # slower again: up, not at once
    assert again and ns[-1] == 3 and ns[:10] == [1] * 10, again  # 30/3 + 15 = 25 ms


def test_detect_every_does_not_flap_on_noisy_times():
    """25 fps (40 ms a frame); detector 50 ms +- 6, other work 8 ms +- 3 plus a classification
    burst of 28 ms every 14th frame: N = 3 costs 26.7 ms on average, within three quarters of the
    budget, N = 2 would cost 35. N settles on 3 within the first seconds and never moves again."""
    from actionnet.persons import DetectEvery

    rng = np.random.default_rng(0)
    c = DetectEvery(25.0)
    n = 3000
    detect = rng.normal(0.050, 0.006, n).clip(0.02)
    rest = rng.normal(0.008, 0.003, n).clip(0.0) + np.where(np.arange(n) % 14 == 0, 0.028, 0.0)
    ns, changes = _drive(c, n, lambda i: detect[i], lambda i: rest[i])
    assert len(changes) <= 2 and changes[-1][0] < 200 and set(ns[200:]) == {3}, changes


def test_detect_every_stays_in_bounds_and_says_when_it_cannot_keep_up():
    from actionnet.persons import DetectEvery

    c = DetectEvery(30.0, low=1, high=8)
    ns, changes = _drive(c, 300, lambda i: 1.0, lambda i: 0.010)  # a one-second detector
    assert max(ns) == 8 and changes[-1][1] == 8 and not c.keeps_up
    assert c.say().startswith("cannot keep up with 30 fps even detecting every 8th frame")
    assert c.event(0, 0.0)["keeps_up"] is False
    c = DetectEvery(30.0)
    ns, changes = _drive(c, 300, lambda i: 0.001, lambda i: 0.050)  # the rest alone is over budget
    assert set(ns[changes[0][0]:]) == {8} and not c.keeps_up
    c = DetectEvery(30.0)
    ns, changes = _drive(c, 300, lambda i: 0.0001, lambda i: 0.0001)
    assert min(ns) == 1 and changes == [(changes[0][0], 1)] and c.keeps_up


class _SlowDetector:
    """The detector, ``seconds`` slower per call."""

    def __init__(self, det, seconds):
        self.det, self.seconds, self.calls = det, seconds, []

    def __call__(self, frame):
        import time

        time.sleep(self.seconds)
        self.calls.append(frame)
        return self.det(frame)

    def __getattr__(self, name):
        return getattr(self.det, name)


def test_auto_detects_less_often_when_the_detector_is_slower_than_the_frames(tmp_path, synthetic_model):
    """A detector that sleeps 60 ms on a 30 fps source (33 ms a frame) cannot run on every frame:
    the analyser chooses N >= 2, writes it as an event and says it; a file (not live) keeps N = 1."""
    import io

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=90)
    log = io.StringIO()
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threshold=0.0, threads=1,
                         fps=30.0, live=True, log=log) as net:
        net.detector = slow = _SlowDetector(net.detector, 0.06)
        events = _run(net, frames)
        assert "every 1 to 8 frames as it keeps up (--detect-every auto)" in net.describe()
    adapt = [e for e in events if e["event"] == "adapt"]
    assert adapt and adapt[0]["detect_every"] >= 2 and adapt[0]["detector_ms"] >= 60, adapt
    assert f"actionnet: detect every {adapt[0]['detect_every']}" in log.getvalue() \
        or "actionnet: cannot keep up" in log.getvalue(), log.getvalue()
    assert log.getvalue().count("keep up with 30 fps") == len(adapt)  # each choice said once
    assert len(slow.calls) < 0.75 * len(frames)
    assert {e["track_id"] for e in events if e["event"] == "classification"}  # still labelled
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, context=CONTEXT, threads=1, log=None) as net:
        assert net.adapt is None and net.detect_every == 1  # a file: every frame, as before


def test_cli_live_per_person_run_writes_and_says_its_detect_every(tmp_path, synthetic_model):
    """``--live`` per person: auto by default, its choice in the events and once on stderr; a fixed
    number, or a file played as a file, adapts nothing."""
    from actionnet.export.synthetic import write_video
    from actionnet.persons import every_nth

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=120)
    video = write_video(str(tmp_path / "sq.mp4"), frames, fps=30)
    ev = tmp_path / "ev.jsonl"
    common = ("--persons", "--detector", det, "--model", synthetic_model, "--skip-frames=0", "--headless",
              "--crop-context", str(CONTEXT), "--threads=1", "--events", ev)
    r = run_cli(*common, "--live", video)
    assert r.returncode == 0, r.stderr
    adapt = [e for e in map(json.loads, ev.read_text().splitlines()) if e["event"] == "adapt"]
    assert adapt and all(1 <= e["detect_every"] <= 8 for e in adapt), adapt
    said = [line for line in r.stderr.splitlines() if "keep up with 30 fps" in line]
    assert len(said) == len(adapt) and every_nth(adapt[0]["detect_every"]) in said[0], r.stderr
    for extra in (("--live", "--detect-every", "2"), ()):  # a fixed N, and a file played as a file
        r = run_cli(*common, *extra, video)
        assert r.returncode == 0, r.stderr
        assert not [line for line in ev.read_text().splitlines() if '"adapt"' in line] and "keep up" not in r.stderr


def test_background_runs_one_call_at_a_time_and_hands_back_its_result_or_error():
    import threading

    from actionnet.background import Background

    bg = Background()
    gate = threading.Event()
    bg.submit(lambda x: gate.wait(5) and x * 2, 21)
    assert bg.busy and bg.result() is None
    with pytest.raises(RuntimeError):
        bg.submit(lambda: None)  # never a queue
    gate.set()
    value, seconds = bg.result(wait=True)
    assert value == 42 and seconds >= 0 and not bg.busy
    bg.submit(lambda: 1 / 0)
    with pytest.raises(ZeroDivisionError):  # raised in the caller's thread
        bg.result(wait=True)
    gate.clear()
    done = []
    bg.submit(lambda: gate.wait(5) and done.append(1))
    threading.Timer(0.1, gate.set).start()
    bg.close()  # a running call finishes before close returns (its engine is freed next)
    assert done == [1]


def test_live_per_person_classifies_in_the_background_without_holding_frames(tmp_path, synthetic_model):
    """A live source: a classifier call of 150 ms (five frame periods) runs beside the frame loop.
    No update waits for it; each classification still reports the frame, time and box of its own
    clip; people due while the call runs get their newest clip classified next; the labels are
    the synchronous run's; finish() reports the call still running."""
    import time

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=60)
    options = dict(skip_frames=0, cadence=3, context=CONTEXT, threshold=0.0, log=None, threads=1)
    with PersonActionNet(str(synthetic_model), str(det), **options) as net:
        sync = _run(net, frames)
    with PersonActionNet(str(synthetic_model), str(det), live=True, detect_every=1, **options) as net:
        assert net.background is not None
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: time.sleep(0.15) or infer(x, *a)
        events, slowest, boxes = [], 0.0, {}
        start = time.perf_counter()
        for i, f in enumerate(frames):  # at 30 fps, as a camera gives them
            time.sleep(max(0.0, start + i / 30 - time.perf_counter()))
            t = time.perf_counter()
            events += net.update(f, i / 30)
            slowest = max(slowest, time.perf_counter() - t)
            boxes.update({(st.id, i): [round(float(v), 1) for v in st.box] for st in net.visible()})
        last = net.background.busy
        events += net.finish()
    assert slowest < 0.1, slowest  # the frame loop never waited for a 150 ms call
    cls = [e for e in events if e["event"] == "classification"]
    ref = {(e["track_id"], e["frame"]): e for e in sync if e["event"] == "classification"}
    assert len(ref) / 3 <= len(cls) < len(ref)  # fewer labels, not frames held back
    assert last and cls[-1]["frame"] <= len(frames) - 1  # the running call was reported at the end
    for e in cls:
        assert e["box"] == boxes[(e["track_id"], e["frame"])]  # the box of the clip's last frame
        assert e["time"] == pytest.approx(e["frame"] / 30, abs=1e-4)
        if (e["track_id"], e["frame"]) in ref:  # the same clip: the same scores as in the loop
            assert e["label"] == ref[(e["track_id"], e["frame"])]["label"]
            assert e["topk"] == ref[(e["track_id"], e["frame"])]["topk"]
    by_track = defaultdict(list)
    for e in cls:
        by_track[e["track_id"]].append(e["frame"])
    assert len(by_track) == 2 and all(f == sorted(f) for f in by_track.values())


def _live_run(net, frames):
    """Feed ``frames`` at 30 fps, as a camera gives them; the events, finish()'s included."""
    import time

    events, start = [], time.perf_counter()
    for i, f in enumerate(frames):
        time.sleep(max(0.0, start + i / 30 - time.perf_counter()))
        events += net.update(f, i / 30)
    return events + net.finish()


def test_live_background_serves_the_longest_waiting_person_first(tmp_path, synthetic_model):
    """One person a call (a fixed batch-1 model), a call as long as the cadence: the person who
    waited longest goes next, so nobody is left out."""
    import time

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=90)
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=0, cadence=6, context=CONTEXT, threshold=0.0,
                         log=None, threads=1, max_batch=1, live=True, detect_every=1) as net:
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: time.sleep(0.19) or infer(x, *a)
        events = _live_run(net, frames)
    per_track = Counter(e["track_id"] for e in events if e["event"] == "classification")
    assert len(per_track) == 2 and min(per_track.values()) >= 3, per_track


def test_live_background_reports_the_clips_own_stored_frame(tmp_path, synthetic_model):
    """With --skip-frames 1 only even frames are stored: a person sent when the thread frees up
    on an odd frame is reported with its clip's last stored frame, time and box."""
    import time

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames(MOVERS, frames=60)
    with PersonActionNet(str(synthetic_model), str(det), skip_frames=1, cadence=2, context=CONTEXT, threshold=0.0,
                         log=None, threads=1, live=True, detect_every=1) as net:
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: time.sleep(0.15) or infer(x, *a)
        boxes, events, start = {}, [], time.perf_counter()
        for i, f in enumerate(frames):
            time.sleep(max(0.0, start + i / 30 - time.perf_counter()))
            events += net.update(f, i / 30)
            boxes.update({(st.id, i): [round(float(v), 1) for v in st.box] for st in net.visible()})
        events += net.finish()
    cls = [e for e in events if e["event"] == "classification"]
    assert len(cls) >= 4
    for e in cls:
        assert e["frame"] % 2 == 0, e["frame"]
        assert e["box"] == boxes[(e["track_id"], e["frame"])]
