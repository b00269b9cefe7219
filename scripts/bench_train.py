"""Training throughput: the real data pipeline vs the model alone on preloaded tensors.

    python scripts/bench_train.py                        # r3d_18, 16x112x112, batch 4, CPU
    python scripts/bench_train.py --device cuda --batch-size 32 --workers 12

Both sides run the same training step (the export stage's RawClipModel around the network,
AdamW, cross-entropy; mixed precision on CUDA). "model alone" feeds batches that were decoded
and prepared before the clock started; "pipeline" feeds them from actionnet-train's own
DataLoader (decoding and preparation in worker processes, persistent workers, clips at the
model's stride). Rounds alternate between the two so that a busy machine slows both alike;
per-step times are reported as medians. The loader is not the bottleneck when the ratio
(pipeline clips/s / model-alone clips/s) is near 1; the target is >= 0.8.

The videos are synthetic (a square moving across a 320x240 frame, H.264, 30 fps, 64 frames),
written once into --data (default: a temporary folder).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

from actionnet.export.onnx_export import RawClipModel
from actionnet.export.train import data as data_mod
from actionnet.export.train.clips import Augment, ClipDataset
from actionnet.export.train.loop import _Keys, _loader
from actionnet.export.train.models import build
from actionnet.export.train.synthetic_clips import write_dataset


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="r3d_18")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="timed steps per round and side")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--videos", type=int, default=24, help="videos per class (2 classes)")
    p.add_argument("--skip-frames", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--data", help="folder for the synthetic videos (kept; default: temporary)")
    a = p.parse_args()

    folder = a.data or tempfile.mkdtemp(prefix="bench-train-")
    if not os.path.isdir(os.path.join(folder, "left")):
        t = time.perf_counter()
        write_dataset(folder, "direction", per_class=a.videos, frames=64, width=320, height=240, seed=0)
        print(f"wrote {2 * a.videos} videos (320x240, 64 frames) in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    ds = data_mod.load(folder, val_fraction=0.1, seed=0)
    device = torch.device(a.device)
    amp = device.type == "cuda"
    torch.manual_seed(0)
    net, spec = build(a.arch, ds.labels)
    model = RawClipModel(net, spec).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    clips = ClipDataset(ds.train, spec, a.skip_frames, True, Augment(), seed=0, clips_per_video=64)

    def step(x, y):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.autocast(device.type, enabled=amp):
            loss = crit(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if device.type == "cuda":
            torch.cuda.synchronize()

    # preloaded batches for the model-alone side (prepared by the same dataset, before timing)
    pre = []
    for b in range(4):
        items = [clips[(0, (b * a.batch_size + i) % len(clips))] for i in range(a.batch_size)]
        pre.append((torch.from_numpy(np.stack([c for c, _ in items])), torch.tensor([lab for _, lab in items])))
    if device.type == "cuda":
        pre = [(x.pin_memory(), y.pin_memory()) for x, y in pre]

    per_round = a.steps + 1  # the first step of each pipeline round waits for a cold queue: not timed
    keys = _Keys()
    loader = _loader(clips, a.batch_size, a.workers, keys)
    order = np.random.default_rng(0).permutation(len(clips))
    alone, piped = [], []
    for r in range(a.rounds + 1):  # round 0 warms up both sides (kernels, allocator, worker start)
        t0 = time.perf_counter()
        for s in range(a.steps):
            t = time.perf_counter()
            step(*pre[s % len(pre)])
            if r:
                alone.append(time.perf_counter() - t)
        start = r * per_round * a.batch_size
        keys.keys = clips.keys(r + 1, [int(order[(start + i) % len(order)]) for i in range(per_round * a.batch_size)])
        it = iter(loader)
        step(*next(it))
        t = time.perf_counter()
        for x, y in it:
            step(x, y)
            now = time.perf_counter()
            if r:
                piped.append(now - t)
            t = now
        print(f"round {r}{' (warm-up)' if r == 0 else ''}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    ma, mp = statistics.median(alone), statistics.median(piped)
    ca, cp = a.batch_size / ma, a.batch_size / mp
    print(f"{a.arch} {spec.clip_length}x{spec.height}x{spec.width}, batch {a.batch_size}, {a.workers} workers, "
          f"{device.type}{' AMP' if amp else ''}, torch threads {torch.get_num_threads()}, {os.cpu_count()} CPUs")
    print(f"model alone (preloaded tensors): {ca:8.2f} clips/s  (median step {ma * 1000:.1f} ms, {len(alone)} steps)")
    print(f"real data pipeline:              {cp:8.2f} clips/s  (median step {mp * 1000:.1f} ms, {len(piped)} steps)")
    print(f"ratio pipeline / model alone:    {cp / ca:8.2f}  (target >= 0.8)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
