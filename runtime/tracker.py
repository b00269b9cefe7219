"""ByteTrack-style multi-object tracking: Kalman-predicted boxes, two-stage IoU association.

Why a small one here rather than a library: the maintained ByteTrack implementations either
live inside a framework (ultralytics pulls torch; supervision pulls matplotlib, scipy and
pillow) or need ``lap``/``cython_bbox`` builds, none of which belong in a torch-free edge
runtime. ByteTrack's algorithm is short: this is it, in numpy, with greedy best-IoU-first
matching instead of the Hungarian solver (with a handful of people per frame the two agree
except on near-ties, and it keeps scipy out).

Algorithm (Zhang et al., ByteTrack, ECCV 2022):

1. predict every track's box with a constant-velocity Kalman filter (state cx, cy, a, h and
   their velocities, noise scaled by the box height, as in SORT/DeepSORT/ByteTrack);
2. match high-score detections (>= ``high``) to all tracks by IoU;
3. match the low-score detections (``low`` <= score < ``high``) to the tracks still unmatched:
   occluded people score low, and this second pass keeps their ids;
4. an unmatched high-score detection starts a new track (confirmed at its second hit, or at
   once on the first frame); tracks unmatched for more than ``max_age`` frames are evicted,
   and :meth:`update` reports their ids so per-track state (clip buffers) is freed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

import numpy as np

_F = np.eye(8)
_F[:4, 4:] = np.eye(4)
_H = np.eye(4, 8)
_STD_POS, _STD_VEL = 1.0 / 20, 1.0 / 160


def _to_xyah(b):
    w, h = b[2] - b[0], b[3] - b[1]
    return np.array([b[0] + w / 2, b[1] + h / 2, w / max(h, 1e-6), h])


def _to_xyxy(m):
    cx, cy, a, h = m[:4]
    w = a * h
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` [N, 4] with every box in ``b`` [M, 4] (x1, y1, x2, y2)."""
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def greedy_match(iou: np.ndarray, thresh: float) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Pairs (row, col) by descending IoU above ``thresh``; then unmatched rows and columns."""
    pairs = []
    if iou.size:
        rows, cols = np.nonzero(iou >= thresh)
        order = np.argsort(-iou[rows, cols], kind="stable")
        used_r, used_c = set(), set()
        for k in order:
            r, c = int(rows[k]), int(cols[k])
            if r in used_r or c in used_c:
                continue
            used_r.add(r)
            used_c.add(c)
            pairs.append((r, c))
    mr = {r for r, _ in pairs}
    mc = {c for _, c in pairs}
    return pairs, [r for r in range(iou.shape[0]) if r not in mr], [c for c in range(iou.shape[1]) if c not in mc]


@dataclass
class Track:
    id: int
    mean: np.ndarray
    cov: np.ndarray
    score: float
    cls: int
    hits: int = 1
    age: int = 0  # frames since the last match
    confirmed: bool = False
    box: np.ndarray = field(default=None)  # last matched detection box (what gets drawn and cropped)
    det: np.ndarray = field(default=None)  # the same, kept while coasting moves ``box``

    @property
    def predicted(self) -> np.ndarray:
        return _to_xyxy(self.mean)

    def predict(self) -> None:
        h = self.mean[3]
        q = np.square([_STD_POS * h, _STD_POS * h, 1e-2, _STD_POS * h, _STD_VEL * h, _STD_VEL * h, 1e-5, _STD_VEL * h])
        if self.age > 0:
            self.mean[7] = 0.0  # a lost track keeps moving but stops growing (ByteTrack does the same)
        self.mean = _F @ self.mean
        self.cov = _F @ self.cov @ _F.T + np.diag(q)

    def correct(self, box: np.ndarray, score: float) -> None:
        z = _to_xyah(box)
        h = self.mean[3]
        r = np.diag(np.square([_STD_POS * h, _STD_POS * h, 1e-1, _STD_POS * h]))
        s = _H @ self.cov @ _H.T + r
        k = np.linalg.solve(s, _H @ self.cov).T
        self.mean = self.mean + k @ (z - _H @ self.mean)
        self.cov = self.cov - k @ s @ k.T
        self.box = self.det = np.asarray(box, np.float32)
        self.score = score
        self.hits += 1
        self.age = 0


def _new_track(tid: int, box: np.ndarray, score: float, cls: int) -> Track:
    mean = np.zeros(8)
    mean[:4] = _to_xyah(box)
    h = mean[3]
    std = [2 * _STD_POS * h, 2 * _STD_POS * h, 1e-2, 2 * _STD_POS * h,
           10 * _STD_VEL * h, 10 * _STD_VEL * h, 1e-5, 10 * _STD_VEL * h]
    box = np.asarray(box, np.float32)
    return Track(tid, mean, np.diag(np.square(std)), score, cls, box=box, det=box)


class ByteTracker:
    """``update(boxes, scores, classes) -> (active tracks, evicted ids)``, once per frame.

    ``max_age`` is in frames the tracker is called on; the per-person pipeline converts its
    ``--track-timeout`` seconds with the source's frame rate.
    """

    def __init__(self, high: float = 0.5, low: float = 0.1, new_track: float = 0.6, match_iou: float = 0.2,
                 second_iou: float = 0.5, max_age: int = 30):
        self.high, self.low, self.new_track = high, low, new_track
        self.match_iou, self.second_iou, self.max_age = match_iou, second_iou, max_age
        self.tracks: List[Track] = []
        self.frame = 0
        self._next_id = 1

    def update(self, boxes: np.ndarray, scores: np.ndarray, classes=None):
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        classes = np.zeros(len(scores), np.int64) if classes is None else np.asarray(classes).reshape(-1)
        self.frame += 1
        for t in self.tracks:
            t.predict()
        hi = np.flatnonzero(scores >= self.high)
        lo = np.flatnonzero((scores >= self.low) & (scores < self.high))

        # 1. high-score detections vs every track (confirmed first in ties: they sort by IoU anyway)
        pred = np.array([t.predicted for t in self.tracks]).reshape(-1, 4)
        pairs, rest_t, rest_d = greedy_match(iou_matrix(pred, boxes[hi]), self.match_iou)
        for ti, di in pairs:
            self.tracks[ti].correct(boxes[hi[di]], float(scores[hi[di]]))
        # 2. low-score detections vs the tracks left, confirmed ones only (ByteTrack's second pass)
        left = [ti for ti in rest_t if self.tracks[ti].confirmed]
        pairs2, _, _ = greedy_match(iou_matrix(pred[left], boxes[lo]), self.second_iou)
        matched2 = set()
        for li, di in pairs2:
            self.tracks[left[li]].correct(boxes[lo[di]], float(scores[lo[di]]))
            matched2.add(left[li])
        for ti in rest_t:
            if ti not in matched2:
                self.tracks[ti].age += 1
        # unconfirmed tracks that missed are dropped at once (spurious single detections)
        evicted = [t.id for t in self.tracks if t.age > self.max_age or (not t.confirmed and t.age > 0)]
        self.tracks = [t for t in self.tracks if t.id not in evicted]
        for t in self.tracks:
            if not t.confirmed and t.hits >= 2:
                t.confirmed = True
        # 3. new tracks from unmatched confident detections
        for di in rest_d:
            j = hi[di]
            if scores[j] >= self.new_track:
                t = _new_track(self._next_id, boxes[j], float(scores[j]), int(classes[j]))
                t.confirmed = self.frame == 1
                self._next_id += 1
                self.tracks.append(t)
        return self.active(), evicted

    def coast(self) -> List[Track]:
        """A frame the detector skipped (``--detect-every``): every track moves on by its Kalman
        prediction, and the active ones take the predicted box. Nobody ages or is evicted (a
        frame without detections is no evidence that a person left), so ``max_age`` counts
        detection frames only. The box moves with the predicted centre and keeps the last
        detection's size: a size velocity fitted on a few frames (a person entering, half
        visible) extrapolates badly over several frames, a position velocity does not."""
        for t in self.tracks:
            t.predict()
            if t.age == 0:
                half = (t.det[2:] - t.det[:2]) / 2
                c = t.mean[:2].astype(np.float32)
                t.box = np.concatenate([c - half, c + half])
        return self.active()

    def active(self) -> List[Track]:
        """Confirmed tracks matched on this frame (the ones to draw and to feed clips)."""
        return [t for t in self.tracks if t.confirmed and t.age == 0]

    def reset(self) -> None:
        """Forget every track (the source reconnected); ids keep counting, so that an id never
        names two people in one stream."""
        self.tracks = []

    @property
    def tracks_started(self) -> int:
        return self._next_id - 1
