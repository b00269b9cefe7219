"""Per-person overlay: each track's box, id and its own label, drawn in place.

Colours come from the track id (stable per person); the text is read from the track's own
state, never from a list position, so labels stay on the right box as people come and go.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

_PALETTE = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72),
            (23, 204, 146), (134, 219, 61), (52, 147, 26), (187, 212, 0), (168, 153, 44), (255, 194, 0),
            (147, 69, 52), (255, 115, 100), (236, 24, 0), (255, 56, 132), (133, 0, 82), (255, 56, 203)]


def colour(track_id: int):
    return _PALETTE[track_id % len(_PALETTE)]


def text_colour(box_colour) -> tuple:
    """Black or white, whichever reads better on ``box_colour`` (BGR): black on a light box,
    white on a dark one, by the colour's relative luminance (Rec. 709 weights on linear light)."""
    b, g, r = (_linear(c) for c in box_colour)
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    # white and black give equal contrast at luminance 0.179 (WCAG contrast ratios)
    return (0, 0, 0) if lum > 0.179 else (255, 255, 255)


def _linear(c: float) -> float:
    c = c / 255.0
    return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4


class PersonOverlay:
    def __init__(self, scale=None):
        self.scale = scale

    @staticmethod
    def text(st, clip_length: int) -> str:
        c = st.reported  # the hysteresis's label, not the latest window's
        if c is None and st.last is not None:  # classified, but no label has held --min-duration yet
            return f"#{st.id}"
        if c is None:
            return f"#{st.id} collecting {min(st.buffer.stored, clip_length)}/{clip_length}"
        if c.label is None:
            return f"#{st.id} (below threshold)"
        return f"#{st.id} {c.label} {c.confidence * 100:.1f}%"

    def annotate(self, frame: np.ndarray, states: Iterable, clip_length: int) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = self.scale or max(0.35, min(h, w) / 900.0)
        thick = max(1, int(round(scale * 2)))
        # boxes at least 2 px (3 px from 720p up): 1 px vanishes in a compressed video
        box = max(2, int(round(min(h, w) / 240)))
        for st in states:
            x1, y1, x2, y2 = (int(round(float(v))) for v in st.box)
            c = colour(st.id)
            cv2.rectangle(frame, (x1, y1), (x2, y2), c, box)
            line = self.text(st, clip_length)
            (tw, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            ty = y1 - base - 2 if y1 - th - base - 4 >= 0 else y2 + th + 2
            tx = min(max(0, x1), max(0, w - tw - 2))
            cv2.rectangle(frame, (tx, ty - th - 2), (tx + tw + 2, ty + base), c, -1)
            cv2.putText(frame, line, (tx + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, text_colour(c), thick,
                        cv2.LINE_AA)
        return frame
