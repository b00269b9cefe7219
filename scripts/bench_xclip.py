"""Zero-shot benchmark: the exported X-CLIP on ONNX Runtime and OpenVINO against transformers eager
(what the Ultralytics zero-shot example runs), same clip, same labels, this CPU.

    python scripts/bench_xclip.py [--repeats 5] [--frames 40] [--threads 2] [--labels 8]

Weights are random, but the architecture is the real xclip-base-patch32 (``XCLIPConfig()``
defaults: ViT-B/32, 8 frames of 224x224, 12+12 layers, 512-d embeddings), so FLOPs are the real
ones. Reported, medians of ``--repeats``:

1. per clip: the example's call (XCLIPProcessor on the frames and the prompts, then XCLIPModel,
   text encoder included, as it runs on every clip) against the exported video side with the
   prompts' embeddings bound once (ONNX Runtime, OpenVINO); also transformers eager on tensors
   the processor prepared once (XCLIPModel.forward still runs its text encoder on every call);
2. start-up: the runtime's tokenizer + text-encoder ONNX for the label set;
3. end to end: ``ActionNet`` over a video (decode, buffer, in-graph normalisation, engine)
   against a plain loop (OpenCV decode, a deque of RGB frames, processor + model per clip),
   both at skip-frames 0 and a classification every ``--cadence`` frames.

Needs the export extra and open_clip_torch's BPE file for the tokenizer (pip install --no-deps
open_clip_torch), as the tests do.
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

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests"))

PROMPTS = ["dancing", "singing a song", "playing guitar", "cooking", "running", "falling down", "waving a hand",
           "riding a bike", "swimming", "reading a book", "typing on a keyboard", "drinking coffee"]


def median_time(fn, repeats):
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--frames", type=int, default=40, help="video frames for the end-to-end run")
    ap.add_argument("--cadence", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--labels", type=int, default=8)
    ap.add_argument("--workdir", help="keep the exported model here (default: a temporary folder)")
    args = ap.parse_args()

    import torch
    from transformers import XCLIPConfig, XCLIPModel, XCLIPProcessor

    import xclip_fixtures as xf
    from actionnet.export.synthetic import write_video
    from actionnet.export.xclip import export_xclip, sample_frames
    from actionnet.model import load_action_model
    from actionnet.net import ActionNet
    from actionnet.zeroshot import TextEncoder

    torch.set_num_threads(args.threads)
    prompts = PROMPTS[: args.labels]
    work = args.workdir or tempfile.mkdtemp(prefix="bench-xclip-")
    hf, onnx_path = os.path.join(work, "hf"), os.path.join(work, "xclip-b32.onnx")
    if not os.path.isfile(onnx_path):
        torch.manual_seed(0)
        model = XCLIPModel(XCLIPConfig()).eval()
        xf.save_hf_folder(model, hf, 224, 49152 - 256 - 2)
        t0 = time.perf_counter()
        export_xclip(hf, onnx_path)
        print(f"export: {time.perf_counter() - t0:.0f} s, video side {os.path.getsize(onnx_path) / 1e6:.0f} MB, "
              f"text side {os.path.getsize(onnx_path[:-5] + '.text.onnx') / 1e6:.0f} MB")
    model = XCLIPModel.from_pretrained(hf).eval()
    proc = XCLIPProcessor.from_pretrained(hf)
    spec_clip = sample_frames(load_action_model(onnx_path, prompts, engine="onnxruntime", log=None)[1], 1)[0]
    frames = list(spec_clip)  # 8 RGB frames, 224x224

    def eager_example():
        with torch.no_grad():
            inputs = proc(text=prompts, videos=[frames], return_tensors="pt", padding=True)
            return model(**inputs).logits_per_video

    inputs = proc(text=prompts, videos=[frames], return_tensors="pt", padding=True)

    def eager_tensors():
        with torch.no_grad():
            return model(**inputs).logits_per_video

    rows = [("transformers eager, processor + model (the example)", median_time(eager_example, args.repeats)),
            ("transformers eager, model on prepared tensors", median_time(eager_tensors, args.repeats))]
    ref = eager_tensors().numpy()
    clip = spec_clip[None]
    for engine in ("onnxruntime", "openvino"):
        try:
            eng, spec = load_action_model(onnx_path, prompts, engine=engine, threads=args.threads, log=None)
        except Exception as e:  # OpenVINO not installed
            print(f"{engine}: skipped ({e})")
            continue
        got = eng.infer(clip, spec.output_name)
        print(f"{engine}: max |logit diff| vs transformers {np.abs(got - ref).max():.2e}, "
              f"same top-1: {bool(got.argmax() == ref.argmax())}")
        rows.append((f"actionnet {engine}, embeddings bound", median_time(lambda: eng.infer(clip, spec.output_name),
                                                                           args.repeats)))
        eng.close()
    base = rows[0][1]
    print(f"\nper clip (8x224x224, {len(prompts)} labels, {args.threads} threads, median of {args.repeats}):")
    for name, t in rows:
        print(f"  {name:<55} {t * 1000:8.1f} ms   {base / t:5.2f}x")

    text = TextEncoder(onnx_path[:-5] + ".text.onnx", threads=args.threads)
    t_text = median_time(lambda: text.encode(prompts), args.repeats)
    t_tok = median_time(lambda: text.tokenizer(prompts), args.repeats)
    with torch.no_grad():
        t_hf_text = median_time(lambda: model.get_text_features(**proc.tokenizer(prompts, padding=True,
                                                                                  return_tensors="pt")), args.repeats)
    print(f"\nstart-up text encoding, {len(prompts)} prompts: actionnet {t_text * 1000:.1f} ms "
          f"(tokenizer {t_tok * 1000:.2f} ms), transformers {t_hf_text * 1000:.1f} ms (the example pays it per clip)")

    video = os.path.join(work, "bench.mp4")
    if not os.path.isfile(video):
        rng = np.random.default_rng(0)
        import cv2

        base_img = cv2.resize(rng.integers(0, 255, (40, 53, 3), dtype=np.uint8), (426, 320))
        write_video(video, [np.roll(base_img, 4 * i, axis=1) for i in range(args.frames)])

    def e2e_actionnet(engine):
        net = ActionNet(model=onnx_path, labels=prompts, skip_frames=0, cadence=args.cadence, engine=engine,
                        threads=args.threads, threshold=0.0)  # loaded once, as the eager model is

        def go():
            import av

            net.reset()
            with av.open(video) as c:
                for f in c.decode(video=0):
                    net.update(f.to_ndarray(format="bgr24"))
        return go

    def e2e_eager():
        import cv2

        cap = cv2.VideoCapture(video)
        window = collections.deque(maxlen=8)
        n = 0
        while True:
            ok, f = cap.read()
            if not ok:
                break
            window.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
            n += 1
            if len(window) == 8 and (n - 8) % args.cadence == 0:
                with torch.no_grad():
                    inp = proc(text=prompts, videos=[list(window)], return_tensors="pt", padding=True)
                    model(**inp)
        cap.release()

    reps = max(1, args.repeats // 2)
    e2e = [("transformers eager loop (the example's per-clip call)", median_time(e2e_eager, reps))]
    for engine in ("onnxruntime", "openvino"):
        try:
            e2e.append((f"actionnet ActionNet, {engine}", median_time(e2e_actionnet(engine), reps)))
        except Exception as e:
            print(f"{engine}: skipped ({e})")
    print(f"\nend to end, {args.frames} frames 426x320, a clip every {args.cadence} frames, median of {reps}:")
    for name, t in e2e:
        print(f"  {name:<55} {t:8.2f} s   {e2e[0][1] / t:5.2f}x")


if __name__ == "__main__":
    main()
