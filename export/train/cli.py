"""``actionnet-train``: a folder of labelled clips in, a deployable self-describing model out.

    actionnet-train --data clips/ --arch resnet-18 --weights r3d18_KM_200ep.pth --epochs 10 --output runs/kitchen
    actionnet --model=runs/kitchen/model.onnx input.mp4 output.mp4
    actionnet-train --resume runs/kitchen

User errors (bad data, a checkpoint that does not fit, a bad flag) print one line and exit
non-zero; Ctrl-C leaves ``last.pt`` of the last finished epoch for ``--resume``.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import List, Optional

from actionnet.errors import ActionNetError, MissingLibraryError, UsageError

# settings a resumed run may change; everything else is the run's own
RESUMABLE = ("epochs", "workers", "device")


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .models import ARCHS, MODES

    p = _Parser(prog="actionnet-train", allow_abbrev=False, formatter_class=argparse.RawDescriptionHelpFormatter,
                description="Fine-tune an action model on your own labelled clips and export it as a "
                            "self-describing ONNX that `actionnet --model=...` runs with no other flag.",
                epilog="examples:\n"
                       "  actionnet-train --data clips/ --arch resnet-18 --weights r3d18_KM_200ep.pth "
                       "--epochs 10 --output runs/kitchen\n"
                       "  actionnet-train --train-list train.csv --val-list val.csv --arch r2plus1d_34 "
                       "--weights r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth --mode last --output runs/x\n"
                       "  actionnet-train --resume runs/kitchen")
    d = p.add_argument_group("data")
    d.add_argument("--data", help="folder with one sub-folder of videos (UCF-101 / HMDB-51 layout) or images per class")
    d.add_argument("--train-list", help="CSV rows path,label[,start_frame,end_frame]")
    d.add_argument("--val-list", help="CSV validation list (default: a stratified split of the training clips)")
    d.add_argument("--labels", help="label file for CSV lists, one class per line (default: the labels in the list)")
    d.add_argument("--val-fraction", type=float, help="validation share per class when splitting (default 0.2)")
    d.add_argument("--clips-per-video", type=int, help="random training clips per video and epoch (default 1)")
    d.add_argument("--val-clips", type=int, help="evenly spaced validation clips per video (default 2)")
    d.add_argument("--skip-frames", type=int,
                   help="frames dropped between clip frames, as the runtime's --skip-frames; written into the "
                        "model so the runtime uses it (default 1)")
    d.add_argument("--flip", action="store_true",
                   help="allow horizontal flips (off by default: a flip turns 'swipe left' into 'swipe right')")
    d.add_argument("--workers", type=int, help="decoding worker processes (default 2)")
    m = p.add_argument_group("model")
    m.add_argument("--arch", choices=ARCHS, metavar="ARCH", help=f"architecture: {', '.join(ARCHS)} (default resnet-18)")
    m.add_argument("--weights", help="pretrained checkpoint (.pth); its head is replaced for your labels")
    m.add_argument("--allow-pickle", action="store_true", help="read checkpoints that hold more than tensors (trusted files only)")
    m.add_argument("--mode", choices=MODES, help="linear: head only; last: last stage + head; full (default)")
    m.add_argument("--clip-length", type=int, help="frames per clip (default: the architecture's)")
    m.add_argument("--size", type=int, help="square input size (default: the architecture's)")
    t = p.add_argument_group("training")
    t.add_argument("--epochs", type=int, help="default 10")
    t.add_argument("--batch-size", type=int, help="default 8")
    t.add_argument("--optimizer", choices=("adamw", "sgd"), help="default adamw")
    t.add_argument("--lr", type=float, help="peak learning rate (default 1e-3 AdamW, 1e-2 SGD)")
    t.add_argument("--weight-decay", type=float, help="default 1e-4")
    t.add_argument("--warmup-epochs", type=float, help="linear warm-up before the cosine decay (default 1)")
    t.add_argument("--label-smoothing", type=float, help="default 0.1")
    t.add_argument("--seed", type=int, help="split, shuffle, augmentation and initialisation (default 0)")
    t.add_argument("--device", help="cpu, cuda, cuda:1 (default: cuda when present)")
    t.add_argument("--no-amp", action="store_true", help="no mixed precision on CUDA")
    o = p.add_argument_group("output")
    o.add_argument("--output", help="run folder: model.onnx, labels.txt, best.pt, last.pt, report/")
    o.add_argument("--resume", metavar="RUN", help="continue the run in this folder from its last finished epoch")
    return p


def config_from_args(args):
    from actionnet.spec import read_labels

    from .loop import Config, load_config

    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)
             if getattr(args, f.name, None) is not None and f.name not in ("labels", "amp")}
    if args.no_amp:
        given["amp"] = False
    if args.allow_pickle:
        given["allow_pickle"] = True
    else:
        given.pop("allow_pickle", None)
    if args.flip:
        given["flip"] = True
    else:
        given.pop("flip", None)
    if args.resume:
        extra = sorted(k for k in given if k not in RESUMABLE and k != "output") + (["labels"] if args.labels else [])
        if extra:
            raise UsageError(f"--resume continues a run with its own settings; only --epochs, --workers and --device "
                             f"may change (got --{extra[0].replace('_', '-')})")
        if args.output and args.output != args.resume:
            raise UsageError("--resume writes into the run it continues; leave out --output")
        cfg = load_config(args.resume)
        cfg.output = args.resume
        return dataclasses.replace(cfg, **{k: v for k, v in given.items() if k in RESUMABLE})
    if not args.output:
        raise UsageError("--output RUN_FOLDER is required (or --resume RUN_FOLDER)")
    if args.labels:
        given["labels"] = list(read_labels(args.labels))
    return Config(**given)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        from .loop import fit

        cfg = config_from_args(args)
        fit(cfg, resume=bool(args.resume))
        return 0
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] in ("torch", "torchvision", "onnx", "onnxscript"):
            err = MissingLibraryError(f"{e.name} is not installed: pip install 'actionnet[train]'")
            print(f"actionnet-train: error: {err}", file=sys.stderr)
            return err.exit_code
        raise
    except KeyboardInterrupt:
        print("\nactionnet-train: stopped; continue with --resume (from the last finished epoch)", file=sys.stderr)
        return 130
    except ActionNetError as e:
        print(f"actionnet-train: error: {e}", file=sys.stderr)
        return e.exit_code


if __name__ == "__main__":
    sys.exit(main())
