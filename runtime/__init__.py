"""actionnet: video action recognition for the edge.

The runtime (this package) needs numpy, OpenCV, PyAV and one engine library; never torch.
The export stage lives in :mod:`actionnet.export` and needs ``pip install actionnet[export]``.

A whole program, as jetson-inference's ``actionnet.py``::

    import actionnet

    net = actionnet.ActionNet(model="r3d18.onnx")
    with actionnet.video_source("input.mp4") as source, \
            actionnet.video_output("output.mp4", source.rate) as output:
        for frame, t in source:
            net.classify(frame, t)
            output.write(net.annotate(frame))

The layers, source to output: :mod:`~actionnet.sources` (and :mod:`~actionnet.capture`) ->
:class:`ActionNet` or :class:`PersonActionNet` (frame buffers, :mod:`~actionnet.engines`,
:mod:`~actionnet.scores`) -> :mod:`~actionnet.outputs`; :func:`actionnet.pipeline.run` is the loop
the ``actionnet`` command runs (:mod:`~actionnet.cli`).
"""

from .errors import (
    ActionNetError,
    InputError,
    LabelError,
    MissingLibraryError,
    ModelError,
    OutputError,
    UsageError,
    ZooError,
)
from .framebuffer import FrameBuffer
from .mqtt import MqttSink
from .net import ActionNet
from .outputs import Events, EventSink, Output, video_output
from .persons import PersonActionNet
from .pipeline import Analyser, run
from .scores import Classification
from .sources import Source, video_source
from .spec import ModelSpec

__version__ = "0.1.0"

__all__ = [
    "ActionNet", "PersonActionNet", "Analyser", "Classification", "FrameBuffer", "ModelSpec",
    "Source", "Output", "Events", "EventSink", "MqttSink", "video_source", "video_output", "run",
    "ActionNetError", "InputError", "LabelError", "MissingLibraryError", "ModelError", "OutputError",
    "UsageError", "ZooError",
]
