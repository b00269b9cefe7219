"""One small engine interface; backends write only ``_run``.

The base class holds what every backend shares: the model's I/O description, the check that a
caller's inputs match it (names the expected and actual shape and dtype), and the context
manager protocol. A backend is about a hundred lines.

Most models take one input (a clip or an image): ``infer(x)``. Models with several inputs
(zero-shot models take text embeddings beside the frames, streaming models take their state
tensors) use ``run({name: array, ...}, [output, ...])``; ``input`` is always the first input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..errors import ModelError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: Tuple  # ints, or str/None for dynamic dimensions
    dtype: np.dtype


class Engine:
    """Runs one model. ``infer(x)`` feeds the first input and returns one output; ``run`` feeds
    any number of named inputs and returns the outputs asked for."""

    name = "engine"

    def __init__(self, path: str, inputs, outputs: Tuple[TensorInfo, ...], metadata: Dict[str, str]):
        self.path = path
        self.inputs: Tuple[TensorInfo, ...] = (inputs,) if isinstance(inputs, TensorInfo) else tuple(inputs)
        self.input = self.inputs[0]
        self.outputs = outputs
        self.metadata = metadata

    def input_info(self, name: str) -> TensorInfo:
        for i in self.inputs:
            if i.name == name:
                return i
        raise ModelError(f"model {self.path} has no input {name!r}; its inputs are: {', '.join(i.name for i in self.inputs)}")

    def output(self, name: Optional[str] = None) -> TensorInfo:
        if name is None:
            return self.outputs[0]
        for o in self.outputs:
            if o.name == name:
                return o
        raise ModelError(f"model {self.path} has no output {name!r}; its outputs are: {', '.join(o.name for o in self.outputs)}")

    def check_input(self, x: np.ndarray, want: Optional[TensorInfo] = None) -> None:
        want = want or self.input
        if x.dtype != want.dtype:
            raise ModelError(f"input {want.name!r} wants dtype {want.dtype}, got {x.dtype}")
        if len(x.shape) != len(want.shape) or any(
            isinstance(w, int) and w != g for w, g in zip(want.shape, x.shape)
        ):
            raise ModelError(f"input {want.name!r} wants shape {list(want.shape)}, got {list(x.shape)}")

    def infer(self, x: np.ndarray, output: Optional[str] = None) -> np.ndarray:
        """The first input fed with ``x`` (a one-input model); one output, by default the first."""
        if len(self.inputs) != 1:
            raise ModelError(f"model {self.path} has {len(self.inputs)} inputs "
                             f"({', '.join(i.name for i in self.inputs)}); feed them with run()")
        self.check_input(x)
        return self._run({self.input.name: x}, [output or self.outputs[0].name])[0]

    def run(self, feeds: Mapping[str, np.ndarray], outputs: Optional[Sequence[str]] = None) -> List[np.ndarray]:
        """Every input by name; the outputs named (default: all), in that order."""
        missing = [i.name for i in self.inputs if i.name not in feeds]
        if missing or len(feeds) != len(self.inputs):
            raise ModelError(f"model {self.path} takes inputs {[i.name for i in self.inputs]}, got {sorted(feeds)}")
        for name, x in feeds.items():
            self.check_input(x, self.input_info(name))
        names = list(outputs) if outputs is not None else [o.name for o in self.outputs]
        for n in names:
            self.output(n)
        return self._run(feeds, names)

    def _run(self, feeds: Mapping[str, np.ndarray], outputs: Sequence[str]) -> List[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return f"{type(self).__name__}({self.path!r}, input={self.input.name}{list(self.input.shape)})"
