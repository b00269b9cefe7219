"""Capture on its own thread, so decoding overlaps inference.

Two policies, one object:

- **live** (cameras, streams): a short queue of the newest frames (``LIVE_QUEUE``, four: 133 ms
  at 30 fps). When it is full the oldest frame goes and is counted in ``dropped``. Inference
  that falls behind therefore runs at most 133 ms late, never on a growing backlog, while a loop
  that keeps up on average rides out one slow frame (a detection, an encoder's key frame)
  without losing any: a camera driver keeps the same few buffers (V4L2 and jetson-utils'
  sources use 4), and a one-slot mailbox lost a frame for every frame over 33 ms.
- **files**: a small bounded queue; the capture thread blocks when it is full, so every frame is
  processed and nothing is dropped, while decoding still runs ahead of inference.

The thread never outlives the consumer: :meth:`close` stops it, and an error the source raises
(for example :class:`~actionnet.sources.StreamLost`) is re-raised in the consumer's thread, in
order, after the frames that came before it.
"""

from __future__ import annotations

import collections
import threading
from typing import Iterator, Optional, Tuple

import numpy as np

from .sources import Source

_END = object()
LIVE_QUEUE = 4  # frames a live source holds for a consumer that is a moment behind


class Capture(Source):
    """Iterates ``(frame, time)`` from ``source`` read on a background thread. It is a source
    itself: what describes the stream is the wrapped source's, read through."""

    def __init__(self, source: Source, drop: Optional[bool] = None, queue_size: int = 4,
                 live_queue: int = LIVE_QUEUE):
        self.source = source
        self.drop = source.live if drop is None else drop
        self.maxlen = max(1, live_queue if self.drop else queue_size)
        self.dropped = 0  # frames overwritten before the consumer took them (live only)
        self.captured = 0
        self.generation = 0  # the source's generation (reconnects) of the frame last handed out
        self.live = source.live
        self._items: collections.deque = collections.deque()
        self._cond = threading.Condition()
        self._stop = False
        self._thread: Optional[threading.Thread] = None
        self._should_stop = lambda: False

    def stop_when(self, predicate) -> None:
        """Let the consumer's wait for a frame end early (a stop request while a stream is down)."""
        self._should_stop = predicate

    uri = property(lambda self: self.source.uri)
    fps = property(lambda self: self.source.fps)
    rate = property(lambda self: self.source.rate)
    width = property(lambda self: self.source.width)
    height = property(lambda self: self.source.height)
    frame_count = property(lambda self: self.source.frame_count)
    kind = property(lambda self: self.source.kind)
    skipped = property(lambda self: self.source.skipped)

    def describe(self) -> str:
        return self.source.describe()

    def start(self) -> "Capture":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name=f"capture {self.source.uri}", daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        item = _END
        try:
            for frame, t in self.source:
                gen = self.source.generation
                with self._cond:
                    while not self.drop and len(self._items) >= self.maxlen and not self._stop:
                        self._cond.wait()
                    if self._stop:
                        return
                    if self.drop and len(self._items) >= self.maxlen:
                        self._items.popleft()
                        self.dropped += 1
                    self._items.append((frame, t, gen))
                    self.captured += 1
                    self._cond.notify_all()
        except BaseException as e:  # handed to the consumer, raised there
            item = e
        with self._cond:
            self._items.append((item, None, None))
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Tuple[np.ndarray, float]]:
        self.start()
        while True:
            with self._cond:
                while not self._items:
                    self._cond.wait(0.1)
                    if not self._items and self._should_stop():
                        return
                frame, t, gen = self._items.popleft()
                self._cond.notify_all()
            if frame is _END:
                return
            if isinstance(frame, BaseException):
                raise frame
            self.generation = gen
            yield frame, t

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread, then close the source (never under a thread still reading it)."""
        with self._cond:
            self._stop = True
            self._items.clear()
            self._cond.notify_all()
        self.source.interrupt()  # e.g. stop a reconnecting source's backoff wait
        if self._thread is not None and self._thread is not threading.current_thread():
            # A live read returns within the source's own timeout; the loop then sees the stop.
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                return  # a daemon thread stuck in a driver: leave it to process exit
        self.source.close()
