"""The model zoo: manifest -> cache -> download from a loopback HTTP server -> offline message."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
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
            assert e["file"].endswith(".onnx") and e["input_blob"] == "0" and e["output_blob"] == "198"
    assert zoo.find("resnet18", m) == "resnet-18"
