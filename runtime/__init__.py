"""actionnet: video action recognition for the edge.

The runtime (this package) needs numpy, OpenCV, PyAV and one engine library; never torch.
The export stage lives in :mod:`actionnet.export` and needs ``pip install actionnet[export]``.
"""

from .errors import (ActionNetError, InputError, LabelError, MissingLibraryError, ModelError, OutputError,
                     UsageError, ZooError)
from .framebuffer import FrameBuffer
from .net import ActionNet
from .scores import Classification
from .spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "ActionNet", "Classification", "FrameBuffer", "ModelSpec",
    "ActionNetError", "InputError", "LabelError", "MissingLibraryError", "ModelError", "OutputError",
    "UsageError", "ZooError",
]
