"""N streams through one Triton server vs N separate local processes, on this machine's CPU.

What a site does today without a server is run one ``actionnet`` process per camera, each with its
own ONNX Runtime session; with Triton every camera's process sends its clips to one server whose
dynamic batcher runs them together. This script measures both on the same model and clips:

* **local**: N processes, each an ``OnnxRuntimeEngine`` (ONNX Runtime's default threads, what a
  user gets), each classifying K clips back to back;
* **triton**: one server (the Triton build ``nvidia-pytriton`` bundles, the model exported by
  ``actionnet-export triton --backend python``: ONNX Runtime inside the Python backend, one
  instance using all cores), and N client processes, each a ``TritonEngine`` classifying K clips
  back to back over gRPC on 127.0.0.1.

All N processes start together (a barrier after loading). Reported per N: total clips per
second (all clips / wall time from the first start to the last end) and the median latency of
one clip as a stream sees it, median over ``--repeats`` runs. The model is torchvision's r3d_18
(random weights, seeded; 8 x 112 x 112 by default), exported by ``actionnet.export``.

Needs the export and dev extras; the server (nvidia-pytriton's) and the Python its models run
under are built into ``.venv-triton`` on first use, by the tests' own helper (tests/triton_server.py,
from the system python3: Debian packages python3-venv and libpython3-dev), or taken from
``ACTIONNET_TRITON_PYTHON`` (see docs/triton.md).

    python scripts/bench_triton.py --streams 1,2,4,8 --clips 4 --repeats 1
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))


def build_model(folder: str, t: int, size: int) -> str:
    import torch
    from torchvision.models.video import r3d_18

    from actionnet.export.onnx_export import export_clip_model
    from actionnet.spec import ModelSpec

    torch.manual_seed(0)
    model = r3d_18(weights=None, num_classes=400).eval()
    spec = ModelSpec(labels=tuple(f"class {i}" for i in range(400)), clip_length=t, height=size, width=size,
                     input_name="frames", output_name="logits", layout="raw_nthwc", resize_mode="squash",
                     mean=(0.43216, 0.394666, 0.37645), std=(0.22803, 0.22145, 0.216989), arch="r3d_18")
    path = os.path.join(folder, "r3d18.onnx")
    export_clip_model(model, spec, path, log=open(os.devnull, "w"))
    return path


def worker(kind: str, target: str, clips: int, seed: int, barrier, results) -> None:
    from actionnet.engines import open_engine

    eng = open_engine(target, "triton" if kind == "triton" else "onnxruntime", log=None)
    shape = [d if isinstance(d, int) else 1 for d in eng.input.shape]
    x = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    eng.infer(x)  # warm-up: session, connection, first-run allocations
    barrier.wait()
    lat = []
    start = time.perf_counter()
    for _ in range(clips):
        t0 = time.perf_counter()
        eng.infer(x)
        lat.append(time.perf_counter() - t0)
    results.put((start, time.perf_counter(), lat))
    eng.close()


def measure(kind: str, target: str, n: int, clips: int):
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=worker, args=(kind, target, clips, i, barrier, results)) for i in range(n)]
    for p in procs:
        p.start()
    got = [results.get(timeout=1800) for _ in procs]
    for p in procs:
        p.join(60)
    start = min(g[0] for g in got)
    end = max(g[1] for g in got)
    lat = [x for g in got for x in g[2]]
    return n * clips / (end - start), statistics.median(lat)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--streams", default="1,2,4,8")
    ap.add_argument("--clips", type=int, default=4, help="clips per stream and run (default 4)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--clip-length", type=int, default=8)
    ap.add_argument("--size", type=int, default=112)
    ap.add_argument("--queue-delay-us", type=int, default=5000)
    ap.add_argument("--model", help="an actionnet ONNX to use instead of r3d_18")
    args = ap.parse_args()
    streams = [int(s) for s in args.streams.split(",")]

    from actionnet.engines.triton import model_url
    from actionnet.export.triton import export_model
    from triton_server import ServerEnvError, TritonServer, server_env

    try:
        env = server_env(log=sys.stderr)
    except ServerEnvError as e:
        print(f"bench_triton: {e}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or build_model(tmp, args.clip_length, args.size)
        repo = os.path.join(tmp, "models")
        export_model(model, repo, name="bench", backend="python", max_batch=max(streams),
                     preferred=[s for s in streams if s > 1], queue_delay_us=args.queue_delay_us)
        rows = []
        with TritonServer(repo, env=env) as srv:
            url = model_url(srv.url, "bench")
            for n in streams:
                local = [measure("local", model, n, args.clips) for _ in range(args.repeats)]
                served = [measure("triton", url, n, args.clips) for _ in range(args.repeats)]
                row = (n, statistics.median(r[0] for r in local), statistics.median(r[1] for r in local) * 1e3,
                       statistics.median(r[0] for r in served), statistics.median(r[1] for r in served) * 1e3)
                rows.append(row)
                print(f"N={n}: local {row[1]:.2f} clips/s, {row[2]:.0f} ms/clip; "
                      f"triton {row[3]:.2f} clips/s, {row[4]:.0f} ms/clip", file=sys.stderr)
            import tritonclient.grpc as grpcclient

            c = grpcclient.InferenceServerClient(url[len("grpc://"):].split("/")[0])
            stats = c.get_inference_statistics("bench").model_stats[0]
            batches = {int(b.batch_size): int(b.compute_infer.count) for b in stats.batch_stats}
            c.close()
    print(f"r3d_18 {args.clip_length}x{args.size}x{args.size}, {os.cpu_count()} CPUs, {args.clips} clips per stream, "
          f"median of {args.repeats}")
    print(f"{'streams':>7} | {'local clips/s':>13} | {'local ms/clip':>13} | {'triton clips/s':>14} | "
          f"{'triton ms/clip':>14}")
    for n, lc, ll, tc, tl in rows:
        print(f"{n:>7} | {lc:>13.2f} | {ll:>13.0f} | {tc:>14.2f} | {tl:>14.0f}")
    print(f"server batches executed (batch size: count): {dict(sorted(batches.items()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
