"""Drawing poses: each tracked person's skeleton (COCO-17 limbs) and posture, in the track's colour.

Kept apart from :mod:`actionnet.person_overlay` (box and action label) so either can change
alone; :class:`~actionnet.persons.PersonActionNet` calls both.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from .person_overlay import colour

# COCO-17 limbs (ultralytics' skeleton, 0-based): legs, hips, torso, arms, head
LIMBS = ((15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7), (6, 8), (7, 9),
         (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6))


def draw_skeleton(frame: np.ndarray, keypoints: np.ndarray, col, min_conf: float = 0.5, thick: int = 2) -> None:
    """Limbs between visible joints and a dot per visible joint, in place."""
    k = keypoints
    vis = k[:, 2] >= min_conf
    pts = np.round(k[:, :2]).astype(np.int32)
    for a, b in LIMBS:
        if a < len(k) and b < len(k) and vis[a] and vis[b]:
            cv2.line(frame, tuple(map(int, pts[a])), tuple(map(int, pts[b])), col, thick, cv2.LINE_AA)
    for i in np.flatnonzero(vis):
        cv2.circle(frame, tuple(map(int, pts[i])), thick + 1, (255, 255, 255), -1, cv2.LINE_AA)


def draw_poses(frame: np.ndarray, states: Iterable, min_conf: float = 0.5) -> np.ndarray:
    """Skeleton and posture (under the box) of every state that has keypoints."""
    h, w = frame.shape[:2]
    scale = max(0.35, min(h, w) / 900.0)
    thick = max(1, int(round(scale * 2)))
    for st in states:
        kp = getattr(st, "keypoints", None)
        if kp is None:
            continue
        c = colour(st.id)
        draw_skeleton(frame, kp, c, min_conf, thick)
        text = getattr(st, "posture", None)
        if text:
            x1, y2 = int(round(float(st.box[0]))), int(round(float(st.box[3])))
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            ty = min(h - base - 1, y2 + th + 4)
            tx = min(max(0, x1), max(0, w - tw - 2))
            cv2.rectangle(frame, (tx, ty - th - 2), (tx + tw + 2, ty + base), (0, 0, 0), -1)
            cv2.putText(frame, text, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, c, thick, cv2.LINE_AA)
    return frame
