"""Per-person FPS: actionnet --persons vs the Ultralytics action-recognition example's approach.

The baseline follows ultralytics' ``examples/YOLOv8-Action-Recognition/action_recognition.py``
step by step: PyTorch eager YOLO on every frame, ultralytics' NMS and BYTETracker, a crop of
every tracked person every ``skip`` frames (``crop_and_pad``: 10 % margin, square, 224 px),
torchvision transforms per ready track, one batched torchvision classifier call every
``T * skip * 0.75`` frames, boxes and labels drawn with OpenCV.

Same for both, in one run, on the same decoded frames:

* detector: the real YOLOv5n (``shared/data/weights/yolov5n.onnx``, 640 x 640). The baseline
  runs it in PyTorch eager through onnx2torch (ultralytics 8 cannot load the original YOLOv5
  checkpoint); actionnet runs the same ONNX in its engine;
* classifier: torchvision ``r3d_18`` (random weights, seeded; no pretrained weights offline),
  8 frames of 112 x 112. The baseline runs it in PyTorch eager; actionnet runs it exported by
  ``actionnet.export`` (raw uint8 frames in, dynamic batch);
* clip length 8, one stored frame every 4 frames, a classification every 24 frames.

Decoding is measured once (PyAV) and added to both pipelines' time per frame.

Needs the export extra plus ``pip install --no-deps ultralytics`` and ``pip install onnx2torch lap``
(benchmark only). OpenVINO (the runtime's engine) is measured when installed.

    python scripts/bench_persons.py --frames 200 --repeats 3 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
T, SIZE, SKIP = 8, 112, 4
CADENCE_FRAMES = int(T * SKIP * (1 - 0.25))  # the example: 8 samples x skip 4 x (1 - overlap 0.25) = 24
STAGES = ("decode", "detect", "track", "crop", "classify", "draw")


class Timer:
    def __init__(self):
        self.total = defaultdict(float)

    def add(self, k, s):
        self.total[k] += s


# -- models -----------------------------------------------------------------------------------

def build_classifier(folder: str):
    """r3d_18 with seeded random weights: the torch module and its actionnet ONNX export."""
    import torch
    from torchvision.models.video import r3d_18

    from actionnet.export.onnx_export import export_clip_model
    from actionnet.spec import ModelSpec

    torch.manual_seed(0)
    model = r3d_18(weights=None, num_classes=400).eval()
    spec = ModelSpec(labels=tuple(f"class {i}" for i in range(400)), clip_length=T, height=SIZE, width=SIZE,
                     input_name="frames", output_name="logits", layout="raw_nthwc", color_order="RGB",
                     resize_mode="squash", mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989),
                     arch="r3d_18")
    path = os.path.join(folder, "r3d18-random.onnx")
    export_clip_model(model, spec, path, log=open(os.devnull, "w"))
    return model, spec, path


# -- actionnet ---------------------------------------------------------------------------------

def run_actionnet(frames, detector, model, threads, engine="onnxruntime"):
    from actionnet.person_overlay import PersonOverlay
    from actionnet.persons import PersonActionNet

    net = PersonActionNet(model, detector, skip_frames=SKIP - 1, cadence=CADENCE_FRAMES // SKIP, threshold=0.0,
                          engine=engine, threads=threads, context=1.2, crop_mode="follow", log=None)
    overlay = PersonOverlay()
    draw = 0.0
    n_cls = 0
    start = time.perf_counter()
    for i, f in enumerate(frames):
        f = f.copy()  # sources hand out fresh frames; drawing happens in place
        n_cls += sum(1 for e in net.update(f, i / 10) if e["event"] == "classification")
        t = time.perf_counter()
        overlay.annotate(f, net.visible(), T)
        draw += time.perf_counter() - t
    total = time.perf_counter() - start
    stages = {k: net.timer.total.get(k, 0.0) for k in STAGES}
    stages["draw"] = draw
    return total, stages, n_cls, net.tracker._next_id - 1


# -- the Ultralytics example's approach ----------------------------------------------------------

def crop_and_pad(frame, box, margin_percent):
    """As in the example: margin, square around the box centre, resize to 224."""
    x1, y1, x2, y2 = map(int, box)
    w, h = x2 - x1, y2 - y1
    mx, my = int(w * margin_percent / 100), int(h * margin_percent / 100)
    x1, y1 = max(0, x1 - mx), max(0, y1 - my)
    x2, y2 = min(frame.shape[1], x2 + mx), min(frame.shape[0], y2 + my)
    size = max(y2 - y1, x2 - x1)
    cy, cx = (y1 + y2) // 2, (x1 + x2) // 2
    half = size // 2
    sq = frame[max(0, cy - half):min(frame.shape[0], cy + half), max(0, cx - half):min(frame.shape[1], cx + half)]
    return cv2.resize(sq, (224, 224), interpolation=cv2.INTER_LINEAR)


def _onnx2torch_ready(path):
    """YOLOv5's export marks its Reshapes allowzero=1, which onnx2torch refuses; its target shapes
    hold no zeros, so allowzero changes nothing and is dropped."""
    import onnx

    m = onnx.load(str(path))
    for node in m.graph.node:
        if node.op_type == "Reshape":
            keep = [a for a in node.attribute if a.name != "allowzero"]
            del node.attribute[:]
            node.attribute.extend(keep)
    return m


def run_baseline(frames, detector_onnx, classifier, spec, threads):
    import torch
    from onnx2torch import convert
    from torchvision.transforms import v2
    from types import SimpleNamespace

    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics.data.augment import LetterBox
    from ultralytics.engine.results import Boxes
    from ultralytics.trackers.byte_tracker import BYTETracker
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    torch.set_num_threads(threads)
    yolo = convert(_onnx2torch_ready(detector_onnx)).eval()
    tracker = BYTETracker(SimpleNamespace(track_high_thresh=0.25, track_low_thresh=0.1, new_track_thresh=0.25,
                                          track_buffer=30, match_thresh=0.8, fuse_score=True))
    letterbox = LetterBox((640, 640), auto=False)
    transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Resize([SIZE, SIZE], antialias=True),
                            v2.Normalize(mean=list(spec.mean), std=list(spec.std))])
    history = defaultdict(list)
    timer = Timer()
    clock = time.perf_counter
    pred_labels = []
    n_cls = 0
    ids = set()
    start = clock()
    for counter, frame in enumerate(frames, 1):
        frame = frame.copy()
        t0 = clock()
        img = letterbox(image=frame)
        x = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))[None].float() / 255
        with torch.inference_mode():
            out = yolo(x)
            out = out[0] if isinstance(out, (list, tuple)) else out
            # YOLOv5 rows (cx, cy, w, h, obj, cls...) -> ultralytics' [1, 4 + C, N] (score = obj x cls)
            v8 = torch.cat([out[..., :4], out[..., 5:] * out[..., 4:5]], -1).transpose(1, 2)
            det = non_max_suppression(v8, 0.25, 0.7, classes=[0])[0]
            det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], frame.shape)
        t1 = clock()
        tracks = tracker.update(Boxes(det.numpy(), frame.shape).cpu().numpy(), frame)
        t2 = clock()
        timer.add("detect", t1 - t0)
        timer.add("track", t2 - t1)
        crops_to_infer, ids_to_infer = [], []
        if len(tracks):
            boxes, track_ids = tracks[:, :4], tracks[:, 4].astype(int)
            ids.update(track_ids.tolist())
            for box, tid in zip(boxes, track_ids):
                if counter % SKIP == 0:
                    history[tid].append(crop_and_pad(frame, box, 10))  # BGR, as the example feeds it
                if len(history[tid]) > T:
                    history[tid].pop(0)
                if len(history[tid]) == T and counter % SKIP == 0:
                    clip = torch.stack([transform(torch.from_numpy(c.copy()).permute(2, 0, 1)) for c in history[tid]])
                    crops_to_infer.append(clip.unsqueeze(0).permute(0, 2, 1, 3, 4))
                    ids_to_infer.append(tid)
            t3 = clock()
            timer.add("crop", t3 - t2)
            if crops_to_infer and (not pred_labels or counter % CADENCE_FRAMES == 0):
                with torch.inference_mode():
                    logits = classifier(torch.cat(crops_to_infer, 0))
                probs = logits.softmax(1)
                conf, cls = probs.max(1)
                pred_labels = [f"class {int(c)} ({float(p):.2f})" for c, p in zip(cls, conf)]
                n_cls += len(pred_labels)
            t4 = clock()
            timer.add("classify", t4 - t3)
            for box, label in zip(boxes, pred_labels):  # the example zips labels with boxes by position
                p1, p2 = (int(box[0]), int(box[1])), (int(box[2]), int(box[3]))
                cv2.rectangle(frame, p1, p2, (0, 0, 255), 3)
                cv2.putText(frame, label, (p1[0], max(0, p1[1] - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2)
            timer.add("draw", clock() - t4)
    total = clock() - start
    return total, {k: timer.total.get(k, 0.0) for k in STAGES}, n_cls, len(ids)


def decode(video, start, count):
    from actionnet.sources import open_source

    frames = []
    t0 = time.perf_counter()
    with open_source(str(video)) as src:
        for i, (f, _) in enumerate(src):
            if i >= start:
                frames.append(f)
            if len(frames) == count:
                break
    return frames, (time.perf_counter() - t0) * count / (start + count)  # share of the frames kept


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", default=str(SHARED / "videos" / "people_walking.mp4"))
    p.add_argument("--detector", default=str(SHARED / "weights" / "yolov5n.onnx"))
    p.add_argument("--start", type=int, default=60, help="first frame (a person walks in at about 70)")
    p.add_argument("--frames", type=int, default=200)
    p.add_argument("--repeats", type=int, default=3, help="runs of each pipeline, alternating; medians reported")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    frames, decode_s = decode(args.video, args.start, args.frames)
    n = len(frames)
    with tempfile.TemporaryDirectory() as tmp:
        classifier, spec, model = build_classifier(tmp)
        pipelines = {"ultralytics-example (PyTorch eager)": lambda: run_baseline(frames, args.detector, classifier,
                                                                                   spec, args.threads),
                     "actionnet (onnxruntime)": lambda: run_actionnet(frames, args.detector, model, args.threads)}
        try:
            import openvino  # noqa: F401

            pipelines["actionnet (openvino)"] = lambda: run_actionnet(frames, args.detector, model,
                                                                               args.threads, "openvino")
        except ImportError:
            pass
        results = defaultdict(list)
        for r in range(args.repeats):
            for name, fn in pipelines.items():
                total, stages, n_cls, n_tracks = fn()
                stages["decode"] = decode_s
                results[name].append((total + decode_s, stages, n_cls, n_tracks))
                print(f"run {r + 1}: {name}: {n / (total + decode_s):.2f} fps", file=sys.stderr)

    print(f"\n{n} frames of {Path(args.video).name} from frame {args.start}, {args.threads} threads, "
          f"{args.repeats} runs each (median); detector YOLOv5n 640, classifier r3d_18 {T}x{SIZE}x{SIZE}, "
          f"one stored frame every {SKIP}, a classification every {CADENCE_FRAMES} frames\n")
    names = list(results)
    base_runs = [r[0] for r in results[names[0]]]
    for title, pick in (("median run", lambda totals: sorted(totals)[len(totals) // 2]),
                        ("best run (least disturbed by other jobs)", min)):
        print(f"{title}:\n")
        print("| pipeline | FPS | x baseline | person clips classified | tracks | "
              + " | ".join(f"{s} ms/frame" for s in STAGES) + " |")
        print("|" + "---|" * (5 + len(STAGES)))
        base = None
        for name in names:
            runs = results[name]
            totals = [r[0] for r in runs]
            total, stages, n_cls, n_tracks = runs[totals.index(pick(totals))]
            fps = n / total
            base = base or fps
            print(f"| {name} | {fps:.2f} | {fps / base:.2f} | {n_cls} | {n_tracks} | "
                  + " | ".join(f"{1000 * stages[s] / n:.2f}" for s in STAGES) + " |")
        print()
    # runs alternate, so run i of each pipeline saw about the same load: the ratio within a run
    for name in names[1:]:
        ratios = [b / r[0] for b, r in zip(base_runs, results[name])]
        print(f"{name}: speed-up over the baseline run by run: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")

if __name__ == "__main__":
    main()
