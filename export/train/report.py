"""The training report: ``metrics.json`` (history, the kept epoch and why, per-class accuracy,
confusion matrix, skipped videos, parity) and two pictures, ``confusion.png`` and ``curves.png``.

The pictures are drawn with OpenCV, which the runtime already needs, rather than matplotlib: a
heatmap with numbers and two line charts do not justify another dependency.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import List, Sequence

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


def per_class_accuracy(conf: np.ndarray) -> List[float]:
    rows = conf.sum(1)
    return [float(conf[i, i] / rows[i]) if rows[i] else float("nan") for i in range(len(conf))]


def write_report(folder: str, ds, result, conf: np.ndarray, cfg, parity: str = "") -> dict:
    from .loop import why_best

    os.makedirs(folder, exist_ok=True)
    acc = per_class_accuracy(conf)
    metrics = {
        "labels": list(ds.labels),
        "best_epoch": result.best_epoch,
        "best_val_acc": result.best_acc,
        "best_val_loss": result.best_loss,
        "best_epoch_reason": why_best(result.history, result.best_epoch),
        "per_class_val_acc": {name: (None if np.isnan(a) else a) for name, a in zip(ds.labels, acc)},
        "confusion_matrix": {"rows": "true class", "columns": "predicted class", "values": conf.tolist()},
        "history": result.history,
        "train_videos": ds.counts("train"),
        "val_videos": ds.counts("val"),
        "skipped_videos": [{"path": p, "reason": r} for p, r in ds.skipped],
        "parity": parity,
        "config": dataclasses.asdict(cfg),
    }
    with open(os.path.join(folder, "metrics.json"), "w", encoding="utf-8") as f:
        json.dump(metrics, f, indent=2)
    cv2.imwrite(os.path.join(folder, "confusion.png"), draw_confusion(conf, ds.labels))
    cv2.imwrite(os.path.join(folder, "curves.png"), draw_curves(result.history))
    return metrics


def draw_confusion(conf: np.ndarray, labels: Sequence[str], cell: int = 0) -> np.ndarray:
    """Rows are true classes, columns predictions; each row shaded by its own share."""
    n = len(labels)
    cell = cell or max(12, min(60, 900 // max(1, n)))
    names = [s if len(s) <= 24 else s[:23] + "." for s in labels]
    margin = 12 + 7 * max(len(s) for s in names)
    h = margin + n * cell + 20
    w = max(h, 300)
    img = np.full((h + 30, w, 3), 255, np.uint8)
    cv2.putText(img, "true (rows) vs predicted (columns)", (10, 20), FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    top = 30
    rows = np.maximum(conf.sum(1, keepdims=True), 1)
    share = conf / rows
    for i in range(n):
        y = top + margin + i * cell
        cv2.putText(img, names[i], (4, y + cell // 2 + 4), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for j in range(n):
            x = margin + j * cell
            v = int(255 - 200 * share[i, j])
            colour = (v, v, 255) if i != j else (v, 255, v)
            cv2.rectangle(img, (x, y), (x + cell - 1, y + cell - 1), colour, -1)
            if cell >= 24:
                cv2.putText(img, str(int(conf[i, j])), (x + 3, y + cell // 2 + 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for j in range(n):  # column labels, written vertically
        text = np.full((14, 7 * len(names[j]) + 8, 3), 255, np.uint8)
        cv2.putText(text, names[j], (2, 11), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        text = cv2.rotate(text, cv2.ROTATE_90_COUNTERCLOCKWISE)[-margin + 4:]
        x = margin + j * cell + max(0, (cell - 14) // 2)
        th, tw = text.shape[:2]
        img[top + margin - th:top + margin, x:x + tw] = text[:, :min(tw, w - x)]
    return img


def draw_curves(history: List[dict], width: int = 480, height: int = 300) -> np.ndarray:
    """Loss (left) and accuracy (right) per epoch, training blue, validation orange."""
    panels = [_chart(history, ("train_loss", "val_loss"), "loss", width, height),
              _chart(history, ("train_acc", "val_acc"), "accuracy", width, height, fixed=(0.0, 1.0))]
    return np.concatenate(panels, axis=1)


def value_range(values: np.ndarray, fixed=None):
    """The value axis: ``fixed`` (accuracy's 0..1), else the data's span; a flat curve (one
    epoch, or a loss that did not move) gets a span around its value instead of sitting on the
    frame's edge."""
    lo, hi = fixed or (float(values.min()), float(values.max()))
    if hi - lo < 1e-9:
        d = max(0.05, 0.1 * abs(lo))
        lo, hi = lo - d, hi + d
    return lo, hi


def _chart(history, keys, title, width, height, fixed=None):
    img = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 50, 15, 30, 35
    pad = 10  # between the frame and the data: a value at an end of the axis is not drawn on the frame
    cv2.putText(img, title, (left, 20), FONT, 0.55, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.rectangle(img, (left, top), (width - right, height - bottom), (0, 0, 0), 1)
    if not history:
        return img
    values = np.array([[h[k] for k in keys] for h in history], np.float64)
    lo, hi = value_range(values, fixed)
    epochs = [h["epoch"] for h in history]
    e0, e1 = epochs[0], max(epochs[-1], epochs[0] + 1)

    def pt(e, v):
        x = left + pad + (e - e0) / (e1 - e0) * (width - left - right - 2 * pad)
        y = height - bottom - pad - (v - lo) / (hi - lo) * (height - top - bottom - 2 * pad)
        return int(round(x)), int(round(y))

    for v in (lo, hi):
        cv2.putText(img, f"{v:.2f}", (2, pt(e0, v)[1] + 4), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    for e in (e0, epochs[-1]):
        cv2.putText(img, str(e), (pt(e, lo)[0] - 4, height - bottom + 15), FONT, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "epoch", (width // 2 - 20, height - 5), FONT, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    for k, colour in zip(range(len(keys)), ((200, 90, 30), (30, 140, 255))):  # BGR: blue, orange
        pts = np.array([pt(e, v) for e, v in zip(epochs, values[:, k])], np.int32)
        cv2.polylines(img, [pts], False, colour, 2, cv2.LINE_AA)
        for p in pts:
            cv2.circle(img, tuple(int(c) for c in p), 3, colour, -1)
        cv2.putText(img, keys[k].split("_")[0], (width - right - 60, top + 15 + 15 * k), FONT, 0.4, colour, 1,
                    cv2.LINE_AA)
    return img
