"""Per-person cost of an image model against the 3D ResNet-18, same video, same detector, same process.

What a user chooses between in ``actionnet --persons``: the project's default clip model (a 3D
ResNet-18, 16 frames of 112 x 112, jetson-inference's resnet-18-kinetics-moments architecture)
or a 2D image classifier (ResNet-18, MobileNetV3-Large at 224 x 224, the models the issue's
Stanford40 project fine-tunes). All with seeded random weights (no downloads here: the speed of
a network does not depend on its weights), exported by ``actionnet.export`` and run by the
runtime's own :class:`~actionnet.persons.PersonActionNet` on the same decoded frames of
``people_walking.mp4`` with the real YOLOv5n (``shared/data/weights/yolov5n.onnx``).

Each model runs as deployed: the 3D model stores every other frame (its stride) and classifies
every stored frame once its 16-frame window is full; image models classify every frame. Reported
per model, medians over ``--repeats`` runs: frames per second of the whole per-person pipeline
(decode excluded: frames are decoded once, beforehand), milliseconds per frame in detection and
in classification, person classifications per second, and milliseconds per person
classification.

    python scripts/bench_image.py --start 260 --frames 120 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
LABELS = tuple(f"class{i}" for i in range(40))  # Stanford40's 40 actions


def decode(path: Path, start: int, n: int):
    from actionnet.sources import open_source

    frames = []
    with open_source(str(path)) as src:
        for i, (frame, _) in enumerate(src):
            if i < start:
                continue
            frames.append(frame)
            if len(frames) == n:
                break
    return frames


def export_models(folder: str, archs):
    """{name: onnx path}: the 3D ResNet-18 and the image models, random weights, seeded."""
    import torch

    from actionnet.export.action import resnet3d_spec
    from actionnet.export.image_models import build, spec_from_weights
    from actionnet.export.onnx_export import export_clip_model
    from actionnet.export.resnet3d import resnet3d

    out = {}
    devnull = open(os.devnull, "w")
    torch.manual_seed(0)
    path = os.path.join(folder, "r3d18.onnx")
    export_clip_model(resnet3d("resnet-18", len(LABELS)), resnet3d_spec("resnet-18", LABELS), path, log=devnull)
    out["3D ResNet-18 16x112"] = path
    for arch in archs:
        torch.manual_seed(0)
        path = os.path.join(folder, f"{arch}.onnx")
        spec = spec_from_weights(arch, LABELS)
        export_clip_model(build(arch, len(LABELS)), spec, path, log=devnull)
        out[f"{arch} 1x{spec.height}"] = path
    return out


def run_once(frames, model: str, detector: str, threads: int, engine: str):
    from actionnet.persons import PersonActionNet

    with PersonActionNet(model, detector, threshold=0.0, threads=threads, engine=engine, log=None) as net:
        net.update(frames[0], 0.0)  # warm-up: first-call allocations are not per-frame cost
        net.reset()
        net.classifications = 0
        net.timer.total.clear()
        net.timer.calls.clear()
        t0 = time.perf_counter()
        for i, f in enumerate(frames):
            net.update(f, i / 30)
        seconds = time.perf_counter() - t0
        n = len(frames)
        return {"fps": n / seconds, "detect_ms": 1000 * net.timer.total.get("detect", 0) / n,
                "classify_ms": 1000 * net.timer.total.get("classify", 0) / n,
                "cls_per_s": net.classifications / seconds,
                "ms_per_person": 1000 * net.timer.total.get("classify", 0) / max(1, net.classifications),
                "classifications": net.classifications}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--video", default=str(SHARED / "videos" / "people_walking.mp4"))
    p.add_argument("--detector", default=str(SHARED / "weights" / "yolov5n.onnx"))
    p.add_argument("--start", type=int, default=260, help="first frame (a person is in the room from about 250 to 650)")
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--engine", default="onnxruntime", choices=("onnxruntime", "openvino", "tensorrt", "auto"))
    p.add_argument("--archs", default="resnet18,mobilenet_v3_large", help="image architectures, comma-separated")
    args = p.parse_args(argv)
    for f in (args.video, args.detector):
        if not os.path.isfile(f):
            print(f"bench_image: {f} not found (shared test data)", file=sys.stderr)
            return 2
    frames = decode(Path(args.video), args.start, args.frames)
    h, w = frames[0].shape[:2]
    print(f"{args.video}: frames {args.start}-{args.start + len(frames) - 1} ({w}x{h}); detector {os.path.basename(args.detector)}; "
          f"engine {args.engine}, {args.threads} threads; medians of {args.repeats} runs")
    with tempfile.TemporaryDirectory() as tmp:
        models = export_models(tmp, [a for a in args.archs.split(",") if a])
        print(f"{'model':<28} {'fps':>7} {'detect ms':>10} {'classify ms':>12} {'person cls/s':>13} "
              f"{'ms/person':>10} {'classifications':>16}")
        for name, path in models.items():
            runs = [run_once(frames, path, args.detector, args.threads, args.engine) for _ in range(args.repeats)]
            med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
            print(f"{name:<28} {med['fps']:>7.1f} {med['detect_ms']:>10.1f} {med['classify_ms']:>12.1f} "
                  f"{med['cls_per_s']:>13.1f} {med['ms_per_person']:>10.2f} {int(med['classifications']):>16}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
