"""The README's picture, docs/frame.png: one annotated per-person frame above the timeline of
the same run (issue 29).

    python scripts/readme_picture.py MODEL.onnx DETECTOR.onnx VIDEO [--frames 120] [-o docs/frame.png]

Per-person mode through the Python API on the first ``--frames`` frames of VIDEO; the last frame
annotated by ``PersonActionNet.annotate`` and the run's events drawn by ``actionnet.timeline``
(the same drawing as ``actionnet timeline``), stacked into one PNG. The picture in the README was
made with the synthetic test model (its labels are colour x direction of a square, so they say
nothing about the people), the shared YOLOv5n and people_walking.mp4: it shows what the output
holds, not accuracy:

    python scripts/readme_picture.py SYNTHETIC.onnx ../shared/data/weights/yolov5n.onnx \
        ../shared/data/videos/people_walking.mp4 --frames 300
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from actionnet import PersonActionNet, video_source
from actionnet.timeline import timeline


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("detector")
    ap.add_argument("video")
    ap.add_argument("--frames", type=int, default=120)
    ap.add_argument("--width", type=int, default=768)
    ap.add_argument("-o", "--output", default="docs/frame.png")
    a = ap.parse_args()
    events, last = [], None
    with video_source(a.video) as source:
        net = PersonActionNet(a.model, a.detector, skip_frames=0, cadence=4, min_duration=1.0, threshold=0.0,
                              fps=source.rate, log=None)
        for i, (frame, t) in enumerate(source):
            if i >= a.frames:
                break
            events += net.update(frame, t)
            last = net.annotate(frame)
    events += net.finish()
    with tempfile.TemporaryDirectory() as d:
        ev, png = Path(d) / "events.jsonl", Path(d) / "timeline.png"
        ev.write_text("".join(json.dumps(e) + "\n" for e in events))
        timeline(str(ev), str(png), width=a.width)
        lanes = cv2.imread(str(png))
    scale = a.width / last.shape[1]
    last = cv2.resize(last, (a.width, round(last.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    cv2.imwrite(a.output, np.vstack([last, lanes]), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    print(a.output)


if __name__ == "__main__":
    main()
