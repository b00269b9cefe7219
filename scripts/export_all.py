"""Export every architecture the export stage knows, with random weights, and report each.

    python scripts/export_all.py [--archs r3d_18,s3d] [--out /tmp/export-all]

Prints one row per architecture: export time, ONNX size, parity (max |diff|, top-1 agreement)
or the reason it failed. This is the evidence behind the export table of docs/models.md; weights are
random because no pretrained weights can be downloaded where this project is built, which
tests the graph, not the accuracy.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import traceback


def main() -> int:
    from actionnet.export.torchvision_models import ARCHS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default=",".join(("resnet-18", "resnet-34") + ARCHS))
    p.add_argument("--out", default="/tmp/actionnet-export-all")
    args = p.parse_args()

    import torch

    from actionnet.export.action import export_resnet3d
    from actionnet.export.resnet3d import resnet3d
    from actionnet.export.torchvision_models import build, default_weights, export_torchvision

    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    print(f"{'arch':<12} {'input':<14} {'export s':>9} {'MB':>7}  parity")
    for arch in args.archs.split(","):
        weights = os.path.join(args.out, f"{arch}.pth")
        onnx_path = os.path.join(args.out, f"{arch}.onnx")
        log = io.StringIO()
        try:
            if arch.startswith("resnet-"):
                torch.save(resnet3d(arch).state_dict(), weights)
                t0 = time.perf_counter()
                report = export_resnet3d(arch, weights, onnx_path, log=log)
                shape = "16x112x112"
            else:
                w = default_weights(arch)
                torch.save(build(arch, len(w.meta["categories"])).state_dict(), weights)
                t0 = time.perf_counter()
                report = export_torchvision(arch, weights, onnx_path, log=log)
                from actionnet.export.torchvision_models import spec_from_weights

                s = spec_from_weights(arch, w)
                shape = f"{s.clip_length}x{s.height}x{s.width}"
            dt = time.perf_counter() - t0
            mb = os.path.getsize(onnx_path) / 1e6
            print(f"{arch:<12} {shape:<14} {dt:9.1f} {mb:7.1f}  max|diff| {report.max_abs_diff:.1e}, "
                  f"top-1 {report.top1_agreement * 100:.0f}% {'OK' if report.ok else 'FAILED'}", flush=True)
        except Exception as e:  # report and go on: the table is the point
            last = traceback.format_exception_only(type(e), e)[-1].strip()
            print(f"{arch:<12} {'':<14} {'':>9} {'':>7}  FAILED: {last[:300]}", flush=True)
        finally:
            for f in (weights, onnx_path):
                if os.path.exists(f):
                    os.remove(f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
