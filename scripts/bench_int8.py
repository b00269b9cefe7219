#!/usr/bin/env python3
"""FP32 vs INT8 (QDQ) on ONNX Runtime and OpenVINO CPU: same clips, one process, medians, ratios
against the fastest FP32 engine, and each engine's top-1 agreement with ONNX Runtime FP32.

The model must know something, or agreement means nothing (a random network's near-uniform
scores flip top-1 under any noise). Without ``--model`` this trains a 3-D CNN wider than the
test model on the synthetic motion task (``actionnet.export.synthetic``; about two minutes on
two cores, cached in ``--cache``), exports it with the export stage, quantizes it with
``actionnet-export quantize`` on calibration clips, and measures on different, held-out clips.

    python scripts/bench_int8.py                  # build, quantize, measure
    python scripts/bench_int8.py --model m.onnx --calib clips/ --json out.json

Latency is one clip at a time (batch 1), as the runtime classifies; rounds interleave the
engines so that load from other processes hits all of them alike.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def bench_net(width: int, num_classes: int):
    from torch import nn

    def block(cin, cout):
        return [nn.Conv3d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm3d(cout), nn.ReLU(inplace=True)]

    w = width
    return nn.Sequential(*block(3, w), nn.MaxPool3d((1, 2, 2)), *block(w, 2 * w), *block(2 * w, 2 * w),
                         nn.MaxPool3d(2), *block(2 * w, 4 * w), *block(4 * w, 4 * w),
                         nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(4 * w, num_classes))


def build_model(path: Path, width: int, epochs: int, n: int, log) -> float:
    """Train the bench network on synthetic clips and export it; returns validation accuracy."""
    import torch

    from actionnet.export.onnx_export import RawClipModel, export_clip_model
    from actionnet.export.synthetic import dataset, fit, test_model_spec

    torch.manual_seed(0)
    spec = test_model_spec().replace(arch=f"bench3d-w{width}")
    model = RawClipModel(bench_net(width, spec.num_classes), spec)
    x, y = map(torch.from_numpy, dataset(n, 0))
    xv, yv = map(torch.from_numpy, dataset(400, 1))
    acc = fit(model, x, y, xv, yv, epochs=epochs, batch=32, log=log, tag="bench model")
    export_clip_model(model.model, spec, str(path), log=log)
    return acc


def write_clip_folders(root: Path, n: int, seed: int) -> Path:
    import cv2

    from actionnet.export.synthetic import LABELS, random_clip

    rng = np.random.default_rng(seed)
    for i in range(n):
        d = root / f"{i:03d}"
        d.mkdir(parents=True, exist_ok=True)
        for j, f in enumerate(random_clip(LABELS[i % len(LABELS)], rng)):
            cv2.imwrite(str(d / f"{j:03d}.png"), f[..., ::-1])
    return root


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="FP32 ONNX with actionnet metadata (default: train the bench model)")
    p.add_argument("--int8", help="its INT8 QDQ ONNX (default: quantize it here)")
    p.add_argument("--calib", help="calibration folder (default: synthetic clips)")
    p.add_argument("--eval", help="evaluation folder, disjoint from --calib (default: synthetic clips)")
    p.add_argument("--width", type=int, default=32, help="bench model width (default 32)")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--train-clips", type=int, default=1600)
    p.add_argument("--clips", type=int, default=48, help="evaluation clips (default 48)")
    p.add_argument("--rounds", type=int, default=5, help="timed passes over the clips (default 5)")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="threads per engine (default: all cores)")
    p.add_argument("--skip-frames", type=int, default=0)
    p.add_argument("--cache", default=os.environ.get("ACTIONNET_TEST_CACHE") or tempfile.gettempdir(),
                   help="where the trained bench model is kept")
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args(argv)
    log = sys.stderr

    from actionnet.engines.onnxruntime import OnnxRuntimeEngine
    from actionnet.engines.openvino import OpenVinoEngine
    from actionnet.export.agreement import compare, outputs
    from actionnet.export.calibration import clips_from, spec_of
    from actionnet.export.quantize import quantize

    work = Path(tempfile.mkdtemp(prefix="bench-int8-"))
    os.environ.setdefault("ACTIONNET_HOME", str(work / "home"))
    model = args.model
    if model is None:
        # keyed on the code that makes the model, so editing the rest of this script does not retrain
        import inspect

        key = hashlib.sha256((inspect.getsource(bench_net) + inspect.getsource(build_model)).encode()).hexdigest()[:12]
        model = str(Path(args.cache) / f"bench3d-w{args.width}-e{args.epochs}-n{args.train_clips}-{key}.onnx")
        if not os.path.exists(model):
            Path(args.cache).mkdir(parents=True, exist_ok=True)
            acc = build_model(Path(model), args.width, args.epochs, args.train_clips, log)
            print(f"bench model: validation accuracy {acc:.3f} -> {model}", file=log)
    spec = spec_of(model)
    calib = args.calib or str(write_clip_folders(work / "calib", 64, seed=1000))
    evald = args.eval or str(write_clip_folders(work / "eval", args.clips, seed=2000))
    int8 = args.int8 or str(work / "int8.onnx")
    if not args.int8:
        quantize(model, calib, int8, skip_frames=args.skip_frames, force=True, log=log)
    clips = clips_from(evald, spec, args.skip_frames, args.clips)

    engines = {
        "onnxruntime fp32": OnnxRuntimeEngine(model, providers=["CPUExecutionProvider"], threads=args.threads),
        "onnxruntime int8": OnnxRuntimeEngine(int8, providers=["CPUExecutionProvider"], threads=args.threads),
        "openvino fp32": OpenVinoEngine(model, threads=args.threads),
        "openvino int8": OpenVinoEngine(int8, threads=args.threads, precision="int8"),
    }
    ref = outputs(engines["onnxruntime fp32"], clips, spec.output_name)
    results = {}
    for name, eng in engines.items():
        got = outputs(eng, clips, spec.output_name)  # also the warm-up
        results[name] = {"agreement": compare(ref, got), "times": []}
    for _ in range(args.rounds):
        for clip in clips:
            for name, eng in engines.items():
                t0 = time.perf_counter()
                eng.infer(clip, spec.output_name)
                results[name]["times"].append(time.perf_counter() - t0)
    med = {name: 1000 * statistics.median(r["times"]) for name, r in results.items()}
    fastest_fp32 = min(med["onnxruntime fp32"], med["openvino fp32"])
    probs = np.exp(ref - ref.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    top1_conf = float(np.median(probs.max(1)))
    print(f"\nmodel {os.path.basename(model)}: input {list(engines['openvino fp32'].input.shape)}, "
          f"{len(clips)} held-out clips x {args.rounds} rounds, {args.threads} threads; "
          f"FP32 median top-1 probability {top1_conf:.3f} (1/{spec.num_classes} = uniform)")
    print(f"{'engine':<18} {'median ms':>10} {'vs fastest FP32':>16} {'top-1 agree':>12} {'max|diff|':>10}")
    out = {"model": model, "int8": int8, "clips": len(clips), "rounds": args.rounds, "threads": args.threads,
           "median_top1_probability": top1_conf, "engines": {}}
    for name, r in results.items():
        a = r["agreement"]
        ratio = fastest_fp32 / med[name]
        print(f"{name:<18} {med[name]:>10.2f} {ratio:>15.2f}x {100 * a.top1:>11.1f}% {a.max_abs_diff:>10.4f}")
        out["engines"][name] = {"median_ms": med[name], "speedup_vs_fastest_fp32": ratio, "top1_agreement": a.top1,
                                "max_abs_diff": a.max_abs_diff}
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    for e in engines.values():
        e.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
