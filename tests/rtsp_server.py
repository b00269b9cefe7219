"""A real RTSP server on loopback for tests: gst-rtsp-server fed with a video, looped at its pace.

The server is :class:`actionnet.rtspserve.RtspServer` (gst-rtsp-server under the system Python
with python3-gi, installed by ``.ci/run``); a feeder thread here decodes the first frames of a
video once and sends them, looped, as H.264 RTP to the server's loopback port at the video's
frame rate. :meth:`kill` kills the server process (SIGKILL, as a crash) while the feeder keeps
sending; :meth:`restart` brings a new server up on the same port.
"""

from __future__ import annotations

import threading
import time

from actionnet.outputs import RtpSink
from actionnet.rtspserve import RtspServer, free_udp_port, wait_for_port


def gst_rtsp_available() -> bool:
    import subprocess

    from actionnet.rtspserve import gst_python

    code = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    try:
        return subprocess.run([gst_python(), "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_tcp_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LoopingRtspServer:
    def __init__(self, video: str, path: str = "/test", max_frames: int = 60, fps: float = None):
        import av

        with av.open(video) as c:
            s = c.streams.video[0]
            self.fps = fps or float(s.average_rate or 25)
            self.frames = []
            for f in c.decode(s):
                self.frames.append(f.to_ndarray(format="bgr24"))
                if len(self.frames) >= max_frames:
                    break
        self.port = free_tcp_port()
        self.path = path
        self.rtp_port = free_udp_port()
        self.server = None
        self.sent = 0
        self._stop = threading.Event()
        self._thread = None

    @property
    def url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}{self.path}"

    def start(self) -> "LoopingRtspServer":
        self._start_server()
        self._thread = threading.Thread(target=self._feed, daemon=True)
        self._thread.start()
        return self

    def _start_server(self):
        self.server = RtspServer(self.port, self.path, host="127.0.0.1", rtp_port=self.rtp_port).start()
        assert wait_for_port("127.0.0.1", self.port), "RTSP server did not listen"

    def _feed(self):
        sink = RtpSink("127.0.0.1", self.rtp_port, self.fps, sdp_file=False)
        period = 1.0 / self.fps
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                sink.write(self.frames[self.sent % len(self.frames)].copy())
                self.sent += 1
                next_t += period
                delay = next_t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        finally:
            sink.close()

    def kill(self):
        """Kill the server as a crash would (SIGKILL); the feeder keeps sending into the void."""
        self.server.proc.kill()
        self.server.proc.wait()
        self.server.stop()

    def restart(self):
        self._start_server()

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.server is not None:
            self.server.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
