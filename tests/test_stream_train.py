"""actionnet-train --arch tsm-mobilenetv2: trained on clips, deployed as a streaming model whose
labels, streamed through the runtime one stored frame at a time, are the trained network's."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import run_cli

torch = pytest.importorskip("torch")

TRAIN = "actionnet.export.train.cli"


@pytest.fixture(scope="module")
def tsm_run(tmp_path_factory):
    from actionnet.export.train.synthetic_clips import write_dataset

    root = tmp_path_factory.mktemp("tsm")
    data = write_dataset(str(root / "clips"), "colour", per_class=6, frames=12, seed=2)
    run = root / "run"
    r = run_cli("--data", data, "--arch", "tsm-mobilenetv2", "--size", 32, "--clip-length", 4, "--epochs", 1,
                "--batch-size", 4, "--workers", 0, "--skip-frames", 1, "--output", run, module=TRAIN)
    assert r.returncode == 0, r.stderr
    assert "one at a time" in r.stderr and "-> OK" in r.stderr  # the stream export's stepped parity
    return run


def test_trained_tsm_deploys_as_a_stream_model(tsm_run):
    from actionnet.engines.onnxmeta import read_metadata
    from actionnet.spec import ModelSpec

    spec = ModelSpec.from_metadata(read_metadata(str(tsm_run / "model.onnx")))
    assert spec.streaming and len(spec.states) == 10 and spec.clip_length == 1
    assert spec.arch == "tsm-mobilenetv2" and spec.height == 32
    assert spec.skip_frames == 1  # the stride it was trained at, for the state
    assert spec.labels == ("blue", "red")


def test_streamed_labels_are_the_trained_networks(tsm_run, tmp_path):
    """The runtime's labels, one per stored frame, equal the trained PyTorch network's top-1 on
    the same frames prepared the same way (a drift in preprocessing, stride or state would not)."""
    from actionnet.engines.onnxmeta import read_metadata
    from actionnet.export.synthetic import write_video
    from actionnet.export.train.synthetic_clips import video
    from actionnet.export.tsm import TSMMobileNetV2
    from actionnet.preprocess import FramePreparer
    from actionnet.sources import open_source
    from actionnet.spec import ModelSpec

    rng = np.random.default_rng(77)
    clip = tmp_path / "red.mp4"
    write_video(str(clip), video({"colour": "red"}, 14, rng))
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", tsm_run / "model.onnx", "--threshold=0", "--events", ev, "--headless", "--no-progress",
                "--engine", "onnxruntime", clip)
    assert r.returncode == 0, r.stderr
    rows = [e for e in map(json.loads, open(ev)) if e.get("event") == "classification"]
    assert [e["frame"] for e in rows] == list(range(0, 14, 2))  # a label per stored frame at the trained stride

    spec = ModelSpec.from_metadata(read_metadata(str(tsm_run / "model.onnx")))
    prep = FramePreparer(spec)
    src = open_source(str(clip))
    frames = []
    for i, (frame, _) in enumerate(src):
        if i % 2 == 0:
            out = np.empty((spec.height, spec.width, 3), np.uint8)
            prep(frame, out)
            frames.append(out)
    src.close()
    net = TSMMobileNetV2(2)
    net.load_state_dict(torch.load(tsm_run / "best.pt", weights_only=True)["model"])
    x = torch.from_numpy(np.stack(frames)[None]).float() / 255.0
    x = (x - torch.tensor(spec.mean)) / torch.tensor(spec.std)
    with torch.no_grad():
        logits = net.eval()(x.permute(0, 1, 4, 2, 3))[0][0]
    probs = torch.softmax(logits, 1).numpy()
    assert [e["class_id"] for e in rows] == probs.argmax(1).tolist()
    np.testing.assert_allclose([e["confidence"] for e in rows], probs.max(1), atol=1e-4)
