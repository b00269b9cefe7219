"""The real clips in ../shared/data/videos decode and come out with the same frames and rate."""

import json

import av
import pytest

from conftest import run_cli, shared_file
from onnx_models import colour_model

VIDEOS = [("arm_wrestling.mp4", 280), ("basketball_players.mp4", 300), ("people_walking.mp4", 1394)]


@pytest.mark.parametrize("name,frames", VIDEOS)
def test_real_video_round_trip(tmp_path, name, frames):
    video = shared_file(f"videos/{name}")
    model = colour_model(tmp_path / "m.onnx", clip_length=16, size=112)
    labels = tmp_path / "l.txt"
    labels.write_text("warm\ncool\n")
    out, ev = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    r = run_cli("--model", model, "--labels", labels, "--threshold=0", "--events", ev, video, out)
    assert r.returncode == 0, r.stderr
    with av.open(str(video)) as src, av.open(str(out)) as dst:
        s, d = src.streams.video[0], dst.streams.video[0]
        assert sum(1 for _ in dst.decode(d)) == frames
        assert abs(float(d.average_rate) - float(s.average_rate)) < 0.01
        assert d.codec_context.name == "h264"
    events = [e for e in map(json.loads, open(ev)) if e["event"] == "classification"]
    # default skip-frames=1: stored frames 0, 2, ...; first full window at frame 30, then every stored frame
    assert events[0]["frame"] == 30 and len(events) == (frames - 1) // 2 + 1 - 15
    assert all(e["label"] in ("warm", "cool") for e in events)
