"""Synthetic per-person videos: coloured squares, each moving its own way, on a noisy grey field.

Squares are the synthetic test model's squares at ``scale`` x their model size, so that a crop
of ``32 * scale`` pixels around one, shrunk to the model's 32 x 32, shows what the model was
trained on (``crop_context = 32 / 6``).
"""

from __future__ import annotations

import numpy as np

from actionnet.export.synthetic import BACKGROUND, COLOURS, DIRECTIONS

SQUARE = 6  # model pixels
CONTEXT = 32 / SQUARE


def squares_frames(movers, frames=40, width=256, height=128, scale=2, seed=0, noise=3.0):
    """BGR frames; ``movers`` = [(colour, direction, speed model-px/frame, x0, y0 video px), ...].
    Also returns the true boxes per frame (x1, y1, x2, y2) for each mover."""
    rng = np.random.default_rng(seed)
    side = SQUARE * scale
    out, truth = [], []
    rgbs = [np.array(COLOURS[c], np.float32) for c, *_ in movers]
    for i in range(frames):
        img = np.full((height, width, 3), BACKGROUND, np.float32)
        img += rng.normal(0, noise, (height, width, 1))
        boxes = []
        for (colour, direction, speed, x0, y0), rgb in zip(movers, rgbs):
            x = x0 + DIRECTIONS[direction] * speed * scale * i
            xa, ya = int(round(x)), int(round(y0))
            img[ya:ya + side, max(0, xa):max(0, xa + side)] = rgb
            boxes.append((xa, ya, xa + side, ya + side))
        out.append(np.ascontiguousarray(np.clip(img, 0, 255).astype(np.uint8)[..., ::-1]))
        truth.append(boxes)
    return out, truth
