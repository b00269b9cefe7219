"""Keeping up with a live 1080p camera, per person: footage played ``--live`` through the CLI.

The 1080p two-person mosaic of ``scripts/bench_persons.py`` (2x2 960x540 tiles from
``people_walking.mp4``, 30 fps) is played as a camera would send it (``--live --input-loop K``,
as long as ``--seconds`` asks) through ``actionnet --persons`` with the same models (YOLOv5n
exported ``--dynamic``, a seeded random r3d_18 16x112x112), once per setting: the defaults
(``--detect-every auto``) and each ``--detect-every N`` named. Per setting it reports what a user
of a camera sees: frames processed per second, frames dropped (the capture thread's count), the
labels each person got per second (per track: classifications over the time between its first
and last one), the ``adapt`` choices, how long the recording lasts against the footage, and the
``--timings`` stages.

Why the CLI in a subprocess: what is measured is what a user runs, start-up included in the
wall time but not in the rates (the footage's clock starts with the first frame).

    python scripts/bench_live.py --seconds 60                      # defaults and --detect-every 1
    python scripts/bench_live.py --seconds 20 --settings auto,1,3 --keep /tmp/bench-live

With ``--baseline``, the Ultralytics example's loop (``bench_persons.run_example``: ``YOLO.track``
with BoT-SORT on every frame it gets, PyTorch eager r3d_18 every 24 frames) is fed the same
footage at the same rate through the same live source (the newest frame wins; what it cannot
process is dropped and counted), in this process (it needs torch, ultralytics and lap:
``pip install --no-deps ultralytics && pip install lap``). Its labels per person per second are
its classifications over the run's seconds and the two people of the footage.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_persons import CLASSIFIERS, FPS, SHARED, make_clip, new_example_yolo, run_example  # noqa: E402


def models(folder: str, weights: str, classifier: str = "resnet-18"):
    """The dynamic YOLOv5n and the classifier's export, made once per ``folder``."""
    detector = os.path.join(folder, "yolov5n-dynamic.onnx")
    model = CLASSIFIERS[classifier](folder)[2]
    if not os.path.exists(detector):
        from actionnet.export.yolo import export_yolo
        from actionnet.export.yolov5_legacy import load_yolov5

        export_yolo(load_yolov5(weights), detector, imgsz=640, dynamic=True)
    return detector, model


def labels_per_person_second(events):
    """Median over tracks of (classifications - 1) / (last - first classification time)."""
    times = defaultdict(list)
    for e in events:
        if e.get("event") == "classification":
            times[e["track_id"]].append(e["time"])
    rates = [(len(t) - 1) / (t[-1] - t[0]) for t in times.values() if len(t) >= 3 and t[-1] > t[0]]
    return (statistics.median(rates) if rates else float("nan")), len(times)


def duration(path: str) -> float:
    import av

    with av.open(path) as c:
        return c.duration / 1e6 if c.duration else float("nan")


def run(setting: str, clip: str, loops: int, detector: str, model: str, threads: int, folder: str):
    ev = os.path.join(folder, f"events-{setting}.jsonl")
    out = os.path.join(folder, f"out-{setting}.mp4")
    cmd = [sys.executable, "-m", "actionnet.cli", "--persons", "--detector", detector, "--model", model,
           "--threads", str(threads), "--live", "--input-loop", str(loops), "--headless", "--no-progress", "--timings",
           "--events", ev, clip, out]
    if setting == "frame":  # whole frame: the same footage, the classifier alone
        del cmd[3:6]
    elif setting != "auto":
        cmd[3:3] = ["--detect-every", setting]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"bench_live: {setting}: actionnet failed:\n{r.stderr[-2000:]}")
    m = re.search(r"actionnet: (?:stopped: )?(\d+) frames?, ([\d.]+) fps", r.stderr)
    processed, fps = int(m.group(1)), float(m.group(2))
    d = re.search(r"(\d+) frames dropped", r.stderr)
    dropped = int(d.group(1)) if d else 0
    events = [json.loads(line) for line in open(ev)]
    if setting == "frame":  # labels a second of the whole frame
        times = [e["time"] for e in events if e.get("event") == "classification"]
        rate, tracks = ((len(times) - 1) / (times[-1] - times[0]) if len(times) > 2 else float("nan")), 0
    else:
        rate, tracks = labels_per_person_second(events)
    adapt = [e["detect_every"] for e in events if e.get("event") == "adapt"]
    said = [line for line in r.stderr.splitlines() if "keep up" in line]
    stages = {}  # --timings: mean ms per call of each stage, and its calls
    for line in r.stderr.splitlines():
        f = line.split()
        if len(f) == 4 and f[0].isidentifier() and f[1].isdigit():
            stages[f[0]] = (int(f[1]), float(f[3]))
    return dict(setting=setting, processed=processed, fps=fps, dropped=dropped,
                dropped_pct=100.0 * dropped / max(1, processed + dropped), labels_per_s=rate, tracks=tracks,
                adapt=adapt, said=said, out_s=duration(out), stages=stages)


def run_baseline(clip: str, loops: int, weights: str, threads: int, folder: str, classifier: str):
    """The Ultralytics example's loop on the footage played live (start-up excluded)."""
    import torch

    from actionnet.sources import SourceOptions, open_source, video_source

    torch.set_num_threads(threads)
    classifier, spec, _ = CLASSIFIERS[classifier](folder)
    with open_source(clip) as once:
        first = next(iter(once))[0]
    yolo = new_example_yolo(weights, first)  # before the live clock starts, as actionnet's start-up
    src = video_source(clip, SourceOptions(live=True, loop=loops))
    try:
        seconds, stages, n_cls, _ = run_example((f for f, _ in src), yolo, classifier, spec)
    finally:
        src.close()
    processed = src.captured - src.dropped
    return dict(setting="Ultralytics example", processed=processed, fps=processed / seconds, dropped=src.dropped,
                dropped_pct=100.0 * src.dropped / max(1, src.captured), labels_per_s=n_cls / seconds / 2,
                tracks=None, adapt=None, said=[], out_s=float("nan"),
                stages={k: (0, 1000.0 * v / max(1, processed)) for k, v in stages.items()})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="footage played live, in seconds (default 60)")
    p.add_argument("--frames", type=int, default=72, help="frames of the mosaic, looped (default 72)")
    p.add_argument("--settings", default="auto,1", help="--detect-every settings, comma-separated (default auto,1); "
                   "'frame' runs whole-frame mode (no detector) on the same footage")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classifier", choices=sorted(CLASSIFIERS), default="resnet-18",
                   help="the 3D ResNet-18 of actionNet (default) or torchvision's r3d_18")
    p.add_argument("--weights", default=str(SHARED / "weights" / "yolov5n.pt"))
    p.add_argument("--keep", help="folder to keep the clip, the models and the outputs in (reused)")
    p.add_argument("--baseline", action="store_true", help="also the Ultralytics example's loop, fed the same way")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        clip = os.path.join(folder, f"two_people_1080p_{args.frames}.mp4")
        if not os.path.exists(clip):
            make_clip(clip, args.frames, SHARED / "videos" / "people_walking.mp4")
        detector, model = models(folder, args.weights, args.classifier)
        loops = max(1, math.ceil(args.seconds * FPS / args.frames))
        footage = loops * args.frames / FPS
        load = os.getloadavg()
        rows = [run(s, clip, loops, detector, model, args.threads, folder) for s in args.settings.split(",") if s]
        if args.baseline:
            rows.append(run_baseline(clip, loops, args.weights, args.threads, folder, args.classifier))
        print(f"1080p two-person mosaic, {footage:.1f} s played --live at {FPS:g} fps, {args.classifier}, "
              f"{args.threads} threads; "
              f"load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after")
        print(f"{'--detect-every':<15} {'fps':>6} {'dropped':>14} {'labels/person/s':>16} {'video s':>8}  adapt")
        for r in rows:
            print(f"{r['setting']:<15} {r['fps']:>6.1f} {r['dropped']:>6} ({r['dropped_pct']:4.1f} %) "
                  f"{r['labels_per_s']:>16.2f} {r['out_s']:>8.1f}  {r['adapt'] or '-'}")
            for line in r["said"]:
                print(f"    {line}")
            if r["tracks"] is None:  # the example's own timers: ms per processed frame
                print("    ms per frame: " + ", ".join(f"{k} {ms:.1f}" for k, (_, ms) in r["stages"].items()))
            else:
                calls = ", ".join(f"{k} {ms:.1f} ({n})" for k, (n, ms) in r["stages"].items())
                print(f"    ms per call (calls): {calls}")


if __name__ == "__main__":
    main()
