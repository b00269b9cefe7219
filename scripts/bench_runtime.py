"""Whole-frame runtime benchmark: our pipeline against a plain PyTorch loop, same model, same video.

    python scripts/bench_runtime.py [--arch r3d_18] [--frames 96] [--size 1280x720] [--repeats 3]

Three comparisons, each a ratio measured in this one process, medians of ``--repeats`` runs:

1. inference: the exported ONNX on ONNX Runtime vs the same weights in PyTorch eager, one clip;
2. end to end, headless: ``actionnet`` (PyAV decode, frame buffer, in-graph normalisation,
   ONNX Runtime) vs the loop most examples write (OpenCV decode, per-frame float normalisation,
   a deque of tensors stacked into a fresh clip at each classification, PyTorch eager),
   both at skip-frames 1 and a classification per stored frame;
3. per-frame cost of everything but decode and inference (prepare, draw, encode) at the video's
   size, from the runtime's own stage timer: what the runtime adds on top of the model.

Weights are random (no pretrained weights offline); speed does not depend on them.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def make_video(path: str, frames: int, w: int, h: int) -> None:
    from actionnet.export.synthetic import write_video

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8, w // 8, 3), dtype=np.uint8)
    import cv2

    base = cv2.resize(base, (w, h))
    write_video(path, (np.roll(base, 4 * i, axis=1) for i in range(frames)))


def torch_loop(model, video: str, spec, skip: int, torch) -> int:
    """The baseline: decode, normalise each frame to float, keep a deque, stack, run eager."""
    import cv2

    cap = cv2.VideoCapture(video)
    mean = np.array(spec.mean, np.float32)
    std = np.array(spec.std, np.float32)
    clip = collections.deque(maxlen=spec.clip_length)
    n = classified = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        if (n - 1) % (skip + 1):
            continue
        h, w = frame.shape[:2]
        if spec.resize_mode == "resize_crop":
            rh, rw = spec.resize_size
        else:
            s = spec.resize_size[0] / min(h, w)
            rh, rw = round(h * s), round(w * s)
        img = cv2.resize(frame, (rw, rh), interpolation=cv2.INTER_LINEAR)
        y, x = (rh - spec.height) // 2, (rw - spec.width) // 2
        img = cv2.cvtColor(img[y:y + spec.height, x:x + spec.width], cv2.COLOR_BGR2RGB)
        clip.append(torch.from_numpy((img.astype(np.float32) / 255 - mean) / std).permute(2, 0, 1))
        if len(clip) == spec.clip_length:
            with torch.no_grad():
                model(torch.stack(list(clip), 1)[None]).softmax(1)
            classified += 1
    cap.release()
    return classified


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--arch", default="r3d_18")
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--size", default="1280x720")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))

    import torch

    torch.set_num_threads(args.threads)
    from actionnet import ActionNet
    from actionnet.export.torchvision_models import build, export_torchvision, spec_from_weights
    from actionnet.outputs import VideoFileSink
    from actionnet.pipeline import run
    from actionnet.sources import open_source

    tmp = tempfile.mkdtemp(prefix="bench-runtime-")
    spec = spec_from_weights(args.arch)
    torch.manual_seed(0)
    model = build(args.arch, spec.num_classes).eval()
    weights = os.path.join(tmp, "w.pth")
    torch.save(model.state_dict(), weights)
    onnx_path = os.path.join(tmp, "m.onnx")
    export_torchvision(args.arch, weights, onnx_path, log=open(os.devnull, "w"))
    video = os.path.join(tmp, "in.mp4")
    make_video(video, args.frames, w, h)
    print(f"{args.arch} {spec.clip_length}x{spec.height}x{spec.width}, {args.frames} frames {w}x{h}, "
          f"{args.threads} threads, medians of {args.repeats}", flush=True)

    # 1. inference alone
    net = ActionNet(model=onnx_path, threads=args.threads, skip_frames=1)
    clip = np.random.default_rng(0).integers(0, 255, (1, spec.clip_length, spec.height, spec.width, 3), np.uint8)
    x = torch.from_numpy(((clip / 255.0 - np.array(spec.mean)) / np.array(spec.std)).astype(np.float32)) \
        .permute(0, 4, 1, 2, 3).contiguous()

    def timed(fn, n):
        fn()
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return statistics.median(out)

    t_ort = timed(lambda: net.engine.infer(clip), 2 * args.repeats + 1)
    with torch.no_grad():
        t_torch = timed(lambda: model(x), 2 * args.repeats + 1)
    print(f"inference per clip: ONNX Runtime {t_ort * 1e3:.0f} ms, PyTorch eager {t_torch * 1e3:.0f} ms "
          f"-> {t_torch / t_ort:.2f}x", flush=True)

    # 2. end to end, headless
    def ours():
        n = ActionNet(model=onnx_path, threads=args.threads, skip_frames=1)
        src = open_source(video)
        stats = run(src, n)
        src.close()
        return stats

    def baseline():
        return torch_loop(model, video, spec, 1, torch)

    e2e_ours = timed(ours, args.repeats)
    e2e_base = timed(baseline, args.repeats)
    print(f"end to end, headless: actionnet {args.frames / e2e_ours:.1f} fps, PyTorch loop "
          f"{args.frames / e2e_base:.1f} fps -> {e2e_base / e2e_ours:.2f}x", flush=True)

    # 3. per-frame overhead with an output video
    costs = collections.defaultdict(list)
    for _ in range(args.repeats):
        n = ActionNet(model=onnx_path, threads=args.threads, skip_frames=1)
        src = open_source(video)
        sink = VideoFileSink(os.path.join(tmp, "out.mp4"), src.rate)
        stats = run(src, n, output=sink)
        src.close()
        for stage in ("decode", "prepare", "infer", "draw", "encode"):
            costs[stage].append(stats.timer.total.get(stage, 0.0) / stats.frames * 1e3)
    row = {k: statistics.median(v) for k, v in costs.items()}
    extra = row["prepare"] + row["draw"] + row["encode"]
    print("per frame (ms): " + ", ".join(f"{k} {v:.2f}" for k, v in row.items())
          + f"; runtime's own work (prepare+draw+encode) {extra:.2f} ms = "
          f"{extra / (row['decode'] + row['infer'] + extra) * 100:.0f}% of the frame", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
