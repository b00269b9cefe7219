#!/usr/bin/env python3
"""The person detector alone: FP32 against INT8 (``actionnet-export quantize``) on ONNX Runtime
and OpenVINO, through the runtime's own :class:`~actionnet.detector.Detector` (letterbox,
inference, decode, NMS), on the same frames, in one process.

    python scripts/bench_detector.py DETECTOR.onnx DETECTOR-int8.onnx [--video V] [--rounds 15]

Frames are read once (1080p upscales of the video's frames by default, a camera's size); each
round times every (model, engine) pair on one frame, in turn, so that load from other
processes hits them alike. Reported: the median ms per frame, the ratio against the fastest
FP32 pair, and each INT8 pair's agreement with its engine's FP32 detector
(:func:`actionnet.export.quantize_detector.compare`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONNET_SHARED_DATA", ROOT.parent / "shared" / "data"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("fp32")
    p.add_argument("int8")
    p.add_argument("--video", default=str(SHARED / "videos" / "people_walking.mp4"))
    p.add_argument("--frames", type=int, default=24, help="frames spread over the video (default 24)")
    p.add_argument("--size", default="1920x1080", help="frames are resized to this (default 1920x1080; 'source' keeps them)")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engines", default="onnxruntime,openvino")
    args = p.parse_args(argv)

    from actionnet.detector import Detector
    from actionnet.export.quantize_detector import compare, read_frames

    frames = read_frames(args.video, args.frames)
    if args.size != "source":
        w, h = (int(v) for v in args.size.split("x"))
        frames = [cv2.resize(f, (w, h), interpolation=cv2.INTER_LINEAR) for f in frames]
    pairs = {}
    for engine in args.engines.split(","):
        for kind, path in (("FP32", args.fp32), ("INT8", args.int8)):
            det = Detector(path, engine=engine, threads=args.threads, log=None)
            det(frames[0])  # compiled, letterbox fitted
            pairs[(kind, engine)] = det
    times = {k: [] for k in pairs}
    load = os.getloadavg()[0]
    for r in range(args.rounds):
        f = frames[r % len(frames)]
        for k, det in pairs.items():
            t = time.perf_counter()
            det(f)
            times[k].append(time.perf_counter() - t)
    median = {k: 1000 * statistics.median(v) for k, v in times.items()}
    best = min(v for (kind, _), v in median.items() if kind == "FP32")
    size = next(iter(pairs.values())).describe_size()
    print(f"{len(frames)} frames of {Path(args.video).name} at {args.size}, {args.rounds} rounds, "
          f"{args.threads} threads; detector input: {size}; load average {load:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after\n")
    print("| detector | engine | ms/frame (median) | x fastest FP32 | agreement with FP32 on the same engine |")
    print("|---|---|---|---|---|")
    for (kind, engine), ms in median.items():
        agree = ""
        if kind == "INT8":
            agree = str(compare(pairs[("FP32", engine)], pairs[("INT8", engine)], frames))
        print(f"| {kind} | {engine} | {ms:.1f} | {best / ms:.2f} | {agree} |")
    for det in pairs.values():
        det.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
