"""Capture thread vs single-threaded: the same decode-bound pipeline on a 720p and a 1080p file.

    python scripts/bench_capture.py [--frames 150] [--repeats 5] [--sizes 1280x720,1920x1080] [--model m.onnx]

For each size, one H.264 file is generated (smooth moving content, like a camera), then the
CLI's pipeline (:func:`actionnet.pipeline.run`: PyAV decode, frame buffer, a classification per
frame, headless, no output video) runs it twice per repeat, in alternating order:

- single-threaded: the loop pulls each frame from the decoder itself;
- capture thread: :class:`actionnet.capture.Capture` decodes on its own thread (file policy: a
  bounded queue, every frame processed), so decoding and conversion overlap inference.

Reported: median wall time per run and the ratio single/threaded (>1: the thread helps). The
model is the small synthetic 3D CNN with random weights (built with torch if ``--model`` is not
given), so inference is light and the run is decode-bound, as the issue asks.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np


def make_video(path: str, frames: int, w: int, h: int) -> None:
    import cv2

    from actionnet.outputs import VideoFileSink

    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (h // 16, w // 16, 3), dtype=np.uint8), (w, h))
    sink = VideoFileSink(path, 30, crf=23, preset="ultrafast")
    for i in range(frames):
        sink.write(np.roll(base, 6 * i, axis=1))
    sink.close()


def build_model(path: str) -> str:
    from actionnet.export.onnx_export import export_clip_model
    from actionnet.export.synthetic import test_model_spec, tiny_net

    export_clip_model(tiny_net(), test_model_spec(), path, log=open(os.devnull, "w"))
    return path


def one_run(video: str, model: str, threaded: bool) -> float:
    from actionnet import ActionNet
    from actionnet.capture import Capture
    from actionnet.pipeline import run
    from actionnet.sources import VideoFileSource

    net = ActionNet(model=model, skip_frames=0, threshold=0.0, log=open(os.devnull, "w"))
    src = VideoFileSource(video)
    if threaded:
        src = Capture(src)
    t0 = time.perf_counter()
    stats = run(src, net)
    dt = time.perf_counter() - t0
    src.close()
    assert stats.frames == src.frame_count or stats.frames > 0
    return dt


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--sizes", default="1280x720,1920x1080")
    ap.add_argument("--model")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="bench-capture-")
    model = args.model or build_model(os.path.join(tmp, "tiny.onnx"))
    print(f"cpu cores: {os.cpu_count()}, frames per file: {args.frames}, repeats: {args.repeats}")
    print(f"{'size':>10} {'single (s)':>11} {'threaded (s)':>13} {'fps single':>11} {'fps thread':>11} {'ratio':>6}")
    for size in args.sizes.split(","):
        w, h = map(int, size.split("x"))
        video = os.path.join(tmp, f"{size}.mp4")
        make_video(video, args.frames, w, h)
        one_run(video, model, True)  # warm-up: page cache, ONNX Runtime session
        single, threaded = [], []
        for r in range(args.repeats):
            order = (False, True) if r % 2 == 0 else (True, False)
            for th in order:
                (threaded if th else single).append(one_run(video, model, th))
        s, t = statistics.median(single), statistics.median(threaded)
        print(f"{size:>10} {s:11.3f} {t:13.3f} {args.frames / s:11.1f} {args.frames / t:11.1f} {s / t:6.2f}x")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
