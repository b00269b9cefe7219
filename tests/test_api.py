"""The jetson-inference style Python API on the trained synthetic model: frame order, colour
order and stride each decide the label, so each is checked here without the CLI in between."""

from __future__ import annotations

import numpy as np
import pytest

import actionnet
from actionnet.export.synthetic import CLIP_LENGTH, video_frames


def classify_all(net, frames):
    return [net.classify(f) for f in frames]


def test_nothing_before_the_window_is_full_then_the_right_label(synthetic_model):
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0, threshold=0.0)
    frames = video_frames("blue right slow", 20, 0.8)
    results = classify_all(net, frames)
    assert results[:CLIP_LENGTH - 1] == [(-1, 0.0)] * (CLIP_LENGTH - 1)
    class_id, conf = results[CLIP_LENGTH - 1]  # the T-th frame: first full window, already right
    assert net.get_class_desc(class_id) == "blue right slow" and conf > 0.5
    assert net.get_class_desc(results[-1][0]) == "blue right slow"
    assert net.get_class_desc(-1) is None and net.get_num_classes() == 8


def test_reversed_frames_flip_the_direction(synthetic_model):
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0)
    frames = video_frames("red right slow", 12, 0.8)
    assert net.get_class_desc(classify_all(net, frames)[-1][0]) == "red right slow"
    net.reset()
    assert net.get_class_desc(classify_all(net, frames[::-1])[-1][0]) == "red left slow"


def test_swapped_channels_flip_the_colour(synthetic_model):
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0)
    frames = video_frames("red left slow", 12, 0.8)
    assert net.get_class_desc(classify_all(net, [f[..., ::-1] for f in frames])[-1][0]) == "blue left slow"


def test_stride_changes_the_speed(synthetic_model):
    frames = video_frames("blue left slow", 24, 0.8)
    slow = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0)
    fast = actionnet.ActionNet(model=str(synthetic_model), skip_frames=2)
    assert slow.get_class_desc(classify_all(slow, frames)[-1][0]) == "blue left slow"
    assert fast.get_class_desc(classify_all(fast, frames)[-1][0]) == "blue left fast"


def test_threshold_above_every_score_gives_no_label_never_a_crash(synthetic_model):
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0, threshold=1.0)
    class_id, conf = classify_all(net, video_frames("red right slow", 10, 0.8))[-1]
    assert class_id == -1 and 0.0 < conf < 1.0 and net.get_class_desc(class_id) is None


def test_bad_arguments_are_user_errors(synthetic_model):
    with pytest.raises(actionnet.UsageError, match="--threshold"):
        actionnet.ActionNet(model=str(synthetic_model), threshold=2)
    with pytest.raises(actionnet.UsageError, match="--skip-frames"):
        actionnet.ActionNet(model=str(synthetic_model), skip_frames=-1)
    with pytest.raises(actionnet.ModelError, match="not found|cannot"):
        actionnet.ActionNet(model="missing.onnx")


def test_frames_of_any_size_are_accepted(synthetic_model):
    net = actionnet.ActionNet(model=str(synthetic_model), skip_frames=0)
    rng = np.random.default_rng(0)
    for h, w in [(96, 128), (480, 640), (33, 31)]:
        net.reset()
        for _ in range(CLIP_LENGTH):
            class_id, _ = net.classify(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        assert 0 <= class_id < 8


def test_readme_python_example_runs_as_written(synthetic_model, synthetic_video, tmp_path):
    """The manual's Python API example (docs/run.md, linked from the README), unchanged but for the
    file names, is a whole program."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[1] / "docs" / "run.md").read_text()
    section = readme[readme.index("### Python API"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'model="r3d18.onnx"' in code and '"input.mp4"' in code and '"output.mp4"' in code
    # the model records no stride, so the default skip-frames 1 applies: half the speed reads as slow
    video, out = synthetic_video("blue right slow", speed=0.4), tmp_path / "output.mp4"
    code = (code.replace("r3d18.onnx", str(synthetic_model)).replace("input.mp4", str(video))
            .replace("output.mp4", str(out)))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    printed = r.stdout.strip().splitlines()
    assert printed and all("blue right slow" in line for line in printed), printed[:3]
    import av

    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) == 30
