"""Zero-shot X-CLIP: export parity with transformers, run-time labels, the torch-free tokenizer,
the CLI forms of --labels, per-person runs, the Hub/zoo path, and a tiny X-CLIP that has learnt
synthetic captions and labels held-out clips from captions given at run time."""

from __future__ import annotations

import functools
import http.server
import io
import json
import os
import subprocess
import threading

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

import xclip_fixtures as xf  # noqa: E402

PROMPTS = ["dancing", "singing a song", "a person cooking pasta"]


def _quiet():
    return io.StringIO()


@pytest.fixture(scope="module")
def xclip_folder(tmp_path_factory):
    import torch
    from transformers import XCLIPModel

    folder = tmp_path_factory.mktemp("xclip-hf")
    torch.manual_seed(0)
    n = xf.write_tokenizer_files(str(folder), 2000)
    model = XCLIPModel(xf.tiny_config(n, frames=4, image=32, patch=16)).eval()
    return xf.save_hf_folder(model, str(folder), 32, 2000)


@pytest.fixture(scope="module")
def xclip_onnx(xclip_folder, tmp_path_factory):
    from actionnet.export.cli import main

    out = tmp_path_factory.mktemp("xclip-onnx") / "tiny.onnx"
    assert main(["xclip", xclip_folder, "--output", str(out)]) == 0
    assert (out.parent / "tiny.text.onnx").is_file()
    return out


def _frames(n=2, t=4, size=32, seed=0):
    rng = np.random.default_rng(seed)
    import cv2

    coarse = rng.integers(0, 256, (n, t, 4, 4, 3)).astype(np.uint8)
    return np.stack([[cv2.resize(c, (size, size), interpolation=cv2.INTER_LINEAR) for c in clip] for clip in coarse])


def _runtime_logits(model, labels, frames):
    from actionnet.model import load_action_model

    eng, spec = load_action_model(str(model), labels, engine="onnxruntime", log=None)
    try:
        return eng.infer(frames, spec.output_name), spec
    finally:
        eng.close()


# -- tokenizer ---------------------------------------------------------------------------

def test_tokenizer_equals_transformers_clip_tokenizer(tmp_path):
    from transformers import CLIPTokenizer

    from actionnet.cliptok import ClipTokenizer

    xf.write_tokenizer_files(str(tmp_path))  # the full 49408-token CLIP vocabulary
    ref = CLIPTokenizer.from_pretrained(str(tmp_path))
    ours = ClipTokenizer.from_files(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"))
    prompts = ["a person dancing", "Singing a song!!", "  don't STOP   me now's ", "café naïve Ærø Straße",
               "🎉 party 🎉🎉 time 👩‍👩‍👧 👍🏽", "ΣΊΣΥΦΟΣ ΟΔΟΣ", "İstanbul", "x² ½ 3.14159 1,000,000",
               "hello<|endoftext|>world", "中文 日本語テキスト 한국어", "tab\there\nnewline", "it''s ok 'd 'LL",
               "e\u0301 combining", "x_y-z@w.com #tag $5 %", "waving " * 90]
    for p in prompts:
        assert ours.encode(p) == ref(p, truncation=True, max_length=77)["input_ids"], p
    assert len(ours.encode("waving " * 90)) == 77
    batch = ours(prompts)
    assert batch.shape == (len(prompts), 77) and batch.dtype == np.int64
    assert ours(["dancing", "a person dancing"]).shape == (2, 5)  # padded to the longest prompt only


# -- export and run-time labels ------------------------------------------------------------

def test_runtime_scores_as_transformers_processor_and_model(xclip_folder, xclip_onnx):
    """The runtime (its tokenizer, the two ONNX files) against XCLIPProcessor + XCLIPModel."""
    import torch
    from transformers import XCLIPModel, XCLIPProcessor

    frames = _frames()
    got, spec = _runtime_logits(xclip_onnx, PROMPTS, frames)
    assert spec.labels == tuple(PROMPTS) and spec.clip_length == 4
    proc = XCLIPProcessor.from_pretrained(xclip_folder)
    inputs = proc(text=PROMPTS, videos=[list(c) for c in frames], return_tensors="pt", padding=True)
    model = XCLIPModel.from_pretrained(xclip_folder).eval()
    with torch.no_grad():
        ref = model(**inputs).logits_per_video.numpy()
    assert got.shape == ref.shape == (2, 3)
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=2e-4)


def test_label_order_and_fixed_labels(xclip_folder, xclip_onnx, tmp_path):
    from actionnet.export.xclip import export_xclip

    frames = _frames(seed=1)
    got, _ = _runtime_logits(xclip_onnx, PROMPTS, frames)
    rev, _ = _runtime_logits(xclip_onnx, PROMPTS[::-1], frames)
    np.testing.assert_allclose(rev, got[:, ::-1], rtol=1e-4, atol=1e-5)
    sub, _ = _runtime_logits(xclip_onnx, ",".join(PROMPTS[1:]), frames)  # one comma-separated value
    # the prompt generator conditions each text on the video alone, so a subset keeps its scores
    np.testing.assert_allclose(sub, got[:, 1:], rtol=1e-4, atol=1e-5)

    fixed = tmp_path / "fixed.onnx"
    export_xclip(xclip_folder, str(fixed), labels=PROMPTS, log=_quiet())
    assert not (tmp_path / "fixed.text.onnx").exists()
    f, spec = _runtime_logits(fixed, None, frames)
    assert spec.labels == tuple(PROMPTS) and not spec.zero_shot
    np.testing.assert_allclose(f, got, rtol=1e-4, atol=1e-5)


def test_python_api_takes_a_list(xclip_onnx):
    import actionnet

    net = actionnet.ActionNet(model=str(xclip_onnx), labels=PROMPTS, threshold=0.0, skip_frames=0,
                              engine="onnxruntime")
    rng = np.random.default_rng(3)
    got = [net.update(rng.integers(0, 255, (48, 64, 3), np.uint8)) for _ in range(5)]
    c = [g for g in got if g is not None]
    assert len(c) == 2 and c[-1].label in PROMPTS and net.get_num_classes() == 3
    assert {name for _, name, _ in c[-1].topk} == set(PROMPTS)
    net.close()


@pytest.mark.parametrize("labels,message", [
    ([""], "holds no prompt"),
    ([",, ,"], "holds no prompt"),
    (["dancing", ""], "empty prompt"),
    (None, "name the actions with --labels"),
])
def test_bad_prompts_one_line(xclip_onnx, synthetic_video, tmp_path, capsys, labels, message):
    from actionnet.cli import main

    argv = ["--model", str(xclip_onnx), "--headless", "--no-progress", str(synthetic_video("red left slow")),
            str(tmp_path / "o.mp4")]
    if labels is not None:
        argv[2:2] = ["--labels", *labels]
    assert main(argv) != 0
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in err, err
    assert not (tmp_path / "o.mp4").exists()


def test_non_xclip_folder_one_line(tmp_path, capsys):
    from actionnet.export.cli import main

    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}))
    assert main(["xclip", str(tmp_path), "--output", str(tmp_path / "x.onnx")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not X-CLIP" in err[0], err
    assert main(["xclip", str(tmp_path / "nowhere"), "--output", str(tmp_path / "x.onnx")]) != 0
    assert "neither a folder nor a Hub name" in capsys.readouterr().err


def _events(path):
    return [e for e in map(json.loads, open(path)) if e.get("event") == "classification"]


def test_cli_labels_forms(xclip_onnx, synthetic_video, tmp_path, capsys):
    """Prompts after the positionals, before them (one comma-separated value), and a label file."""
    from actionnet.cli import main

    video = str(synthetic_video("red left slow"))
    lab = tmp_path / "prompts.txt"
    lab.write_text("jumping\nsinging a song, loudly\n")
    runs = [
        (["--model", str(xclip_onnx), video, str(tmp_path / "a.mp4"), "--labels", "dancing", "singing a song"],
         {"dancing", "singing a song"}),
        (["--model", str(xclip_onnx), "--labels", "cooking,eating", video, str(tmp_path / "b.mp4")],
         {"cooking", "eating"}),
        (["--model", str(xclip_onnx), "--labels", str(lab), video, str(tmp_path / "c.mp4")],
         {"jumping", "singing a song, loudly"}),
        (["--model", str(xclip_onnx), video, "--labels", "walking", "running", str(tmp_path / "d.mp4")],
         {"walking", "running"}),
    ]
    for i, (argv, want) in enumerate(runs):
        ev = tmp_path / f"ev{i}.jsonl"
        assert main(argv + ["--headless", "--no-progress", "--threshold=0", "--skip-frames=0", "--events", str(ev)]) == 0, \
            capsys.readouterr().err
        events = _events(ev)
        assert (tmp_path / f"{'abcd'[i]}.mp4").is_file()
        assert events and all(e["label"] in want and {t["label"] if isinstance(t, dict) else t[1] for t in e["topk"]} == want
                              for e in events)
    assert "prompts encoded" in capsys.readouterr().err


def test_persons_with_zero_shot_model(xclip_onnx, tmp_path, capsys):
    from actionnet.cli import main
    from actionnet.export.synthetic import write_video
    from detector_fakes import square_detector
    from persons_video import squares_frames

    det = square_detector(tmp_path / "sq.onnx")
    frames, _ = squares_frames([("red", "right", 1.0, 30, 40), ("blue", "left", 1.0, 200, 40)], frames=16)
    video = write_video(str(tmp_path / "p.mp4"), frames)
    ev = tmp_path / "ev.jsonl"
    argv = ["--model", str(xclip_onnx), "--labels", "waving", "walking", "--persons", "--detector", str(det),
            "--crop-margin", "10", "--headless", "--no-progress", "--threshold=0", "--skip-frames=0",
            "--events", str(ev), video, str(tmp_path / "out.mp4")]
    assert main(argv) == 0, capsys.readouterr().err
    cls = [e for e in _events(ev) if "track_id" in e and "topk" in e]
    assert cls and {e["label"] for e in cls} <= {"waving", "walking"}
    assert len({e["track_id"] for e in cls}) == 2


def test_hub_name_and_zoo_entry(xclip_folder, synthetic_video, tmp_path, monkeypatch, capsys):
    """A Hub name is fetched through the zoo's download (a local server stands in for the Hub),
    and a zoo entry exports on first use."""
    handler = functools.partial(_HubHandler, directory=xclip_folder)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("ACTIONNET_HF_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path / "home"))
        manifest = tmp_path / "zoo.json"
        manifest.write_text(json.dumps({"tiny-xclip": {"format": "xclip", "hub": "test/tiny-xclip"}}))
        monkeypatch.setenv("ACTIONNET_ZOO", str(manifest))
        from actionnet.cli import main

        ev = tmp_path / "ev.jsonl"
        assert main(["--network=tiny-xclip", "--labels", "cooking,eating", str(synthetic_video("red left slow")),
                     str(tmp_path / "o.mp4"), "--headless", "--no-progress", "--threshold=0", "--events", str(ev)]) == 0
        err = capsys.readouterr().err
        assert "parity" in err and "OK" in err and "sha256" in err
        assert (tmp_path / "home" / "tiny-xclip" / "tiny-xclip.text.onnx").is_file()
        assert {e["label"] for e in _events(ev)} <= {"cooking", "eating"}
    finally:
        server.shutdown()


class _HubHandler(http.server.SimpleHTTPRequestHandler):
    """``/OWNER/NAME/resolve/main/FILE`` -> FILE in the folder (404 for files it lacks)."""

    def translate_path(self, path):
        return super().translate_path("/" + path.split("/resolve/main/", 1)[-1])

    def log_message(self, *a):
        pass


def test_zero_shot_runtime_runs_without_torch(xclip_onnx, synthetic_video, tmp_path, lean_python):
    from test_lean_runtime import SCRIPT

    ev = tmp_path / "ev.jsonl"
    r = subprocess.run([lean_python, "-c", SCRIPT, "--model", str(xclip_onnx), "--labels",
                        "dancing", "cooking", "--threshold=0", "--events", str(ev), "--headless",
                        str(synthetic_video("red left slow")), str(tmp_path / "o.mp4")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
    assert {e["label"] for e in _events(ev)} <= {"dancing", "cooking"}


@pytest.fixture(scope="module")
def trained_xclip(tmp_path_factory):
    """The tiny X-CLIP trained on captioned synthetic clips, exported for run-time labels.
    ``ACTIONNET_TEST_CACHE`` keeps the trained folder between local runs (keyed by the code)."""
    import hashlib
    import shutil

    from actionnet.export.xclip import export_xclip

    h = hashlib.sha256(open(xf.__file__, "rb").read()).hexdigest()[:16]
    cache = os.environ.get("ACTIONNET_TEST_CACHE")
    folder = os.path.join(cache, f"xclip-trained-{h}") if cache else str(tmp_path_factory.mktemp("xclip-trained"))
    if not os.path.isfile(os.path.join(folder, "config.json")):
        tmp = folder + f".tmp{os.getpid()}"
        xf.train_tiny_xclip(tmp)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    out = tmp_path_factory.mktemp("xclip-trained-onnx") / "trained.onnx"
    export_xclip(folder, str(out), log=_quiet())
    return out


def test_trained_xclip_labels_held_out_clips_from_run_time_captions(trained_xclip):
    """Captions given at run time, in another order than at training and as a subset, label
    held-out clips right: the prompts reach the model, in the order the user gave them."""
    from actionnet.model import load_action_model

    x, y = xf.clips(64, seed=99)
    for order in ([2, 0, 3, 1], [3, 2, 1, 0], [1, 3]):
        eng, spec = load_action_model(str(trained_xclip), [xf.CAPTIONS[i] for i in order], engine="onnxruntime",
                                      log=None)
        keep = np.isin(y, order)
        pred = np.array(order)[eng.infer(x[keep], spec.output_name).argmax(1)]
        eng.close()
        acc = float((pred == y[keep]).mean())
        assert acc >= 0.9, (order, acc)
        assert spec.labels == tuple(xf.CAPTIONS[i] for i in order)
