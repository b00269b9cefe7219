"""Streaming models: one frame in, a label out, the temporal context carried as state tensors.

A streaming model (``actionnet-export stream``: MoViNet Stream, TSM online) is a graph
``frames [N, 1, H, W, 3], *state -> logits [N, K], *state'`` whose states the metadata names
(:class:`~actionnet.spec.StateSpec`). The runtime owns them:

* :class:`StreamState` is one stream's (or one tracked person's) state set, allocated once at its
  full size and overwritten in place after every step; ``reset`` puts the start values back
  (a reconnect), and a pool hands released sets to the next person (an eviction), so memory is
  bounded by the number of live streams, not by the length of the video;
* :class:`StreamingClassifier` runs one step for one or many streams: with one stream its arrays
  are fed as they are; with several, their rows are gathered into a preallocated batch and the
  new states scattered back. Nothing is allocated per frame on our side; the engine returns its
  outputs in its own buffers (ONNX Runtime and OpenVINO both do), which are copied into the sets.

Where a clip model keeps a :class:`~actionnet.framebuffer.FrameBuffer` of T frames per stream or
track, a streaming model keeps a one-frame buffer (the prepared frame) and a state set; it steps
on every stored frame (``--skip-frames`` as the model was trained: the stride is in its metadata)
and reports a label on every ``--cadence``-th.
"""

from __future__ import annotations

import base64
from typing import List, Optional, Sequence

import numpy as np

from .errors import ModelError
from .spec import ModelSpec, StateSpec


def initial_state(st: StateSpec) -> np.ndarray:
    """One row of state ``st`` as it is at the start of a stream (no batch axis)."""
    dtype = np.dtype(st.dtype)
    if st.init == "zeros":
        return np.zeros(st.shape, dtype)
    try:
        raw = base64.b64decode(st.values, validate=True)
        return np.frombuffer(raw, dtype.newbyteorder("<")).astype(dtype).reshape(st.shape)
    except (ValueError, TypeError) as e:
        raise ModelError(f"state {st.name!r}: stored initial values do not fit shape {list(st.shape)} "
                         f"and dtype {st.dtype} ({e})") from None


def encode_values(values: np.ndarray) -> str:
    """The ``values`` string of a state that starts from ``values`` (the inverse of :func:`initial_state`)."""
    return base64.b64encode(np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()).decode()


class StreamState:
    """One stream's state set: ``arrays[i]`` is state i with a batch axis of 1."""

    def __init__(self, spec: ModelSpec):
        self._start = [initial_state(st)[None] for st in spec.states]
        self.arrays: List[np.ndarray] = [s.copy() for s in self._start]
        self.steps = 0

    def reset(self) -> None:
        """Back to the start values (a new stream, a reconnect); the memory is kept."""
        for a, s in zip(self.arrays, self._start):
            a[...] = s
        self.steps = 0

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in self.arrays)


class StreamingClassifier:
    """Steps a streaming model for one or more streams and keeps their states up to date."""

    def __init__(self, engine, spec: ModelSpec, max_batch: int = 1):
        if not spec.streaming:
            raise ModelError(f"{engine.path} is a clip model, not a streaming model")
        self.engine, self.spec = engine, spec
        for st in spec.states:  # checked once, at load time, against what the engine really takes
            i, o = engine.input_info(st.name), engine.output(st.output)
            for info, what in ((i, "input"), (o, "output")):
                dims = tuple(info.shape[1:])
                if len(dims) != len(st.shape) or any(isinstance(d, int) and d != w for d, w in zip(dims, st.shape)):
                    raise ModelError(f"state {what} {info.name!r} of {engine.path} has shape {list(info.shape)}; "
                                     f"the metadata says [N, {', '.join(map(str, st.shape))}]")
            if i.dtype != np.dtype(st.dtype):
                raise ModelError(f"state input {st.name!r} of {engine.path} is {i.dtype}; the metadata says {st.dtype}")
        extra = [i.name for i in engine.inputs[1:] if i.name not in {st.name for st in spec.states}]
        if extra:
            raise ModelError(f"{engine.path} takes inputs the metadata does not describe: {', '.join(extra)}")
        self.outputs = [spec.output_name] + [st.output for st in spec.states]
        self.max_batch = max(1, max_batch)
        self._batch: Optional[List[np.ndarray]] = None
        self._pool: List[StreamState] = []

    # -- state sets ---------------------------------------------------------------------
    def new_state(self) -> StreamState:
        """A state set at its start values: a released one when there is one, else a new one."""
        if self._pool:
            st = self._pool.pop()
            st.reset()
            return st
        return StreamState(self.spec)

    def release(self, state: StreamState) -> None:
        """``state`` is no longer used (its track was evicted): kept for the next one."""
        self._pool.append(state)

    @property
    def state_bytes(self) -> int:
        """Memory of one state set."""
        return sum(int(np.prod(st.shape)) * np.dtype(st.dtype).itemsize for st in self.spec.states)

    # -- stepping -----------------------------------------------------------------------
    def step(self, frames: np.ndarray, states: Sequence[StreamState]) -> np.ndarray:
        """One step: ``frames`` [B, 1, H, W, 3] (B >= len(states); extra rows pad a fixed batch,
        their results are dropped) -> logits [B, K]; every state set is advanced in place."""
        n, b = len(states), frames.shape[0]
        if n == 0 or b < n:
            raise ValueError(f"{n} state sets for a batch of {b} frames")
        feeds = {self.spec.input_name: frames}
        if b == 1:
            feeds.update({st.name: a for st, a in zip(self.spec.states, states[0].arrays)})
        else:
            if self._batch is None or self._batch[0].shape[0] < b:
                self._batch = [np.empty((max(b, self.max_batch),) + a.shape[1:], a.dtype) for a in states[0].arrays]
            for i, (st, buf) in enumerate(zip(self.spec.states, self._batch)):
                rows = buf[:b]
                for j, s in enumerate(states):
                    rows[j] = s.arrays[i][0]
                if b > n:
                    rows[n:] = rows[n - 1]
                feeds[st.name] = rows
        out = self.engine.run(feeds, self.outputs)
        for i in range(len(self.spec.states)):
            new = out[i + 1]
            for j, s in enumerate(states):
                np.copyto(s.arrays[i][0], new[j])
        for s in states:
            s.steps += 1
        return out[0]


def for_model(engine, spec: ModelSpec, max_batch: int = 1) -> Optional[StreamingClassifier]:
    """The hook the whole-frame and per-person runtimes call: a classifier for a streaming model,
    None for a clip model (which keeps its T-frame window)."""
    return StreamingClassifier(engine, spec, max_batch) if spec.streaming else None
