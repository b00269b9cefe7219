"""Where actionnet keeps files between runs: ``$ACTIONNET_HOME``, default ``~/.cache/actionnet``.

The zoo's downloads and every engine cache (TensorRT plans, OpenVINO blobs, ONNX Runtime's
TensorRT cache) live under it. Kept apart from the zoo so that an engine can find its cache
without importing the downloader.
"""

from __future__ import annotations

import os


def cache_dir() -> str:
    """``$ACTIONNET_HOME``, default ``~/.cache/actionnet``."""
    return os.environ.get("ACTIONNET_HOME") or os.path.join(os.path.expanduser("~"), ".cache", "actionnet")
