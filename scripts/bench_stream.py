"""Streaming models vs the 3D ResNet-18 at a label on every frame, end to end on this CPU.

    python scripts/bench_stream.py [--frames 96] [--repeats 3] [--archs movinet-a0,movinet-a1,movinet-a2,tsm-mobilenetv2]

A clip model gives a label per stored frame by re-running its whole 16-frame window on every
frame; a streaming model runs one frame and carries the rest as state. Both go through the same
runtime (``actionnet.ActionNet``: PyAV decode, preparation, engine, scoring) on the default
install (ONNX Runtime, CPU), ``--skip-frames 0 --cadence 1``: one label per video frame. For
each model: frames per second (median of ``--repeats`` runs over the same video, in this one
process), the speed-up over the 3D ResNet-18, the compute per label in GMAC (multiply-adds of
every convolution and linear layer, counted with forward hooks on the PyTorch model: the clip
model's per clip, the stream's per step) and the memory each extra stream or tracked person
costs (the clip model's frame ring, the stream's state set).

Weights are random (no pretrained weights offline); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def count_gmac(model, *inputs) -> float:
    """Multiply-adds of the convolutions and linear layers in one forward pass, in GMAC."""
    import torch

    total = [0]

    def conv(m, _, out):
        k = int(np.prod(m.kernel_size))
        total[0] += out.numel() * (m.in_channels // m.groups) * k

    def linear(m, _, out):
        total[0] += out.numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
            hooks.append(m.register_forward_hook(conv))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear))
    with torch.no_grad():
        model(*inputs)
    for h in hooks:
        h.remove()
    return total[0] / 1e9


def export_models(folder: str, archs, log):
    """{name: (onnx path, GMAC per label)} for the 3D ResNet-18 and each streaming arch."""
    import torch

    from actionnet.export.action import resnet3d_spec
    from actionnet.export.onnx_export import export_clip_model
    from actionnet.export.resnet3d import resnet3d
    from actionnet.export.stream import build, export_stream_model, stream_spec

    torch.manual_seed(0)
    out = {}
    labels = [f"class {i}" for i in range(400)]
    r3d = resnet3d("resnet-18", len(labels)).eval()
    spec = resnet3d_spec("resnet-18", labels)
    path = os.path.join(folder, "resnet-18.onnx")
    export_clip_model(r3d, spec, path, log=log)
    out["resnet-18 (16x112x112 clip)"] = (path, count_gmac(r3d, torch.zeros(1, 3, 16, 112, 112)))
    for arch in archs:
        model = build(arch, 600 if arch.startswith("movinet") else 400).eval()
        spec = stream_spec(arch, [f"class {i}" for i in range(model.num_classes)], skip_frames=0)
        path = os.path.join(folder, f"{arch}.onnx")
        export_stream_model(model, spec, path, log=log)
        gmac = count_gmac(model, torch.zeros(1, 1, 3, spec.height, spec.width))
        out[f"{arch} ({spec.height}x{spec.width} stream)"] = (path, gmac)
    return out


def run_once(model: str, video: str, threads) -> tuple:
    """(frames per second end to end, labels, memory per extra stream in bytes)."""
    import actionnet
    from actionnet.pipeline import run
    from actionnet.sources import open_source

    net = actionnet.ActionNet(model=model, skip_frames=0, cadence=1, engine="onnxruntime", threads=threads,
                              threshold=0.0, log=None)
    src = open_source(video)
    try:
        t0 = time.perf_counter()
        stats = run(src, net)
        seconds = time.perf_counter() - t0
    finally:
        src.close()
        net.close()
    per_stream = net.stream.state_bytes if net.stream is not None else net.buffer._ring.nbytes
    return stats.frames / seconds, stats.classifications, per_stream


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--archs", default="movinet-a0,movinet-a1,movinet-a2,tsm-mobilenetv2")
    args = p.parse_args(argv)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from bench_runtime import make_video

    with tempfile.TemporaryDirectory() as tmp:
        video = os.path.join(tmp, "v.mp4")
        make_video(video, args.frames, 640, 360)
        with open(os.devnull, "w") as quiet:
            models = export_models(tmp, args.archs.split(","), quiet)
        rows = {name: [] for name in models}
        for _ in range(args.repeats):  # interleaved, so that load on the machine hits every model alike
            for name, (path, _) in models.items():
                rows[name].append(run_once(path, video, args.threads))
    base = statistics.median(r[0] for r in rows[next(iter(rows))])
    print(f"{args.frames} frames of 640x360 video, a label on every frame (--skip-frames 0 --cadence 1), "
          f"ONNX Runtime on the CPU, median of {args.repeats}")
    print(f"{'model':<40} {'fps':>7} {'x r3d18':>8} {'labels':>7} {'GMAC/label':>11} {'KB/stream':>10}")
    for name, (path, gmac) in models.items():
        fps = statistics.median(r[0] for r in rows[name])
        labels, mem = rows[name][0][1], rows[name][0][2]
        print(f"{name:<40} {fps:>7.1f} {fps / base:>7.1f}x {labels:>7} {gmac:>11.3f} {mem / 1024:>10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
