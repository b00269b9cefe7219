"""Synthetic class-folder datasets (the layout ``actionnet-train --data`` reads), for tests and
benchmarks: videos of a square moving across the frame, rendered by :mod:`actionnet.export.synthetic`.

Tasks: ``direction`` (classes ``left``/``right``, any colour and speed) and ``colour``
(``red``/``blue``, any direction and speed). A model that solves one learns nothing of the other's
labels, so fine-tuning from one to the other is a real transfer.
"""

from __future__ import annotations

import os
from typing import Dict, List

import numpy as np

from ..synthetic import BACKGROUND, COLOURS, DIRECTIONS, SIZE, render, write_video

TASKS = {"direction": tuple(DIRECTIONS), "colour": tuple(COLOURS)}


def video(task_value: Dict[str, str], frames: int, rng, width: int = 128, height: int = 96,
          speed_per_frame: float = 0.45) -> List[np.ndarray]:
    """BGR frames, the square moving ``speed_per_frame`` model pixels per video frame (+-30%)."""
    colour = task_value.get("colour") or str(rng.choice(list(COLOURS)))
    direction = task_value.get("direction") or str(rng.choice(list(DIRECTIONS)))
    speed = speed_per_frame * rng.uniform(0.7, 1.3)
    scale = height // SIZE
    square = render(colour, direction, speed, frames, square=int(rng.integers(5, 8)), rng=rng, scale=scale, noise=3.0)
    x0, y0 = (width - square.shape[2]) // 2, (height - square.shape[1]) // 2
    out = []
    for f in square:
        canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
        canvas[y0:y0 + f.shape[0], x0:x0 + f.shape[1]] = f
        out.append(np.ascontiguousarray(canvas[..., ::-1]))
    return out


def write_dataset(root: str, task: str = "direction", per_class: int = 12, frames: int = 32, seed: int = 0,
                  **kw) -> str:
    """``root/<class>/<n>.mp4`` for each class of ``task``; returns ``root``."""
    rng = np.random.default_rng(seed)
    key = "colour" if task == "colour" else "direction"
    for label in TASKS[task]:
        os.makedirs(os.path.join(root, label), exist_ok=True)
        for i in range(per_class):
            write_video(os.path.join(root, label, f"{i:03d}.mp4"), video({key: label}, frames, rng, **kw))
    return root
