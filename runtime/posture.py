"""Posture from COCO-17 keypoints: standing, sitting or lying, by joint angles.

The rule, in image coordinates (y down), on keypoints whose visibility is at least ``min_conf``
(a pair of left/right joints is averaged over the visible ones):

1. **lying**: the torso (hip midpoint -> shoulder midpoint) leans more than ``LYING_TORSO``
   (55 degrees) from upright. A person lying along the camera's axis foreshortens to an upright
   stub; that case is not separable from sitting in 2D and is reported as what the legs say.
2. Without a visible knee there is no telling sitting from standing: ``None`` (nothing drawn).
3. **sitting**: the hip angle (shoulder-hip-knee) is below ``SITTING_HIP`` (120 degrees: the
   thigh is bent forward of the torso, seen from the side), or the knee angle (hip-knee-ankle)
   is below ``SITTING_KNEE`` (110 degrees: a chair or a squat), or the thigh is foreshortened to
   less than ``SHORT_THIGH`` (0.45) of the torso's length (seen from the front, a sitting
   person's thighs point at the camera and shrink).
4. otherwise **standing** (straight hips and knees: walking counts as standing).

The thresholds follow the widely copied MediaPipe rule (hip and knee angles near 180 degrees
standing, near 90 sitting, torso horizontal lying), moved from MediaPipe's 33 landmarks to
COCO's 17. They are coarse on purpose: posture is context for the action label, not a
replacement for it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

POSTURES = ("standing", "sitting", "lying")
LYING_TORSO = 55.0
SITTING_HIP = 120.0
SITTING_KNEE = 110.0
SHORT_THIGH = 0.45

L_SHOULDER, R_SHOULDER, L_HIP, R_HIP, L_KNEE, R_KNEE, L_ANKLE, R_ANKLE = 5, 6, 11, 12, 13, 14, 15, 16


def _angle(a, b, c) -> float:
    """The angle at ``b`` between ``b->a`` and ``b->c``, in degrees."""
    u, v = a - b, c - b
    nu, nv = np.hypot(*u), np.hypot(*v)
    if nu < 1e-6 or nv < 1e-6:
        return 180.0
    cos = float(np.dot(u, v) / (nu * nv))
    return float(np.degrees(np.arccos(min(1.0, max(-1.0, cos)))))


def posture(keypoints: np.ndarray, min_conf: float = 0.5) -> Optional[str]:
    """``"standing"``, ``"sitting"``, ``"lying"`` or None (the joints that decide are not visible)
    for one person's keypoints [17, 3] (x, y, visibility)."""
    k = np.asarray(keypoints, np.float64)
    if k.ndim != 2 or k.shape[0] < 17:
        return None
    vis = k[:, 2] >= min_conf if k.shape[1] > 2 else np.ones(len(k), bool)

    def mid(i, j):
        pts = [k[n, :2] for n in (i, j) if vis[n]]
        return np.mean(pts, axis=0) if pts else None

    shoulder, hip = mid(L_SHOULDER, R_SHOULDER), mid(L_HIP, R_HIP)
    if shoulder is None or hip is None:
        return None
    torso = shoulder - hip
    torso_len = float(np.hypot(*torso))
    if torso_len < 1e-6:
        return None
    lean = float(np.degrees(np.arctan2(abs(torso[0]), -torso[1])))  # 0: upright, 90: horizontal
    if lean > LYING_TORSO:
        return "lying"
    hips, knees, thighs = [], [], []
    for h, kn, an, sh in ((L_HIP, L_KNEE, L_ANKLE, L_SHOULDER), (R_HIP, R_KNEE, R_ANKLE, R_SHOULDER)):
        if not (vis[h] and vis[kn]):
            continue
        s = k[sh, :2] if vis[sh] else shoulder
        hips.append(_angle(s, k[h, :2], k[kn, :2]))
        thighs.append(float(np.hypot(*(k[kn, :2] - k[h, :2]))) / torso_len)
        if vis[an]:
            knees.append(_angle(k[h, :2], k[kn, :2], k[an, :2]))
    if not hips:
        return None
    if (min(hips) < SITTING_HIP or (knees and min(knees) < SITTING_KNEE) or max(thighs) < SHORT_THIGH):
        return "sitting"
    return "standing"
