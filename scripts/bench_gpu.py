#!/usr/bin/env python3
"""Latency per batch size of each GPU backend present: native TensorRT (fp32/fp16 engines built
and cached by the runtime), ONNX Runtime's TensorRT provider and its CUDA provider.

    python scripts/bench_gpu.py --model resnet18.onnx --batches 1,2,4,8 --json gpu.json

Medians of ``--iters`` calls after a warm-up, per batch and per clip, in one process. Without a
CUDA GPU it says so and exits 0 having measured nothing. Written against the documented APIs; not
run by its authors (no GPU on the machines this project is built on).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np


def _median_ms(engine, x, iters, warmup=5):
    for _ in range(warmup):
        engine.infer(x)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        engine.infer(x)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def _input(engine, batch, rng):
    shape = tuple(batch if i == 0 else d for i, d in enumerate(engine.input.shape))
    if engine.input.dtype == np.uint8:
        return rng.integers(0, 255, shape, dtype=np.uint8)
    return rng.standard_normal(shape).astype(engine.input.dtype)


def backends(model, max_batch):
    """(label, factory) for every GPU backend present."""
    from actionnet.engines import _tensorrt_present
    from actionnet.engines.onnxruntime import OnnxRuntimeEngine, available_providers

    out = []
    if _tensorrt_present():
        from actionnet.engines.tensorrt import TensorRtEngine

        for p in ("fp32", "fp16"):
            out.append((f"tensorrt {p}", lambda p=p: TensorRtEngine(model, precision=p, max_batch=max_batch)))
    present = available_providers()
    if "TensorrtExecutionProvider" in present:
        out.append(("onnxruntime-trt fp16", lambda: OnnxRuntimeEngine(
            model, providers=["TensorrtExecutionProvider", "CUDAExecutionProvider"], precision="fp16")))
    if "CUDAExecutionProvider" in present:
        out.append(("onnxruntime-cuda fp32", lambda: OnnxRuntimeEngine(model, providers=["CUDAExecutionProvider"])))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="ONNX model with a dynamic batch dimension")
    p.add_argument("--batches", default="1,2,4,8", help="batch sizes (default 1,2,4,8)")
    p.add_argument("--iters", type=int, default=50)
    p.add_argument("--json", help="write the results as JSON here")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    found = backends(args.model, max(batches))
    if not found:
        print("bench_gpu: no CUDA GPU backend present (TensorRT + pycuda/cuda-python, or onnxruntime-gpu): "
              "nothing measured", file=sys.stderr)
        return 0
    rng = np.random.default_rng(0)
    results = {}
    print(f"{'backend':<24} {'batch':>5} {'ms/batch':>9} {'ms/clip':>8}")
    for label, make in found:
        with make() as eng:
            for b in batches:
                if isinstance(eng.input.shape[0], int) and eng.input.shape[0] != b:
                    continue  # a static-batch model
                ms = _median_ms(eng, _input(eng, b, rng), args.iters)
                results.setdefault(label, {})[b] = ms
                print(f"{label:<24} {b:>5} {ms:>9.2f} {ms / b:>8.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
