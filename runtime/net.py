"""The Python API, in the spirit of jetson-inference's ``actionNet``::

    net = actionnet.ActionNet(model="r3d18.onnx")        # or network="resnet-18"
    for frame in frames:                                  # uint8 BGR H x W x 3
        class_id, confidence = net.classify(frame)
        if class_id >= 0:
            print(net.get_class_desc(class_id), confidence)

Unlike jetson-inference, nothing is classified before the window holds T real frames: until then
``classify`` returns ``(-1, 0.0)``; below the threshold it returns ``(-1, confidence)``, and
``get_class_desc(-1)`` is None rather than a crash.
"""

from __future__ import annotations

import time as _time
from typing import Dict, Optional

import numpy as np

from .errors import UsageError
from .framebuffer import FrameBuffer
from .model import load_action_model, resolve_network
from .preprocess import FramePreparer, HostNormalizer
from .scores import Classification, Scorer
from .segments import LabelTracker, SegmentSummary


class StageTimer:
    """Seconds and calls per named stage; cheap enough for the hot path (two perf_counter calls)."""

    def __init__(self):
        self.total: Dict[str, float] = {}
        self.calls: Dict[str, int] = {}

    def add(self, stage: str, seconds: float) -> None:
        self.total[stage] = self.total.get(stage, 0.0) + seconds
        self.calls[stage] = self.calls.get(stage, 0) + 1

    def mean_ms(self, stage: str) -> float:
        return 1000.0 * self.total.get(stage, 0.0) / max(1, self.calls.get(stage, 0))

    def table(self) -> str:
        rows = [f"{'stage':<10} {'calls':>7} {'total s':>9} {'mean ms':>9}"]
        for k in self.total:
            rows.append(f"{k:<10} {self.calls[k]:>7} {self.total[k]:>9.3f} {self.mean_ms(k):>9.3f}")
        return "\n".join(rows)


class ActionNet:
    """A whole-frame action classifier: frame buffer, preprocessing, engine and scoring."""

    def __init__(self, network: Optional[str] = "resnet-18", model: Optional[str] = None, labels: Optional[str] = None,
                 input_blob: Optional[str] = None, output_blob: Optional[str] = None, threshold: float = 0.01,
                 top_k: int = 5, skip_frames: Optional[int] = None, cadence: int = 1, smoothing: float = 0.0,
                 engine: str = "auto", threads: Optional[int] = None, log=None, precision: Optional[str] = None,
                 min_duration: float = 0.0, fps: Optional[float] = None, **overrides):
        if not 0.0 <= threshold <= 1.0:
            raise UsageError(f"--threshold must be between 0 and 1, got {threshold}")
        if skip_frames is not None and skip_frames < 0:
            raise UsageError(f"--skip-frames must be >= 0, got {skip_frames}")
        if cadence < 1:
            raise UsageError(f"--cadence must be >= 1, got {cadence}")
        if top_k < 1:
            raise UsageError(f"--top-k must be >= 1, got {top_k}")
        if not 0.0 <= smoothing < 1.0:
            raise UsageError(f"--smoothing must be in [0, 1), got {smoothing}")
        if min_duration < 0:
            raise UsageError(f"--min-duration must be >= 0 seconds, got {min_duration:g}")
        model, labels, input_blob, output_blob, overrides = resolve_network(
            network, model, labels, input_blob, output_blob, overrides, log)
        self.engine, self.spec = load_action_model(model, labels, input_blob, output_blob, engine=engine,
                                                   threads=threads, log=log, precision=precision, **overrides)
        s = self.spec
        if skip_frames is None:  # the stride the model was trained at, else jetson-inference's default
            skip_frames = s.skip_frames if s.skip_frames is not None else 1
        self.skip_frames = skip_frames
        self.buffer = FrameBuffer(s.clip_length, (s.height, s.width, 3), np.uint8, skip_frames, cadence)
        self.prepare = FramePreparer(s)
        self.normalize = None if s.raw_input else HostNormalizer(s)
        self.scorer = Scorer(s.labels, logits=s.output_kind == "logits", threshold=threshold, top_k=top_k,
                             smoothing=smoothing)
        self.timer = StageTimer()
        self.last: Optional[Classification] = None
        self.frames = 0
        # hysteresis and segments (runtime/segments.py); ``fps`` gives frames a time when
        # update() is called without one, so that min_duration means seconds
        self.fps = fps
        self.summary = SegmentSummary()
        self.label_tracker = LabelTracker(min_duration, summary=self.summary)
        self.events: list = []  # event dicts of the latest update (classification, closed segments)

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
        if not self.buffer.sample():
            return None
        t0 = _time.perf_counter()
        self.prepare(frame, self.buffer.slot())
        self.buffer.commit()
        self.timer.add("prepare", _time.perf_counter() - t0)
        if not self.buffer.due():
            return None
        if time is None and self.label_tracker.min_duration > 0:
            raise UsageError("min_duration counts seconds: pass time= to update()/classify() or fps= to ActionNet")
        c = self.last = self.classify_window(self.buffer.window(), index, time if time is not None else 0.0)
        self.events = self.label_tracker.update(c)
        ev = c.to_event()
        ev["event"] = "classification"
        self.events.append(self.label_tracker.annotate(ev))
        return c

    def infer_window(self, window: np.ndarray) -> np.ndarray:
        """Raw model output for one prepared window [T, H, W, 3] (uint8, model colour order)."""
        t0 = _time.perf_counter()
        x = window[None] if self.normalize is None else self.normalize(window)
        out = self.engine.infer(x, self.spec.output_name)
        self.timer.add("infer", _time.perf_counter() - t0)
        return out

    def classify_window(self, window: np.ndarray, frame: int = 0, time: float = 0.0) -> Classification:
        out = self.infer_window(window)
        return self.scorer(out[0], frame, time)

    def reset(self, reason: str = "reset") -> list:
        """Start over (a new stream, a reconnect); the open segment's closing event is returned
        and left in ``events``."""
        self.buffer.reset()
        self.scorer.reset()
        self.last = None
        self.frames = 0
        self.events = self.label_tracker.reset(reason)
        return self.events

    def finish(self, reason: str = "end") -> list:
        """Close the open segment (the stream ended or was stopped); its event."""
        return self.label_tracker.close(reason)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
