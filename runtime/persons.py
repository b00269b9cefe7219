"""Per-person action recognition: detect, track, crop one clip per track, classify all in one batch.

Each confirmed track owns a :class:`~actionnet.framebuffer.FrameBuffer` (the whole-frame design:
preallocated, mirrored ring, contiguous window), its own :class:`~actionnet.scores.Scorer`
(top-k, threshold and smoothing are per person) and its latest classification. Everything is
keyed by track id, so a label can never be drawn on another person's box when people come and
go (the Ultralytics example indexes labels by position in the current batch, which shifts).
Evicted tracks hand their buffer back to a pool: memory stays bounded on long streams.

Clocks: one sampling clock for the stream (``skip_frames``) so that every track's clip has the
same stride as a whole-frame clip; each track's buffer has its own cadence counter.

Crops are squares of ``context`` x the box's longer side around the person, shifted to stay
inside the frame (no padding, no allocation). With ``crop_mode="anchored"`` (default) a track's
crop stays put while the person stays inside it and is re-centred, ahead of the person's motion,
only when they leave it or change size a lot: the clip then keeps the person's motion relative
to the scene, which is what action models are trained on (a crop that follows the box every
frame, ``crop_mode="follow"``, the Ultralytics example's way, turns walking into standing).

A pose detector (:mod:`actionnet.pose`) adds each track's keypoints of the current frame, a
posture (:mod:`actionnet.posture`) and a drawn skeleton (:mod:`actionnet.skeleton`); events then
carry ``keypoints`` and ``posture``. An image model (clip length 1) classifies every person on
every frame through the same buffers.
"""

from __future__ import annotations

import collections
import sys
import time as _time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .background import Background
from .config import ClassifierOptions, PersonOptions, person_cadence
from .framebuffer import FrameBuffer
from .model import open_classifier
from .overlay import Overlay
from .person_overlay import PersonOverlay
from .pipeline import Analyser, StageTimer
from .pose import match_keypoints, open_detector
from .posture import posture
from .scores import Classification, Scorer
from .segments import LabelTracker, Segment, SegmentSummary  # noqa: F401 (Segment moved there)
from .skeleton import draw_poses
from .streaming import StreamState, for_model as streaming_for
from .tracker import ByteTracker, Track


@dataclass
class PersonState:
    """What the runtime knows about one track."""

    id: int
    buffer: FrameBuffer
    scorer: Scorer
    box: np.ndarray = None
    crop: Optional[tuple] = None  # (x0, y0, side) in frame pixels
    last: Optional[Classification] = None
    labels: Optional[LabelTracker] = None  # hysteresis and the open segment (runtime/segments.py)
    seen: bool = False  # matched on the current frame
    keypoints: Optional[np.ndarray] = None  # [K, 3] frame pixels, from a pose detector; None otherwise
    posture: Optional[str] = None  # standing, sitting, lying (actionnet.posture), or None
    stream: Optional[StreamState] = None  # a streaming model's state set for this person
    waiting: Optional[int] = None  # frame it fell due while the background classifier was busy (live sources)
    clip_at: Optional[tuple] = None  # (frame, time, box, keypoints, posture) of the last stored frame

    @property
    def segment(self) -> Optional[Segment]:
        return self.labels.segment if self.labels is not None else None

    @property
    def reported(self) -> Optional[Classification]:
        """The latest classification as the hysteresis reports it (what the overlay draws)."""
        return self.labels.shown(self.last) if self.labels is not None else self.last


def square_crop(box, frame_h: int, frame_w: int, context: float):
    """(x0, y0, side): a square of ``context`` x the box's longer side centred on the box,
    shifted to lie inside the frame and no bigger than it."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = int(round(max(x2 - x1, y2 - y1, 1.0) * context))
    side = max(2, min(side, frame_h, frame_w))
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    x0 = int(round(min(max(cx - side / 2, 0), frame_w - side)))
    y0 = int(round(min(max(cy - side / 2, 0), frame_h - side)))
    return x0, y0, side


AUTO_DETECT_MAX = 8  # --detect-every auto: at most every 8th frame (a quarter second at 30 fps) coasts


def ordinal(n: int) -> str:
    return f"{n}{'tsnrhtdd'[(n // 10 % 10 != 1) * (n % 10 < 4) * n % 10::4]}"


def every_nth(n: int) -> str:
    return "every frame" if n == 1 else f"every {ordinal(n)} frame"


class DetectEvery:
    """``--detect-every auto``: how often the detector runs on a live source, from measured times.

    A live source gives a frame every ``budget = 1 / fps`` seconds; a frame that costs more is
    paid for by dropping later ones. Detection is most of the per-person cost, and between
    detections the tracker's Kalman prediction carries every box (``--detect-every N``), so the
    cheapest way to keep up is to detect less often: with a detector call of ``d`` seconds and
    ``r`` seconds of the rest of each frame's work (tracking, crops, classification, drawing,
    encoding), a frame costs ``d / N + r`` on average. N is the smallest within ``low..high``
    whose frames take at most ``fall`` x budget: it keeps up, with room for what the times miss
    (decoding on the capture thread shares the cores), while detecting as often as the machine
    allows. The classification cadence is not touched: each person is still labelled about
    twice a second.

    Why it does not flap: both times are means over a window (the last ``window`` detector calls,
    a few seconds: a call that overlaps the background classifier takes twice as long, and eight
    calls swung the mean from 23 to 54 ms on two cores; about a second of frames for the rest,
    which spans a classification burst or two); N rises
    only when a frame at N takes more than ``rise`` x budget and falls only when one at N - 1
    would take at most ``fall`` x budget, so going back and forth needs the times to swing by
    the gap between the two; and a change needs its condition on consecutive frames (half a
    second to rise, since frames are being lost; two seconds to fall). Nothing is decided before
    ``warmup`` detector calls (the first ones pay for allocation and caches).

    :meth:`step` is fed one frame's times and returns the new N when it changed (the first
    decision counts as a change, so the choice is said once), else None.
    """

    def __init__(self, fps: float, low: int = 1, high: int = 8, rise: float = 0.9, fall: float = 0.75,
                 window: int = 24, warmup: int = 3):
        self.fps = float(fps or 30.0)
        self.budget = 1.0 / self.fps
        self.low, self.high, self.rise, self.fall = low, high, rise, fall
        self.n = low
        self.decided = False
        self.keeps_up = True
        self._detect: collections.deque = collections.deque(maxlen=window)
        self._rest: collections.deque = collections.deque(maxlen=max(4, int(round(self.fps))))
        self._warmup = warmup
        self._hold_rise = max(2, int(round(self.fps * 0.5)))
        self._hold_fall = max(4, int(round(self.fps * 2.0)))
        self._up = self._down = 0

    @property
    def detector_s(self) -> float:
        return sum(self._detect) / len(self._detect) if self._detect else 0.0

    @property
    def rest_s(self) -> float:
        return sum(self._rest) / len(self._rest) if self._rest else 0.0

    def cost(self, n: int) -> float:
        """Seconds a frame costs on average when the detector runs on every n-th frame."""
        return self.detector_s / n + self.rest_s

    def fitting(self, share: float) -> int:
        """The smallest N in bounds whose frames fit ``share`` of the budget (``high`` if none)."""
        for n in range(self.low, self.high + 1):
            if self.cost(n) <= share * self.budget:
                return n
        return self.high

    def step(self, rest_s: Optional[float], detect_s: Optional[float] = None) -> Optional[int]:
        if detect_s is not None:
            if self._warmup > 0:
                self._warmup -= 1
            else:
                self._detect.append(detect_s)
        if rest_s is not None:
            self._rest.append(rest_s)
        if not self._detect or len(self._rest) < self._rest.maxlen:
            return None
        if not self.decided:  # the first choice, said once
            self.decided = True
            return self._set(self.fitting(self.fall))
        self._up = self._up + 1 if self.cost(self.n) > self.rise * self.budget and self.n < self.high else 0
        self._down = self._down + 1 if self.n > self.low and self.cost(self.n - 1) <= self.fall * self.budget else 0
        if self._up >= self._hold_rise:
            return self._set(max(self.n + 1, self.fitting(self.fall)))
        if self._down >= self._hold_fall:
            return self._set(self.fitting(self.fall))
        self.keeps_up = self.cost(self.n) <= self.budget
        return None

    def _set(self, n: int) -> int:
        self.n = max(self.low, min(self.high, n))
        self._up = self._down = 0
        self.keeps_up = self.cost(self.n) <= self.budget
        return self.n

    def say(self) -> str:
        """The line for stderr: what was chosen, from what, and whether it keeps up."""
        d, budget, rest = 1000 * self.detector_s, 1000 * self.budget, 1000 * self.rest_s
        if self.keeps_up:
            return (f"detect {every_nth(self.n)} to keep up with {self.fps:.0f} fps "
                    f"(detector {d:.0f} ms, other work {rest:.0f} ms a frame, budget {budget:.0f} ms)")
        return (f"cannot keep up with {self.fps:.0f} fps even detecting {every_nth(self.n)} (detector {d:.0f} ms, "
                f"other work {rest:.0f} ms a frame, budget {budget:.0f} ms): frames will be dropped; a smaller "
                f"detector or model, fewer people (--max-batch) or a lower --input-rate would keep up")

    def event(self, frame: int, time: float) -> dict:
        return {"event": "adapt", "frame": frame, "time": round(time, 4), "detect_every": self.n,
                "fps": round(self.fps, 2), "detector_ms": round(1000 * self.detector_s, 1),
                "other_ms": round(1000 * self.rest_s, 1), "budget_ms": round(1000 * self.budget, 1),
                "keeps_up": self.keeps_up}


class PersonActionNet(Analyser):
    """Detector + tracker + one clip per person + a batched action model.

    ``update(frame, time)`` returns the events of this frame (classifications and closed
    segments); ``states`` holds every live track's state for drawing. Keyword arguments are
    :class:`~actionnet.config.ClassifierOptions` and :class:`~actionnet.config.PersonOptions`;
    ``track_timeout`` is in seconds, turned into frames at ``fps`` (the source's frame rate).
    """

    def __init__(self, model: Optional[str], detector: str, labels: Optional[str] = None,
                 input_blob: Optional[str] = None, output_blob: Optional[str] = None, threshold: float = 0.01,
                 top_k: int = 5, skip_frames: Optional[int] = None, cadence: Optional[int] = None, smoothing: float = 0.0,
                 engine: str = "auto", threads: Optional[int] = None, person_conf: float = 0.25,
                 nms_iou: float = 0.45, detector_classes=("person",), detector_layout: Optional[str] = None,
                 track_timeout: float = 1.0, context: float = 1.2, crop_mode: str = "anchored", max_batch: int = 16,
                 log=sys.stderr, precision: Optional[str] = None, network: Optional[str] = "resnet-18",
                 fps: float = 30.0, detect_every=None, detector_engine: Optional[str] = None, live: bool = False,
                 background: Optional[bool] = None, **overrides):
        options = ClassifierOptions(network=network, model=model, labels=labels, input_blob=input_blob,
                                    output_blob=output_blob, threshold=threshold, top_k=top_k,
                                    skip_frames=skip_frames, cadence=cadence, smoothing=smoothing, engine=engine,
                                    threads=threads, precision=precision, **overrides).validate()
        p = self.options = PersonOptions(detector=detector, person_conf=person_conf, nms_iou=nms_iou,
                                         detector_classes=tuple(detector_classes), detector_layout=detector_layout,
                                         track_timeout=track_timeout, context=context, crop_mode=crop_mode,
                                         max_batch=max_batch, detect_every=detect_every,
                                         detector_engine=detector_engine).validate()
        self.detector = open_detector(detector, conf=person_conf, iou=nms_iou, classes=p.detector_classes,
                                      layout=detector_layout, engine=detector_engine or engine, threads=threads,
                                      precision=precision, log=log)
        try:
            self.classifier = c = open_classifier(options, log)
        except BaseException:
            self.detector.close()
            raise
        self.engine, self.spec, self.skip_frames = c.engine, c.spec, c.skip_frames
        s = self.spec
        # --detect-every auto (the default for a live source): chosen and adjusted from measured
        # times (DetectEvery); a file keeps every frame unless told, so its results stay exact
        auto = detect_every == "auto" or (detect_every is None and live)
        self.adapt = DetectEvery(fps, high=AUTO_DETECT_MAX) if auto else None
        detect_every = 1 if auto or detect_every is None else int(detect_every)
        self.log = log
        self.track_timeout, self.fps = track_timeout, float(fps or 30.0)
        self.tracker = ByteTracker(high=max(0.5, person_conf), low=min(0.1, person_conf),
                                   new_track=max(0.5, person_conf), max_age=self._max_age(detect_every))
        if cadence is None:  # a streaming model's label costs a fraction of a clip: one per stored frame
            cadence = 1 if s.states else person_cadence(fps, self.skip_frames)
        self.cadence = cadence
        self.detect_every = detect_every
        self._next_detect = 0  # the frame index of the next detection
        self._work = None  # the timer's non-detection seconds when the previous frame came in
        self.context, self.crop_mode = context, crop_mode
        self.prepare = c.prepare
        batch_dim = self.engine.input.shape[0]
        # A fixed batch axis (foreign ONNX, e.g. jetson-inference's [1, 3, 16, 112, 112]) is
        # honoured: batch 1 means one call per person; a fixed B > 1 gets its calls padded to B.
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.max_batch = self.fixed_batch or max_batch
        self.batched = self.max_batch > 1
        self.normalize = c.normalizer(batch=self.max_batch)
        if self.normalize is None:
            self._batch = np.empty((self.max_batch, s.clip_length, s.height, s.width, 3), np.uint8)
        self.overlay = PersonOverlay()
        self.fps_overlay = Overlay()
        self.states: Dict[int, PersonState] = {}
        self.stream = streaming_for(self.engine, s, self.max_batch)  # None for a clip model
        self._pool: List[FrameBuffer] = []
        self.timer = StageTimer()
        self.frames = 0
        self.classifications = 0
        self.min_duration = c.options.min_duration
        self.segment_summary = SegmentSummary()
        # A live source classifies on a thread of its own (runtime/background.py): the frame loop
        # never waits for a clip. Files stay exact (each label on its own frame); a streaming
        # model's states step in order on every stored frame, so it stays in the loop too.
        if background is None:
            background = live and self.stream is None
        self.background = Background() if background and self.stream is None else None

    def _max_age(self, detect_every: int) -> int:
        """The tracker ages tracks on detection frames only (coasting is no evidence of
        absence): ``--track-timeout`` seconds in detection frames."""
        return int(round(self.track_timeout * self.fps / detect_every))

    def _waiting(self) -> bool:
        return any(st.waiting is not None for st in self.states.values())

    def _adapt(self, detect_s: Optional[float], index: int, time: float, events: list) -> None:
        """Feed ``--detect-every auto`` this frame's times; on a change, say it and write it."""
        # the frame loop's own time: not the wait for frames, not the background classifier's
        work = sum(v for k, v in self.timer.total.items() if k not in ("detect", "decode", "classify")
                   or (k == "classify" and self.background is None))
        rest, self._work = (None if self._work is None else work - self._work), work
        n = self.adapt.step(rest, detect_s)
        if n is None:
            return
        if n != self.detect_every:
            self._next_detect = min(self._next_detect, index + n)
        self.detect_every = n
        self.tracker.max_age = self._max_age(n)
        if self.log is not None:
            print(f"actionnet: {self.adapt.say()}", file=self.log)
        events.append(self.adapt.event(index, time))

    # -- per-track state ------------------------------------------------------------------
    def _state(self, track: Track) -> PersonState:
        st = self.states.get(track.id)
        if st is None:
            s = self.spec
            buf = self._pool.pop() if self._pool else FrameBuffer(s.clip_length, (s.height, s.width, 3), np.uint8,
                                                                   0, self.cadence)
            buf.reset()
            st = PersonState(track.id, buf, self.classifier.scorer(),
                             labels=LabelTracker(self.min_duration, track.id, self.segment_summary))
            if self.stream is not None:
                st.stream = self.stream.new_state()
            self.states[track.id] = st
        return st

    def _evict(self, tid: int, events: list, reason: str = "evicted") -> None:
        st = self.states.pop(tid, None)
        if st is None:
            return
        events += st.labels.close(reason)
        self._pool.append(st.buffer)  # freed for the next person: no growth on long streams
        if st.stream is not None:
            self.stream.release(st.stream)

    def _crop_box(self, st: PersonState, track: Track, shape):
        h, w = shape[:2]
        box = st.box
        if self.crop_mode == "follow" or st.crop is None:
            return square_crop(box, h, w, self.context)
        x0, y0, side = st.crop
        want = square_crop(box, h, w, self.context)[2]
        inside = box[0] >= x0 and box[1] >= y0 and box[2] <= x0 + side and box[3] <= y0 + side
        if inside and 0.7 * side <= want <= 1.4 * side:
            return st.crop
        # re-centre ahead of the motion: where the person will be half a window from now
        lead = (self.spec.clip_length - 1) * (self.skip_frames + 1) / 2
        vx, vy = track.mean[4] * lead, track.mean[5] * lead
        room = max(0.0, (want - max(box[2] - box[0], box[3] - box[1])) / 2)
        vx, vy = float(np.clip(vx, -room, room)), float(np.clip(vy, -room, room))
        return square_crop((box[0] + vx, box[1] + vy, box[2] + vx, box[3] + vy), h, w, self.context)

    # -- the stream -----------------------------------------------------------------------
    def update(self, frame: np.ndarray, time: float = 0.0) -> list:
        """Feed one BGR frame; the events it produced (classification and segment dicts)."""
        clock = _time.perf_counter
        index = self.frames
        self.frames += 1
        events: list = []
        self._collect(events)
        t0 = clock()
        dets = None  # frames the detector skips keep each person's last keypoints
        if index >= self._next_detect:
            self._next_detect = index + self.detect_every
            dets = self.detector(frame)
            t1 = clock()
            tracks, evicted = self.tracker.update(dets.boxes, dets.scores, dets.classes)
        else:  # --detect-every: the Kalman prediction carries every box to this frame
            t1 = t0
            tracks, evicted = self.tracker.coast(), ()
        for tid in evicted:
            self._evict(tid, events)
        for st in self.states.values():
            st.seen = False
        t2 = clock()
        self.timer.add("detect", t1 - t0)
        self.timer.add("track", t2 - t1)
        sampled = index % (self.skip_frames + 1) == 0
        due: List[PersonState] = []
        poses = match_keypoints([tr.box for tr in tracks], dets) if dets is not None else [None] * len(tracks)
        for tr, kp in zip(tracks, poses):  # kp: None for a plain detector
            st = self._state(tr)
            st.seen = True
            st.box = tr.box
            if dets is not None:
                st.keypoints = kp
                st.posture = posture(kp) if kp is not None else None
            if not sampled:
                continue
            st.crop = self._crop_box(st, tr, frame.shape)
            x0, y0, side = st.crop
            self.prepare(frame[y0:y0 + side, x0:x0 + side], st.buffer.slot())
            st.buffer.commit()
            if self.background is not None:
                st.clip_at = (index, time, st.box, st.keypoints, st.posture)
            if st.buffer.due() or self.stream is not None:  # a stream steps on every stored frame
                due.append(st)
        t3 = clock()
        self.timer.add("crop", t3 - t2)
        if due and self.background is None:
            self._classify(due, index, time, events)
            self.timer.add("classify", clock() - t3)
        elif self.background is not None and (due or self._waiting()):
            self._classify_behind(due, index, time)
            self.timer.add("submit", clock() - t3)
        if self.adapt is not None:
            self._adapt(t1 - t0 if dets is not None else None, index, time, events)
        return events

    def _input(self, chunk: List[PersonState], copy: bool) -> np.ndarray:
        """The classifier's input for ``chunk``: each person's window, normalised or packed into
        the preallocated batch (one person with a raw-uint8 model and no ``copy``: the ring's own
        contiguous view)."""
        n = len(chunk)
        if self.normalize is None and n == 1 and self.fixed_batch in (None, 1) and not copy:
            return chunk[0].buffer.window()[None]
        if self.normalize is None:
            x = self._batch[:n]
            for j, st in enumerate(chunk):
                x[j] = st.buffer.window()
        else:
            for j, st in enumerate(chunk):
                self.normalize(st.buffer.window(), j)
            x = self.normalize.out[:n]
        if self.fixed_batch and n < self.fixed_batch:  # pad with the last clip; its scores are ignored
            full = self._batch if self.normalize is None else self.normalize.out
            full[n:] = full[n - 1]
            x = full
        return x

    def _classify(self, due: List[PersonState], index: int, time: float, events: list) -> None:
        if self.background is not None:
            return self._classify_behind(due, index, time)
        for i in range(0, len(due), self.max_batch):
            chunk = due[i:i + self.max_batch]
            x = self._input(chunk, copy=False)
            if self.stream is not None:
                out = self.stream.step(x, [st.stream for st in chunk])
            else:
                out = self.engine.infer(x, self.spec.output_name)
            for j, st in enumerate(chunk):
                if self.stream is not None and not st.buffer.due():
                    continue  # stepped, not reported (--cadence)
                self._report(st, out[j], index, time, st.box, st.keypoints, st.posture, events)

    def _classify_behind(self, due: List[PersonState], index: int, time: float) -> None:
        """A live source: the clips go to the background thread and the frame loop goes on
        (runtime/background.py). A person due while the thread is busy waits, and then gets its
        newest clip classified, the longest-waiting first (so that a call holding fewer people
        than wait never leaves one out): labels come later, never frames dropped for them. Each
        classification carries its clip's last stored frame, time and box."""
        for st in due:
            if st.waiting is None:
                st.waiting = index
        if self.background.busy:
            return
        waiting = sorted((st for st in self.states.values() if st.waiting is not None and st.buffer.ready),
                         key=lambda st: st.waiting)
        chunk = waiting[:self.max_batch]
        if not chunk:
            return
        x = self._input(chunk, copy=True)  # the rings go on filling while the thread reads x
        for st in chunk:
            st.waiting = None
        self.background.submit(self._infer_behind, x, [(st, *st.clip_at) for st in chunk])

    def _infer_behind(self, x, clips):
        return self.engine.infer(x, self.spec.output_name)[:len(clips)], clips  # engines hand out copies

    def _collect(self, events: list, wait: bool = False) -> None:
        """Report the background thread's finished classification (with ``wait``, the running one)."""
        if self.background is None:
            return
        done = self.background.result(wait=wait)
        if done is None:
            return
        (out, clips), seconds = done
        self.timer.add("classify", seconds)
        for j, (st, index, time, box, keypoints, pose) in enumerate(clips):
            if self.states.get(st.id) is st:  # a person who left meanwhile had their segment closed
                self._report(st, out[j], index, time, box, keypoints, pose, events)

    def _report(self, st: PersonState, scores, index: int, time: float, box, keypoints, pose, events: list) -> None:
        c = st.scorer(scores, index, time)
        st.last = c
        self.classifications += 1
        events += st.labels.update(c)
        ev = {"event": "classification", "track_id": st.id, "box": [round(float(v), 1) for v in box], **c.to_event()}
        if keypoints is not None:
            ev["keypoints"] = np.round(keypoints, 2).tolist()
            ev["posture"] = pose
        events.append(st.labels.annotate(ev))

    def finish(self, reason: str = "end") -> list:
        """Close every open segment (the stream ended or was stopped), after reporting the
        classification still running in the background (if that call failed, its error is raised
        after the segments are closed, carrying them as ``events``: Analyser.finish)."""
        events: list = []
        error = None
        try:
            self._collect(events, wait=True)
        except Exception as e:
            error = e
        for st in self.states.values():
            events += st.labels.close(reason)
        if error is not None:
            error.events = events
            raise error
        return events

    def reset(self, reason: str = "reconnect") -> list:
        """Forget every track (a live source reconnected): open segments are closed (returned as
        events), buffers go back to the pool; frame numbers keep counting."""
        events: list = []
        self._collect(events, wait=True)  # clips from before the gap are still the past's labels
        for tid in list(self.states):
            self._evict(tid, events, reason)
        self.tracker.reset()
        self._next_detect = 0  # no track to carry: detect on the first frame after the reconnect
        return events

    def visible(self) -> List[PersonState]:
        """States of the tracks matched on the latest frame (what the overlay draws)."""
        return [st for st in self.states.values() if st.seen]

    # -- the run loop's Analyser ----------------------------------------------------------
    def process(self, frame: np.ndarray, time: float) -> list:
        return self.update(frame, time)

    def restart(self) -> list:
        return self.reset("reconnect")

    def annotate(self, frame: np.ndarray, fps: Optional[float] = None) -> np.ndarray:
        self.overlay.annotate(frame, self.visible(), self.spec.clip_length)
        draw_poses(frame, self.visible())
        return self.fps_overlay.annotate(frame, None, fps)  # the frame rate, top left as in whole-frame mode

    def status(self) -> str:
        return f"{len(self.visible())} persons"

    def summary(self) -> str:
        n, t = self.classifications, self.tracker.tracks_started
        return f"{t} track{'' if t == 1 else 's'}, {n} person classification{'' if n == 1 else 's'}"

    def describe(self) -> str:
        d = self.detector.spec
        batch = f"batch up to {self.max_batch}" if self.batched else "fixed batch 1: one call per person"
        every = "every frame" if self.detect_every == 1 else f"every {self.detect_every} frames"
        if self.adapt is not None:
            every = f"every 1 to {self.adapt.high} frames as it keeps up (--detect-every auto)"
        return f"per person: detector {self.detector.engine.path} ({d.layout}, {self.detector.describe_size()}, " \
               f"{self.detector.engine.name}, {every}), {self.classifier.describe()[:-1]}, {batch}, each person classified every " \
               f"{self.cadence * (self.skip_frames + 1)} frames)"

    def close(self) -> None:
        self.detector.close()
        if self.background is None or self.background.close():  # never free it under a running call
            self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
