"""The on-frame overlay: label, confidence and FPS in a box at the top left.

``annotate`` draws in place on the frame it is given: sources hand the pipeline frames it owns,
so copying a 720p frame just to draw on it would be waste.
"""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from .scores import Classification


class Overlay:
    def __init__(self, scale: Optional[float] = None, color=(0, 255, 0), background=(0, 0, 0)):
        self.scale = scale
        self.color = color
        self.background = background

    def text(self, result: Optional[Classification], collecting: bool = False) -> str:
        if result is None:
            return "collecting frames..." if collecting else ""
        if result.label is None:
            return f"(below threshold, best {result.confidence * 100:.1f}%)"
        return f"{result.label} {result.confidence * 100:.1f}%"

    def annotate(self, frame: np.ndarray, result: Optional[Classification], fps: Optional[float] = None,
                 collecting: bool = False) -> np.ndarray:
        h, w = frame.shape[:2]
        scale = self.scale or max(0.4, min(h, w) / 720.0)
        thick = max(1, int(round(scale * 2)))
        lines = [self.text(result, collecting)]
        if fps:
            lines.append(f"{fps:.1f} FPS")
        y = 0
        for line in lines:
            if not line:
                continue
            (tw, th), base = cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            pad = max(2, th // 3)
            cv2.rectangle(frame, (0, y), (min(w - 1, tw + 2 * pad), min(h - 1, y + th + base + 2 * pad)), self.background, -1)
            cv2.putText(frame, line, (pad, y + pad + th), cv2.FONT_HERSHEY_SIMPLEX, scale, self.color, thick, cv2.LINE_AA)
            y += th + base + 2 * pad
        return frame
