"""From model output to what users see: softmax (only for logits), smoothing, top-k, threshold."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    z = x - x.max(axis=axis, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=axis, keepdims=True)
    return z


@dataclass(frozen=True)
class Classification:
    """One classification of one clip. ``class_id`` is -1 and ``label`` None when the best
    confidence is below the threshold: never a made-up class."""

    frame: int
    time: float
    class_id: int
    label: Optional[str]
    confidence: float
    topk: Tuple[Tuple[int, str, float], ...]

    def to_event(self) -> dict:
        return {
            "frame": self.frame,
            "time": round(self.time, 4),
            "label": self.label,
            "class_id": self.class_id,
            "confidence": round(self.confidence, 6),
            "topk": [{"class_id": i, "label": n, "confidence": round(c, 6)} for i, n, c in self.topk],
        }


class Scorer:
    """Turns one row of model output into a :class:`Classification`.

    ``smoothing`` is the weight of the past in an exponential moving average of the
    probabilities (0 = off); it is state, so :meth:`reset` when the stream restarts.
    """

    def __init__(self, labels: Sequence[str], logits: bool, threshold: float = 0.01, top_k: int = 5, smoothing: float = 0.0):
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], got {threshold}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.labels = list(labels)
        self.logits = logits
        self.threshold = threshold
        self.top_k = max(1, min(top_k, len(self.labels)))
        self.smoothing = smoothing
        self._avg: Optional[np.ndarray] = None

    def reset(self) -> None:
        self._avg = None

    def probabilities(self, row: np.ndarray) -> np.ndarray:
        p = softmax(row.astype(np.float32, copy=True)) if self.logits else row.astype(np.float32, copy=True)
        if self.smoothing:
            if self._avg is None:
                self._avg = p
            else:
                self._avg = self.smoothing * self._avg + (1.0 - self.smoothing) * p
            p = self._avg
        return p

    def __call__(self, row: np.ndarray, frame: int = 0, time: float = 0.0) -> Classification:
        p = self.probabilities(np.asarray(row).reshape(-1))
        k = self.top_k
        idx = np.argpartition(-p, k - 1)[:k] if k < p.size else np.arange(p.size)
        idx = idx[np.argsort(-p[idx], kind="stable")]
        topk = tuple((int(i), self.labels[i], float(p[i])) for i in idx)
        best, conf = int(idx[0]), float(p[idx[0]])
        if conf < self.threshold:
            return Classification(frame, time, -1, None, conf, topk)
        return Classification(frame, time, best, self.labels[best], conf, topk)
