"""Read an ONNX file's ``metadata_props`` without the ``onnx`` package.

Backends other than ONNX Runtime (OpenVINO, TensorRT) do not hand back the ONNX metadata that
carries the model spec, and the lean runtime must not need ``onnx``. ``metadata_props`` is
field 14 of ``ModelProto`` (``StringStringEntryProto``: key = 1, value = 2); everything else,
the graph and its weights included, is skipped by length, so the walk is a few microseconds on
top of one read of the file.
"""

from __future__ import annotations

import hashlib
from typing import Dict, Tuple

from ..errors import ModelError

_METADATA_PROPS = 14


def _varint(buf: memoryview, i: int) -> Tuple[int, int]:
    shift = result = 0
    while True:
        if i >= len(buf):
            raise ValueError("truncated varint")
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, i
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _fields(buf: memoryview):
    """Yield (field number, wire type, value) for one protobuf message; values of
    length-delimited fields are memoryviews, the rest ints."""
    i, n = 0, len(buf)
    while i < n:
        key, i = _varint(buf, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(buf, i)
        elif wire == 1:
            value, i = None, i + 8
        elif wire == 5:
            value, i = None, i + 4
        elif wire == 2:
            size, i = _varint(buf, i)
            if i + size > n:
                raise ValueError("truncated field")
            value, i = buf[i:i + size], i + size
        else:
            raise ValueError(f"unsupported wire type {wire}")
        if i > n:
            raise ValueError("truncated message")
        yield field, wire, value


def parse_metadata(data: bytes) -> Dict[str, str]:
    """``metadata_props`` of serialized ONNX ``data`` as a dict."""
    out: Dict[str, str] = {}
    for field, wire, value in _fields(memoryview(data)):
        if field == _METADATA_PROPS and wire == 2:
            key = val = ""
            for f, w, v in _fields(value):
                if w == 2 and f == 1:
                    key = bytes(v).decode("utf-8")
                elif w == 2 and f == 2:
                    val = bytes(v).decode("utf-8")
            out[key] = val
    return out


def read_metadata(path: str) -> Dict[str, str]:
    """``metadata_props`` of the ONNX file at ``path``; ModelError when it is not ONNX."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ModelError(f"cannot read model {path}: {e.strerror}") from None
    try:
        return parse_metadata(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise ModelError(f"{path} is not a readable ONNX file ({e})") from None


def sha256_file(path: str, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engine headers record the ONNX they came from)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()
