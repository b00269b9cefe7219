"""Synthetic motion clips and a small 3D CNN trained on them in seconds.

No pretrained action weights exist offline, so end-to-end tests need a model that really knows
something. The task is built so that each way a runtime can feed clips wrongly flips a label:

* a square moving **left** or **right**: reversed frame order swaps the two;
* **red** or **blue**: swapped colour channels swap the two;
* **slow** or **fast** (pixels per stored frame): a wrong ``--skip-frames`` stride swaps the two.

Rendering needs only numpy (tests use it without torch); training needs torch.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Sequence, Tuple

import numpy as np

COLOURS = {"red": (220, 40, 40), "blue": (40, 60, 230)}  # RGB
DIRECTIONS = {"left": -1.0, "right": 1.0}
# model pixels per stored frame
SPEEDS = {"slow": (0.5, 1.2), "fast": (2.0, 3.0)}
LABELS = tuple(f"{c} {d} {s}" for c in COLOURS for d in DIRECTIONS for s in SPEEDS)
CLIP_LENGTH, SIZE = 8, 32
BACKGROUND = 70


def render(colour: str, direction: str, speed: float, frames: int, size: int = SIZE, square: int = 6,
           start: Optional[float] = None, y: Optional[float] = None, rng=None, scale: int = 1,
           noise: float = 6.0) -> np.ndarray:
    """RGB uint8 frames [frames, size*scale, size*scale, 3] of one square moving horizontally.

    Positions are in model pixels; ``scale`` renders at a multiple (for test videos that the
    runtime must shrink back). ``start`` defaults to the side the square moves away from.
    """
    rng = rng or np.random.default_rng()
    d = DIRECTIONS[direction]
    travel = speed * (frames - 1)
    if start is None:
        slack = max(0.0, size - square - travel)
        start = rng.uniform(0, slack) if d > 0 else size - square - rng.uniform(0, slack)
    if y is None:
        y = rng.uniform(2, size - square - 2)
    n = size * scale
    out = np.empty((frames, n, n, 3), np.uint8)
    rgb = np.array(COLOURS[colour], np.float32) + rng.normal(0, 12, 3)
    for i in range(frames):
        img = np.full((n, n, 3), BACKGROUND, np.float32)
        if noise:
            img += rng.normal(0, noise, (n, n, 1))
        x = start + d * speed * i
        x0, x1 = int(round(x * scale)), int(round((x + square) * scale))
        y0, y1 = int(round(y * scale)), int(round((y + square) * scale))
        img[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = rgb
        out[i] = np.clip(img, 0, 255).astype(np.uint8)
    return out


def random_clip(label: str, rng, frames: int = CLIP_LENGTH) -> np.ndarray:
    colour, direction, speed = label.split()
    v = rng.uniform(*SPEEDS[speed])
    return render(colour, direction, v, frames, square=int(rng.integers(5, 8)), rng=rng)


def dataset(n: int, seed: int = 0, labels: Sequence[str] = LABELS) -> Tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % len(labels)
    rng.shuffle(y)
    x = np.stack([random_clip(labels[i], rng) for i in y])
    return x, y.astype(np.int64)


def video_frames(label: str, frames: int, speed: float, width: int = 128, height: int = 96, seed: int = 0,
                 start: Optional[float] = None) -> List[np.ndarray]:
    """BGR frames of a test video: the square moves ``speed`` model pixels per *video* frame.

    The video is ``width`` x ``height``; after the runtime's short-side resize and centre crop
    to 32x32 the square is where ``render`` would put it (scale = height / 32).
    """
    colour, direction, _ = label.split()
    scale = height // SIZE
    rng = np.random.default_rng(seed)
    if start is None:
        travel = speed * (frames - 1)
        start = 1.0 if DIRECTIONS[direction] > 0 else SIZE - 6 - 1.0
        if travel > SIZE - 8:
            raise ValueError(f"{frames} frames at {speed} px/frame leave the {SIZE}px frame")
    square = render(colour, direction, speed, frames, square=6, start=start, y=13.0, rng=rng, scale=scale, noise=3.0)
    x0 = (width - square.shape[2]) // 2
    y0 = (height - square.shape[1]) // 2
    out = []
    for f in square:
        canvas = np.full((height, width, 3), BACKGROUND, np.uint8)
        canvas[y0:y0 + f.shape[0], x0:x0 + f.shape[1]] = f
        out.append(np.ascontiguousarray(canvas[..., ::-1]))  # RGB -> BGR, as sources deliver
    return out


def write_video(path: str, frames: Sequence[np.ndarray], fps: int = 30) -> str:
    """Write BGR frames to ``path`` (H.264 in mp4/mkv) with the runtime's own sink."""
    from actionnet.outputs import VideoFileSink

    sink = VideoFileSink(path, fps, crf=12)
    for f in frames:
        sink.write(f.copy())
    sink.close()
    return path


# -- the model (torch) -------------------------------------------------------------------

def tiny_net(num_classes: int = len(LABELS)):
    from torch import nn

    def block(cin, cout):
        return [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(3, 16), nn.MaxPool3d((1, 2, 2)), *block(16, 32), nn.MaxPool3d(2),
                         *block(32, 64), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(64, num_classes))


def test_model_spec(labels: Sequence[str] = LABELS):
    from actionnet.spec import ModelSpec

    return ModelSpec(labels=tuple(labels), clip_length=CLIP_LENGTH, height=SIZE, width=SIZE, input_name="frames",
                     output_name="logits", layout="raw_nthwc", color_order="RGB", resize_mode="short_side",
                     resize_size=(SIZE,), mean=(0.3, 0.3, 0.3), std=(0.25, 0.25, 0.25), arch="tiny3d")


def fit(model, x, y, xv, yv, epochs: int, batch: int, generator=None, log=sys.stderr, tag: str = "train") -> float:
    """AdamW with a one-cycle schedule on in-memory clips; returns validation accuracy.

    The synthetic tasks are learnt in a few epochs this way; the test model and the benchmark
    models share it so that they differ only in the network."""
    import torch

    n = len(x)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=epochs * (n // batch))
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=generator)
        for i in range(0, n - batch + 1, batch):
            idx = perm[i:i + batch]
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = (model(xv).argmax(1) == yv).float().mean().item()
        print(f"{tag} epoch {epoch + 1}/{epochs}: loss {loss.item():.3f}, val acc {acc:.3f}", file=log)
    return acc


def train(epochs: int = 3, n: int = 2400, seed: int = 0, log=sys.stderr):
    """Train :func:`tiny_net` on synthetic clips; returns (raw-frame model, spec, val accuracy)."""
    import torch

    from .onnx_export import RawClipModel

    torch.manual_seed(seed)
    spec = test_model_spec()
    model = RawClipModel(tiny_net(), spec)
    x, y = dataset(n, seed)
    xv, yv = dataset(400, seed + 1)
    x, y, xv, yv = map(torch.from_numpy, (x, y, xv, yv))
    acc = fit(model, x, y, xv, yv, epochs=epochs, batch=64, generator=torch.Generator().manual_seed(seed),
              log=log, tag="synthetic")
    return model, spec, acc


def build_test_model(output: str, seed: int = 0, log=sys.stderr) -> float:
    """Train the test model and export it through the export stage; returns val accuracy."""
    from .onnx_export import export_clip_model

    model, spec, acc = train(seed=seed, log=log)
    export_clip_model(model.model, spec, output, log=log)
    return acc


if __name__ == "__main__":
    print(build_test_model(sys.argv[1] if len(sys.argv) > 1 else "synthetic.onnx"))
