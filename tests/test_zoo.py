"""The model zoo: manifest -> cache -> download from a loopback HTTP server -> offline message."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import re
import socket
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

from actionnet import zoo
from actionnet.errors import ZooError
from conftest import run_cli
from onnx_models import colour_model


class Server:
    """A static file server on 127.0.0.1 that counts requests and can be stopped."""

    def __init__(self, root: Path):
        root = str(root)
        self.hits = 0
        outer = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *a, **k):
                super().__init__(*a, directory=root, **k)

            def do_GET(self):
                outer.hits += 1
                super().do_GET()

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served(tmp_path, monkeypatch):
    """An Action-ResNet18-style archive (folder + ONNX with input "0", output "198") behind a
    loopback server, a manifest naming it, and an empty cache."""
    files = tmp_path / "www"
    files.mkdir()
    onnx_path = colour_model(tmp_path / "m.onnx")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        t.add(onnx_path, arcname="Action-Tiny/tiny-kinetics.onnx")
    (files / "tiny.gz").write_bytes(buf.getvalue())
    labels = tmp_path / "labels.txt"
    labels.write_text("red\nblue\n")
    server = Server(files)
    entry = {"aliases": ["tiny18"], "format": "onnx", "url": f"{server.url}/tiny.gz", "archive": "tar.gz",
             "sha256": hashlib.sha256(buf.getvalue()).hexdigest(), "file": "Action-Tiny/tiny-kinetics.onnx",
             "labels": str(labels), "input_blob": "0", "output_blob": "198",
             "spec": {"mean": [0.5, 0.5, 0.5], "resize_mode": "squash"}}
    manifest = tmp_path / "zoo.json"

    def write(**changes):
        manifest.write_text(json.dumps({"_comment": "test", "tiny": {**entry, **changes}}))

    write()
    cache = tmp_path / "cache"
    monkeypatch.setenv("ACTIONNET_ZOO", str(manifest))
    monkeypatch.setenv("ACTIONNET_HOME", str(cache))
    yield server, cache, write, entry
    server.stop()


def test_download_extracts_checks_and_then_uses_the_cache(served):
    server, cache, _, _ = served
    log = io.StringIO()
    e = zoo.resolve("tiny18", log=log)  # by alias
    assert e.name == "tiny" and Path(e.model_path) == cache / "tiny" / "Action-Tiny" / "tiny-kinetics.onnx"
    assert Path(e.model_path).is_file() and "downloading tiny" in log.getvalue()
    assert (e.input_blob, e.output_blob) == ("0", "198")
    assert e.spec_overrides == {"mean": (0.5, 0.5, 0.5), "resize_mode": "squash"}
    assert [p.name for p in (cache / "tiny").iterdir()] == ["Action-Tiny"]  # no temp file left
    server.stop()
    again = zoo.resolve("tiny")  # the server is gone: the cache must serve it
    assert again.model_path == e.model_path and server.hits == 1


def test_cli_runs_a_zoo_network_with_the_manifest_spec(served, synthetic_video):
    video = synthetic_video("red right slow", frames=12)
    r = run_cli("--network=tiny", "--skip-frames=0", "--headless", "--threshold=0", "--events=-", video)
    assert r.returncode == 0, r.stderr
    events = [e for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "classification"]
    assert events and events[-1]["label"] == "red"


def test_checksum_mismatch_discards_the_download(served):
    _, cache, write, _ = served
    write(sha256="0" * 64)
    with pytest.raises(ZooError, match="checksum mismatch .* the file was discarded"):
        zoo.resolve("tiny", log=io.StringIO())
    assert not any(p.is_file() for p in cache.rglob("*"))


def test_sha256_prefix_is_checked_too(served):
    _, cache, write, _ = served
    write(sha256=None, sha256_prefix="deadbeef")
    with pytest.raises(ZooError, match="does not start with deadbeef"):
        zoo.resolve("tiny", log=io.StringIO())


def test_offline_gives_a_clear_message_and_a_nonzero_exit(served, synthetic_video, tmp_path):
    _, cache, write, entry = served
    url = f"http://127.0.0.1:{free_port()}/tiny.gz"
    write(url=url)
    out = tmp_path / "out.mp4"
    r = run_cli("--network=tiny", synthetic_video("red right slow", frames=12), out)
    assert r.returncode != 0 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert "network tiny is not in the local cache and could not be downloaded" in line
    assert url in line and str(cache / "tiny") in line and "--model FILE" in line
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_corrupt_archive_is_reported(served, tmp_path):
    server, _, write, _ = served
    bad = b"this is not gzip"
    (tmp_path / "www" / "bad.gz").write_bytes(bad)
    write(url=f"{server.url}/bad.gz", sha256=hashlib.sha256(bad).hexdigest())
    with pytest.raises(ZooError, match="archive is corrupt"):
        zoo.resolve("tiny", log=io.StringIO())


def test_unsafe_archive_member_is_refused(served, tmp_path):
    server, cache, write, _ = served
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        info = tarfile.TarInfo("../escape.onnx")
        info.size = 3
        t.addfile(info, io.BytesIO(b"abc"))
    (tmp_path / "www" / "evil.gz").write_bytes(buf.getvalue())
    write(url=f"{server.url}/evil.gz", sha256=hashlib.sha256(buf.getvalue()).hexdigest())
    with pytest.raises(ZooError, match="unsafe; not extracted"):
        zoo.resolve("tiny", log=io.StringIO())
    assert not (cache / "escape.onnx").exists()


def test_unknown_network_lists_the_known_ones(served):
    with pytest.raises(ZooError, match="unknown network 'nope'; known networks: tiny"):
        zoo.resolve("nope")


def test_torchvision_weights_are_exported_once_on_first_use(served, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import torchvision

    server, cache, _, _ = served
    weights = tmp_path / "www" / "r3d_18-test.pth"
    torch.manual_seed(0)
    torch.save(torchvision.models.get_model("r3d_18", num_classes=400).state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    manifest = tmp_path / "zoo.json"
    manifest.write_text(json.dumps({"r3d": {"format": "torchvision", "arch": "r3d_18",
                                            "url": f"{server.url}/r3d_18-test.pth", "sha256_prefix": digest[:8],
                                            "labels": "kinetics400.txt"}}))
    log = io.StringIO()
    e = zoo.resolve("r3d", log=log)
    assert Path(e.model_path) == cache / "r3d" / "r3d.onnx" and "exporting r3d" in log.getvalue()
    from actionnet.engines import open_engine
    from actionnet.spec import ModelSpec

    with open_engine(e.model_path) as eng:
        spec = ModelSpec.from_metadata(eng.metadata)
        assert spec.arch == "r3d_18" and spec.num_classes == 400
        assert eng.infer(np.zeros((1, 16, 112, 112, 3), np.uint8)).shape == (1, 400)
    server.stop()
    assert zoo.resolve("r3d").model_path == e.model_path  # cached, no second download or export


def test_shipped_manifest_is_consistent():
    from actionnet.models import LABELS

    m = zoo.load_manifest()
    assert {"resnet-18", "resnet-34", "r3d_18", "mc3_18", "r2plus1d_18", "s3d", "mvit_v1_b", "mvit_v2_s",
            "swin3d_t", "swin3d_b"} <= set(m)
    for name, e in m.items():
        if e["format"] == "xclip":  # zero-shot: labels are prompts given at run time, the model a Hub repository
            assert "labels" not in e and e["hub"].startswith("microsoft/xclip-"), name
            continue
        assert (Path(LABELS) / e["labels"]).is_file(), name
        if e["format"] == "torchvision":
            # torchvision names its files <arch>-<first 8 hex of sha256>.pth
            assert e["url"].rsplit("-", 1)[-1] == e["sha256_prefix"] + ".pth", name
        elif e["format"] == "stream":  # a streaming model's state dict, exported on first use
            from actionnet.export.stream import archs

            assert e["arch"] in archs() and e["url"].startswith("https://"), name
        else:
            # jetson-inference's archives: blob names as its models.json gives them (checked above)
            assert e["file"].endswith(".onnx") and e["input_blob"] == "0" and e["output_blob"], name
    assert zoo.find("resnet18", m) == "resnet-18"


# -- resnet-18/34: jetson-inference's archives and their label lists ----------------------------

# data/networks/models.json of dusty-nv/jetson-inference, "action" section
JETSON_ACTION = {
    "resnet-18": {"url": "https://nvidia.box.com/shared/static/rhuvudgijtefzno55092fgwy0xn485n0.gz",
                  "tar": "Action-ResNet18.tar.gz", "dir": "Action-ResNet18",
                  "model": "resnet-18-kinetics-moments.onnx", "labels": "labels.txt", "input": "0", "output": "198"},
    "resnet-34": {"url": "https://nvidia.box.com/shared/static/gr9kgox9zpwh93v0v28f9zjkzr1n4ffs.gz",
                  "tar": "Action-ResNet34.tar.gz", "dir": "Action-ResNet34",
                  "model": "resnet-34-kinetics-moments.onnx", "labels": "labels.txt", "input": "0", "output": "350"},
}


@pytest.mark.parametrize("name", sorted(JETSON_ACTION))
def test_shipped_resnet_entries_match_jetson_inference(name):
    j, e = JETSON_ACTION[name], zoo.load_manifest()[name]
    assert e["url"] == j["url"] and e["archive"] == "tar.gz"
    assert e["file"] == f"{j['dir']}/{j['model']}" and e["archive_labels"] == f"{j['dir']}/{j['labels']}"
    assert (e["input_blob"], e["output_blob"]) == (j["input"], j["output"])
    assert e["labels"] == "kinetics700_moments_1039.txt"


SHIPPED_1039 = "kinetics700_moments_1039.txt"


@pytest.fixture
def action_archive(tmp_path, monkeypatch):
    """``make(archive_lines, shipped)``: an Action-ResNet34-style archive (folder with a tiny
    16x112x112 ONNX, input "0", output "350" of 1039 classes, and a labels.txt of
    ``archive_lines`` lines) as a file:// URL, a manifest naming it with the label list
    ``shipped``, and an empty cache."""
    model = colour_model(tmp_path / "m.onnx", clip_length=16, size=112, output_name="350", classes=1039)
    monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("ACTIONNET_ZOO", str(tmp_path / "zoo.json"))

    def make(archive_lines: int, shipped: str = SHIPPED_1039):
        labels = tmp_path / "archive-labels.txt"
        labels.write_text("".join(f"archive class {i}\n" for i in range(archive_lines)))
        tar = tmp_path / "Action-Fake34.tar.gz"
        with tarfile.open(tar, "w:gz") as t:
            t.add(model, arcname="Action-Fake34/fake-34.onnx")
            t.add(labels, arcname="Action-Fake34/labels.txt")
        (tmp_path / "zoo.json").write_text(json.dumps({"fake34": {
            "format": "onnx", "url": tar.as_uri(), "archive": "tar.gz", "sha256": None,
            "file": "Action-Fake34/fake-34.onnx", "archive_labels": "Action-Fake34/labels.txt", "labels": shipped,
            "input_blob": "0", "output_blob": "350"}}))
        return tmp_path / "cache" / "fake34" / "Action-Fake34"

    return make


def test_archive_labels_that_fit_the_model_are_used(action_archive):
    from actionnet.model import load_action_model

    folder = action_archive(1039)
    log = io.StringIO()
    e = zoo.resolve("fake34", log=log)
    assert Path(e.labels_path) == folder / "labels.txt"
    eng, spec = load_action_model(e.model_path, e.labels_path, e.input_blob, e.output_blob, log=None)
    eng.close()
    assert spec.num_classes == 1039 and spec.labels[0] == "archive class 0" and spec.output_name == "350"
    assert "using" not in log.getvalue()


def test_archive_labels_of_1040_lines_give_way_to_the_shipped_1039(action_archive, synthetic_video):
    """jetson-inference's docs say 1040 classes; the checkpoints have 1039 outputs. The shipped
    list is used, one info line says so, and the run goes through."""
    from actionnet.models import LABELS

    folder = action_archive(1040)
    r = run_cli("--network=fake34", "--skip-frames=0", "--headless", "--threshold=0", "--events=-",
                synthetic_video("red right slow", frames=20))
    assert r.returncode == 0, r.stderr
    info = [line for line in r.stderr.splitlines() if "labels.txt" in line]
    assert len(info) == 1, r.stderr
    assert str(folder / "labels.txt") in info[0] and "1040" in info[0] and "1039" in info[0]
    assert str(Path(LABELS) / SHIPPED_1039) in info[0]
    shipped = (Path(LABELS) / SHIPPED_1039).read_text().splitlines()
    events = [e for e in map(json.loads, r.stdout.splitlines()) if e["event"] == "classification"]
    assert events and all(e["label"] == shipped[e["class_id"]] for e in events)  # not "archive class N"


def test_no_label_list_fits_is_one_line_naming_the_file(action_archive, tmp_path, synthetic_video):
    from actionnet.model import resolve_network

    wrong = tmp_path / "shipped-1000.txt"
    wrong.write_text("".join(f"c{i}\n" for i in range(1000)))
    action_archive(1040, shipped=str(wrong))
    r = run_cli("--network=fake34", "--headless", synthetic_video("red right slow", frames=20), tmp_path / "o.mp4")
    assert r.returncode != 0 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    assert f"fix {wrong}" in line and "1039" in line and "1000" in line and "--labels FILE" in line
    assert not (tmp_path / "o.mp4").exists()
    # the way out the message names: a label file of the user's own wins over both lists
    mine = tmp_path / "mine.txt"
    mine.write_text("".join(f"m{i}\n" for i in range(1039)))
    got = resolve_network("fake34", None, str(mine), None, None, {}, log=io.StringIO())
    assert got[1] == str(mine)


# -- offline messages: what to fetch, and where, for every kind of zoo entry ---------------------

def _offline(name, cache, **kw):
    with pytest.raises(ZooError) as e:
        zoo.resolve(name, cache=str(cache), **kw)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"network {name} is not in the local cache")
    return msg


@pytest.mark.parametrize("name", sorted(zoo.load_manifest()))
def test_offline_message_of_every_shipped_entry(name, tmp_path):
    """An ONNX archive names its model file; weights exported on first use (torchvision, stream)
    go where the zoo looks for them under their own name, never renamed to .onnx; a Hugging Face
    repository names the repository, every file the export loads and their folder."""
    e = zoo.load_manifest()[name]
    folder = tmp_path / name
    msg = _offline(name, tmp_path, download=False)
    onnx_paths = re.findall(r"(?<!\S)(/\S+\.onnx)", msg)
    fmt = e.get("format", "onnx")
    if fmt == "onnx":
        assert e["url"] in msg and onnx_paths == [str(folder / e["file"]), str(folder / e["file"].split("/")[-1])]
    elif fmt in ("torchvision", "stream"):
        weights = folder / e["url"].split("?")[0].rsplit("/", 1)[-1]
        assert e["url"] in msg and f"put it at {weights} " in msg and not onnx_paths, msg
        assert "exported to ONNX on first use" in msg and "actionnet[export]" in msg
    else:
        assert fmt == "xclip"
        from actionnet.export.xclip import HUB_FILES, WEIGHT_FILES

        assert f"Hugging Face repository {e['hub']}" in msg and f"into {folder / 'hf'}" in msg
        assert f"huggingface-cli download {e['hub']} --local-dir {folder / 'hf'}" in msg
        for f in [f for f, _ in HUB_FILES] + list(WEIGHT_FILES):
            assert f in msg, f
        assert not [p for p in onnx_paths if p.startswith(str(folder))], msg


def test_stream_weights_offline_then_put_where_the_message_says(tmp_path, monkeypatch):
    """A download that fails (nothing listens on the port) names the state dict's own path; a
    file put there is exported from, not downloaded again."""
    url = f"http://127.0.0.1:{free_port()}/modelA0_stream_statedict_v3?raw=true"
    (tmp_path / "zoo.json").write_text(json.dumps({"a0": {**zoo.load_manifest()["movinet-a0-stream"], "url": url}}))
    monkeypatch.setenv("ACTIONNET_ZOO", str(tmp_path / "zoo.json"))
    msg = _offline("a0", tmp_path, log=io.StringIO())
    weights = tmp_path / "a0" / "modelA0_stream_statedict_v3"
    assert f"put it at {weights} " in msg and ".onnx" not in msg.split("(set ACTIONNET_HOME")[0]
    weights.write_bytes(b"state dict")
    calls = []

    def export(key, e, w, out, log):
        calls.append(w)
        Path(out).write_bytes(b"onnx")

    monkeypatch.setattr(zoo, "_export_stream", export)
    got = zoo.resolve("a0", cache=str(tmp_path), log=io.StringIO())
    assert calls == [str(weights)] and Path(got.model_path) == tmp_path / "a0" / "a0.onnx"


def test_xclip_offline_names_the_repository_files_and_folder(tmp_path, monkeypatch, synthetic_video):
    """The Hub answers 404 (a local server with nothing in it): one line that names the
    repository, its files and the folder, not one file of it as a "network"."""
    pytest.importorskip("actionnet.export.xclip")
    (tmp_path / "empty").mkdir()
    server = Server(tmp_path / "empty")
    monkeypatch.setenv("ACTIONNET_HF_ENDPOINT", server.url)
    monkeypatch.setenv("ACTIONNET_HOME", str(tmp_path / "cache"))
    try:
        r = run_cli("--network=xclip-base-patch32", "--labels", "a,b", "--headless",
                    synthetic_video("red right slow", frames=12), tmp_path / "o.mp4")
    finally:
        server.stop()
    assert r.returncode != 0 and "Traceback" not in r.stderr
    line = r.stderr.strip().splitlines()[-1]
    hf = tmp_path / "cache" / "xclip-base-patch32" / "hf"
    assert "network xclip-base-patch32 is not in the local cache" in line and "404" in line, line
    assert f"huggingface-cli download microsoft/xclip-base-patch32 --local-dir {hf}" in line
    assert "config.json" in line and "model.safetensors" in line and "pytorch_model.bin" in line
    assert "microsoft/xclip-base-patch32/config.json" not in line and f"{hf}/config.json" not in line
