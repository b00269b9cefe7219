"""``actionnet-export stream``: a streaming action model -> self-describing ONNX with explicit state.

The graph is ``frames [N, 1, H, W, 3] uint8, *state -> logits [N, K], *state'``: one raw frame
per step (normalised inside the graph, as clip models are), every state tensor an input with a
matching output, named in the metadata with its shape, dtype and start value
(:class:`actionnet.spec.StateSpec`). The metadata's ``skip_frames`` is the stride the state
expects between two steps; ``clip_length`` is 1 (frames per step).

Parity is checked before the file is written: ONNX Runtime stepped frame by frame, with the
states it returns fed back, must give the logits the PyTorch model gives on the whole clip
(for MoViNet: its causal clip mode; for TSM: the clip with a causal shift), frame for frame.
"""

from __future__ import annotations

import os
import sys
import warnings
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from actionnet import files
from actionnet.errors import ModelError
from actionnet.spec import ModelSpec, StateSpec, read_labels

from .onnx_export import OPSET, ParityReport, RawClipModel, finish_export, parity_report, sample_clips

HELP = "export a streaming action model (MoViNet-A0/A1/A2 Stream, TSM online MobileNetV2) to ONNX with explicit state"
TSM_ARCHS = ("tsm-mobilenetv2",)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Steps a stream's default stride: MoViNet was trained on 5 fps clips (a 30 fps camera: keep one
# frame in 6); TSM's online demo feeds every frame.
DEFAULT_SKIP = {"movinet": 5, "tsm": 0}


def archs():
    from .movinet import ARCHS

    return ARCHS + TSM_ARCHS


def add_arguments(p) -> None:
    p.add_argument("--arch", required=True, choices=archs(), metavar="ARCH", help=f"architecture: {', '.join(archs())}")
    p.add_argument("--weights", required=True,
                   help="state dict: MoViNet-pytorch's *_stream_statedict_v3, or a MobileNetV2 / TSM checkpoint")
    p.add_argument("--output", required=True, help="ONNX file to write")
    p.add_argument("--labels", help="label file (default: Kinetics-600 for MoViNet, Kinetics-400 for a 400-class TSM)")
    p.add_argument("--size", type=int, help="square input size (default: 172 for A0/A1, 224 for A2 and TSM)")
    p.add_argument("--skip-frames", type=int,
                   help="frames dropped between steps, as the model was trained (default: 5 for MoViNet's 5 fps "
                        "on 30 fps video, 0 for TSM)")
    p.add_argument("--allow-pickle", action="store_true", help="read checkpoints that hold more than tensors")
    p.add_argument("--no-parity", action="store_true", help="write even when ONNX Runtime and PyTorch disagree")


def run(args) -> int:
    report = export_stream(args.arch, args.weights, args.output, labels=args.labels, size=args.size,
                           skip_frames=args.skip_frames, allow_pickle=args.allow_pickle,
                           check_parity=not args.no_parity)
    print(f"actionnet-export: wrote {args.output}", file=sys.stderr)
    return 0 if report.ok else 1


def stream_spec(arch: str, labels: Sequence[str], size: Optional[int] = None,
                skip_frames: Optional[int] = None) -> ModelSpec:
    """The deployment spec of a streaming architecture (states are added at export)."""
    if arch in TSM_ARCHS:
        size = size or 224
        return ModelSpec(labels=tuple(labels), clip_length=1, height=size, width=size, input_name="frames",
                         output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="short_side",
                         resize_size=(int(round(size * 256 / 224)),), value_scale=255.0, mean=IMAGENET_MEAN,
                         std=IMAGENET_STD, arch=arch,
                         skip_frames=DEFAULT_SKIP["tsm"] if skip_frames is None else skip_frames)
    from .movinet import SAMPLE_FPS, input_size

    size = size or input_size(arch)
    # MoViNet takes RGB in [0, 1] (tensorflow/models' MoViNet), short side resized and centre-cropped
    return ModelSpec(labels=tuple(labels), clip_length=1, height=size, width=size, input_name="frames",
                     output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="short_side",
                     resize_size=(size,), value_scale=255.0, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0),
                     sample_fps=SAMPLE_FPS, arch=arch,
                     skip_frames=DEFAULT_SKIP["movinet"] if skip_frames is None else skip_frames)


def build(arch: str, num_classes: int) -> nn.Module:
    if arch in TSM_ARCHS:
        from .tsm import TSMMobileNetV2

        return TSMMobileNetV2(num_classes)
    from .movinet import MoViNetStream

    return MoViNetStream(arch, num_classes)


def head_key(arch: str) -> str:
    from . import movinet, tsm

    return (tsm.HEAD_PREFIX if arch in TSM_ARCHS else movinet.HEAD_PREFIX) + ("weight" if arch in TSM_ARCHS
                                                                              else "conv_1.conv2d.weight")


def export_stream(arch: str, weights: str, output: str, labels: Optional[str] = None, size: Optional[int] = None,
                  skip_frames: Optional[int] = None, allow_pickle: bool = False, check_parity: bool = True, log=None):
    from actionnet.models import LABELS

    from .checkpoints import head_classes, load_strict, read_state_dict

    if arch not in archs():
        raise ModelError(f"unknown streaming architecture {arch!r}; choose one of: {', '.join(archs())}")
    if skip_frames is not None and skip_frames < 0:
        raise ModelError(f"--skip-frames must be >= 0, got {skip_frames}")
    state = read_state_dict(weights, allow_pickle=allow_pickle)
    if arch in TSM_ARCHS:
        from .tsm import remap_state_dict

        state = remap_state_dict(state, build(arch, 1))
    n = head_classes(state, head_key(arch))
    if labels:
        label_list = read_labels(labels)
    elif arch in TSM_ARCHS and n != 400:
        raise ModelError(f"{weights} has {n} classes in its head; pass --labels with one line per class")
    else:
        label_list = read_labels(os.path.join(LABELS, "kinetics400.txt" if arch in TSM_ARCHS else "kinetics600.txt"))
    if n is not None and n != len(label_list):
        raise ModelError(f"{weights} has {n} classes in its head ({head_key(arch)}), but the label set has "
                         f"{len(label_list)}; pass --labels with one line per class")
    model = build(arch, len(label_list))
    load_strict(model, state, weights, what=arch)
    spec = stream_spec(arch, label_list, size, skip_frames)
    return export_stream_model(model, spec, output, log=log, check_parity=check_parity)


class RawStreamModel(RawClipModel):
    """uint8 frames [N, T, H, W, 3] + states -> logits of the last frame [N, K] + new states.
    Normalised in the graph as :class:`RawClipModel` does, into [N, T, 3, H, W] frames."""

    def normalise(self, frames):
        return (frames.float() * self.scale + self.shift).permute(0, 1, 4, 2, 3)

    def forward(self, frames, *states):
        logits, out = self.model(self.normalise(frames), *states)
        return (logits[:, -1],) + tuple(out)

    def clip_logits(self, frames: torch.Tensor) -> torch.Tensor:
        """Every frame's logits [N, T, K] of a whole clip, states starting at zero."""
        return self.model(self.normalise(frames))[0]


def state_specs(wrapped: RawStreamModel, spec: ModelSpec) -> List[StateSpec]:
    """The states one step produces, from a dry run at the model's input size."""
    with torch.no_grad():
        out = wrapped(torch.zeros(1, 1, spec.height, spec.width, 3, dtype=torch.uint8))[1:]
    return [StateSpec(f"state_{i:02d}", f"state_{i:02d}_out", tuple(int(d) for d in s.shape[1:]))
            for i, s in enumerate(out)]


def initial_states(spec: ModelSpec, batch: int = 1) -> List[np.ndarray]:
    from actionnet.streaming import initial_state

    return [np.repeat(initial_state(st)[None], batch, 0) for st in spec.states]


def stream_parity(wrapped: RawStreamModel, onnx_path: str, spec: ModelSpec, clips: np.ndarray,
                  rtol: float = 1e-3) -> ParityReport:
    """ONNX Runtime stepped frame by frame vs PyTorch on the whole clip, every frame compared."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    with torch.no_grad():
        ref = wrapped.clip_logits(torch.from_numpy(clips)).float().numpy()
    states = initial_states(spec, len(clips))
    names = [spec.output_name] + [st.output for st in spec.states]
    got = []
    for t in range(clips.shape[1]):
        feeds = {spec.input_name: np.ascontiguousarray(clips[:, t:t + 1])}
        feeds.update({st.name: s for st, s in zip(spec.states, states)})
        out = sess.run(names, feeds)
        got.append(out[0])
        states = out[1:]
    got = np.stack(got, 1)
    # every frame's scores are a row: the report counts frames, not clips
    return parity_report(ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1]), rtol)


def export_stream_model(model: nn.Module, spec: ModelSpec, output: str, parity_clips: int = 2, steps: int = 6,
                        log=None, extra_metadata: Optional[dict] = None, check_parity: bool = True) -> ParityReport:
    """Export ``model`` (``forward(x [N, T, 3, H, W], *states) -> (logits [N, T, K], states)``) as a
    raw-frame stream ONNX with its state contract; written only when stepping holds parity."""

    model = model.eval()
    wrapped = RawStreamModel(model, spec).eval()
    spec = spec.replace(layout="raw_nthwc", clip_length=1, states=tuple(state_specs(wrapped, spec)))
    clips = sample_clips(spec.replace(clip_length=steps), parity_clips)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise ModelError(f"cannot write {output}: folder {out_dir} does not exist")
    fd, tmp = files.mkstemp(out_dir, prefix=".export-", suffix=".onnx")
    os.close(fd)
    inputs = [spec.input_name] + [st.name for st in spec.states]
    outputs = [spec.output_name] + [st.output for st in spec.states]
    example = (torch.from_numpy(clips[:1, :1]),) + tuple(torch.from_numpy(s) for s in initial_states(spec))
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings: shapes are fixed by design; parity is the check
            torch.onnx.export(wrapped, example, tmp, dynamo=False, opset_version=OPSET, input_names=inputs,
                              output_names=outputs, dynamic_axes={n: {0: "N"} for n in inputs + outputs})
        return finish_export(tmp, output, spec, extra_metadata, lambda path: stream_parity(wrapped, path, spec, clips),
                             check_parity, log, what=f"stepped {steps} frames one at a time: ")
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
