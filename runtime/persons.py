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
"""

from __future__ import annotations

import sys
import time as _time
from dataclasses import dataclass
from typing import Dict, List, Optional

import numpy as np

from .detector import Detector
from .errors import UsageError
from .framebuffer import FrameBuffer
from .model import load_action_model, resolve_network
from .net import StageTimer
from .preprocess import FramePreparer, HostNormalizer
from .scores import Classification, Scorer
from .streaming import StreamState
from .streaming import for_model as streaming_for
from .tracker import ByteTracker, Track

CROP_MODES = ("anchored", "follow")


@dataclass
class Segment:
    label: str
    start_frame: int
    start_time: float
    end_frame: int
    end_time: float
    confidence: float  # the highest confidence seen in the segment

    def to_event(self, track_id: int) -> dict:
        return {"event": "segment", "track_id": track_id, "label": self.label, "start_frame": self.start_frame,
                "start_time": round(self.start_time, 4), "end_frame": self.end_frame,
                "end_time": round(self.end_time, 4), "max_confidence": round(self.confidence, 6)}


@dataclass
class PersonState:
    """What the runtime knows about one track."""

    id: int
    buffer: FrameBuffer
    scorer: Scorer
    box: np.ndarray = None
    crop: Optional[tuple] = None  # (x0, y0, side) in frame pixels
    last: Optional[Classification] = None
    segment: Optional[Segment] = None
    seen: bool = False  # matched on the current frame
    stream: Optional[StreamState] = None  # a streaming model's state set for this person


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


class PersonActionNet:
    """Detector + tracker + one clip per person + a batched action model.

    ``update(frame, index, time)`` returns the events of this frame (classifications and closed
    segments); ``states`` holds every live track's state for drawing.
    """

    def __init__(self, model: str, detector: str, labels: Optional[str] = None, input_blob: Optional[str] = None,
                 output_blob: Optional[str] = None, threshold: float = 0.01, top_k: int = 5,
                 skip_frames: Optional[int] = None, cadence: int = 1, smoothing: float = 0.0, engine: str = "auto", threads: Optional[int] = None,
                 person_conf: float = 0.25, nms_iou: float = 0.45, detector_classes=("person",),
                 detector_layout: Optional[str] = None, track_timeout: int = 30, context: float = 1.2,
                 crop_mode: str = "anchored", max_batch: int = 16, log=sys.stderr, precision: Optional[str] = None,
                 **overrides):
        if not 0.0 <= threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
        if (skip_frames is not None and skip_frames < 0) or cadence < 1 or top_k < 1 or not 0.0 <= smoothing < 1.0:
            raise UsageError("need --skip-frames >= 0, --cadence >= 1, --top-k >= 1 and 0 <= --smoothing < 1")
        if context < 1.0:
            raise UsageError(f"--crop-context must be >= 1 (the crop holds the whole box), got {context}")
        if crop_mode not in CROP_MODES:
            raise UsageError(f"--crop-mode must be one of {', '.join(CROP_MODES)}, got {crop_mode!r}")
        if max_batch < 1 or track_timeout < 0:
            raise UsageError("need --max-batch >= 1 and --track-timeout >= 0")
        self.detector = Detector(detector, conf=person_conf, iou=nms_iou, classes=detector_classes,
                                 layout=detector_layout, engine=engine, threads=threads, precision=precision, log=log)
        try:
            self.engine, self.spec = load_action_model(model, labels, input_blob, output_blob, engine=engine,
                                                       threads=threads, log=log, precision=precision, **overrides)
        except Exception:
            self.detector.close()
            raise
        s = self.spec
        if skip_frames is None:  # the stride the model was trained at, else jetson-inference's default
            skip_frames = s.skip_frames if s.skip_frames is not None else 1
        self.tracker = ByteTracker(high=max(0.5, person_conf), low=min(0.1, person_conf),
                                   new_track=max(0.5, person_conf), max_age=track_timeout)
        self.skip_frames, self.cadence, self.context, self.crop_mode = skip_frames, cadence, context, crop_mode
        self._scorer_args = dict(labels=s.labels, logits=s.output_kind == "logits", threshold=threshold,
                                 top_k=top_k, smoothing=smoothing)
        self.prepare = FramePreparer(s)
        batch_dim = self.engine.input.shape[0]
        # A fixed batch axis (foreign ONNX, e.g. jetson-inference's [1, 3, 16, 112, 112]) is
        # honoured: batch 1 means one call per person; a fixed B > 1 gets its calls padded to B.
        self.fixed_batch = batch_dim if isinstance(batch_dim, int) and batch_dim > 0 else None
        self.max_batch = self.fixed_batch or max_batch
        self.batched = self.max_batch > 1
        if s.raw_input:
            self.normalize = None
            self._batch = np.empty((self.max_batch, s.clip_length, s.height, s.width, 3), np.uint8)
        else:
            self.normalize = HostNormalizer(s, batch=self.max_batch)
        self.states: Dict[int, PersonState] = {}
        self.stream = streaming_for(self.engine, s, self.max_batch)  # None for a clip model
        self._pool: List[FrameBuffer] = []
        self.timer = StageTimer()
        self.frames = 0
        self.classifications = 0

    # -- per-track state ------------------------------------------------------------------
    def _state(self, track: Track) -> PersonState:
        st = self.states.get(track.id)
        if st is None:
            s = self.spec
            buf = self._pool.pop() if self._pool else FrameBuffer(s.clip_length, (s.height, s.width, 3), np.uint8,
                                                                   0, self.cadence)
            buf.reset()
            st = PersonState(track.id, buf, Scorer(**self._scorer_args))
            if self.stream is not None:
                st.stream = self.stream.new_state()
            self.states[track.id] = st
        return st

    def _evict(self, tid: int, events: list) -> None:
        st = self.states.pop(tid, None)
        if st is None:
            return
        if st.segment is not None:
            events.append(st.segment.to_event(tid))
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
        t0 = clock()
        dets = self.detector(frame)
        t1 = clock()
        tracks, evicted = self.tracker.update(dets.boxes, dets.scores, dets.classes)
        for tid in evicted:
            self._evict(tid, events)
        for st in self.states.values():
            st.seen = False
        t2 = clock()
        self.timer.add("detect", t1 - t0)
        self.timer.add("track", t2 - t1)
        sampled = index % (self.skip_frames + 1) == 0
        due: List[PersonState] = []
        for tr in tracks:
            st = self._state(tr)
            st.seen = True
            st.box = tr.box
            if not sampled:
                continue
            st.crop = self._crop_box(st, tr, frame.shape)
            x0, y0, side = st.crop
            self.prepare(frame[y0:y0 + side, x0:x0 + side], st.buffer.slot())
            st.buffer.commit()
            if st.buffer.due() or self.stream is not None:  # a stream steps on every stored frame
                due.append(st)
        t3 = clock()
        self.timer.add("crop", t3 - t2)
        if due:
            self._classify(due, index, time, events)
            self.timer.add("classify", clock() - t3)
        return events

    def _classify(self, due: List[PersonState], index: int, time: float, events: list) -> None:
        for i in range(0, len(due), self.max_batch):
            chunk = due[i:i + self.max_batch]
            n = len(chunk)
            if self.normalize is None and n == 1 and self.fixed_batch in (None, 1):
                x = chunk[0].buffer.window()[None]  # the ring's contiguous view: no copy
            elif self.normalize is None:
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
            if self.stream is not None:
                out = self.stream.step(x, [st.stream for st in chunk])
            else:
                out = self.engine.infer(x, self.spec.output_name)
            for j, st in enumerate(chunk):
                if self.stream is not None and not st.buffer.due():
                    continue  # stepped, not reported (--cadence)
                c = st.scorer(out[j], index, time)
                st.last = c
                self.classifications += 1
                self._segment(st, c, events)
                ev = c.to_event()
                ev = {"event": "classification", "track_id": st.id,
                      "box": [round(float(v), 1) for v in st.box], **ev}
                if st.segment is not None:
                    ev["segment_start_frame"] = st.segment.start_frame
                    ev["segment_start_time"] = round(st.segment.start_time, 4)
                events.append(ev)

    @staticmethod
    def _segment(st: PersonState, c: Classification, events: list) -> None:
        """Close the track's segment when its label changes (or drops below the threshold)."""
        seg = st.segment
        if seg is not None and seg.label == c.label:
            seg.end_frame, seg.end_time = c.frame, c.time
            seg.confidence = max(seg.confidence, c.confidence)
            return
        if seg is not None:
            events.append(seg.to_event(st.id))
        st.segment = Segment(c.label, c.frame, c.time, c.frame, c.time, c.confidence) if c.label else None

    def finish(self) -> list:
        """Close every open segment (the stream ended or was stopped)."""
        events: list = []
        for tid in list(self.states):
            st = self.states[tid]
            if st.segment is not None:
                events.append(st.segment.to_event(tid))
                st.segment = None
        return events

    def reset(self) -> list:
        """Forget every track (a live source reconnected): open segments are closed (returned as
        events), buffers go back to the pool; frame numbers keep counting."""
        events = self.finish()
        for tid in list(self.states):
            self._evict(tid, events)
        self.tracker.reset()
        return events

    def visible(self) -> List[PersonState]:
        """States of the tracks matched on the latest frame (what the overlay draws)."""
        return [st for st in self.states.values() if st.seen]

    def close(self) -> None:
        self.detector.close()
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_persons(source, net: PersonActionNet, video=None, events=None, overlay=None, progress=None, stop=None):
    """The per-person run loop; same contract as :func:`actionnet.pipeline.run` (stoppable at
    any frame; the video and the events are finalised, open segments closed, on any stop)."""
    from .person_overlay import PersonOverlay
    from .pipeline import RunStats, end_run, running

    stats = RunStats(timer=net.timer)
    timer = net.timer
    overlay = overlay or PersonOverlay()
    clock = _time.perf_counter
    keep = interrupted = False
    generation = getattr(source, "generation", 0)
    start = clock()
    if stop is not None and hasattr(source, "stop_when"):  # a capture thread: stop even while waiting
        source.stop_when(lambda: stop.stopped)
    try:
        frames = iter(source)
        while running(stop, video, events):
            t0 = clock()
            try:
                frame, t = next(frames)
            except StopIteration:
                break
            timer.add("decode", clock() - t0)
            produced = []
            if getattr(source, "generation", 0) != generation:  # a live source reconnected:
                generation = source.generation  # new tracks and clips, none spans the gap
                produced += net.reset()
            before = net.classifications
            produced += net.update(frame, t)
            stats.classifications += net.classifications - before
            if events is not None:
                for e in produced:
                    events.write(e)
            if video is not None:
                t2 = clock()
                overlay.annotate(frame, net.visible(), net.spec.clip_length)
                t3 = clock()
                timer.add("draw", t3 - t2)
                video.write(frame)
                timer.add("encode", clock() - t3)
            stats.frames += 1
            if progress is not None:
                progress.update(f"{len(net.visible())} persons")
        keep = True
    except KeyboardInterrupt:
        keep = interrupted = True
    finally:
        end_run(stats, source, start, stop, interrupted, events, progress, video, keep)
        if events is not None:
            try:
                for e in net.finish():
                    events.write(e)
            finally:
                events.close()
    return stats


def cli_run(args, log) -> int:
    """``actionnet --persons ...``: wires source, PersonActionNet and sinks (called by the CLI)."""
    from .live import open_input, run_with_outputs

    if not args.detector:
        raise UsageError("--persons needs --detector=FILE.onnx (a YOLO person detector; see actionnet-export yolo)")
    if not 0.0 <= args.person_conf <= 1.0:
        raise UsageError(f"--person-conf must be between 0 and 1, got {args.person_conf}")
    if args.track_timeout < 0:
        raise UsageError(f"--track-timeout must be >= 0 seconds, got {args.track_timeout}")
    overrides = dict(mean=args.mean, std=args.std, value_scale=args.value_scale, color_order=args.color_order,
                     resize_mode=args.resize_mode, output_kind=args.output_kind)
    model, labels, input_blob, output_blob, overrides = resolve_network(
        args.network, args.model, args.labels, args.input_blob, args.output_blob, overrides, log)
    source = open_input(args, log)
    net = None
    try:
        fps = getattr(source, "rate", None) or source.fps or 30.0
        net = PersonActionNet(model, args.detector, labels=labels, input_blob=input_blob, output_blob=output_blob,
                              threshold=args.threshold, top_k=args.top_k, skip_frames=args.skip_frames,
                              cadence=args.cadence, smoothing=args.smoothing, engine=args.engine, threads=args.threads,
                              person_conf=args.person_conf, nms_iou=args.nms_iou,
                              detector_classes=[c.strip() for c in args.detector_classes.split(",") if c.strip()],
                              detector_layout=args.detector_layout,
                              track_timeout=int(round(args.track_timeout * float(fps))), context=args.crop_context,
                              crop_mode=args.crop_mode, max_batch=args.max_batch, log=log,
                              precision=getattr(args, "precision", None), **overrides)
        s, d = net.spec, net.detector.spec
        banner = (f"per person: detector {args.detector} ({d.layout}, {d.height}x{d.width}), model {net.engine.path} "
                  f"({s.clip_length}x{s.height}x{s.width}, {s.num_classes} classes, {net.engine.name}, "
                  f"{'batch up to ' + str(net.max_batch) if net.batched else 'fixed batch 1: one call per person'})")
        stats = run_with_outputs(args, source, net, run_persons, banner=banner, log=log)
    finally:
        source.close()
        if net is not None:
            net.close()
    summary = (f"{stats.frames} frames, {net.tracker.tracks_started} tracks, {stats.classifications} person "
               f"classifications, {stats.fps:.1f} fps")
    if stats.dropped:
        summary += f"; {stats.dropped} frames dropped (inference slower than the live source)"
    print(f"actionnet: {'stopped: ' if stats.stopped else ''}{summary}", file=log)
    if args.timings:
        print(net.timer.table(), file=log)
    return 0
