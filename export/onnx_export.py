"""PyTorch clip model -> self-describing ONNX, checked and compared with PyTorch.

Steps, each small: wrap the model so the graph takes raw uint8 frames (``RawClipModel``),
export with a dynamic batch, stamp the :class:`ModelSpec` into ``metadata_props``, run the ONNX
checker, compare ONNX Runtime with PyTorch on the same clips (``ParityReport``), and only then
move the file into place. A model that breaks parity is never written.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch
from torch import nn

from actionnet import files
from actionnet.errors import ModelError
from actionnet.spec import ModelSpec

from .custom import add_metadata

OPSET = 17


class RawClipModel(nn.Module):
    """uint8 [N, T, H, W, 3] frames in the model's colour order -> the wrapped model's output.

    Cast, scale, normalisation and the transpose to [N, 3, T, H, W] happen in the graph, so the
    runtime hands the engine its frame buffer as is.
    """

    def __init__(self, model: nn.Module, spec: ModelSpec):
        super().__init__()
        self.model = model
        std = torch.tensor(spec.std, dtype=torch.float32)
        self.register_buffer("scale", (1.0 / (spec.value_scale * std)).view(1, 1, 1, 1, 3))
        self.register_buffer("shift", (-torch.tensor(spec.mean, dtype=torch.float32) / std).view(1, 1, 1, 1, 3))

    def forward(self, frames):
        x = frames.float() * self.scale + self.shift
        return self.model(x.permute(0, 4, 1, 2, 3))


@dataclass
class ParityReport:
    max_abs_diff: float
    top1_agreement: float
    clips: int
    tolerance: float
    ties: int = 0  # top-1 disagreements whose PyTorch margin is within the numeric difference

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.top1_agreement + self.ties / self.clips >= 1.0

    def __str__(self):
        verdict = "OK" if self.ok else "FAILED"
        return (f"parity vs PyTorch on {self.clips} clips: max |diff| {self.max_abs_diff:.2e} "
                f"(tolerance {self.tolerance:.1e}), top-1 agreement {self.top1_agreement * 100:.1f}% -> {verdict}")


def parity(torch_model: nn.Module, onnx_path: str, clips: np.ndarray, rtol: float = 1e-3) -> ParityReport:
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    with torch.no_grad():
        ref = torch_model(torch.from_numpy(clips)).float().numpy()
    got = sess.run(None, {name: clips})[0]
    return parity_report(ref, got, rtol)


def parity_report(ref: np.ndarray, got: np.ndarray, rtol: float = 1e-3) -> ParityReport:
    """How far ``got`` (ONNX Runtime) is from ``ref`` (PyTorch), rows of scores per clip. A
    top-1 disagreement within twice the largest difference of a near tie counts as a tie."""
    diff = float(np.abs(ref - got).max())
    # Relative to the outputs' largest magnitude, with no absolute term: float32 rounding
    # differs between two correct graphs by about 1e-6 of the magnitudes they compute with, the
    # largest output stands for those, and any absolute floor is huge next to some model's
    # scale (random MobileNet/EfficientNet weights give logits of 1e-10 to 1e-13, under which an
    # absolute 1e-4 let any graph pass). Outputs that are all zero must then match exactly.
    tol = rtol * float(np.abs(ref).max())
    agree = ref.argmax(1) == got.argmax(1)
    ties = 0
    for i in np.flatnonzero(~agree):
        top2 = np.sort(ref[i])[-2:]
        ties += int(top2[1] - top2[0] <= 2 * diff)
    return ParityReport(diff, float(agree.mean()), len(ref), tol, ties)


def finish_export(tmp: str, output: str, spec: ModelSpec, extra_metadata: Optional[dict], check, check_parity: bool,
                  log=None, what: str = "") -> "ParityReport":
    """The last steps every export shares: stamp the metadata, run the ONNX checker, run the
    parity ``check(path)``, and move the file into place only when parity holds (or is waived)."""
    import onnx

    m = add_metadata(tmp, spec, extra_metadata)
    onnx.checker.check_model(m, full_check=True)
    onnx.save(m, tmp)
    report = check(tmp)
    print(f"actionnet-export: {what}{report}", file=log or sys.stderr)
    if check_parity and not report.ok:
        raise ModelError(f"parity broken, {output} not written: {report}")
    os.replace(tmp, output)
    return report


def sample_clips(spec: ModelSpec, n: int = 2, seed: int = 0) -> np.ndarray:
    """Random uint8 clips of the model's input shape with some spatial structure (smooth noise),
    so that logits are not flat and top-1 comparisons mean something."""
    rng = np.random.default_rng(seed)
    t, h, w = spec.clip_length, spec.height, spec.width
    coarse = rng.integers(0, 256, size=(n, t, max(2, h // 8), max(2, w // 8), 3)).astype(np.uint8)
    import cv2

    out = np.empty((n, t, h, w, 3), np.uint8)
    for i in range(n):
        for j in range(t):
            out[i, j] = cv2.resize(coarse[i, j], (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def export_clip_model(model: nn.Module, spec: ModelSpec, output: str, parity_clips: int = 2, log=None,
                      extra_metadata: Optional[dict] = None, check_parity: bool = True) -> ParityReport:
    """Export ``model`` (taking normalised [N, 3, T, H, W]) as a raw-frame, self-describing ONNX."""

    if not spec.raw_input:
        spec = spec.replace(layout="raw_nthwc")
    model = model.eval()
    wrapped = RawClipModel(model, spec).eval()
    clips = sample_clips(spec, parity_clips)
    out_dir = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(out_dir):
        raise ModelError(f"cannot write {output}: folder {out_dir} does not exist")
    fd, tmp = files.mkstemp(out_dir, prefix=".export-", suffix=".onnx")
    os.close(fd)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            # the legacy exporter's deprecation notice and tracer warnings say nothing a user can act on;
            # parity below is the real check
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapped, (torch.from_numpy(clips[:1]),), tmp, dynamo=False, opset_version=OPSET,
                              input_names=[spec.input_name], output_names=[spec.output_name],
                              dynamic_axes={spec.input_name: {0: "N"}, spec.output_name: {0: "N"}})
        return finish_export(tmp, output, spec, extra_metadata, lambda path: parity(wrapped, path, clips),
                             check_parity, log)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
