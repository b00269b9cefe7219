"""The clip window: a preallocated ring that always holds the latest T frames contiguously.

Each stored frame is written twice, at slot ``i`` and ``i + T`` of a ``2T`` ring, so the last T
frames are always the single contiguous view ``ring[s:s + T]`` with ``s = stored % T``. The
engine gets that view (plus a batch axis) without a copy, and nothing is allocated per frame.

Two clocks, kept separate:

* the sampling stride, ``skip_frames``: frames dropped between two stored frames (0 stores
  every frame; jetson-inference's default is 1);
* the classification cadence, ``cadence``: stored frames between two classifications.

The window is valid from the T-th stored frame on; before that :meth:`window` refuses, so no
clip is ever classified against zeros or stale frames (jetson-inference's is clean only from
about the 31st frame).
"""

from __future__ import annotations

import numpy as np


class FrameBuffer:
    def __init__(self, clip_length: int, frame_shape, dtype=np.uint8, skip_frames: int = 1, cadence: int = 1):
        if clip_length < 1:
            raise ValueError(f"clip_length must be >= 1, got {clip_length}")
        if skip_frames < 0:
            raise ValueError(f"skip_frames must be >= 0, got {skip_frames}")
        if cadence < 1:
            raise ValueError(f"cadence must be >= 1, got {cadence}")
        self.clip_length = clip_length
        self.skip_frames = skip_frames
        self.cadence = cadence
        self._ring = np.zeros((2 * clip_length, *frame_shape), dtype=dtype)
        self.reset()

    def reset(self) -> None:
        """Forget every frame (a new stream, a lost track); the memory is kept."""
        self.seen = 0  # frames offered to sample()
        self.stored = 0  # frames committed to the ring

    # -- sampling clock -----------------------------------------------------------------
    def sample(self) -> bool:
        """Count one incoming frame; True when it is to be stored (every ``skip_frames + 1``-th,
        starting with the first)."""
        keep = self.seen % (self.skip_frames + 1) == 0
        self.seen += 1
        return keep

    # -- storing ------------------------------------------------------------------------
    def slot(self) -> np.ndarray:
        """The preallocated frame the next stored frame is written into (then :meth:`commit`)."""
        return self._ring[self.stored % self.clip_length]

    def commit(self) -> None:
        """Store the frame written into :meth:`slot` (mirrored into its twin slot)."""
        i = self.stored % self.clip_length
        self._ring[i + self.clip_length] = self._ring[i]
        self.stored += 1

    def push(self, frame: np.ndarray) -> None:
        """Store ``frame`` (copied) without going through the sampling clock."""
        self.slot()[...] = frame
        self.commit()

    # -- reading ------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        return self.stored >= self.clip_length

    def due(self) -> bool:
        """True when the frame just stored should be classified: the T-th stored frame and
        every ``cadence``-th stored frame after it."""
        return self.ready and (self.stored - self.clip_length) % self.cadence == 0

    def window(self) -> np.ndarray:
        """The last T stored frames, oldest first: a contiguous view into the ring, no copy."""
        if not self.ready:
            raise RuntimeError(f"window not full: {self.stored} of {self.clip_length} frames stored")
        s = self.stored % self.clip_length
        return self._ring[s : s + self.clip_length]
