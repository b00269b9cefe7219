"""``webrtc://`` outputs: the URI, the missing extra, and a real run watched in headless Chromium.

The browser tests run ``actionnet VIDEO webrtc://127.0.0.1:PORT/output`` on a synthetic clip
played live and looped (``--live --input-loop -1``, so the run lasts as long as the tests) and
open its page in Debian's ``chromium`` driven by selenium through the system ``chromedriver``
(no browser downloads). They skip where Chromium is missing and fail there on CI.
``ACTIONNET_UPDATE_DOCS=1`` also saves the page as the README's picture, docs/webrtc.png.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from actionnet.errors import MissingLibraryError, UsageError
from actionnet.web import parse_webrtc_uri
from conftest import wait_for

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROME_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage", "--window-size=1000,900"]
TOKEN = "s3cret"
W, H = 640, 480


@pytest.mark.parametrize("uri,host,port,name,token", [
    ("webrtc://@:8554/output", None, 8554, "output", None),
    ("webrtc://:8554", None, 8554, "", None),
    ("webrtc://127.0.0.1:9000/door?token=abc", "127.0.0.1", 9000, "door", "abc"),
    ("webrtc://[::1]:9000/x", "::1", 9000, "x", None),
])
def test_webrtc_uris(uri, host, port, name, token):
    a = parse_webrtc_uri(uri)
    assert (a.host, a.port, a.name, a.token) == (host, port, name, token)


@pytest.mark.parametrize("uri,message", [
    ("webrtc://@/output", "expected webrtc://ADDRESS:PORT/NAME"),
    ("webrtc://@:70000/output", "out of range"),
    ("webrtc://@:8554/a/b", "may hold letters"),
    ("webrtc://@:8554/x?tok=1", "unknown option 'tok'"),
    ("webrtc://@:8554/x?token=", "token is empty"),
    ("webrtc://@:8554/cameras.json", "is the server's own"),
])
def test_bad_webrtc_uris_are_one_line(uri, message):
    with pytest.raises(UsageError, match=message):
        parse_webrtc_uri(uri)


def test_the_flag_wins_over_the_token_in_the_uri():
    assert parse_webrtc_uri("webrtc://@:1/x?token=a", token="b").token == "b"


def test_without_the_extra_the_uri_names_it(monkeypatch, synthetic_video, tmp_path, capsys):
    from actionnet.cli import main

    monkeypatch.setitem(sys.modules, "aiortc", None)  # import aiortc now raises ImportError
    with pytest.raises(MissingLibraryError, match=r"pip install 'actionnet\[web\]'"):
        from actionnet.web import require_web

        require_web()
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")  # never read: the output is refused before the model loads
    assert main(["--model", str(model), str(synthetic_video("red right slow")), "webrtc://127.0.0.1:1/x"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["actionnet: error: webrtc:// outputs need aiortc and aiohttp (aiortc is missing): "
                   "pip install 'actionnet[web]'"]


def test_lean_runtime_refuses_webrtc_in_one_line(lean_python, synthetic_video, tmp_path):
    """The runtime without the [web] extra (the lean environment) imports and says what to install."""
    model = tmp_path / "m.onnx"
    model.write_bytes(b"x")
    video = synthetic_video("red right slow")
    r = subprocess.run([lean_python, "-m", "actionnet.cli", "--model", str(model), str(video), "webrtc://127.0.0.1:1/x"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "pip install 'actionnet[web]'" in r.stderr, r.stderr


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path, synthetic_video):
    import socket

    _need_web()
    from conftest import run_cli

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        model = tmp_path / "m.onnx"
        model.write_bytes(b"not a model")  # the port is refused first: this file is never read
        r = run_cli("--model", model, synthetic_video("red right slow"), f"webrtc://127.0.0.1:{port}/x")
    assert r.returncode == 2
    assert r.stderr.strip() == f"actionnet: error: cannot serve webrtc://127.0.0.1:{port}/x: port {port} is in use " \
                               "(choose another port)"


# -- the server with aiortc clients (no browser) ------------------------------------------------

def _need_web():
    """The [web] extra (in [dev]): skipped without it, a failure on CI."""
    try:
        import aiohttp  # noqa: F401
        import aiortc  # noqa: F401
    except ImportError as e:
        if os.environ.get("CI"):
            pytest.fail(f"{e.name} is missing: pip install -e '.[dev]'")
        pytest.skip(f"{e.name} is missing: pip install -e '.[web]'")


class Feeder:
    """Frames into a WebOutput at ``fps`` on a thread, as the run loop would write them; each
    write() made while someone watches is timed."""

    def __init__(self, out, size=(H, W), fps=30.0):
        self.out, self.size, self.fps = out, size, fps
        self.write_s: list = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def _run(self):
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (*self.size, 3), dtype=np.uint8)
        i = 0
        while not self._stop.is_set():
            frame = np.roll(base, i, axis=1)  # a new array each frame, as sources hand out
            watched = bool(self.out.viewers)
            t0 = time.perf_counter()
            self.out.write(frame)
            if watched:
                self.write_s.append(time.perf_counter() - t0)
            i += 4
            self._stop.wait(1.0 / self.fps)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)


async def watch(base: str, codecs=("H264",), frames=10, timeout=30.0):
    """An aiortc viewer: offer (only ``codecs``), answer, and the sizes of the first decoded frames."""
    import asyncio

    import aiohttp
    from aiortc import (
        RTCConfiguration,
        RTCPeerConnection,
        RTCRtpReceiver,
        RTCSessionDescription,
    )

    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    t = pc.addTransceiver("video", direction="recvonly")
    t.setCodecPreferences([c for c in RTCRtpReceiver.getCapabilities("video").codecs
                           if c.mimeType.split("/")[1] in codecs])
    got = asyncio.get_running_loop().create_future()
    sizes = []

    @pc.on("track")
    def on_track(track):
        async def read():
            try:
                while len(sizes) < frames:
                    f = await track.recv()
                    sizes.append((f.width, f.height))
                got.set_result(sizes)
            except Exception as e:  # noqa: BLE001
                if not got.done():
                    got.set_exception(e)

        asyncio.ensure_future(read())

    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{base}/offer", json={"sdp": pc.localDescription.sdp, "type": "offer"}) as r:
            assert r.status == 200, await r.text()
            answer = await r.json()
    await pc.setRemoteDescription(RTCSessionDescription(**answer))
    try:
        return await asyncio.wait_for(got, timeout), answer["sdp"]
    finally:
        await pc.close()


def test_vp8_for_a_browser_without_h264_and_one_encoder_per_codec():
    import asyncio

    _need_web()
    from actionnet.web import WebOutput

    port = free_port()
    out = WebOutput(f"webrtc://127.0.0.1:{port}/x", 30, log=None)
    try:
        with Feeder(out):
            async def both():
                return await asyncio.gather(watch(f"http://127.0.0.1:{port}", ("VP8",)),
                                            watch(f"http://127.0.0.1:{port}", ("H264",)),
                                            watch(f"http://127.0.0.1:{port}", ("H264",)))

            (vp8, sdp8), (h264, sdp264), (h264b, _) = asyncio.run(both())
        assert "VP8/90000" in sdp8 and "H264" not in sdp8
        assert "H264/90000" in sdp264 and "VP8" not in sdp264
        assert vp8 == h264 == h264b == [(W, H)] * 10
        # two H.264 viewers, one VP8 viewer: each frame encoded once per codec, not per viewer
        frames_handed = out._number
        assert out.stats.encoded <= 2 * frames_handed + 2, (out.stats.encoded, frames_handed)
        deadline = time.monotonic() + 10
        while (out.viewers or out._encoders) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.viewers == 0 and not out._encoders  # viewers gone: encoders freed
    finally:
        out.close()


def test_write_hands_over_and_never_encodes_on_the_runs_thread():
    """1080p with a viewer attached: an encode is milliseconds, the hand-over microseconds."""
    import asyncio

    _need_web()
    from actionnet.web import WebOutput

    port = free_port()
    out = WebOutput(f"webrtc://127.0.0.1:{port}/x", 15, log=None)
    try:
        with Feeder(out, size=(1080, 1920), fps=15) as feed:
            (sizes, _) = asyncio.run(watch(f"http://127.0.0.1:{port}", frames=20))
        assert sizes[0] == (1920, 1080)
        assert out.stats.encoded >= 20 and np.median(out.stats.encode_ms) > 1.0  # encoding did happen, off-thread
        assert len(feed.write_s) >= 10 and np.median(feed.write_s) < 0.0005, np.median(feed.write_s)
    finally:
        t0 = time.monotonic()
        out.close()
        out.events.close()
        assert time.monotonic() - t0 < 5


# -- several outputs on one port: one server, a page each, the index at / -----------------------

def _get(url):
    """GET ``url``: (status, body)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def cameras(base, token=None) -> dict:
    """The index's data (``/cameras.json``): name -> that page's entry, in the order listed."""
    status, body = _get(f"{base}/cameras.json" + (f"?token={token}" if token else ""))
    assert status == 200, body
    return {c["name"]: c for c in json.loads(body)}


def classification(label, frame=7):
    return {"frame": frame, "time": frame / 30, "label": label, "class_id": 0, "confidence": 0.9,
            "topk": [{"label": label, "confidence": 0.9}], "event": "classification", "reported_label": label}


def close(*outs):
    """As the run closes them: the output, then its events."""
    for o in outs:
        o.close()
        o.events.close()


@pytest.fixture
def two_pages():
    """``door`` and ``hall``, two outputs on one free loopback port; the base URL and both."""
    _need_web()
    from actionnet.web import WebOutput

    port = free_port()
    door = WebOutput(f"webrtc://127.0.0.1:{port}/door", 30, log=None)
    try:
        hall = WebOutput(f"webrtc://127.0.0.1:{port}/hall", 30, log=None)  # joins door's server
    except BaseException:
        close(door)
        raise
    yield f"http://127.0.0.1:{port}", door, hall
    close(door, hall)


def test_outputs_on_one_port_share_its_server_each_with_its_page_listed_at_the_root(two_pages):
    import asyncio

    base, door, hall = two_pages
    assert door._server.host is hall._server.host  # one server, one listening socket
    for name in ("door", "hall"):
        status, html = _get(f"{base}/{name}")
        assert status == 200 and f'"path": "{name}"' in html and '"index": true' in html  # its page, a link to /
    assert _get(f"{base}/porch")[0] == 404
    assert _status(f"{base}/offer", b"{}") == 404  # which page's? /NAME/offer says
    status, html = _get(f"{base}/")
    assert status == 200 and "cameras.json" in html and "<video" not in html  # the index, not a page
    listed = cameras(base)
    assert list(listed) == ["door", "hall"]
    assert all(c["labels"] == [] and not c["protected"] and not c["ended"] for c in listed.values())

    door.events.write(classification("waving"))  # the labels of door's run: door's entry, door's feed
    listed = cameras(base)
    assert [(x["lane"], x["label"]) for x in listed["door"]["labels"]] == [("scene", "waving")]
    assert listed["hall"]["labels"] == []
    wait_for(lambda: door._server.history, 5, "door's page to take its event")
    assert not hall._server.history

    with Feeder(door, size=(120, 160)):  # door's video on door's page; hall encodes nothing
        sizes, _ = asyncio.run(watch(f"{base}/door", frames=3))
        assert sizes == [(160, 120)] * 3
        assert hall.viewers == 0 and not hall._encoders


def test_closing_one_output_keeps_the_other_served_and_the_last_frees_the_port(two_pages):
    from actionnet import web

    base, door, hall = two_pages
    port = int(base.rsplit(":", 1)[1])
    close(door)
    assert _get(f"{base}/door")[0] == 404
    assert _get(f"{base}/hall")[0] == 200
    assert list(cameras(base)) == ["hall"]
    status, html = _get(f"{base}/")
    assert status == 200 and '"path": "hall"' in html  # one page left: / is its page again
    close(hall)
    assert ("127.0.0.1", port) not in web._HOSTS
    with socket.socket() as s:  # nothing listens there any more (the server set SO_REUSEADDR too)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        s.listen(1)


def test_pages_on_one_port_need_names_of_their_own(two_pages):
    from actionnet.web import WebOutput, check_web_output

    base, door, hall = two_pages
    port = int(base.rsplit(":", 1)[1])
    with pytest.raises(UsageError, match=f"port {port} serves page /door already"):
        WebOutput(f"webrtc://127.0.0.1:{port}/door", 30, log=None)
    with pytest.raises(UsageError, match="pages that share a port each need a name"):
        WebOutput(f"webrtc://127.0.0.1:{port}", 30, log=None)
    with pytest.raises(UsageError, match="serves page /hall already"):  # a config's check, before the model loads
        check_web_output(f"webrtc://127.0.0.1:{port}/hall")
    assert check_web_output(f"webrtc://127.0.0.1:{port}/porch").port == port  # a new name joins: not "in use"
    assert list(cameras(base)) == ["door", "hall"] and _get(f"{base}/door")[0] == 200  # the refused changed nothing


def test_the_index_shows_a_guarded_pages_labels_only_with_its_token():
    _need_web()
    from actionnet.web import WebOutput

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    door = WebOutput(f"webrtc://127.0.0.1:{port}/door", 30, token=TOKEN, log=None)
    hall = WebOutput(f"webrtc://127.0.0.1:{port}/hall", 30, log=None)
    try:
        door.events.write(classification("waving"))
        hall.events.write(classification("sitting"))
        assert _get(f"{base}/door")[0] == 401 and _get(f"{base}/door?token={TOKEN}")[0] == 200
        assert _get(f"{base}/hall")[0] == 200
        assert _get(f"{base}/")[0] == 200  # the index needs no token, and holds nothing guarded without it
        for token in (None, "wrong"):
            status, body = _get(f"{base}/cameras.json" + (f"?token={token}" if token else ""))
            assert status == 200 and "waving" not in body, body
            listed = {c["name"]: c for c in json.loads(body)}
            assert listed["door"]["protected"] and listed["door"]["labels"] is None
            assert [x["label"] for x in listed["hall"]["labels"]] == ["sitting"]
        assert [x["label"] for x in cameras(base, TOKEN)["door"]["labels"]] == ["waving"]
    finally:
        close(door, hall)


# -- a real run in a real browser ---------------------------------------------------------------

def _need_chromium():
    _need_web()
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        msg = f"needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)


def chrome(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    o = webdriver.ChromeOptions()
    o.binary_location = CHROMIUM
    for a in CHROME_ARGS + [f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}"]:
        o.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def long_clip(folder: Path) -> Path:
    """Four one-second sweeps, each another action (4 s at 30 fps), 640x480: the run plays it
    live, looped, so the label changes every second."""
    from actionnet.export.synthetic import video_frames, write_video

    path = folder / "sweeps.mp4"
    if not path.exists():
        labels = ("red right slow", "blue left slow", "red left slow", "blue right slow")
        write_video(str(path), [f for label in labels for f in video_frames(label, 30, 0.8, width=W, height=H)])
    return path


class Run:
    """``actionnet VIDEO webrtc://127.0.0.1:PORT/output`` in a subprocess, stderr collected."""

    def __init__(self, model, video, folder: Path, *flags):
        self.port = free_port()
        self.events = folder / "ev.jsonl"
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [sys.executable, "-m", "actionnet.cli", "--model", str(model), "--skip-frames=0", "--live",
               "--input-loop=-1", "--no-progress", "--events", str(self.events), *flags, str(video),
               f"webrtc://127.0.0.1:{self.port}/output"]
        self.proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
        self.err: list = []
        self._reader = threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True)
        self._reader.start()
        deadline = time.monotonic() + 120
        while not any("serving http://" in line for line in self.err):
            assert self.proc.poll() is None, "".join(self.err)
            assert time.monotonic() < deadline, "".join(self.err)
            time.sleep(0.1)

    def stop(self, timeout=20.0) -> float:
        """SIGTERM, as systemd stops a service; the seconds it took to exit."""
        t0 = time.monotonic()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout)
        self._reader.join(5)
        return time.monotonic() - t0

    def classifications(self):
        out = []
        for line in self.events.read_text().splitlines():
            e = json.loads(line)
            if e.get("event") == "classification":
                out.append(e)
        return out


@pytest.fixture(scope="module")
def run(synthetic_model, tmp_path_factory):
    _need_chromium()
    folder = tmp_path_factory.mktemp("web")
    r = Run(synthetic_model, long_clip(folder), folder, f"--web-token={TOKEN}")
    yield r
    r.stop()


def page(run, token=TOKEN):
    return f"{run.base}/output" + (f"?token={token}" if token else "")


def wait_playing(d, timeout=30.0):
    """Wait until the video has the stream's size and its clock has moved; its currentTime."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        w, t = d.execute_script("const v = document.getElementById('video'); return [v.videoWidth, v.currentTime];")
        if w and t > 0.2:
            return t
        time.sleep(0.2)
    status = d.execute_script("return document.getElementById('status').textContent")
    raise AssertionError(f"video did not play; the page says: {status}")


def advances(d, seconds=1.5) -> bool:
    t0 = d.execute_script("return document.getElementById('video').currentTime")
    time.sleep(seconds)
    return d.execute_script("return document.getElementById('video').currentTime") > t0 + 0.5 * seconds


def video_pixels(d) -> np.ndarray:
    """The frame the <video> shows, drawn to a canvas: H x W x RGB."""
    data = d.execute_script("""
        const v = document.getElementById('video'), c = document.createElement('canvas');
        c.width = v.videoWidth; c.height = v.videoHeight;
        const g = c.getContext('2d'); g.drawImage(v, 0, 0);
        return [c.width, c.height, Array.from(g.getImageData(0, 0, c.width, c.height).data)];""")
    w, h, px = data
    return np.array(px, np.uint8).reshape(h, w, 4)[..., :3]


def banner_widths(events) -> set:
    """Right edges of the first overlay line for every label text the run produced (overlay.py)."""
    import cv2

    from actionnet.overlay import Overlay

    scale = max(0.4, min(H, W) / 720.0)
    thick = max(1, int(round(scale * 2)))
    widths = set()
    for e in events:
        text = f"{e['label']} {e['confidence'] * 100:.1f}%" if e["label"] else None
        if text:
            (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
            widths.add(tw + 2 * max(2, th // 3))
    assert widths and Overlay().scale is None  # the overlay sizes itself from the frame, as computed here
    return widths


def test_page_plays_the_annotated_video_and_labels_match_the_events(run, tmp_path):
    d = chrome(tmp_path)
    try:
        d.get(page(run))
        wait_playing(d)
        assert d.execute_script("return document.getElementById('video').videoWidth") == W
        assert d.execute_script("return document.getElementById('video').videoHeight") == H
        assert advances(d)

        # the overlay's banner: black box at the top left, green text, its right edge where
        # overlay.py puts it for one of the run's label texts; the synthetic background beside it
        rgb = video_pixels(d).astype(int)
        row = rgb[4]
        dark = np.where(row.max(axis=1) < 35)[0]
        assert dark.size and dark[0] <= 2, row[:8]
        edge = int(dark.max())
        assert np.abs(rgb[2:10, edge + 6:W - 4] - 70).max() < 30  # grey background right of the banner
        green = (rgb[:12, :edge, 1] > 120) & (rgb[:12, :edge, 0] < 100) & (rgb[:12, :edge, 2] < 100)
        assert green.sum() > 20, "no green text in the banner"
        assert min(abs(edge - w) for w in banner_widths(run.classifications())) <= 3, edge

        # the label panel: the label the events file holds for the frame the panel names
        row = None
        deadline = time.monotonic() + 15
        while row is None and time.monotonic() < deadline:
            row = d.execute_script("const r = document.querySelector('#now [data-lane=scene]');"
                                   "return r && r.dataset.frame ? [r.dataset.frame, r.dataset.label, "
                                   "r.querySelector('.label').textContent] : null;")
            time.sleep(0.2)
        assert row is not None, "the label panel stayed empty"
        frame, label, shown = int(row[0]), row[1], row[2]
        deadline = time.monotonic() + 10
        match = []
        while not match and time.monotonic() < deadline:  # the events file is flushed once a second
            match = [e for e in run.classifications() if e["frame"] == frame]
            time.sleep(0.3)
        assert match, f"frame {frame} is not in the events file"
        assert (match[0]["reported_label"] or "") == label
        assert shown == (label or "\u2014")  # what the panel shows
        # segments and the timeline: drawn from the same events
        assert d.find_elements("css selector", "#segments tbody tr")
        canvas = d.execute_script("const c = document.getElementById('timeline');"
                                  "return Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)")
        assert len(set(canvas)) > 10  # lanes, bars and axis, not a blank canvas
        d.save_screenshot(str(tmp_path / "page.png"))
        if os.environ.get("ACTIONNET_UPDATE_DOCS"):  # the README's picture: docs/webrtc.png
            d.save_screenshot(str(Path(__file__).resolve().parents[1] / "docs" / "webrtc.png"))

        # a viewer who reloads picks the stream up again
        d.refresh()
        wait_playing(d)
        assert advances(d)
    finally:
        d.quit()


def test_two_viewers_play_and_one_leaving_leaves_the_other_playing(run, tmp_path):
    a, b = chrome(tmp_path), chrome(tmp_path)
    try:
        a.get(page(run))
        b.get(page(run))
        wait_playing(a)
        wait_playing(b)
        assert advances(a) and advances(b)
        a.quit()
        a = None
        time.sleep(1.0)
        assert advances(b, 2.0)
        assert b.execute_script("return document.getElementById('status').className") == "live"
    finally:
        for d in (a, b):
            if d is not None:
                d.quit()


def _status(url, data=None):
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_a_wrong_token_gets_401_and_no_video(run, tmp_path):
    offer = json.dumps({"sdp": "v=0", "type": "offer"}).encode()
    for token in (None, "wrong"):
        q = f"?token={token}" if token else ""
        assert _status(f"{run.base}/output{q}") == 401
        assert _status(f"{run.base}/{q}") == 401
        assert _status(f"{run.base}/offer{q}", offer) == 401
        assert _status(f"{run.base}/events{q}") == 401
    assert _status(page(run)) == 200
    d = chrome(tmp_path)
    try:
        d.get(page(run, "wrong"))
        time.sleep(2)
        assert d.find_elements("css selector", "video") == []
        assert "401" in d.find_element("tag name", "body").text
    finally:
        d.quit()


def test_sigterm_with_a_viewer_closes_the_connection_and_finalises(synthetic_model, tmp_path):
    _need_chromium()
    r = Run(synthetic_model, long_clip(tmp_path), tmp_path)
    d = chrome(tmp_path)
    try:
        d.get(f"{r.base}/output")
        wait_playing(d)
        took = r.stop()
        assert r.proc.returncode == 0, "".join(r.err)
        assert took < 10, f"SIGTERM took {took:.1f} s with a viewer attached"
        err = "".join(r.err)
        assert "actionnet: webrtc: 1 viewer connection, " in err, err
        assert json.loads(r.events.read_text().splitlines()[-1])["event"] == "summary"
        deadline = time.monotonic() + 15  # the run's summary reached the page before the server stopped
        while time.monotonic() < deadline and d.execute_script(
                "return document.getElementById('status').className") != "ended":
            time.sleep(0.2)
        assert d.execute_script("return document.getElementById('status').textContent").startswith("run ended")
    finally:
        d.quit()
        if r.proc.poll() is None:
            r.proc.kill()


def test_the_index_in_a_browser_lists_the_cameras_with_labels_and_links_to_their_pages(two_pages, tmp_path):
    _need_chromium()
    base, door, hall = two_pages
    door.events.write(classification("waving"))

    def shown(camera):
        return d.execute_script(f"const r = document.querySelector('[data-camera={camera}]');"
                                "return r ? r.innerText : null;")

    d = chrome(tmp_path)
    try:
        with Feeder(door, size=(240, 320)):
            d.get(f"{base}/")
            wait_for(lambda: "waving" in (shown("door") or ""), 15, "door's label on the index")
            assert "waiting for the first classification" in shown("hall")
            hall.events.write(classification("sitting"))  # live: the index asks once a second
            wait_for(lambda: "sitting" in (shown("hall") or ""), 5, "hall's new label on the index")
            assert "sitting" not in shown("door")
            d.find_element("css selector", "[data-camera=door] a").click()
            wait_playing(d)  # door's page, its video and events from the shared server
            assert d.current_url == f"{base}/door"
            assert d.execute_script("return document.getElementById('video').videoWidth") == 320
            wait_for(lambda: d.execute_script("const r = document.querySelector('#now [data-lane=scene]');"
                                              "return r && r.dataset.label") == "waving", 10, "door's label on its page")
            assert d.find_element("id", "index").get_attribute("href") == f"{base}/"
    finally:
        d.quit()
