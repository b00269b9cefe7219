"""The training loop: label smoothing, AdamW or SGD, linear warm-up then cosine decay (per
step), mixed precision on CUDA, a checkpoint every epoch, ``--resume``, the best epoch kept.

Reproducibility is by construction, not by luck: the shuffle order, the augmentation of every
clip and torch's own random state are derived from ``(seed, epoch)`` (and the clip index), never
carried over from earlier epochs. A run stopped after epoch k and resumed from ``last.pt`` thus
computes exactly what an uninterrupted run computes, whatever the number of loader workers.

Files in the run folder: ``last.pt`` (everything needed to resume), ``best.pt`` (the best
epoch: highest validation accuracy, ties broken by the lower validation loss, see :func:`better`;
weights, labels, spec; loadable as ``--weights``), and at the end ``model.onnx`` (via the export
stage, parity checked), ``labels.txt`` and ``report/``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass, field
from typing import List, Optional

import numpy as np
import torch

from actionnet.errors import UsageError
from actionnet.spec import ModelSpec

from . import data as data_mod
from .clips import Augment, ClipDataset
from .models import Trainable, build

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class Config:
    output: str
    arch: str = "resnet-18"
    data: Optional[str] = None
    train_list: Optional[str] = None
    val_list: Optional[str] = None
    labels: Optional[List[str]] = None      # the label set for CSV lists (else: the labels found)
    weights: Optional[str] = None
    allow_pickle: bool = False
    mode: str = "full"
    epochs: int = 10
    batch_size: int = 8
    optimizer: str = "adamw"
    lr: Optional[float] = None               # default: 1e-3 AdamW, 1e-2 SGD
    weight_decay: float = 1e-4
    momentum: float = 0.9
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    skip_frames: int = 1
    clip_length: Optional[int] = None
    size: Optional[int] = None
    val_fraction: float = 0.2
    val_clips: int = 2
    clips_per_video: int = 1                 # training clips per video and epoch
    flip: bool = False
    seed: int = 0
    workers: int = 2
    device: Optional[str] = None             # default: cuda when present
    amp: bool = True                         # mixed precision, CUDA only

    def check(self) -> None:
        if self.epochs < 1:
            raise UsageError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UsageError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            raise UsageError(f"--optimizer must be one of {', '.join(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.skip_frames < 0:
            raise UsageError(f"--skip-frames must be >= 0, got {self.skip_frames}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise UsageError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.val_clips < 1 or self.clips_per_video < 1 or self.workers < 0:
            raise UsageError("--val-clips and --clips-per-video must be >= 1, --workers >= 0")


@dataclass
class Result:
    output: str
    best_epoch: int
    best_acc: float
    history: List[dict]
    onnx: Optional[str] = None
    stopped: bool = False
    skipped: list = field(default_factory=list)
    best_loss: float = math.inf


def better(row: dict, best: Optional[dict]) -> bool:
    """Whether epoch ``row`` beats the best so far: a higher validation accuracy, or the same
    accuracy at a lower validation loss.

    Accuracy alone saturates on a small validation set (every clip right from some epoch on) and
    then keeps the first of equals, while the loss still shows which of them is more confident and
    right: measured, val acc 1.000 at epochs 3 to 6 with the loss falling from 2.55 to 0.44, and
    epoch 3 was exported. A full tie keeps the earlier epoch."""
    if best is None:
        return True
    return row["val_acc"] > best["val_acc"] or (row["val_acc"] == best["val_acc"] and row["val_loss"] < best["val_loss"])


def why_best(history: List[dict], epoch: int) -> str:
    """Why ``epoch`` was kept, for the report: the highest accuracy, and where other epochs
    shared it, the lowest loss among them."""
    row = next(h for h in history if h["epoch"] == epoch)
    reason = f"the highest validation accuracy ({row['val_acc']:.3f})"
    tied = [h["epoch"] for h in history if h["val_acc"] == row["val_acc"] and h["epoch"] != epoch]
    if tied:
        reason += (f", shared with epoch{'s' if len(tied) > 1 else ''} {', '.join(map(str, tied))}; "
                   f"the lowest validation loss among them ({row['val_loss']:.3f})")
    return reason


def kept_line(result: Result) -> str:
    """The report's line on the exported epoch: which, its numbers, and why."""
    return (f"kept epoch {result.best_epoch} (val acc {result.best_acc:.3f}, val loss {result.best_loss:.3f}): "
            f"{why_best(result.history, result.best_epoch)}")


def lr_factor(step: int, warmup: int, total: int) -> float:
    """Linear warm-up from 1/warmup to 1, then cosine decay to 0 at ``total`` steps."""
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class _Progress:
    """One line per epoch on stderr: redrawn on a terminal, printed once at the end elsewhere."""

    def __init__(self, epoch: int, epochs: int, total: int, stream):
        self.epoch, self.epochs, self.total, self.stream = epoch, epochs, total, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.start = self.last = time.monotonic()

    def line(self, done: int, loss: float, acc: float, clips: int) -> str:
        rate = clips / max(1e-9, time.monotonic() - self.start)
        bar = "#" * int(25 * done / max(1, self.total))
        return (f"epoch {self.epoch}/{self.epochs} [{bar:<25}] {done}/{self.total} "
                f"loss {loss:.3f} acc {acc:.3f} {rate:.1f} clips/s")

    def update(self, *args) -> None:
        if self.tty and time.monotonic() - self.last > 0.2:
            self.last = time.monotonic()
            self.stream.write("\r" + self.line(*args))
            self.stream.flush()

    def close(self, *args, extra: str = "") -> None:
        self.stream.write(("\r" if self.tty else "") + self.line(*args) + extra + "\n")
        self.stream.flush()


class _Keys(torch.utils.data.Sampler):
    """The current epoch's ``(epoch, index)`` keys; set before each epoch, read when iterated."""

    def __init__(self, keys=()):
        self.keys = list(keys)

    def __iter__(self):
        return iter(self.keys)

    def __len__(self):
        return len(self.keys)


def _loader(ds: ClipDataset, batch_size: int, workers: int, sampler: _Keys):
    from torch.utils.data import DataLoader

    # persistent workers: started once per run, not once per epoch (seconds each on a small CPU)
    return DataLoader(ds, batch_size=batch_size, sampler=sampler, num_workers=workers,
                      pin_memory=torch.cuda.is_available(), persistent_workers=workers > 0,
                      prefetch_factor=4 if workers > 0 else None)


def _save(obj, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def evaluate(model, loader, device, num_classes: int, criterion, amp: bool = False):
    """(mean loss, accuracy, confusion matrix [true, predicted]) over ``loader``."""
    model.eval()
    conf = np.zeros((num_classes, num_classes), np.int64)
    loss_sum, n = 0.0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device, non_blocking=True), y.to(device)
            with torch.autocast(device.type, enabled=amp):
                out = model(x)
            loss_sum += float(criterion(out.float(), y)) * len(y)
            n += len(y)
            pred = out.argmax(1).cpu().numpy()
            np.add.at(conf, (y.cpu().numpy(), pred), 1)
    return loss_sum / max(1, n), float(np.trace(conf)) / max(1, n), conf


def fit(cfg: Config, resume: bool = False, stop_after: Optional[int] = None, log=None) -> Result:
    """Train (or continue training) as ``cfg`` says; export and report at the end.

    ``stop_after`` ends the run after that epoch as a crash would (checkpoints written, nothing
    exported): what tests and ``--resume`` continue from.
    """
    from ..onnx_export import RawClipModel

    log = log or sys.stderr  # looked up per call: a redirected stderr is honoured
    cfg.check()
    if not resume and not cfg.weights:
        warn_from_scratch(cfg.arch, log)
    ckpt = None
    last_path = os.path.join(cfg.output, "last.pt")
    if resume:
        ckpt = torch.load(last_path, map_location="cpu", weights_only=True)
        done = finished(ckpt, cfg)
        if done is not None:
            print(f"actionnet-train: {done}", file=log)
            return Result(cfg.output, ckpt["best_epoch"], ckpt["best_acc"], list(ckpt["history"]),
                          onnx=os.path.join(cfg.output, "model.onnx"), best_loss=_best_loss(ckpt))
    ds = data_mod.load(cfg.data, cfg.train_list, cfg.val_list, cfg.labels, cfg.val_fraction, cfg.seed)
    for path, why in ds.skipped:
        print(f"actionnet-train: skipped unreadable video {path}: {why}", file=log)
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    amp = cfg.amp and device.type == "cuda"
    torch.manual_seed(cfg.seed)
    net, spec = build(cfg.arch, ds.labels, None if resume else cfg.weights, cfg.clip_length, cfg.size,
                      cfg.allow_pickle, log=log)
    # an image model (clip length 1) classifies every stored frame: no stride to record
    spec = spec.replace(skip_frames=cfg.skip_frames if spec.clip_length > 1 else 0)
    model = RawClipModel(net, spec).to(device)
    trainable = Trainable(net, cfg.arch, cfg.mode)
    augment = Augment(flip=cfg.flip)
    train_ds = ClipDataset(ds.train, spec, cfg.skip_frames, True, augment, seed=cfg.seed,
                           clips_per_video=cfg.clips_per_video)
    val_ds = ClipDataset(ds.val, spec, cfg.skip_frames, False, val_clips=cfg.val_clips, seed=cfg.seed)
    steps_per_epoch = math.ceil(len(train_ds) / cfg.batch_size)
    total = steps_per_epoch * cfg.epochs
    warmup = max(1, int(round(cfg.warmup_epochs * steps_per_epoch)))
    lr = cfg.lr or (1e-3 if cfg.optimizer == "adamw" else 1e-2)
    if cfg.optimizer == "adamw":
        opt = torch.optim.AdamW(trainable.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    else:
        opt = torch.optim.SGD(trainable.parameters(), lr=lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                              nesterov=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, warmup, total))
    scaler = torch.amp.GradScaler(device.type, enabled=amp)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    history: List[dict] = []
    best_acc, best_loss, best_epoch, start = -1.0, math.inf, 0, 1
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        scaler.load_state_dict(ckpt["scaler"])
        history, best_acc, best_epoch = list(ckpt["history"]), ckpt["best_acc"], ckpt["best_epoch"]
        best_loss = _best_loss(ckpt)
        start = ckpt["epoch"] + 1
        print(f"actionnet-train: resuming {cfg.output} after epoch {ckpt['epoch']} "
              f"(best so far {best_acc:.3f} at epoch {best_epoch})", file=log)
    c = trainable.counts()
    print(f"actionnet-train: {cfg.arch} {spec.clip_length}x{spec.height}x{spec.width}, skip-frames "
          f"{cfg.skip_frames}, {len(ds.labels)} classes, {len(ds.train)} training / {len(ds.val)} validation videos, "
          f"mode {cfg.mode} ({c['trainable']:,} of {c['total']:,} parameters), {device.type}"
          f"{' AMP' if amp else ''}", file=log)
    val_loader = _loader(val_ds, cfg.batch_size, cfg.workers, _Keys(val_ds.keys(0, range(len(val_ds)))))
    train_keys = _Keys()
    train_loader = _loader(train_ds, cfg.batch_size, cfg.workers, train_keys)
    stopped = False
    # only now: a run refused above (bad data, a checkpoint that does not fit) leaves no empty folder
    os.makedirs(cfg.output, exist_ok=True)
    last = ckpt
    for epoch in range(start, cfg.epochs + 1):
        g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        train_keys.keys = train_ds.keys(epoch, torch.randperm(len(train_ds), generator=g).tolist())
        torch.manual_seed(cfg.seed * 100003 + epoch)
        trainable.train()
        bar = _Progress(epoch, cfg.epochs, steps_per_epoch, log)
        loss_sum = correct = seen = 0
        t0 = time.monotonic()
        for i, (x, y) in enumerate(train_loader):
            x, y = x.to(device, non_blocking=True), y.to(device)
            with torch.autocast(device.type, enabled=amp):
                out = model(x)
                loss = criterion(out.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((out.argmax(1) == y).sum())
            seen += len(y)
            bar.update(i + 1, loss_sum / seen, correct / seen, seen)
        seconds = time.monotonic() - t0
        val_loss, val_acc, conf = evaluate(model, val_loader, device, len(ds.labels), criterion, amp)
        row = dict(epoch=epoch, train_loss=loss_sum / seen, train_acc=correct / seen, val_loss=val_loss,
                   val_acc=val_acc, lr=opt.param_groups[0]["lr"], clips_per_s=seen / seconds, seconds=seconds)
        history.append(row)
        improved = better(row, dict(val_acc=best_acc, val_loss=best_loss) if best_epoch else None)
        bar.close(steps_per_epoch, row["train_loss"], row["train_acc"], seen,
                  extra=f" | val loss {val_loss:.3f} acc {val_acc:.3f}{' (best)' if improved else ''}")
        if improved:
            best_acc, best_loss, best_epoch = val_acc, val_loss, epoch
            _save({"model": net.state_dict(), "arch": cfg.arch, "labels": list(ds.labels),
                   "spec": spec.to_metadata(), "epoch": epoch, "val_acc": val_acc,
                   "confusion": conf.tolist()}, os.path.join(cfg.output, "best.pt"))
        last = {"model": net.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict(), "epoch": epoch, "best_acc": best_acc, "best_loss": best_loss,
                "best_epoch": best_epoch,
                "history": history, "config": dataclasses.asdict(cfg), "labels": list(ds.labels)}
        _save(last, last_path)
        if stop_after is not None and epoch >= stop_after and epoch < cfg.epochs:
            stopped = True
            break
    result = Result(cfg.output, best_epoch, best_acc, history, stopped=stopped, skipped=ds.skipped,
                    best_loss=best_loss)
    if not stopped:
        result.onnx = finish(cfg, ds, spec, net.cpu(), result, log)
        # The optimizer state (twice the weights for AdamW) only serves a resume, and a finished
        # run has nothing to resume: last.pt keeps the weights, the history and the settings.
        _save({**{k: v for k, v in last.items() if k not in RESUME_ONLY}, "finished": True}, last_path)
    return result


RESUME_ONLY = ("optimizer", "scheduler", "scaler")


def _best_loss(ckpt: dict) -> float:
    """The kept epoch's validation loss (checkpoints written before it was stored: its history row)."""
    if "best_loss" in ckpt:
        return ckpt["best_loss"]
    return next((h["val_loss"] for h in ckpt["history"] if h["epoch"] == ckpt["best_epoch"]), math.inf)
# networks above this many parameters are not worth training from random weights on a few
# hundred clips; tiny3d (the synthetic-test network) is far below it
SCRATCH_WARNING_PARAMS = 2_000_000


def warn_from_scratch(arch: str, log) -> None:
    """Say it at once, before the data are read: a large network from random weights on a small
    data set mostly learns the data set by heart."""
    from ..archs import parameters

    try:
        n = parameters(arch)
    except ValueError:  # an unknown architecture: refused with its own message later
        return
    if n > SCRATCH_WARNING_PARAMS:
        print(f"actionnet-train: warning: {arch} ({n / 1e6:.0f}M parameters) starts from random weights (no "
              "--weights); a network this size needs a pretrained checkpoint to learn from a few hundred clips. "
              "Pass --weights (e.g. r3d18_KM_200ep.pth for resnet-18, torchvision's weights for r3d_18)",
              file=log)


def finished(ckpt: dict, cfg: Config) -> Optional[str]:
    """What to tell a ``--resume`` of a run that has nothing left to do, else None (it continues)."""
    if not ckpt.get("finished"):
        return None  # stopped or crashed (model.onnx not written yet): resume continues it
    onnx_path = os.path.join(cfg.output, "model.onnx")
    if cfg.epochs <= ckpt["epoch"]:
        return (f"{cfg.output} finished all its {ckpt['epoch']} epochs already (best epoch {ckpt['best_epoch']}, "
                f"val acc {ckpt['best_acc']:.3f}); nothing to resume. Its model: {onnx_path}")
    raise UsageError(f"{cfg.output} finished its {ckpt['epoch']} epochs; a finished run keeps no optimizer state "
                     f"to continue from. To train longer, start a new run from its weights: "
                     f"--weights {os.path.join(cfg.output, 'best.pt')} --output NEW_FOLDER")


def finish(cfg: Config, ds, spec: ModelSpec, net, result: Result, log) -> str:
    """The best epoch -> model.onnx (export stage, parity checked), labels.txt, report/."""
    from ..onnx_export import export_clip_model
    from .report import write_report

    best = torch.load(os.path.join(cfg.output, "best.pt"), map_location="cpu", weights_only=True)
    net.load_state_dict(best["model"])
    onnx_path = os.path.join(cfg.output, "model.onnx")
    from .models import STREAM_ARCHS

    if cfg.arch in STREAM_ARCHS:  # trained on clips, deployed one frame at a time with its state
        from ..stream import export_stream_model, stream_spec
        from ..tsm import TSMMobileNetV2

        stream = TSMMobileNetV2(len(ds.labels))
        stream.load_state_dict(net.state_dict())
        spec = stream_spec(cfg.arch, ds.labels, spec.height, cfg.skip_frames)
        parity = export_stream_model(stream, spec, onnx_path, log=log)
    else:
        parity = export_clip_model(net, spec, onnx_path, log=log)
    with open(os.path.join(cfg.output, "labels.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(ds.labels) + "\n")
    write_report(os.path.join(cfg.output, "report"), ds, result, np.array(best["confusion"]), cfg, str(parity))
    print(f"actionnet-train: {kept_line(result)}; wrote {onnx_path}; "
          f"run it with: actionnet --model={onnx_path} input.mp4 output.mp4", file=log)
    return onnx_path


def load_config(run: str) -> Config:
    """The settings a run was started with (from its ``last.pt``)."""
    from actionnet.errors import InputError

    path = os.path.join(run, "last.pt")
    if not os.path.isfile(path):
        raise InputError(f"nothing to resume in {run}: no last.pt (a run writes it after its first epoch)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    fields = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in ckpt["config"].items() if k in fields})
