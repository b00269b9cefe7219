"""One small engine interface; backends write only ``_infer``.

The base class holds what every backend shares: the model's I/O description, the check that a
caller's input matches it (names the expected and actual shape and dtype), and the context
manager protocol. A backend is about a hundred lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from ..errors import ModelError


PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Tuple  # ints, or str/None for dynamic dimensions
    dtype: np.dtype


class Engine:
    """Runs one model. ``infer(x)`` takes one input array and returns the first output."""

    name = "engine"

    def __init__(self, path: str, input: TensorInfo, outputs: Tuple[TensorInfo, ...], metadata: Dict[str, str]):
        self.path = path
        self.input = input
        self.outputs = outputs
        self.metadata = metadata

    def output(self, name: Optional[str] = None) -> TensorInfo:
        if name is None:
            return self.outputs[0]
        for o in self.outputs:
            if o.name == name:
                return o
        raise ModelError(f"model {self.path} has no output {name!r}; its outputs are: {', '.join(o.name for o in self.outputs)}")

    def check_input(self, x: np.ndarray) -> None:
        want = self.input
        if x.dtype != want.dtype:
            raise ModelError(f"input {want.name!r} wants dtype {want.dtype}, got {x.dtype}")
        if len(x.shape) != len(want.shape) or any(
            isinstance(w, int) and w != g for w, g in zip(want.shape, x.shape)
        ):
            raise ModelError(f"input {want.name!r} wants shape {list(want.shape)}, got {list(x.shape)}")

    def infer(self, x: np.ndarray, output: Optional[str] = None) -> np.ndarray:
        self.check_input(x)
        return self._infer(x, output or self.outputs[0].name)

    def _infer(self, x: np.ndarray, output: str) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r}, input={self.input.name}{list(self.input.shape)})"
