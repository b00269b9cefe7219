"""How far a quantised or rebuilt engine strays from the FP32 reference, on the same clips."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import numpy as np


@dataclass(frozen=True)
class Agreement:
    clips: int
    top1: float          # fraction of clips whose top-1 class matches the reference
    max_abs_diff: float  # over all clips and classes, on the raw outputs
    mean_abs_diff: float

    def ok(self, threshold: float) -> bool:
        return self.top1 >= threshold

    def __str__(self):
        return (f"top-1 agreement {100 * self.top1:.1f}% on {self.clips} clips, "
                f"max |diff| {self.max_abs_diff:.4g}, mean |diff| {self.mean_abs_diff:.4g}")


def outputs(engine, clips: List[np.ndarray], output: str = None) -> np.ndarray:
    """[clips, classes] outputs of ``engine`` (any actionnet Engine), one clip at a time."""
    return np.concatenate([engine.infer(c, output) for c in clips]).reshape(len(clips), -1)


def compare(reference: np.ndarray, test: np.ndarray) -> Agreement:
    if reference.shape != test.shape:
        raise ValueError(f"outputs differ in shape: reference {reference.shape}, test {test.shape}")
    diff = np.abs(reference.astype(np.float64) - test.astype(np.float64))
    top1 = float(np.mean(reference.argmax(1) == test.argmax(1)))
    return Agreement(len(reference), top1, float(diff.max()), float(diff.mean()))
