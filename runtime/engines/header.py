"""The TensorRT engine file: a header that says what the engine is, then the engine.

A serialized TensorRT engine runs only on the GPU model and TensorRT version it was built
with, and carries none of the model spec. So an actionnet engine file is::

    b"ACTNTRT1" | uint32 LE header length | header JSON (UTF-8) | TensorRT plan

The JSON holds the ONNX model's metadata (the spec the runtime feeds it by), the TensorRT
version, GPU name, compute capability, precision and how it was obtained (strongly typed from
the graph, or builder flags), profile (max batch), DLA core, the sha256 of
the ONNX it came from and the plan's size and sha256, so that a truncated or corrupt file is
detected before TensorRT sees it. Files are written to a temporary name in the same folder
and renamed, so a reader never sees half an engine.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import Dict, Optional, Tuple

from .. import files
from ..errors import ModelError

MAGIC = b"ACTNTRT1"
FORMAT_VERSION = 1
_LEN = struct.Struct("<I")
MAX_HEADER = 16 << 20


class EngineFileError(ModelError):
    """An engine file that is truncated, corrupt, or not an actionnet engine."""


@dataclass
class EngineHeader:
    metadata: Dict[str, str]
    trt_version: str
    gpu_name: str
    compute_capability: str
    precision: str
    onnx_sha256: str = ""
    onnx_name: str = ""
    max_batch: int = 1
    dla_core: Optional[int] = None
    inputs: Dict[str, list] = field(default_factory=dict)
    precision_from: str = ""  # how the precision was obtained (runtime/engines/trt_build.py: build_recipe)
    plan_size: int = 0
    plan_sha256: str = ""
    format_version: int = FORMAT_VERSION

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> "EngineHeader":
        d = json.loads(data.decode("utf-8"))
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def mismatch(self, trt_version: str, gpu_name: str, compute_capability: str,
                 onnx_sha256: Optional[str] = None, precision: Optional[str] = None) -> Optional[str]:
        """Why this engine cannot run here (None when it can). Order: the reasons a user can
        do least about first."""
        if self.trt_version != trt_version:
            return f"built with TensorRT {self.trt_version}, this is TensorRT {trt_version}"
        if self.compute_capability != compute_capability or self.gpu_name != gpu_name:
            return (f"built for {self.gpu_name} (compute {self.compute_capability}), "
                    f"this GPU is {gpu_name} (compute {compute_capability})")
        if onnx_sha256 and self.onnx_sha256 and onnx_sha256 != self.onnx_sha256:
            return f"the ONNX model {self.onnx_name or ''} changed since the engine was built".replace("  ", " ")
        if precision and precision != self.precision:
            return f"built for {self.precision}, {precision} requested"
        return None


def write_engine(path: str, header: EngineHeader, plan: bytes) -> None:
    """Write header + plan to ``path`` atomically (temporary file in the same folder, fsync,
    rename)."""
    plan = bytes(plan)
    header.plan_size = len(plan)
    header.plan_sha256 = hashlib.sha256(plan).hexdigest()
    head = header.to_json()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = files.mkstemp(folder, prefix=".engine-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC)
            f.write(_LEN.pack(len(head)))
            f.write(head)
            f.write(plan)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _read_head(f, path) -> Tuple[EngineHeader, int]:
    magic = f.read(len(MAGIC))
    if magic != MAGIC:
        raise EngineFileError(f"{path} is not an actionnet engine file (no header); "
                              f"build it with: actionnet-export engine MODEL.onnx --output {path}")
    raw = f.read(_LEN.size)
    if len(raw) != _LEN.size:
        raise EngineFileError(f"engine file {path} is truncated (header)")
    (n,) = _LEN.unpack(raw)
    if n > MAX_HEADER:
        raise EngineFileError(f"engine file {path} is corrupt (header length {n})")
    data = f.read(n)
    if len(data) != n:
        raise EngineFileError(f"engine file {path} is truncated (header)")
    try:
        return EngineHeader.from_json(data), len(MAGIC) + _LEN.size + n
    except (ValueError, TypeError, AttributeError) as e:  # AttributeError: JSON, but not an object
        raise EngineFileError(f"engine file {path} is corrupt (header: {e})") from None


def read_header(path: str, check_size: bool = True) -> EngineHeader:
    """The header alone (cheap), with the plan's size checked against the file's unless
    ``check_size`` is False (to learn how a damaged engine was built)."""
    try:
        with open(path, "rb") as f:
            header, offset = _read_head(f, path)
    except OSError as e:
        raise ModelError(f"cannot read engine {path}: {e.strerror}") from None
    if check_size and os.path.getsize(path) - offset != header.plan_size:
        raise EngineFileError(f"engine file {path} is truncated ({os.path.getsize(path) - offset} of "
                              f"{header.plan_size} plan bytes)")
    return header


def read_engine(path: str) -> Tuple[EngineHeader, bytes]:
    """Header and plan; EngineFileError when the file is truncated or its plan corrupt."""
    try:
        with open(path, "rb") as f:
            header, _ = _read_head(f, path)
            plan = f.read()
    except OSError as e:
        raise ModelError(f"cannot read engine {path}: {e.strerror}") from None
    if len(plan) != header.plan_size:
        raise EngineFileError(f"engine file {path} is truncated ({len(plan)} of {header.plan_size} plan bytes)")
    if hashlib.sha256(plan).hexdigest() != header.plan_sha256:
        raise EngineFileError(f"engine file {path} is corrupt (plan checksum mismatch)")
    return header, plan
