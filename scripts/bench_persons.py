"""Per-person FPS: actionnet --persons vs the Ultralytics action-recognition example, as its users run it.

The baseline is the loop of ultralytics' ``examples/YOLOv8-Action-Recognition/action_recognition.py``
with ultralytics' own predictor and tracker: ``YOLO(...).track(frame, persist=True, classes=[0])``
on every frame (AutoBackend: Conv+BN fused; rectangular letterbox, 1080p -> 384x640; BoT-SORT,
the default tracker), ``crop_and_pad`` of every track every ``skip_frame`` frames into a per-track
list, the torchvision transform per ready track, one batched classifier call every
``int(N x skip_frame x (1 - overlap))`` frames, ultralytics' ``Annotator`` for the boxes.

Same models for both, in one process, start-up excluded (models loaded and warmed before the
timed loop):

* detector: the real YOLOv5n. Ultralytics 8 refuses the original checkpoint
  (``shared/data/weights/yolov5n.pt``), so it is rebuilt as ultralytics' ``yolov5n.yaml`` plus
  YOLOv5's anchor head (:mod:`actionnet.export.yolov5_legacy`); its boxes are checked against
  ``yolov5n.onnx`` on a real frame before anything is timed. actionnet runs the same weights
  exported by ``actionnet-export yolo yolov5n.pt --dynamic``;
* classifier: torchvision ``r3d_18`` (seeded random weights: no pretrained weights offline),
  16 x 112 x 112; PyTorch eager for the example, the actionnet export for actionnet;
* with ``--int8`` (the default), actionnet also runs that detector quantised by
  ``actionnet-export quantize`` (calibrated on 72 frames of the three shared videos, gated on
  24 others); engine ``auto`` runs a float detector on ONNX Runtime and an INT8 one on OpenVINO;
* the example's cadence: N = 16 samples, skip_frame = 2, overlap 0.25: a batched call every
  24 frames. "Same work" runs actionnet with one stored frame in 2 (``--skip-frames 1``) and
  ``--cadence 12`` (every 24 frames); "defaults" runs ``actionnet --persons`` with nothing set.

Clip: a 1920x1080 2x2 mosaic of 960x540 tiles upscaled from ``people_walking.mp4`` (768x432,
10 fps): two tiles show a person (frames 120- and 235- of the source), two the empty room
(frames 0- and 450-, where someone walks in during the last 10-13 of the 72 frames); written at 30 fps (a camera's rate; it sets actionnet's default
cadence and track timeout). Decoding (PyAV, measured once) is added to both.

Runs alternate (example, actionnet, ..., example, ...) so that each pipeline sees the same load;
medians are reported, with the load average before and after.

    pip install --no-deps ultralytics && pip install lap     # the example's tracker needs lap
    python scripts/bench_persons.py --repeats 3 --threads 2
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
N_SAMPLES, SKIP_FRAME, OVERLAP, SIZE = 16, 2, 0.25, 112
CADENCE_FRAMES = int(N_SAMPLES * SKIP_FRAME * (1 - OVERLAP))  # 24
FPS = 30.0
STAGES = ("decode", "detect", "track", "crop", "classify", "draw")


# -- the clip ----------------------------------------------------------------------------------

def make_clip(path: str, frames: int, source: Path) -> None:
    """The 2x2 mosaic described above, H.264 at 30 fps."""
    from actionnet.outputs import video_output
    from actionnet.sources import open_source

    starts = {"person_a": 120, "person_b": 235, "empty_a": 0, "empty_b": 450}
    need = {s + i for s in starts.values() for i in range(frames)}
    got = {}
    with open_source(str(source)) as src:
        for i, (f, _) in enumerate(src):
            if i in need:
                got[i] = cv2.resize(f, (960, 540), interpolation=cv2.INTER_LINEAR)
            if i >= max(need):
                break
    with video_output(path, FPS) as out:
        for i in range(frames):
            top = np.hstack([got[starts["person_a"] + i], got[starts["empty_a"] + i]])
            bottom = np.hstack([got[starts["empty_b"] + i][:, ::-1], got[starts["person_b"] + i]])
            out.write(np.ascontiguousarray(np.vstack([top, bottom])))


def decode(path):
    from actionnet.sources import open_source

    t0 = time.perf_counter()
    with open_source(path) as src:
        frames = [f for f, _ in src]
    return frames, (time.perf_counter() - t0) / max(1, len(frames))


# -- models ------------------------------------------------------------------------------------

def r3d18_module():
    """r3d_18 with seeded random weights and its spec."""
    import torch
    from torchvision.models.video import r3d_18

    from actionnet.spec import ModelSpec

    torch.manual_seed(0)
    model = r3d_18(weights=None, num_classes=400).eval()
    spec = ModelSpec(labels=tuple(f"class {i}" for i in range(400)), clip_length=N_SAMPLES, height=SIZE, width=SIZE,
                     input_name="frames", output_name="logits", layout="raw_nthwc", color_order="RGB",
                     resize_mode="squash", mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989),
                     arch="r3d_18")
    return model, spec


def build_classifier(folder: str):
    """r3d_18 with seeded random weights: the torch module and its actionnet ONNX export."""
    from actionnet.export.onnx_export import export_clip_model

    model, spec = r3d18_module()
    path = os.path.join(folder, "r3d18-random.onnx")
    export_clip_model(model, spec, path, log=open(os.devnull, "w"))
    return model, spec, path


def build_resnet18(folder: str):
    """The 3D ResNet-18 of jetson-inference's actionNet (the runtime's default network, 16x112x112)
    with seeded random weights: the torch module and its actionnet ONNX export."""
    import torch

    from actionnet.export.action import export_resnet3d, resnet3d_spec
    from actionnet.export.resnet3d import resnet3d

    path = os.path.join(folder, "resnet18-3d-random.onnx")
    torch.manual_seed(0)
    model = resnet3d("resnet-18").eval()
    if not os.path.exists(path):
        torch.save(model.state_dict(), path + ".pt")
        export_resnet3d("resnet-18", path + ".pt", path, log=open(os.devnull, "w"))
    return model, resnet3d_spec("resnet-18", [f"class {i}" for i in range(1039)]), path


def build_r3d18(folder: str):
    """torchvision's r3d_18 (about five times the 3D ResNet-18's work a clip), as bench_persons."""
    path = os.path.join(folder, "r3d18-random.onnx")
    if os.path.exists(path):
        return (*r3d18_module(), path)
    return build_classifier(folder)


CLASSIFIERS = {"resnet-18": build_resnet18, "r3d_18": build_r3d18}


def check_rebuilt_detector(yolo, onnx_path: str, frame) -> float:
    """The rebuilt ultralytics model against yolov5n.onnx on one real frame, both at 640x640:
    the same person boxes (IoU of matched boxes) or the benchmark stops."""
    import torch

    from actionnet.detector import Detector, decode as decode_raw, nms
    from actionnet.tracker import iou_matrix

    ref = Detector(onnx_path, log=None)
    a = ref(frame)
    x = torch.from_numpy(ref.letterbox(frame).copy())
    with torch.inference_mode():
        out = yolo.model(x).numpy()
    b, s, c = decode_raw(out, "yolov8", ref.conf, ref.class_ids)
    k = nms(b, s, c, ref.iou, ref.max_det)
    boxes = ref.letterbox.to_frame(b[k], frame.shape)
    ref.close()
    if len(boxes) != len(a) or len(a) == 0:
        raise SystemExit(f"rebuilt YOLOv5n finds {len(boxes)} persons, yolov5n.onnx {len(a)}")
    iou = iou_matrix(a.boxes, boxes).max(axis=1).min()
    if iou < 0.99 or np.abs(np.sort(a.scores) - np.sort(s[k])).max() > 1e-3:
        raise SystemExit(f"rebuilt YOLOv5n differs from yolov5n.onnx: min IoU {iou:.4f}")
    return float(iou)


# -- the Ultralytics example ---------------------------------------------------------------------

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


def new_example_yolo(weights: str, warm_frame):
    """A fresh ultralytics YOLO on the rebuilt YOLOv5n, its predictor and BoT-SORT set up by one
    track call on a frame of the clip's size, then the tracker reset (start-up excluded)."""
    from actionnet.export.yolov5_legacy import load_yolov5

    yolo = load_yolov5(weights)
    yolo.track(np.zeros_like(warm_frame), persist=True, classes=[0], verbose=False)
    for t in yolo.predictor.trackers:
        t.reset()
    return yolo


def run_example(frames, yolo, classifier, spec):
    import torch
    from torchvision.transforms import v2
    from ultralytics.utils.plotting import Annotator

    transform = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Resize([SIZE, SIZE], antialias=True),
                            v2.Normalize(mean=list(spec.mean), std=list(spec.std))])
    history = defaultdict(list)
    timer = defaultdict(float)
    clock = time.perf_counter
    crops_to_infer, ids_to_infer, pred_labels, pred_confs = [], [], [], []
    n_cls, ids = 0, set()
    start = clock()
    for counter, frame in enumerate(frames, 1):
        frame = frame.copy()  # a fresh frame per read, as cv2.VideoCapture gives
        t0 = clock()
        results = yolo.track(frame, persist=True, classes=[0], verbose=False)
        t1 = clock()
        sp = results[0].speed  # ms: preprocess, inference, postprocess; the rest of the call is tracking
        det = (sp["preprocess"] + sp["inference"] + sp["postprocess"]) / 1000
        timer["detect"] += det
        timer["track"] += (t1 - t0) - det
        if results[0].boxes.id is None:
            continue
        boxes = results[0].boxes.xyxy.cpu().numpy()
        track_ids = results[0].boxes.id.cpu().numpy()
        ids.update(int(t) for t in track_ids)
        annotator = Annotator(frame, line_width=3, font_size=10, pil=False)
        if counter % SKIP_FRAME == 0:
            crops_to_infer, ids_to_infer = [], []
        for box, tid in zip(boxes, track_ids):
            if counter % SKIP_FRAME == 0:
                history[tid].append(crop_and_pad(frame, box, 10))  # BGR, as the example feeds it
            if len(history[tid]) > N_SAMPLES:
                history[tid].pop(0)
            if len(history[tid]) == N_SAMPLES and counter % SKIP_FRAME == 0:
                crops = torch.stack([transform(torch.from_numpy(c).permute(2, 0, 1)) for c in history[tid]])
                crops_to_infer.append(crops.unsqueeze(0).permute(0, 2, 1, 3, 4))  # torchvision: (B, C, T, H, W)
                ids_to_infer.append(tid)
        t2 = clock()
        timer["crop"] += t2 - t1
        if crops_to_infer and (not pred_labels or counter % CADENCE_FRAMES == 0):
            with torch.inference_mode():
                probs = classifier(torch.cat(crops_to_infer, 0)).softmax(1)
            pred_labels, pred_confs = [], []
            for p in probs:
                top = p.topk(2).indices.tolist()
                pred_labels.append([f"class {i}" for i in top])
                pred_confs.append(p[top].tolist())
            n_cls += len(pred_labels)
        t3 = clock()
        timer["classify"] += t3 - t2
        if ids_to_infer and crops_to_infer:
            for box, _, label, conf in zip(boxes, ids_to_infer, pred_labels, pred_confs):
                text = " | ".join(f"{lb} ({c:.2f})" for lb, c in sorted(zip(label, conf), key=lambda x: -x[1]))
                annotator.box_label(box, text, color=(0, 0, 255))
        timer["draw"] += clock() - t3
    return clock() - start, dict(timer), n_cls, len(ids)


# -- actionnet ---------------------------------------------------------------------------------

def new_actionnet(model, detector, frame, threads, engine, **kw):
    from actionnet.persons import PersonActionNet

    net = PersonActionNet(model, detector, engine=engine, threads=threads, fps=FPS, log=None, **kw)
    net.detector(np.zeros_like(frame))  # warm: engines compiled, the letterbox fitted to 1080p
    s = net.spec
    net.engine.infer(np.zeros((2, s.clip_length, s.height, s.width, 3), np.uint8), s.output_name)
    return net


def run_actionnet(frames, net):
    clock = time.perf_counter
    draw, n_cls = 0.0, 0
    start = clock()
    for i, f in enumerate(frames):
        f = f.copy()  # sources hand out fresh frames; drawing happens in place
        n_cls += sum(1 for e in net.update(f, i / FPS) if e["event"] == "classification")
        t = clock()
        net.annotate(f)
        draw += clock() - t
    total = clock() - start
    stages = {k: net.timer.total.get(k, 0.0) for k in STAGES}
    stages["draw"] = draw
    return total, stages, n_cls, net.tracker.tracks_started


# -- report ------------------------------------------------------------------------------------

def table(title, names, results, n, decode_s):
    print(f"{title}\n")
    print("| pipeline | FPS | x example | person clips classified | tracks | "
          + " | ".join(f"{s} ms/frame" for s in STAGES) + " |")
    print("|" + "---|" * (5 + len(STAGES)))
    base = None
    for name in names:
        runs = results[name]
        totals = [r[0] for r in runs]
        total, stages, n_cls, n_tracks = runs[totals.index(sorted(totals)[len(totals) // 2])]
        fps = n / total
        base = base or fps
        stages = dict(stages, decode=decode_s * n)
        print(f"| {name} | {fps:.2f} | {fps / base:.2f} | {n_cls} | {n_tracks} | "
              + " | ".join(f"{1000 * stages.get(s, 0.0) / n:.1f}" for s in STAGES) + " |")
    print()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--video", help="a clip to use instead of the 1080p two-person mosaic")
    p.add_argument("--frames", type=int, default=72, help="frames of the mosaic (default 72)")
    p.add_argument("--weights", default=str(SHARED / "weights" / "yolov5n.pt"))
    p.add_argument("--onnx", default=str(SHARED / "weights" / "yolov5n.onnx"), help="the reference export")
    p.add_argument("--repeats", type=int, default=3, help="runs of each pipeline, alternating; medians reported")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--classifier", choices=sorted(CLASSIFIERS), default="r3d_18",
                   help="torchvision's r3d_18 (default) or the 3D ResNet-18 of actionNet")
    p.add_argument("--engines", default="auto,onnxruntime,openvino",
                   help="actionnet engines to measure (auto: what a user gets; default all three)")
    p.add_argument("--keep", help="folder to keep the clip and the exported models in")
    p.add_argument("--int8", action=argparse.BooleanOptionalAction, default=True,
                   help="also run actionnet with the detector quantised by actionnet-export quantize (default on)")
    args = p.parse_args(argv)

    import torch

    from actionnet.export.yolo import export_yolo
    from actionnet.export.yolov5_legacy import load_yolov5

    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        clip = args.video or os.path.join(folder, "two_people_1080p.mp4")
        if not args.video:
            make_clip(clip, args.frames, SHARED / "videos" / "people_walking.mp4")
        frames, decode_s = decode(clip)
        n = len(frames)
        iou = check_rebuilt_detector(load_yolov5(args.weights), args.onnx, cv2.imread(str(SHARED / "bus.jpg"))
                                     if (SHARED / "bus.jpg").exists() else _person_frame())
        detector = os.path.join(folder, "yolov5n-dynamic.onnx")
        export_yolo(load_yolov5(args.weights), detector, imgsz=640, dynamic=True)
        int8 = os.path.join(folder, "yolov5n-dynamic-int8.onnx")
        if args.int8:  # actionnet-export quantize, calibrated on the source video's own frames
            from actionnet.export.quantize_detector import quantize_detector

            quantize_detector(detector, str(SHARED / "videos"), int8, frames=96)
        classifier, spec, model = CLASSIFIERS[args.classifier](folder)
        engines = [e for e in args.engines.split(",") if e]
        pipelines = {"Ultralytics example (YOLO.track + PyTorch eager)":
                     lambda: run_example(frames, new_example_yolo(args.weights, frames[0]), classifier, spec)}
        same = dict(skip_frames=SKIP_FRAME - 1, cadence=CADENCE_FRAMES // SKIP_FRAME)
        for e in engines:
            pipelines[f"actionnet {e}, same work (--skip-frames 1 --cadence 12)"] = \
                lambda e=e: run_actionnet(frames, new_actionnet(model, detector, frames[0], args.threads, e, **same))
            pipelines[f"actionnet {e}, same work + --detect-every 2"] = \
                lambda e=e: run_actionnet(frames, new_actionnet(model, detector, frames[0], args.threads, e,
                                                                detect_every=2, **same))
            if args.int8:
                pipelines[f"actionnet {e}, same work, INT8 detector"] = \
                    lambda e=e: run_actionnet(frames, new_actionnet(model, int8, frames[0], args.threads, e, **same))
        pipelines["actionnet defaults (engine auto)"] = \
            lambda: run_actionnet(frames, new_actionnet(model, detector, frames[0], args.threads, "auto"))
        if args.int8:
            pipelines["actionnet defaults (engine auto), INT8 detector"] = \
                lambda: run_actionnet(frames, new_actionnet(model, int8, frames[0], args.threads, "auto"))
        results = defaultdict(list)
        print("pipelines: " + "; ".join(pipelines), file=sys.stderr)
        for r in range(args.repeats):
            for name, fn in pipelines.items():
                total, stages, n_cls, n_tracks = fn()
                results[name].append((total + decode_s * n, stages, n_cls, n_tracks))
                print(f"run {r + 1}: {name}: {n / (total + decode_s * n):.2f} fps, {n_cls} clips, "
                      f"{n_tracks} tracks", file=sys.stderr)
    load_after = os.getloadavg()

    print(f"\n{n} frames of {Path(clip).name if args.video else 'a 1920x1080 two-person mosaic'}, "
          f"{args.threads} threads, {args.repeats} alternating runs each (median run shown); load average "
          f"{load_before[0]:.1f} before, {load_after[0]:.1f} after; rebuilt YOLOv5n vs yolov5n.onnx: min box IoU "
          f"{iou:.4f}; classifier {args.classifier} {N_SAMPLES}x{SIZE}x{SIZE}; example: skip_frame {SKIP_FRAME}, "
          f"a batched call every {CADENCE_FRAMES} frames\n")
    names = list(results)
    table("per stage, median run:", names, results, n, decode_s)
    base_runs = [r[0] for r in results[names[0]]]
    for name in names[1:]:
        ratios = [b / r[0] for b, r in zip(base_runs, results[name])]
        print(f"{name}: x example run by run: {', '.join(f'{x:.2f}' for x in ratios)}; "
              f"median {statistics.median(ratios):.2f}")


def _person_frame():
    """Frame 100 of people_walking.mp4: one person, standing."""
    from actionnet.sources import open_source

    with open_source(str(SHARED / "videos" / "people_walking.mp4")) as src:
        for i, (f, _) in enumerate(src):
            if i == 100:
                return f


if __name__ == "__main__":
    main()
