"""Whole-frame action recognition, and the Python API in the spirit of jetson-inference's ``actionNet``::

    import actionnet

    net = actionnet.ActionNet(model="r3d18.onnx")          # or network="resnet-18"
    with actionnet.video_source("input.mp4") as source:
        for frame, t in source:                             # uint8 BGR H x W x 3
            class_id, confidence = net.classify(frame)
            if class_id >= 0:
                print(net.get_class_desc(class_id), confidence)

Unlike jetson-inference, nothing is classified before the window holds T real frames: until then
``classify`` returns ``(-1, 0.0)``; below the threshold it returns ``(-1, confidence)``, and
``get_class_desc(-1)`` is None rather than a crash. Between windows (``--skip-frames``,
``--cadence``) ``classify`` repeats the latest classification.

:class:`ActionNet` is also the whole-frame :class:`~actionnet.pipeline.Analyser` the run loop drives.
"""

from __future__ import annotations

import time as _time
from typing import List, Optional

import numpy as np

from .background import Background
from .config import ClassifierOptions
from .errors import UsageError
from .framebuffer import FrameBuffer
from .model import open_classifier
from .overlay import Overlay
from .pipeline import Analyser, StageTimer
from .scores import Classification
from .segments import LabelTracker, SegmentSummary
from .streaming import for_model as streaming_for


class ActionNet(Analyser):
    """A whole-frame action classifier: frame buffer, preprocessing, engine and scoring.

    Keyword arguments are :class:`~actionnet.config.ClassifierOptions` (the CLI's flags).
    """

    def __init__(self, network: Optional[str] = "resnet-18", model: Optional[str] = None, labels: Optional[str] = None,
                 input_blob: Optional[str] = None, output_blob: Optional[str] = None, threshold: float = 0.01,
                 top_k: int = 5, skip_frames: Optional[int] = None, cadence: Optional[int] = None, smoothing: float = 0.0,
                 engine: str = "auto", threads: Optional[int] = None, log=None, precision: Optional[str] = None,
                 fps: Optional[float] = None, live: bool = False, **overrides):
        options = ClassifierOptions(network=network, model=model, labels=labels, input_blob=input_blob,
                                    output_blob=output_blob, threshold=threshold, top_k=top_k,
                                    skip_frames=skip_frames, cadence=cadence, smoothing=smoothing, engine=engine,
                                    threads=threads, precision=precision, **overrides)
        self.classifier = c = open_classifier(options, log)
        self.engine, self.spec, self.skip_frames = c.engine, c.spec, c.skip_frames
        s = self.spec
        self.buffer = FrameBuffer(s.clip_length, (s.height, s.width, 3), np.uint8, self.skip_frames, cadence or 1)
        self.prepare = c.prepare
        self.normalize = c.normalizer()
        self.scorer = c.scorer()
        self.overlay = Overlay()
        # a streaming model (runtime/streaming.py): one state set for this stream, stepped on every stored frame
        self.stream = streaming_for(self.engine, s)
        self.state = self.stream.new_state() if self.stream is not None else None
        self.timer = StageTimer()
        self.last: Optional[Classification] = None
        self.frames = 0
        self.classifications = 0
        # hysteresis and segments (runtime/segments.py); ``fps`` gives frames a time when
        # update() is called without one, so that min_duration means seconds
        self.fps = fps
        self.segment_summary = SegmentSummary()
        self.label_tracker = LabelTracker(c.options.min_duration, summary=self.segment_summary)
        self.events: List[dict] = []  # event dicts of the latest update (classification, closed segments)
        # The run loop on a live source classifies on a thread of its own (runtime/background.py),
        # as per person: a clip that takes longer than a frame period costs no frames; a window
        # due while the thread is busy is skipped (the next one is newer). update() and
        # classify() stay synchronous: the jetson-inference API returns this frame's label.
        self.background = Background() if live and self.stream is None else None
        self._clip = None  # the window handed to the background thread, copied

    # -- jetson-inference style API ------------------------------------------------------
    def classify(self, frame: np.ndarray, time: Optional[float] = None):
        """Feed one frame; ``(class_id, confidence)`` of the reported label (with ``min_duration``
        0, the latest classification's top class)."""
        self.update(frame, time)
        shown = self.reported
        if shown is None:
            return -1, 0.0
        return shown.class_id, shown.confidence

    def get_class_desc(self, class_id: int) -> Optional[str]:
        return self.spec.labels[class_id] if 0 <= class_id < self.spec.num_classes else None

    def get_num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def threshold(self) -> float:
        return self.scorer.threshold

    # -- stream API --------------------------------------------------------------------
    @property
    def reported(self) -> Optional[Classification]:
        """The latest classification as the hysteresis reports it (what the overlay draws)."""
        return self.label_tracker.shown(self.last)

    @property
    def collecting(self) -> bool:
        """True until the window holds T frames."""
        return not self.buffer.ready

    def update(self, frame: np.ndarray, time: Optional[float] = None) -> Optional[Classification]:
        """Feed one frame; the new :class:`Classification` when this frame triggered one."""
        index = self.frames
        self.frames += 1
        self.events = []
        if time is None and self.fps:
            time = index / self.fps
        if not self._store(frame):
            return None
        out = None
        if self.stream is not None:  # the state needs every stored frame, reported or not
            out = self.infer_window(self.buffer.window())
        if not self.buffer.due():
            return None
        if time is None and self.label_tracker.min_duration > 0:
            raise UsageError("min_duration counts seconds: pass time= to update()/classify() or fps= to ActionNet")
        t = time if time is not None else 0.0
        self.events = self._report(self.scorer(out[0], index, t) if out is not None
                                   else self.classify_window(self.buffer.window(), index, t))
        return self.last

    def _store(self, frame: np.ndarray) -> bool:
        """Count one frame on the sampling clock; True when it was stored into the window."""
        if not self.buffer.sample():
            return False
        t0 = _time.perf_counter()
        self.prepare(frame, self.buffer.slot())
        self.buffer.commit()
        self.timer.add("prepare", _time.perf_counter() - t0)
        return True

    def _report(self, c: Classification) -> List[dict]:
        """Take ``c`` as the latest classification: the events it makes (closed segments, then
        the classification with its reported label)."""
        self.last = c
        self.classifications += 1
        events = self.label_tracker.update(c)
        ev = c.to_event()
        ev["event"] = "classification"
        events.append(self.label_tracker.annotate(ev))
        return events

    def infer_window(self, window: np.ndarray) -> np.ndarray:
        """Raw model output for one prepared window [T, H, W, 3] (uint8, model colour order)."""
        t0 = _time.perf_counter()
        x = window[None] if self.normalize is None else self.normalize(window)
        if self.stream is not None:
            out = self.stream.step(x, [self.state])
        else:
            out = self.engine.infer(x, self.spec.output_name)
        self.timer.add("infer", _time.perf_counter() - t0)
        return out

    def classify_window(self, window: np.ndarray, frame: int = 0, time: float = 0.0) -> Classification:
        out = self.infer_window(window)
        return self.scorer(out[0], frame, time)

    def reset(self, reason: str = "reset") -> List[dict]:
        """Forget the stream: an empty window, no smoothing history, no reported label, frame
        numbers from 0. The open segment's closing event is returned. A background call still
        running is waited for and forgotten (restart() reports it first)."""
        if self.background is not None and self.background.busy:
            try:
                self.background.result(wait=True)
            except Exception:
                pass  # the stream it belonged to is being forgotten
        self.buffer.reset()
        if self.state is not None:
            self.state.reset()
        self.scorer.reset()
        self.last = None
        self.frames = 0
        return self.label_tracker.reset(reason)

    # -- the run loop's Analyser ----------------------------------------------------------
    def process(self, frame: np.ndarray, time: float) -> List[dict]:
        if self.background is None:
            self.update(frame, time)
            return self.events  # closed segments, then the classification (with its reported label)
        events = self._collect()
        index = self.frames
        self.frames += 1
        if self._store(frame) and self.buffer.due() and not self.background.busy:
            if self._clip is None:
                self._clip = np.empty((1, *self.buffer.window().shape), np.uint8)
            self._clip[0] = self.buffer.window()  # the ring goes on filling meanwhile
            self.background.submit(self._infer_clip, index, time)
        return events

    def _infer_clip(self, index: int, time: float):
        x = self._clip if self.normalize is None else self.normalize(self._clip[0])
        return self.engine.infer(x, self.spec.output_name), index, time

    def _collect(self, wait: bool = False) -> List[dict]:
        """The background thread's finished classification as events (with ``wait``, the running one)."""
        done = self.background.result(wait=wait) if self.background is not None else None
        if done is None:
            return []
        (out, index, time), seconds = done
        self.timer.add("infer", seconds)
        return self._report(self.scorer(out[0], index, time))

    def restart(self) -> List[dict]:
        seen = self.frames
        events = self._collect(wait=True)  # a clip from before the gap is still the past's label
        events += self.reset("reconnect")  # the open segment ends at the gap
        self.frames = seen  # frame numbers in events stay monotonic
        return events

    def finish(self, reason: str = "end") -> List[dict]:
        """Close the open segment (the stream ended or was stopped), after reporting the
        classification still running in the background; their events (a failure of that call is
        raised after the segment is closed, carrying it as ``events``: Analyser.finish)."""
        try:
            events = self._collect(wait=True)
        except Exception as e:
            e.events = self.label_tracker.close(reason)
            raise
        return events + self.label_tracker.close(reason)

    def annotate(self, frame: np.ndarray, fps: Optional[float] = None) -> np.ndarray:
        return self.overlay.annotate(frame, self.reported, fps, self.collecting)

    def status(self) -> str:
        shown = self.reported
        return (shown.label or "") if shown is not None else ""

    def summary(self) -> str:
        n = self.classifications
        line = f"{n} classification{'' if n == 1 else 's'}"
        last = self.reported  # what was shown last (the hysteresis's label)
        if last is not None:
            line += f"; last: {last.label or '(below threshold)'} {last.confidence:.3f}"
        return line

    def describe(self) -> str:
        return self.classifier.describe()

    def close(self) -> None:
        if self.background is None or self.background.close():  # never free it under a running call
            self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
