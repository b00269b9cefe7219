"""What the training clips are: a class-folder layout or CSV lists, a stratified seeded split,
and every check on them done before any training starts.

* ``DIR/<class name>/*.mp4`` (the UCF-101 / HMDB-51 layout): classes are the sub-folders in
  sorted order, so the same folder always gives the same class ids.
* CSV lists with ``path,label[,start_frame,end_frame]`` rows (relative paths are relative to the
  CSV file; a first row whose third field is not a number and whose label is ``label`` is a header).

Empty class folders, a single class and CSV labels outside the label set are :class:`DataError`
before a model is even built. Unreadable videos are not fatal: they are skipped and listed
(``Dataset.skipped``) so the report can name them.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import numpy as np

from actionnet.errors import InputError
from actionnet.sources import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS


class DataError(InputError):
    """Training data that cannot be trained on (empty class, one class, unknown label, ...)."""


@dataclass(frozen=True)
class Sample:
    path: str
    label: int
    start: int = 0            # first usable frame
    end: Optional[int] = None  # one past the last usable frame; None: to the end of the video
    frames: int = 0            # frames in the video (from probing); 0: unknown


@dataclass
class Dataset:
    labels: Tuple[str, ...]
    train: List[Sample]
    val: List[Sample]
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (path, reason)

    def counts(self, which: str = "train") -> List[int]:
        samples = self.train if which == "train" else self.val
        return [sum(1 for s in samples if s.label == i) for i in range(len(self.labels))]


def scan_folder(root: str) -> Tuple[Tuple[str, ...], List[Sample]]:
    """Classes and samples of a class-folder layout."""
    if not os.path.isdir(root):
        raise DataError(f"data folder not found: {root}")
    classes = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    if not classes:
        raise DataError(f"{root} has no class folders; expected {root}/<class name>/<video files>")
    samples = []
    for i, c in enumerate(classes):
        folder = os.path.join(root, c)
        # videos, or images (a photo is a one-frame clip: image models train on class folders of photos)
        files = sorted(f for f in os.listdir(folder) if f.lower().endswith(VIDEO_EXTENSIONS + IMAGE_EXTENSIONS))
        if not files:
            raise DataError(f"class folder {folder} holds no videos ({', '.join(VIDEO_EXTENSIONS[:4])}, ...) "
                            f"or images ({', '.join(IMAGE_EXTENSIONS[:3])}, ...); remove it or add clips")
        samples += [Sample(os.path.join(folder, f), i) for f in files]
    _check_classes(classes, root)
    return tuple(classes), samples


def read_list(path: str, labels: Optional[Sequence[str]] = None) -> Tuple[Tuple[str, ...], List[Sample]]:
    """Samples of a CSV list. With ``labels`` given, a label outside them is an error naming the
    row; without, the label set is the sorted set of labels in the file."""
    if not os.path.isfile(path):
        raise DataError(f"list file not found: {path}")
    base = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        for n, row in enumerate(csv.reader(f), 1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if n == 1 and row[0].lower() == "path" and len(row) > 1 and row[1].lower() == "label":
                continue
            if len(row) not in (2, 4):
                raise DataError(f"{path}:{n}: expected path,label[,start_frame,end_frame], got {len(row)} fields")
            start, end = 0, None
            if len(row) == 4:
                try:
                    start, end = int(row[2]), int(row[3])
                except ValueError:
                    raise DataError(f"{path}:{n}: start and end frames must be integers, got {row[2]!r}, {row[3]!r}") from None
                if not 0 <= start < end:
                    raise DataError(f"{path}:{n}: need 0 <= start_frame < end_frame, got {start}, {end}")
            rows.append((n, os.path.join(base, row[0]), row[1], start, end))
    if not rows:
        raise DataError(f"{path} lists no clips")
    if labels is None:
        labels = tuple(sorted({r[2] for r in rows}))
    index = {name: i for i, name in enumerate(labels)}
    samples = []
    for n, p, lab, start, end in rows:
        if lab not in index:
            shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
            raise DataError(f"{path}:{n}: label {lab!r} is not in the label set ({shown})")
        samples.append(Sample(p, index[lab], start, end))
    return tuple(labels), samples


def _check_classes(labels: Sequence[str], where: str) -> None:
    if len(labels) < 2:
        raise DataError(f"{where} has a single class ({labels[0]!r}); a classifier needs at least two")


def split(samples: Sequence[Sample], num_classes: int, val_fraction: float, seed: int) -> Tuple[List[Sample], List[Sample]]:
    """Stratified, seeded: each class gives round(val_fraction * n) clips (at least one when it
    has two or more) to validation, so no class is missing from either side."""
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for c in range(num_classes):
        mine = [s for s in samples if s.label == c]
        order = rng.permutation(len(mine))
        k = min(len(mine) - 1, max(1, int(round(val_fraction * len(mine))))) if len(mine) > 1 else 0
        val += [mine[i] for i in order[:k]]
        train += [mine[i] for i in order[k:]]
    return train, val


def probe(path: str) -> Tuple[int, Optional[str]]:
    """(frame count, None) when ``path`` decodes, else (0, why not, in one line). The count is
    the container's; without one the video is decoded through to count."""
    from actionnet.sources import open_source

    if path.lower().endswith(IMAGE_EXTENSIONS):
        import cv2

        return (1, None) if cv2.imread(path, cv2.IMREAD_COLOR) is not None else (0, "not a readable image")
    try:
        src = open_source(path)
        try:
            n = 0
            for _ in src:
                n += 1
                if src.frame_count:
                    return src.frame_count, None
            return n, None if n else "no frames"
        finally:
            src.close()
    except InputError as e:
        return 0, str(e)
    except Exception as e:  # a decoder error of any kind: the file is unusable either way
        return 0, f"{type(e).__name__}: {e}"[:200]


def load(data: Optional[str] = None, train_list: Optional[str] = None, val_list: Optional[str] = None,
         labels: Optional[Sequence[str]] = None, val_fraction: float = 0.2, seed: int = 0) -> Dataset:
    """The dataset a user described, checked: unreadable videos dropped and listed, every class
    present in training, at least two classes."""
    if bool(data) == bool(train_list):
        raise DataError("give either --data DIR (class folders) or --train-list CSV")
    if data:
        if val_list:
            raise DataError("--val-list goes with --train-list, not with --data")
        labels, samples = scan_folder(data)
        where = data
    else:
        labels, samples = read_list(train_list, labels)
        where = train_list
    _check_classes(labels, where)
    val = read_list(val_list, labels)[1] if val_list else None  # its labels are checked before any decoding
    skipped: List[Tuple[str, str]] = []
    lengths = {}

    def readable(items):
        out = []
        for s in items:
            if s.path not in lengths:
                lengths[s.path], why = probe(s.path)
                if why is not None:
                    skipped.append((s.path, why))
            if lengths[s.path]:
                out.append(dataclasses.replace(s, frames=lengths[s.path]))
        return out

    samples = readable(samples)
    if val is not None:
        val = readable(val)
        train = samples
    else:
        train, val = split(samples, len(labels), val_fraction, seed)
    counts = [sum(1 for s in train if s.label == i) for i in range(len(labels))]
    missing = [labels[i] for i, n in enumerate(counts) if n == 0]
    if missing:
        why = " (its videos are unreadable)" if skipped else ""
        raise DataError(f"class {missing[0]!r} has no readable training clip{why}; "
                        f"{len(missing)} class(es) without clips in all")
    if not val:
        raise DataError("no validation clips: add clips (two or more per class) or pass --val-list")
    return Dataset(tuple(labels), train, val, skipped)
