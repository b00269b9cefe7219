"""One call at a time on a thread of its own: the classifier of a live per-person run.

Why: on a live source the frame loop has one frame period (33 ms at 30 fps) per frame, and a
frame that takes longer costs the frames the camera sends meanwhile. A per-person classification
is a burst (a 3D ResNet-18 clip is 40 ms on two CPU cores, torchvision's r3d_18 200 ms) landing
every fifteenth frame or so; run in the loop, every burst drops frames although the machine keeps
up on average. Run here, it overlaps the frames that follow it and the loop never waits.

One call in flight, never a queue: a caller that finds the thread busy keeps its work for later
(the per-person runtime then classifies each waiting person's newest clip once the thread is
free), so a slow classifier lowers the label rate instead of building a backlog of stale clips.
The engines release the GIL while they compute (ONNX Runtime, OpenVINO, TensorRT), so the loop
runs beside them.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional


class Background:
    """``submit(fn, *args)`` while :attr:`busy` is False; :meth:`result` hands back
    ``(value, seconds)`` once, when the call has finished (an exception it raised is raised there,
    in the caller's thread)."""

    def __init__(self, name: str = "classifier"):
        self._cond = threading.Condition()
        self._job: Optional[tuple] = None
        self._done: Optional[tuple] = None
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def busy(self) -> bool:
        """A call is running or its result has not been taken yet."""
        return self._job is not None or self._done is not None

    def submit(self, fn: Callable, *args) -> None:
        with self._cond:
            if self.busy or self._closed:
                raise RuntimeError("Background.submit: busy or closed")
            self._job = (fn, args)
            self._cond.notify_all()

    def result(self, wait: bool = False) -> Optional[tuple]:
        """``(value, seconds)`` of the finished call, or None (none finished; with ``wait``, none
        submitted)."""
        with self._cond:
            while wait and self._job is not None:
                self._cond.wait()
            done, self._done = self._done, None
        if done is None:
            return None
        value, seconds, error = done
        if error is not None:
            raise error
        return value, seconds

    def _loop(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._closed:
                    self._cond.wait()
                if self._job is None:  # closed; a call submitted before close() still runs
                    return
                fn, args = self._job
            t0 = time.perf_counter()
            value: Any = None
            error: Optional[BaseException] = None
            try:
                value = fn(*args)
            except BaseException as e:  # raised in the caller's thread by result()
                error = e
            with self._cond:
                self._done = (value, time.perf_counter() - t0, error)
                self._job = None
                self._cond.notify_all()

    def close(self, timeout: float = 10.0) -> bool:
        """Let a running call finish (its engine is about to be freed), then stop the thread;
        False if the call is still running after ``timeout`` (its engine must then be left to the
        process's exit, never freed under it)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            end = time.monotonic() + timeout
            while self._job is not None and time.monotonic() < end:
                self._cond.wait(0.1)
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(0.0, end - time.monotonic()))
        return self._job is None
