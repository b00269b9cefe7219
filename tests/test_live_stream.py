"""Real streams on loopback: a gst-rtsp-server RTSP server started here (tests/rtsp_server.py),
killed and restarted under a running ``actionnet``; RTSP and RTP outputs read back by a client."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from conftest import shared_file, wait_for
from rtsp_server import LoopingRtspServer, free_tcp_port, gst_rtsp_available


@pytest.fixture(scope="module")
def gst_rtsp():
    if not gst_rtsp_available():
        if os.environ.get("CI"):
            pytest.fail("gst-rtsp-server for the system python3 is missing on CI (.ci/run installs it)")
        pytest.skip("gst-rtsp-server (python3-gi, gir1.2-gst-rtsp-server-1.0) not installed")


def read_lines(path):
    """The classification events written so far."""
    try:
        return [e for e in map(json.loads, open(path).read().splitlines()) if e["event"] == "classification"]
    except FileNotFoundError:
        return []



def test_rtsp_source_reconnects_after_the_server_is_killed_and_restarted(gst_rtsp, synthetic_model, tmp_path):
    video = shared_file("videos/people_walking.mp4")
    ev, err = tmp_path / "ev.jsonl", tmp_path / "stderr.txt"
    with LoopingRtspServer(str(video), path="/walk") as srv, open(err, "w") as ef:
        p = subprocess.Popen([sys.executable, "-m", "actionnet.cli", "--model", str(synthetic_model), "--headless",
                              "--skip-frames=0", "--threshold=0", "--reconnect-timeout=60", "--events", str(ev),
                              srv.url], stdout=subprocess.DEVNULL, stderr=ef)
        try:
            wait_for(lambda: len(read_lines(ev)) >= 5, 60, "first classifications", p, err)
            srv.kill()
            wait_for(lambda: "reconnecting" in open(err).read(), 30, "the runtime to notice", p, err)
            time.sleep(1.0)  # a few refused reconnects while the server is down
            before = len(read_lines(ev))
            srv.restart()
            wait_for(lambda: "reconnected to" in open(err).read(), 60, "the reconnect", p, err)
            wait_for(lambda: len(read_lines(ev)) >= before + 5, 60, "classifications after the reconnect", p, err)
        finally:
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
            rc = p.wait(timeout=60)
    stderr = open(err).read()
    assert rc == 0, stderr
    assert "stopped:" in stderr and "Traceback" not in stderr
    events = read_lines(ev)
    frames = [e["frame"] for e in events]
    assert frames == sorted(frames) and len(set(frames)) == len(frames)
    assert all(e["label"] for e in events)
    # after the reconnect the window refills: a gap of at least T-1 frames between two events
    assert any(b - a >= 7 for a, b in zip(frames, frames[1:])), frames


def _feed(sink, frames, stop, fps=20.0):
    i = 0
    while not stop.is_set():
        sink.write(frames[i % len(frames)])
        i += 1
        time.sleep(1.0 / fps)


def _frames(n=20):
    """A smooth gradient with a bright square moving across: distinct frames H.264 keeps well."""
    y, x = np.mgrid[0:120, 0:160]
    base = np.stack([x * 255 // 160, y * 255 // 120, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    out = []
    for i in range(n):
        f = base.copy()
        f[40:80, 6 * i:6 * i + 40] = 255
        out.append(f)
    return out


def _read(uri, n, timeout=20.0):
    from actionnet.sources import SourceOptions, open_source

    src = open_source(uri, SourceOptions(timeout=timeout))
    got = []
    try:
        for frame, t in src:
            got.append(frame)
            if len(got) == n:
                break
    finally:
        src.close()
    return got


def test_rtsp_output_serves_the_frames(gst_rtsp):
    from actionnet.outputs import RtspSink, open_output

    port = free_tcp_port()
    sink = open_output(f"rtsp://127.0.0.1:{port}/actions", fps=20.0, log=open(os.devnull, "w"))
    assert isinstance(sink, RtspSink)
    stop = threading.Event()
    frames = _frames()
    t = threading.Thread(target=_feed, args=(sink, frames, stop), daemon=True)
    t.start()
    try:
        got = _read(f"rtsp://127.0.0.1:{port}/actions", 10)
    finally:
        stop.set()
        t.join(timeout=5)
        sink.close()
    assert len(got) == 10 and got[0].shape == (120, 160, 3)
    # H.264 at speed presets is lossy: each frame read back is close to one of the frames sent
    errs = [min(np.abs(g.astype(int) - f.astype(int)).mean() for f in frames) for g in got]
    assert max(errs) < 8, errs
    assert sink.server.proc is None  # the server process is gone after close


def test_rtp_output_to_rtp_source_on_loopback():
    from actionnet.outputs import RtpSink
    from actionnet.rtspserve import free_udp_port

    port = free_udp_port()
    sink = RtpSink("127.0.0.1", port, 20.0, sdp_file=False)
    stop = threading.Event()
    frames = _frames()
    t = threading.Thread(target=_feed, args=(sink, frames, stop), daemon=True)
    t.start()
    try:
        got = _read(f"rtp://@:{port}", 10)
    finally:
        stop.set()
        t.join(timeout=5)
        sink.close()
    assert len(got) == 10 and got[0].shape == (120, 160, 3)
    errs = [min(np.abs(g.astype(int) - f.astype(int)).mean() for f in frames) for g in got]
    assert max(errs) < 8, errs
