"""An RTSP server for ``rtsp://@:port/path`` outputs, built on gst-rtsp-server.

FFmpeg (and so PyAV) can push to an RTSP server but cannot be one, and PyGObject does not install
into a plain virtual environment; so the server runs as a small helper under the system Python
that has GStreamer's introspection bindings (Debian/Ubuntu/JetPack: ``apt-get install python3-gi
gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good gstreamer1.0-plugins-bad``). The runtime
encodes H.264 and sends RTP to the helper on loopback; the helper re-payloads it to every RTSP
client (``udpsrc ! rtph264depay ! h264parse ! rtph264pay``), so encoding happens once however
many clients watch. Set ``ACTIONNET_GST_PYTHON`` to pick the interpreter (default /usr/bin/python3).
"""

from __future__ import annotations

import os
import select
import socket
import subprocess
import sys
import tempfile
import time
from typing import Optional

from .errors import MissingLibraryError, OutputError

HELPER = r'''
import signal, sys
import gi
gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer
Gst.init(None)
host, port, path, rtp_port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
server = GstRtspServer.RTSPServer()
server.set_address(host)
server.set_service(port)
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    '( udpsrc port=%d buffer-size=4194304 caps="application/x-rtp,media=video,clock-rate=90000,'
    'encoding-name=H264,payload=96" ! rtph264depay ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )'
    % rtp_port)
factory.set_shared(True)
server.get_mount_points().add_factory(path, factory)
if server.attach(None) == 0:
    print("cannot listen on %s:%s" % (host, port), file=sys.stderr, flush=True)
    sys.exit(3)
loop = GLib.MainLoop()
for sig in (signal.SIGINT, signal.SIGTERM):
    GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
print("ready", flush=True)
loop.run()
'''


def gst_python() -> str:
    return os.environ.get("ACTIONNET_GST_PYTHON", "/usr/bin/python3")


def free_udp_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class RtspServer:
    """gst-rtsp-server on ``host:port`` serving ``path`` from H.264 RTP arriving on ``rtp_port``."""

    def __init__(self, port: int, path: str = "/", host: str = "0.0.0.0", rtp_port: Optional[int] = None,
                 python: Optional[str] = None):
        self.host, self.port = host, port
        self.path = path if path.startswith("/") else "/" + path
        self.rtp_port = rtp_port or free_udp_port()
        self.python = python or gst_python()
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"rtsp://{host}:{self.port}{self.path}"

    def start(self, timeout: float = 10.0) -> "RtspServer":
        if not os.path.exists(self.python):
            raise MissingLibraryError(f"RTSP output needs a Python with GStreamer bindings; {self.python} not found "
                                      "(set ACTIONNET_GST_PYTHON)")
        # The helper's log goes to a file, not a pipe: nobody reads a pipe after "ready", and a
        # full one (64 KiB of GStreamer warnings) would block the helper and freeze the stream.
        self._log = tempfile.TemporaryFile(mode="w+", prefix="actionnet-rtsp-")
        self.proc = subprocess.Popen([self.python, "-c", HELPER, self.host, str(self.port), self.path,
                                      str(self.rtp_port)], stdout=subprocess.PIPE, stderr=self._log, text=True)
        # "ready", or EOF when the helper failed; a helper that hangs (a GStreamer plugin waiting
        # on something) must not hang the run: after ``timeout`` it is killed and reported.
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if line.strip() != "ready":
            if not ready:
                self.proc.kill()
            self.proc.wait(timeout=timeout)
            self.proc.stdout.close()
            self._log.seek(0)
            err = self._log.read().strip().splitlines()
            self._log.close()
            reason = err[-1] if err else (f"exit code {self.proc.returncode}" if ready else
                                          f"the helper did not start within {timeout:g} s")
            self.proc = None
            if "gi" in reason and ("No module" in reason or "Namespace" in reason):
                raise MissingLibraryError(f"RTSP output needs gst-rtsp-server for {self.python}: apt-get install "
                                          f"python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-good "
                                          f"gstreamer1.0-plugins-bad ({reason})")
            raise OutputError(f"cannot serve {self.url}: {reason}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self._log.close()
        self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


def wait_for_port(host: str, port: int, timeout: float = 10.0) -> bool:
    """Whether a TCP listener appears on ``host:port`` within ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex((host, port)) == 0:
                return True
        time.sleep(0.05)
    return False


if __name__ == "__main__":  # pragma: no cover - manual use: python -m actionnet.rtspserve PORT PATH RTP_PORT
    srv = RtspServer(int(sys.argv[1]), sys.argv[2], rtp_port=int(sys.argv[3])).start()
    print(f"serving {srv.url} from RTP on 127.0.0.1:{srv.rtp_port}", file=sys.stderr)
    try:
        srv.proc.wait()
    except KeyboardInterrupt:
        srv.stop()
