"""The CLI end to end on synthetic videos with the trained test model, and every bad input."""

import json
import os
import shutil
from collections import Counter

import av
import pytest

from conftest import run_cli
from onnx_models import colour_model


def events(path):
    """The classification lines (segment, marker and summary lines are tested in test_segments.py)."""
    return [e for e in map(json.loads, open(path)) if e.get("event") == "classification"]


def frame_count(path):
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.mark.parametrize("label", ["red right slow", "blue left slow", "red left slow", "blue right slow"])
def test_labels_synthetic_video_right(synthetic_model, synthetic_video, tmp_path, label):
    video = synthetic_video(label)
    out, ev = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--threshold=0.5", "--events", ev, video, out)
    assert r.returncode == 0, r.stderr
    labels = Counter(e["label"] for e in events(ev))
    assert labels == {label: 30 - 8 + 1}, labels  # every full window, from the T-th frame on
    assert frame_count(out) == 30


def test_skip_frames_changes_the_sampling_stride(synthetic_model, synthetic_video, tmp_path):
    # 0.8 model px per video frame: slow when every frame is kept, fast when 2 of 3 are dropped
    video = synthetic_video("blue right slow")
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=2", "--events", ev, "--headless", video)
    assert r.returncode == 0, r.stderr
    got = events(ev)
    assert [e["frame"] for e in got] == [21, 24, 27]  # 8th stored frame = frame 21, then every stored frame
    assert {e["label"] for e in got} == {"blue right fast"}


def test_cadence_and_first_full_window(synthetic_model, synthetic_video, tmp_path):
    video = synthetic_video("red left slow")
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--cadence=5", "--events", ev, "--headless", video)
    assert r.returncode == 0, r.stderr
    assert [e["frame"] for e in events(ev)] == [7, 12, 17, 22, 27]


def test_event_fields_and_threshold(synthetic_model, synthetic_video, tmp_path):
    video = synthetic_video("red right slow")
    ev = tmp_path / "ev.jsonl"
    assert run_cli("--model", synthetic_model, "--skip-frames=0", "--threshold=1", "--top-k=3", "--events", ev,
                   "--headless", video).returncode == 0
    for e in events(ev):
        assert {"frame", "time", "label", "confidence", "topk"} <= set(e)
        assert e["label"] is None and e["class_id"] == -1  # threshold 1: never reached, never made up
        assert len(e["topk"]) == 3 and e["topk"][0]["label"] == "red right slow"
        assert e["time"] == pytest.approx(e["frame"] / 30, abs=1e-3)


def test_image_folder_source(synthetic_model, tmp_path):
    import cv2

    from actionnet.export.synthetic import video_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(video_frames("blue left slow", 12, 0.8)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--events", ev, folder, tmp_path / "o.mkv")
    assert r.returncode == 0, r.stderr
    assert {e["label"] for e in events(ev)} == {"blue left slow"}
    assert frame_count(tmp_path / "o.mkv") == 12


def test_foreign_model_with_flags_and_host_normalisation(synthetic_video, tmp_path):
    model = colour_model(tmp_path / "foreign.onnx")
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    ev = tmp_path / "ev.jsonl"
    # equal means: the colour model compares raw channel means (the default Kinetics mean is bluish)
    r = run_cli("--model", model, "--labels", labels, "--input-blob=0", "--output-blob=198", "--mean=0.4,0.4,0.4",
                "--events", ev, "--headless", synthetic_video("red right slow"))
    assert r.returncode == 0, r.stderr
    assert "assumed jetson-inference defaults for: color_order" in r.stderr  # says which defaults it took
    assert "mean" not in r.stderr.split("assumed")[1].splitlines()[0]
    assert {e["label"] for e in events(ev)} == {"red"}
    # --color-order BGR feeds the channels the other way round: the label must flip
    r = run_cli("--model", model, "--labels", labels, "--color-order=BGR", "--mean=0.4,0.4,0.4", "--events", ev,
                "--headless",
                synthetic_video("red right slow"))
    assert r.returncode == 0 and {e["label"] for e in events(ev)} == {"blue"}


@pytest.mark.parametrize("mode", [[], ["--persons", "--detector", "{tmp}/sq.onnx"]], ids=["whole-frame", "per-person"])
def test_normalisation_flags_are_refused_for_a_model_that_normalises_in_its_graph(synthetic_model, synthetic_video,
                                                                                  tmp_path, mode):
    """The synthetic model, as every actionnet export, takes raw uint8 frames and normalises in its
    graph: --mean/--std/--value-scale cannot reach it and were silently ignored; now one line says so."""
    from detector_fakes import square_detector

    square_detector(tmp_path / "sq.onnx")
    out, ev = tmp_path / "out.mp4", tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, *[a.format(tmp=tmp_path) for a in mode], "--std=0.5,0.5,0.5",
                "--value-scale=1", "--events", ev, synthetic_video("red right slow"), out)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and errors[0].startswith(
        f"actionnet: error: --std, --value-scale: {synthetic_model} normalises inside its graph"), r.stderr
    assert not out.exists() and not ev.exists()


# -- bad input: one line on stderr, non-zero exit, nothing half-written ---------------------

@pytest.fixture
def bad_env(tmp_path, synthetic_model, synthetic_video):
    good = synthetic_video("red right slow")
    trunc = tmp_path / "truncated.mp4"
    data = good.read_bytes()
    trunc.write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "noise.mp4").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "corrupt.onnx").write_bytes(b"not an onnx model" * 10)
    colour_model(tmp_path / "rank4.onnx", rank=4)
    colour_model(tmp_path / "foreign.onnx")
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    (tmp_path / "adir.mp4").mkdir()
    return dict(tmp=tmp_path, good=good, model=synthetic_model)


BAD = [
    ("missing video", ["{model}", "{tmp}/nope.mp4", "{tmp}/out.mp4"], "input not found"),
    ("unreadable video", ["{model}", "{tmp}/noise.mp4", "{tmp}/out.mp4"], "cannot read video"),
    ("empty video", ["{model}", "{tmp}/empty.mp4", "{tmp}/out.mp4"], "empty"),
    ("truncated video", ["{model}", "{tmp}/truncated.mp4", "{tmp}/out.mp4"], "video"),
    ("output folder missing", ["{model}", "{good}", "{tmp}/no/such/dir/out.mp4"], "does not exist"),
    ("output is a folder", ["{model}", "{good}", "{tmp}/adir.mp4"], "folder"),
    ("missing model", ["{tmp}/none.onnx", "{good}", "{tmp}/out.mp4"], "not found"),
    ("corrupt model", ["{tmp}/corrupt.onnx", "{good}", "{tmp}/out.mp4"], "cannot load model"),
    ("wrong input rank", ["{tmp}/rank4.onnx", "--labels", "{tmp}/three.txt", "{good}", "{tmp}/out.mp4"], "rank 4"),
    ("label count", ["{tmp}/foreign.onnx", "--labels", "{tmp}/three.txt", "{good}", "{tmp}/out.mp4"],
     "3 labels, but output '198' has 2 classes"),
    ("threshold", ["{model}", "--threshold=1.5", "{good}", "{tmp}/out.mp4"], "threshold"),
    ("skip frames", ["{model}", "--skip-frames=-1", "{good}", "{tmp}/out.mp4"], "skip-frames"),
    ("unknown flag", ["{model}", "--skip-frame=1", "{good}", "{tmp}/out.mp4"], "unrecognized"),
]


@pytest.mark.parametrize("case,args,message", BAD, ids=[b[0] for b in BAD])
def test_bad_input(bad_env, case, args, message):
    args = [a.format(**bad_env) for a in args]
    r = run_cli("--model", *args)
    assert r.returncode != 0
    assert "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and message in errors[0], r.stderr
    leftovers = [p.name for p in bad_env["tmp"].iterdir() if p.name.startswith((".out", "out"))]
    assert leftovers == [], leftovers


def test_unknown_network(tmp_path, synthetic_video):
    r = run_cli("--network", "resnet-99", synthetic_video("red right slow"), tmp_path / "out.mp4")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "unknown network 'resnet-99'; known networks: resnet-18, resnet-34" in r.stderr
    assert not (tmp_path / "out.mp4").exists()


def test_output_never_overwrites_input(synthetic_model, synthetic_video, tmp_path):
    video = tmp_path / "v.mp4"
    shutil.copy(synthetic_video("red right slow"), video)
    before = video.read_bytes()
    r = run_cli("--model", synthetic_model, video, video)
    assert r.returncode != 0 and video.read_bytes() == before
    r = run_cli("--model", synthetic_model, "--persons", "--detector", "det.onnx", video, video)
    assert r.returncode == 2 and "overwrite the input" in r.stderr and video.read_bytes() == before


@pytest.mark.parametrize("mode", [[], ["--persons", "--detector", "det.onnx"]], ids=["whole-frame", "per-person"])
@pytest.mark.parametrize("target", ["input", "output"])
def test_events_never_overwrite_the_input_or_the_video(synthetic_model, synthetic_video, tmp_path, target, mode):
    video = tmp_path / "v.mp4"
    shutil.copy(synthetic_video("red right slow"), video)
    before = video.read_bytes()
    out = tmp_path / "out.mp4"
    r = run_cli("--model", synthetic_model, "--headless", *mode, "--events", video if target == "input" else out,
                video, out)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"actionnet: error: --events would overwrite the {target}")
    assert video.read_bytes() == before and not out.exists()


def test_truncated_faststart_video_is_an_error_not_a_short_run(synthetic_model, tmp_path):
    """moov first (web videos, ``-movflags faststart``): a cut file still opens and decodes up to
    the cut, so only the frame count tells that the rest is missing."""
    import numpy as np

    path = tmp_path / "fs.mp4"
    rng = np.random.default_rng(0)
    with av.open(str(path), "w", options={"movflags": "faststart"}) as c:
        s = c.add_stream("mpeg4", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "yuv420p"
        for _ in range(60):  # noise: every frame is large, so the cut lands among the frames
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8), format="bgr24")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    data = path.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert 0 < frame_count(cut) < 50  # it decodes, partly
    out = tmp_path / "out.mp4"
    r = run_cli("--model", synthetic_model, "--headless", cut, out)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "truncated" in r.stderr.strip().splitlines()[-1] and "of 60 frames" in r.stderr, r.stderr
    assert not out.exists()


def test_output_mistakes_are_found_before_the_model_loads(synthetic_video, tmp_path):
    """The model named here does not exist: the output's mistake is what the user hears about."""
    video = synthetic_video("red left slow")
    r = run_cli("--model", tmp_path / "none.onnx", video, tmp_path / "out.xyz")
    assert r.returncode != 0 and len(r.stderr.strip().splitlines()) == 1
    assert "unknown video type .xyz" in r.stderr and ".mp4" in r.stderr and "out/%05d.jpg" in r.stderr
    r = run_cli("--model", tmp_path / "none.onnx", video, tmp_path / "no" / "dir" / "out.mp4")
    assert r.returncode != 0 and "does not exist" in r.stderr and "none.onnx" not in r.stderr
    r = run_cli("--model", tmp_path / "none.onnx", "--events", tmp_path / "no" / "ev.jsonl", "--headless", video)
    assert r.returncode != 0 and "cannot write events" in r.stderr and "none.onnx" not in r.stderr


def test_headless_with_nothing_to_save_warns(synthetic_model, synthetic_video):
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", synthetic_video("red left slow"))
    assert r.returncode == 0, r.stderr
    assert "--headless with neither an output nor --events: nothing will be saved" in r.stderr


def test_help_shows_every_default():
    from actionnet.cli import build_parser

    missing = [a.option_strings[0] for a in build_parser()._actions
               if a.option_strings and a.nargs != 0 and "default" not in (a.help or "")]
    assert missing == []


# -- a file is a file, even when its header does not count its frames ------------------------

def test_video_without_a_frame_count_is_a_file_and_every_frame_is_processed(synthetic_model, tmp_path):
    """FFV1 in Matroska carries no frame count (PyAV's ``stream.frames`` is 0). Such a file used to
    be announced as "live"; it is a file, read exactly: every frame processed, none dropped."""
    import re

    import numpy as np

    from actionnet.export.synthetic import video_frames

    path = tmp_path / "lossless.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=30)
        s.width, s.height, s.pix_fmt = 64, 64, "bgr0"
        for f in video_frames("red right slow", 30, 0.8):
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="bgr24")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    with av.open(str(path)) as c:
        assert c.streams.video[0].frames == 0  # what made it look live
    out, ev = tmp_path / "out.mkv", tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--threshold=0.5", "--events", ev, path, out)
    assert r.returncode == 0, r.stderr
    start = next(ln for ln in r.stderr.splitlines() if ln.startswith(f"actionnet: {path} ("))
    described = re.search(r"\((\d+x\d+), ([\d.]+) fps, ([^)]*)\)", start).group(3)
    assert "file" in described and "live" not in described, start
    assert [e["frame"] for e in events(ev)] == list(range(7, 30))  # every window from the T-th frame on
    assert {e["label"] for e in events(ev)} == {"red right slow"}
    assert frame_count(out) == 30
    assert re.search(r"^actionnet: 30 frames, ", r.stderr, re.M) and "dropped" not in r.stderr, r.stderr


# -- unreadable pictures: skipped with a warning, counted, never the end of the run ------------

def _summary(path):
    return [e for e in map(json.loads, open(path)) if e.get("event") == "summary"]


def test_an_unreadable_photo_is_skipped_and_the_others_are_labelled(tmp_path):
    """An image model (clip length 1) labels each photo of a folder. One corrupt file among them
    used to end the run with exit 2 and remove every picture already written; now it is skipped
    with one warning, counted in the summary, and the rest are labelled."""
    import cv2
    import numpy as np

    model = colour_model(tmp_path / "photo.onnx", clip_length=1)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    cv2.imwrite(str(photos / "a.png"), np.full((40, 60, 3), (40, 40, 220), np.uint8))  # BGR: red
    (photos / "b.jpg").write_bytes(b"this is not a picture" * 10)
    cv2.imwrite(str(photos / "c.jpg"), np.full((40, 60, 3), (220, 40, 40), np.uint8))  # blue
    cv2.imwrite(str(photos / "d.png"), np.full((40, 60, 3), (40, 40, 220), np.uint8))
    out, ev = tmp_path / "out", tmp_path / "ev.jsonl"
    # a foreign model: its labels, an even mean (the colour model compares channels) and every photo
    r = run_cli("--model", model, "--labels", labels, "--mean=0.4,0.4,0.4", "--skip-frames=0", "--threshold=0",
                "--events", ev, "--headless", photos, str(out) + "/")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "error" not in r.stderr, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert warnings == [f"actionnet: warning: skipped {photos / 'b.jpg'}: cannot read image"], r.stderr
    assert [e["label"] for e in events(ev)] == ["red", "blue", "red"]
    assert sorted(os.listdir(out)) == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert [s["skipped"] for s in _summary(ev)] == [1]
    last = [ln for ln in r.stderr.splitlines() if ln.startswith("actionnet: 3 frames")]
    assert len(last) == 1 and "1 unreadable image skipped" in last[0], r.stderr


def test_an_unreadable_frame_of_an_image_sequence_is_skipped(synthetic_model, tmp_path):
    """An image folder as a video: a frame that cannot be read is skipped like a dropped frame,
    with one warning; the clip model still classifies every full window of the frames read."""
    import cv2

    from actionnet.export.synthetic import video_frames

    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(video_frames("blue left slow", 12, 0.8)):
        cv2.imwrite(str(folder / f"{i:04d}.png"), f)
    (folder / "0005.png").write_bytes(b"")  # a frame lost on the way: an empty file
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--threshold=0", "--events", ev, folder,
                tmp_path / "o.mkv")
    assert r.returncode == 0, r.stderr
    warnings = [ln for ln in r.stderr.splitlines() if "warning" in ln]
    assert warnings == [f"actionnet: warning: skipped {folder / '0005.png'}: cannot read image"], r.stderr
    assert len(events(ev)) == 11 - 8 + 1
    assert frame_count(tmp_path / "o.mkv") == 11
    assert [s["skipped"] for s in _summary(ev)] == [1]


def test_a_folder_of_only_unreadable_pictures_is_one_error(tmp_path):
    model = colour_model(tmp_path / "photo.onnx", clip_length=1)
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "a.jpg").write_bytes(b"this is not a picture" * 10)
    (photos / "b.png").write_bytes(b"")
    out = tmp_path / "out"
    r = run_cli("--model", model, "--labels", labels, "--headless", photos, str(out) + "/")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("actionnet: error: ") and str(photos) in lines[0], r.stderr
    assert f"cannot read any of the 2 images in {photos}" in lines[0]
    assert not out.exists()


def test_events_given_twice_go_to_both_files_and_a_name_given_twice_is_refused(synthetic_model, synthetic_video, tmp_path):
    """--events is a list of sinks (a file and a broker, say): every sink gets every line, in order."""
    video = synthetic_video("red left slow")
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--events", a, "--events", b, video)
    assert r.returncode == 0, r.stderr
    lines = a.read_text().splitlines()
    assert lines and lines == b.read_text().splitlines()
    assert json.loads(lines[-1])["event"] == "summary"
    r = run_cli("--model", synthetic_model, "--headless", "--events", a, "--events", str(tmp_path / "." / "a.jsonl"), video)
    assert r.returncode == 2 and "given twice" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("--model", synthetic_model, "--headless", "--events", "kafka://broker/topic", video)
    assert r.returncode == 2 and "unknown scheme kafka://" in r.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("uri, shown", [
    ("rtsp://admin:s3cret@cam.local:554/stream", "rtsp://admin:***@cam.local:554/stream"),
    ("rtsp://admin:p@ss/w@cam:554/s", "rtsp://admin:***@cam:554/s"),  # an unescaped @ or / in the password
    ("mqtts://user:pw@broker:8883/site/door", "mqtts://user:***@broker:8883/site/door"),
    ("webrtc://@:8554/door?token=SECRET", "webrtc://@:8554/door?token=***"),
    ("webrtc://@:8554/door", "webrtc://@:8554/door"),
    ("rtsp://cam.local/stream", "rtsp://cam.local/stream"),
    ("out.mp4", "out.mp4"),
])
def test_printed_uris_hide_passwords_and_tokens(uri, shown):
    from actionnet.config import redact

    assert redact(uri) == shown


def test_the_start_up_line_does_not_show_a_page_token(synthetic_model, synthetic_video, tmp_path):
    pytest.importorskip("aiortc")
    from test_web import free_port

    r = run_cli("--model", synthetic_model, "--skip-frames=0", synthetic_video("red left slow"),
                f"webrtc://127.0.0.1:{free_port()}/out?token=SECRET")
    assert r.returncode == 0, r.stderr
    assert "SECRET" not in r.stderr and "token=***" in r.stderr
