"""Engine backends behind one interface, and the choice between them."""

from __future__ import annotations

from typing import Optional

from ..errors import UsageError
from .base import Engine, TensorInfo

ENGINES = ("auto", "onnxruntime")


def open_engine(path: str, engine: str = "auto", threads: Optional[int] = None) -> Engine:
    """The engine for ``path``. ``auto`` picks the best backend present for the file."""
    if engine not in ENGINES:
        raise UsageError(f"unknown engine {engine!r}; choose one of: {', '.join(ENGINES)}")
    from .onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(path, threads=threads)


__all__ = ["Engine", "TensorInfo", "open_engine", "ENGINES"]
