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
from .streaming import for_model as streaming_for


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
                 **overrides):
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
        model, labels, input_blob, output_blob, overrides = resolve_network(
            network, model, labels, input_blob, output_blob, overrides, log)
        self.engine, self.spec = load_action_model(model, labels, input_blob, output_blob, engine=engine,
                                                   threads=threads, log=log, precision=precision, **overrides)
        s = self.spec
        if skip_frames is None:  # the stride the model was trained at, else jetson-inference's default
            skip_frames = s.skip_frames if s.skip_frames is not None else 1
        self.skip_frames = skip_frames
        self.buffer = FrameBuffer(s.clip_length, (s.height, s.width, 3), np.uint8, skip_frames, cadence)
        # a streaming model (runtime/streaming.py): one state set for this stream, stepped on every stored frame
        self.stream = streaming_for(self.engine, s)
        self.state = self.stream.new_state() if self.stream is not None else None
        self.prepare = FramePreparer(s)
        self.normalize = None if s.raw_input else HostNormalizer(s)
        self.scorer = Scorer(s.labels, logits=s.output_kind == "logits", threshold=threshold, top_k=top_k,
                             smoothing=smoothing)
        self.timer = StageTimer()
        self.last: Optional[Classification] = None
        self.frames = 0

    # -- jetson-inference style API ------------------------------------------------------
    def classify(self, frame: np.ndarray, time: Optional[float] = None):
        """Feed one frame; ``(class_id, confidence)`` of the latest classification."""
        self.update(frame, time)
        if self.last is None:
            return -1, 0.0
        return self.last.class_id, self.last.confidence

    def get_class_desc(self, class_id: int) -> Optional[str]:
        return self.spec.labels[class_id] if 0 <= class_id < self.spec.num_classes else None

    def get_num_classes(self) -> int:
        return self.spec.num_classes

    @property
    def threshold(self) -> float:
        return self.scorer.threshold

    # -- stream API --------------------------------------------------------------------
    @property
    def collecting(self) -> bool:
        """True until the window holds T frames."""
        return not self.buffer.ready

    def update(self, frame: np.ndarray, time: Optional[float] = None) -> Optional[Classification]:
        """Feed one frame; the new :class:`Classification` when this frame triggered one."""
        index = self.frames
        self.frames += 1
        if not self.buffer.sample():
            return None
        t0 = _time.perf_counter()
        self.prepare(frame, self.buffer.slot())
        self.buffer.commit()
        self.timer.add("prepare", _time.perf_counter() - t0)
        if self.stream is not None:  # the state needs every stored frame, reported or not
            out = self.infer_window(self.buffer.window())
            if not self.buffer.due():
                return None
            self.last = self.scorer(out[0], index, time if time is not None else 0.0)
            return self.last
        if not self.buffer.due():
            return None
        self.last = self.classify_window(self.buffer.window(), index, time if time is not None else 0.0)
        return self.last

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

    def reset(self) -> None:
        self.buffer.reset()
        if self.state is not None:
            self.state.reset()
        self.scorer.reset()
        self.last = None
        self.frames = 0

    def close(self) -> None:
        self.engine.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
