"""actionnet-train end to end: fine-tune a colour-pretrained tiny backbone to motion direction
from a folder of videos, deploy the ONNX through the runtime CLI, resume, and the bad-data cases."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from actionnet.export.train import data as data_mod  # noqa: E402
from actionnet.export.train.loop import better, lr_factor, why_best  # noqa: E402
from actionnet.export.train.synthetic_clips import video, write_dataset  # noqa: E402
from conftest import run_cli  # noqa: E402
from train_helpers import pretrain_colour  # noqa: E402

TRAIN = "actionnet.export.train.cli"


@pytest.fixture(scope="module")
def colour_backbone(tmp_path_factory):
    return pretrain_colour(str(tmp_path_factory.mktemp("pretrain") / "colour.pt"))


@pytest.fixture(scope="module")
def direction_run(tmp_path_factory, colour_backbone):
    """The two commands of the issue, run for real: train through the CLI into runs/direction."""
    root = tmp_path_factory.mktemp("train")
    data = write_dataset(str(root / "clips"), "direction", per_class=24, frames=24, seed=1, speed_per_frame=0.5)
    run = root / "runs" / "direction"
    r = run_cli("--data", data, "--arch", "tiny3d", "--weights", colour_backbone, "--epochs", 5, "--lr", 3e-3,
                "--clips-per-video", 4, "--batch-size", 8, "--output", run, module=TRAIN)
    assert r.returncode == 0, r.stderr
    return run, r.stderr


def test_finetune_from_colour_to_direction_reaches_90_percent(direction_run):
    run, log = direction_run
    for name in ("model.onnx", "labels.txt", "best.pt", "last.pt", "report/metrics.json",
                 "report/confusion.png", "report/curves.png"):
        assert (run / name).is_file(), name
    m = json.loads((run / "report" / "metrics.json").read_text())
    assert m["labels"] == ["left", "right"]
    assert m["best_val_acc"] >= 0.9, m["history"]
    assert len(m["history"]) == 5 and m["best_epoch"] in [h["epoch"] for h in m["history"]]
    assert set(m["per_class_val_acc"]) == {"left", "right"}
    conf = np.array(m["confusion_matrix"]["values"])
    assert conf.shape == (2, 2) and np.trace(conf) / conf.sum() == pytest.approx(m["best_val_acc"])
    assert "OK" in m["parity"]
    assert (run / "labels.txt").read_text().split("\n")[:2] == ["left", "right"]
    for png in ("confusion.png", "curves.png"):
        img = cv2.imread(str(run / "report" / png))
        assert img is not None and img.shape[0] > 100 and img.std() > 10
    assert "clips/s" in log and "backbone from" in log
    # the kept epoch follows the rule (accuracy, then loss) and the report says which and why
    assert m["best_epoch"] == _kept(m["history"])
    best = m["history"][m["best_epoch"] - 1]
    assert m["best_val_loss"] == best["val_loss"] and m["best_epoch_reason"] == why_best(m["history"], m["best_epoch"])
    assert f"kept epoch {m['best_epoch']} (val acc {best['val_acc']:.3f}, val loss {best['val_loss']:.3f}): " \
           f"{m['best_epoch_reason']}" in log


def test_trained_onnx_carries_its_stride_and_labels(direction_run):
    import actionnet

    run, _ = direction_run
    net = actionnet.ActionNet(model=str(run / "model.onnx"))
    assert net.spec.labels == ("left", "right")
    assert net.spec.skip_frames == 1 and net.buffer.skip_frames == 1
    assert net.spec.arch == "tiny3d"


@pytest.mark.parametrize("label", ["left", "right"])
def test_exported_model_labels_fresh_clips_through_the_cli(direction_run, tmp_path, label):
    from actionnet.export.synthetic import write_video

    run, _ = direction_run
    rng = np.random.default_rng(1234 + len(label))  # videos the training never saw
    clip = tmp_path / f"{label}.mp4"
    write_video(str(clip), video({"direction": label}, 24, rng, speed_per_frame=0.5))
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", run / "model.onnx", "--threshold=0", "--events", ev, "--headless", "--no-progress", clip)
    assert r.returncode == 0, r.stderr
    got = Counter(e["label"] for e in map(json.loads, open(ev)) if e["event"] == "classification")
    assert sum(got.values()) == 24 // 2 - 8 + 1  # the stride the model was trained at (skip 1) was used
    assert got[label] >= 0.8 * sum(got.values()), got


def _fit(stop_after=None, **kw):
    """fit() in a fresh process, as a user's run is (torch DataLoader workers fork from it)."""
    import subprocess
    import sys

    code = ("import json, sys; from actionnet.export.train.loop import Config, fit; "
            "fit(Config(**json.loads(sys.argv[1])), stop_after=json.loads(sys.argv[2]))")
    r = subprocess.run([sys.executable, "-c", code, json.dumps(kw), json.dumps(stop_after)], capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    return r


def test_resume_gives_the_same_result_as_an_uninterrupted_run(tmp_path, colour_backbone):
    data = write_dataset(str(tmp_path / "clips"), "direction", per_class=6, frames=20, seed=3)
    common = dict(arch="tiny3d", data=data, weights=colour_backbone, epochs=3, batch_size=4, lr=3e-3)
    _fit(output=str(tmp_path / "whole"), workers=1, **common)
    _fit(stop_after=1, output=str(tmp_path / "part"), workers=0, **common)
    part = torch.load(tmp_path / "part" / "last.pt", weights_only=True)
    assert part["epoch"] == 1 and not (tmp_path / "part" / "model.onnx").exists()
    r = run_cli("--resume", tmp_path / "part", module=TRAIN)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr and "after epoch 1" in r.stderr
    whole = json.loads((tmp_path / "whole" / "report" / "metrics.json").read_text())
    m = json.loads((tmp_path / "part" / "report" / "metrics.json").read_text())
    assert [h["epoch"] for h in m["history"]] == [1, 2, 3]
    for a, b in zip(whole["history"], m["history"]):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["val_acc"] == b["val_acc"]
    wa = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "part" / "last.pt", weights_only=True)["model"]
    for k in wa:
        assert torch.allclose(wa[k].float(), wb[k].float(), atol=1e-5), k
    assert (tmp_path / "part" / "model.onnx").is_file()


def test_resume_refuses_changed_settings_and_missing_runs(tmp_path):
    r = run_cli("--resume", tmp_path / "nothing", module=TRAIN)
    assert r.returncode != 0 and "no last.pt" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--resume", tmp_path, "--lr", "0.1", module=TRAIN)
    assert r.returncode != 0 and "--lr" in r.stderr and "Traceback" not in r.stderr


# -- bad data: a clear one-line error before any training ------------------------------------

def _folder(tmp_path, classes, per_class=2):
    from actionnet.export.synthetic import write_video

    rng = np.random.default_rng(0)
    for c, n in classes.items():
        (tmp_path / "d" / c).mkdir(parents=True)
        for i in range(n if n is not None else per_class):
            write_video(str(tmp_path / "d" / c / f"{i}.mp4"), video({"direction": "left"}, 12, rng))
    return tmp_path / "d"


def _csv(tmp_path, rows, name="list.csv"):
    p = tmp_path / name
    p.write_text("\n".join(rows) + "\n")
    return p


BAD = [
    ("empty class", lambda t: ["--data", _folder(t, {"left": 2, "right": 0})], "holds no videos"),
    ("single class", lambda t: ["--data", _folder(t, {"left": 3})], "single class"),
    ("no folder", lambda t: ["--data", t / "missing"], "not found"),
    ("unknown label", lambda t: ["--train-list", _csv(t, ["a.mp4,left", "b.mp4,right"]),
                                 "--val-list", _csv(t, ["c.mp4,up"], "val.csv")], "label 'up' is not in the label set"),
    ("label not in file", lambda t: ["--train-list", _csv(t, ["a.mp4,left", "b.mp4,jump"]), "--labels",
                                     _csv(t, ["left", "right"], "labels.txt")], "label 'jump'"),
    ("bad row", lambda t: ["--train-list", _csv(t, ["a.mp4,left,3"])], "expected path,label"),
    ("bad range", lambda t: ["--train-list", _csv(t, ["a.mp4,left,9,3"])], "start_frame < end_frame"),
    ("all of a class unreadable", lambda t: ["--data", _broken_class(t)], "no readable training clip"),
]


def _broken_class(tmp_path):
    d = _folder(tmp_path, {"left": 3, "right": 0})
    (d / "right").mkdir(exist_ok=True)
    (d / "right" / "x.mp4").write_bytes(b"not a video at all")
    return d


@pytest.mark.parametrize("name,args,message", BAD, ids=[b[0] for b in BAD])
def test_bad_data_is_one_clear_error_before_training(tmp_path, name, args, message):
    out = tmp_path / "run"
    r = run_cli(*args(tmp_path), "--arch", "tiny3d", "--output", out, module=TRAIN)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("actionnet-train: error:")
    assert not (out / "last.pt").exists()


def test_unreadable_videos_are_skipped_and_listed(tmp_path):
    d = _folder(tmp_path, {"left": 3, "right": 3})
    (d / "right" / "broken.mp4").write_bytes(b"\x00" * 100)
    ds = data_mod.load(str(d), seed=0)
    assert [p for p, _ in ds.skipped] == [str(d / "right" / "broken.mp4")]
    assert all("broken" not in s.path for s in ds.train + ds.val)
    assert ds.counts("train") == [2, 2] and ds.counts("val") == [1, 1]


def test_split_is_stratified_and_seeded():
    samples = [data_mod.Sample(f"{c}{i}.mp4", c) for c in range(3) for i in range(10)]
    a_train, a_val = data_mod.split(samples, 3, 0.2, seed=7)
    b_train, b_val = data_mod.split(samples, 3, 0.2, seed=7)
    _, c_val = data_mod.split(samples, 3, 0.2, seed=8)
    assert a_val == b_val and a_train == b_train and a_val != c_val
    assert Counter(s.label for s in a_val) == {0: 2, 1: 2, 2: 2}
    assert len(a_train) == 24 and not set(a_train) & set(a_val)


def test_csv_lists_read_paths_labels_and_ranges(tmp_path):
    p = _csv(tmp_path, ["path,label,start_frame,end_frame", "v/a.mp4,walk,0,30", "b.mp4,run,5,25", "c.mp4,walk,1,2"])
    labels, samples = data_mod.read_list(str(p))
    assert labels == ("run", "walk")
    assert samples[0] == data_mod.Sample(str(tmp_path / "v" / "a.mp4"), 1, 0, 30)
    assert samples[1].label == 0 and (samples[1].start, samples[1].end) == (5, 25)


def test_warmup_then_cosine():
    f = [lr_factor(s, 10, 100) for s in range(100)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(f[9:], f[10:])) and f[-1] < 0.01


# -- which epoch is kept ---------------------------------------------------------------------

def _kept(history):
    """The epoch the training loop keeps: ``better`` folded over the history in order."""
    best = None
    for row in history:
        if better(row, best):
            best = row
    return best["epoch"]


def _rows(accs, losses):
    return [dict(epoch=i + 1, val_acc=a, val_loss=v) for i, (a, v) in enumerate(zip(accs, losses))]


def test_saturated_accuracy_keeps_the_lowest_loss_epoch():
    """Measured on a small validation set: val acc 1.000 from epoch 3 on, val loss still falling
    from 2.55 to 0.44. The first of the equals (epoch 3) used to be exported."""
    h = _rows([0.5, 0.75, 1.0, 1.0, 1.0, 1.0], [3.1, 2.9, 2.55, 1.7, 0.9, 0.44])
    assert _kept(h) == 6
    reason = why_best(h, 6)
    assert "epochs 3, 4, 5" in reason and "lowest validation loss" in reason and "0.440" in reason


def test_higher_accuracy_beats_lower_loss():
    h = _rows([0.5, 0.9, 0.8, 0.8], [1.0, 0.7, 0.3, 0.2])
    assert _kept(h) == 2
    assert why_best(h, 2) == "the highest validation accuracy (0.900)"
    assert better(dict(val_acc=0.9, val_loss=9.0), dict(val_acc=0.8, val_loss=0.1))
    assert not better(dict(val_acc=1.0, val_loss=0.5), dict(val_acc=1.0, val_loss=0.5))  # a full tie keeps the first


def test_report_names_the_kept_epoch_and_why(tmp_path):
    """metrics.json and the final line both say which epoch was exported and why."""
    from types import SimpleNamespace

    from actionnet.export.train.loop import Config, Result, kept_line
    from actionnet.export.train.report import write_report

    h = [dict(r, train_loss=1.0, train_acc=1.0) for r in _rows([0.5, 1.0, 1.0], [2.0, 2.55, 0.44])]
    result = Result(str(tmp_path), 3, 1.0, h, best_loss=0.44)
    ds = SimpleNamespace(labels=("a", "b"), skipped=[], counts=lambda split: [1, 1])
    m = write_report(str(tmp_path / "report"), ds, result, np.eye(2, dtype=np.int64), Config(output=str(tmp_path)))
    assert (m["best_epoch"], m["best_val_acc"], m["best_val_loss"]) == (3, 1.0, 0.44)
    assert m["best_epoch_reason"] == ("the highest validation accuracy (1.000), shared with epoch 2; "
                                      "the lowest validation loss among them (0.440)")
    assert json.loads((tmp_path / "report" / "metrics.json").read_text())["best_epoch_reason"] == m["best_epoch_reason"]
    assert kept_line(result) == f"kept epoch 3 (val acc 1.000, val loss 0.440): {m['best_epoch_reason']}"
