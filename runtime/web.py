"""``webrtc://ADDRESS:PORT/NAME``: the annotated video and the live labels in a browser.

A small aiohttp server on PORT serves the output's page (``web.html``) at ``/NAME``, the WebRTC
signalling (``POST NAME/offer``: the browser's offer in, the answer out, no trickle ICE) and the
run's events as Server-Sent Events (``GET NAME/events``), the same JSON objects ``--events``
writes. ``@`` binds every interface; ``127.0.0.1`` keeps the page on this machine. A token
(``--web-token``, or ``?token=`` in the URI) makes all three refuse requests without it (401).

Several outputs of one process on one address (the cameras of a site file) share one server: the
first binds the port, the others add their pages under their own names, the last one closed
frees it. While a port has one page, ``/`` (and ``/offer``, ``/events``) are that page's, as for
a single camera; with several, ``/`` is an index of them all: each page's name, its link and its
current labels (``/cameras.json``), so one address shows every camera. A page's token guards its
labels there too: the index lists every page's name, but shows a guarded page's labels (and
links it with the token) only when the index is opened with that token (``/?token=TOKEN``); the
index itself needs none, as it holds nothing else. The index shows labels, not videos: a video
tile per camera would keep every camera's encoder busy for one glance at the list, where a
camera's own page is one click away.

Why these choices:

- **aiortc + aiohttp**, not GStreamer's webrtcbin: pip wheels on x86 and ARM64 alike, no system
  GStreamer plugins to match (JetPack's lack webrtcbin's nice/srtp dependencies), and the
  encoding stays in PyAV, which the runtime already has.
- **One encoder per codec, shared by every viewer.** aiortc encodes per sender (each viewer would
  cost a libx264 instance and a full encode per frame); here an encoder thread encodes each
  frame once and every viewer's track hands the same packets to its sender
  (``Encoder.pack``), so a viewer costs packetising and SRTP only. H.264 (libx264, ultrafast,
  zerolatency, constrained baseline: what every browser decodes, phones in hardware) when the
  browser offers it, VP8 (libvpx) otherwise.
- **The run never waits for a viewer.** ``write()`` stores a reference to the newest frame and
  returns (the caller must not draw on a frame after writing it; the run loop never does); with
  nobody watching it returns at once. Frames are encoded at most at the stream's frame rate (a
  file read faster than real time is shown sampled, not encoded 800 times a second), the encoder
  takes only the newest frame and runs at a lower CPU priority (a busy device gives its viewers
  fewer, later frames, not the run fewer), and a viewer whose queue backs up loses its queued
  frames and waits for the next keyframe, which is asked for at once: a slow or stalled viewer
  costs frames, never the run or the other viewers. A page that is closed closes its connection
  (``pagehide``), so its encoder stops at once, not after the 30 s a vanished peer takes.
- **The server has its own thread and asyncio loop**; ``close()`` closes every connection and
  returns within a few seconds even with viewers attached.

Late viewers get a keyframe at once and the recent events (every segment, the last few thousand
other events) so their timeline starts filled.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import hmac
import json
import os
import re
import socket
import statistics
import sys
import threading
import time
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Optional
from urllib.parse import parse_qs

import numpy as np

from .errors import MissingLibraryError, OutputError, UsageError
from .outputs import Events, Output

PAGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web.html")
EXTRA = "pip install 'actionnet[web]'"
TIME_BASE = Fraction(1, 90000)  # RTP's video clock
QUEUE = 30  # frames a viewer may fall behind before its queue is dropped and it waits for a keyframe
HISTORY = 3000  # events (other than segments) replayed to a new page; segments: SEGMENTS
SEGMENTS = 2000
LANES = 32  # lanes (the scene, tracks) whose current label the index shows per page
_NAME = re.compile(r"[A-Za-z0-9._-]+")
RESERVED = ("offer", "events", "cameras.json")  # paths at / that a page's name would hide
ENCODER_NICE = 10  # the encoder thread's niceness: see _lower_priority


@dataclass
class WebAddress:
    host: Optional[str]  # None: every interface
    port: int
    name: str  # "" for a page at / only
    token: Optional[str] = None

    def urls(self) -> list:
        """Where a browser finds the page: for ``@`` this machine's addresses, which a headless
        device's user would otherwise have to look up."""
        hosts = [self.host] if self.host is not None else _addresses() or [socket.gethostname()]
        return [f"http://{f'[{h}]' if ':' in h else h}:{self.port}/{self.name}" for h in hosts]


def _addresses() -> list:
    """IPv4 addresses of this machine's interfaces, loopback last (ifaddr comes with aiortc)."""
    try:
        import ifaddr
    except ImportError:
        return []
    ips = [ip.ip for a in ifaddr.get_adapters() for ip in a.ips if isinstance(ip.ip, str)]
    return sorted(set(ips), key=lambda ip: (ip.startswith("127."), ip))[:4]


def parse_webrtc_uri(uri: str, token: Optional[str] = None) -> WebAddress:
    """``webrtc://@:8554/output`` -> every interface, port 8554, page name ``output``; a
    ``?token=`` in the URI is the token unless ``token`` (``--web-token``) is given."""
    m = re.fullmatch(r"webrtc://(@|\[[0-9A-Fa-f:.]+\]|[^:/?@\[\]]*)?:(\d+)(?:/([^?]*))?(?:\?(.*))?", uri)
    if not m:
        raise UsageError(f"{uri}: expected webrtc://ADDRESS:PORT/NAME, as in webrtc://@:8554/output "
                         "(@ for every interface, 127.0.0.1 for this machine only)")
    host = m.group(1) or "@"
    port = int(m.group(2))
    if not 0 < port < 65536:
        raise UsageError(f"{uri}: port {port} is out of range (1-65535)")
    name = (m.group(3) or "").strip("/")
    if name and not _NAME.fullmatch(name):
        raise UsageError(f"{uri}: the page name {name!r} may hold letters, digits, '.', '_' and '-' only")
    if name in RESERVED:
        raise UsageError(f"{uri}: /{name} is the server's own (choose another page name)")
    query = parse_qs(m.group(4) or "", keep_blank_values=True)
    unknown = sorted(set(query) - {"token"})
    if unknown:
        raise UsageError(f"{uri}: unknown option {unknown[0]!r} (the only one is ?token=)")
    if token is None and "token" in query:
        token = query["token"][-1]
    if token == "":
        raise UsageError(f"{uri}: the web token is empty")
    return WebAddress(None if host == "@" else host.strip("[]"), port, name, token)


def require_web() -> None:
    """The ``[web]`` extra, or one line saying how to get it."""
    try:
        import aiohttp  # noqa: F401
        import aiortc  # noqa: F401
    except ImportError as e:
        raise MissingLibraryError(f"webrtc:// outputs need aiortc and aiohttp ({e.name} is missing): {EXTRA}") from None


def check_web_output(uri: str, token: Optional[str] = None) -> WebAddress:
    """Everything about a ``webrtc://`` output that can be known before the model loads: the
    URI, the extra, and whether the port is free (or served by this process, which the page
    will join under a name of its own)."""
    address = parse_webrtc_uri(uri, token)
    require_web()
    with _HOSTS_LOCK:
        host = _HOSTS.get((address.host, address.port))
        if host is not None:  # this process serves that port already: the page will join it
            _check_name(host, address, uri)
            return address
    with _bound(address, uri):
        pass
    return address


class _bound:
    """Bind the port once, as the server will (SO_REUSEADDR as aiohttp sets it), to say "in use"
    in one line before anything else starts."""

    def __init__(self, address: WebAddress, uri: str):
        self.address, self.uri = address, uri

    def __enter__(self):
        host = self.address.host
        family = socket.AF_INET6 if host and ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.sock.bind((host or "", self.address.port))
            self.sock.listen(1)
        except OSError as e:
            self.sock.close()
            raise OutputError(_bind_error(self.uri, self.address, e)) from None
        return self

    def __exit__(self, *exc):
        self.sock.close()


def _bind_error(uri: str, address: WebAddress, e: OSError) -> str:
    import errno

    from .config import redact

    uri = redact(uri)
    if e.errno == errno.EADDRINUSE:
        return f"cannot serve {uri}: port {address.port} is in use (choose another port)"
    if e.errno == errno.EACCES:
        return f"cannot serve {uri}: port {address.port} needs root (use a port above 1023)"
    if e.errno == errno.EADDRNOTAVAIL:
        return f"cannot serve {uri}: {address.host} is not an address of this machine (@ for every interface)"
    return f"cannot serve {uri}: {e.strerror or e}"


class WebEvents(Events):
    """The run's events, handed to the page's feed. ``write`` is on the run's thread: it only
    serialises and appends (a thread-safe deque); the server's loop sends them in batches."""

    def __init__(self, on_close=None):
        self._pending: collections.deque = collections.deque()
        self.closed = False
        self.ended = False  # the run's summary is in
        self.now: dict = {}  # lane ("scene", "#7") -> its latest label, for the index (see _note)
        self._on_close = on_close

    def write(self, event: dict) -> None:
        if not self.closed:
            self._pending.append(json.dumps(event, separators=(",", ":")))
            self._note(event)

    def _note(self, e: dict) -> None:
        """The current label of each lane, as the page's "Now" panel shows it: kept here, from the
        dict, so the index costs the run a few dict operations and no parsing. A track that left
        loses its lane; at most LANES lanes, the least recently classified go first."""
        kind = e.get("event")
        lane = "scene" if e.get("track_id") is None else f"#{e['track_id']}"
        if kind == "classification" or (kind is None and "confidence" in e and "frame" in e):
            self.now.pop(lane, None)
            self.now[lane] = {"lane": lane, "label": e.get("reported_label", e.get("label")),
                              "confidence": e.get("confidence"), "time": e.get("time")}
            if len(self.now) > LANES:
                self.now.pop(next(iter(self.now)), None)
        elif kind == "segment" and e.get("reason") in ("evicted", "reset", "reconnect"):
            self.now.pop(lane, None)
        elif kind == "summary":
            self.ended = True

    def close(self, keep: bool = True) -> None:
        """The run's last events are in (it closes its events after its outputs): the pages get
        them, then the server stops."""
        self.closed = True
        if self._on_close is not None:
            self._on_close()

    def take(self) -> list:
        out = []
        while self._pending:
            out.append(self._pending.popleft())
        return out


class WebOutput(Output):
    """The ``webrtc://`` output: see the module docstring."""

    def __init__(self, uri: str, fps=30.0, token: Optional[str] = None, log=sys.stderr, codecs=("h264", "vp8")):
        self.address = parse_webrtc_uri(uri, token)
        require_web()
        self.uri, self.log = uri, log
        self.fps = float(fps or 30.0) or 30.0
        self.events = WebEvents(on_close=self._stop_server)
        self.codecs = tuple(c for c in codecs if _encoder_available(c))
        if not self.codecs:
            raise MissingLibraryError("this FFmpeg (PyAV) has neither libx264 nor libvpx: "
                                      "no browser could play the video")
        self.frames = 0  # frames written
        self._slot = None  # (frame, handed-over time, number): the newest frame, for the encoders
        self._number = 0
        self._cond = threading.Condition()
        self._credit = 1.0  # the frame-rate cap: one frame of credit per 1/fps seconds, at most 2
        self._last = None
        self._encoders: dict = {}  # codec -> _Encoder, while someone watches in it
        self.stats = _Stats()
        self._closed = False
        self._server = _Page(self)
        self._server.start()
        if log is not None:
            index = (f"; every page of port {self.address.port}: {replace(self.address, name='').urls()[0]}"
                     if len(self._server.host.pages) > 1 else "")
            print(f"actionnet: serving {', '.join(self.address.urls())} (WebRTC "
                  f"{'/'.join(c.upper() for c in self.codecs)}{'; add ?token=TOKEN' if self.address.token else ''}"
                  f"{index})", file=log)

    @property
    def url(self) -> str:
        return self.address.urls()[0]

    @property
    def viewers(self) -> int:
        return self._server.viewers

    def write(self, frame: np.ndarray) -> None:
        self.frames += 1
        if not self._encoders:  # nobody watching: nothing to do
            return
        now = time.monotonic()
        if self._last is not None:
            self._credit = min(2.0, self._credit + (now - self._last) * self.fps)
        self._last = now
        if self._credit < 1.0:  # faster than the stream's own rate (a file): sampled
            return
        self._credit -= 1.0
        with self._cond:
            self._number += 1
            self._slot = (frame, now, self._number)
            self._cond.notify_all()

    def close(self, keep: bool = True) -> None:
        """Close every viewer's video now (prompt with viewers attached). The pages' event feed
        lives on until the run's last events (open segments, the summary) are in: the run closes
        its events just after its outputs; without that, two seconds at most."""
        if self._closed:
            return
        self._closed = True
        self._server.close_media()
        for enc in list(self._encoders.values()):
            enc.stop()
        self._encoders.clear()
        with self._cond:
            self._slot = None
            self._cond.notify_all()
        if self.log is not None and self._server.served:
            print(f"actionnet: webrtc: {self.stats.line(self._server.served)}", file=self.log)
        self._server.stop_later(2.0)

    def _stop_server(self) -> None:
        self.close()
        self._server.stop()

    # -- called on the server's loop ------------------------------------------------------------

    def _encoder(self, codec: str) -> Optional["_Encoder"]:
        if self._closed:  # an offer that finished after close(): no encoder outlives the output
            return None
        enc = self._encoders.get(codec)
        if enc is None:
            enc = self._encoders[codec] = _Encoder(self, codec, self._server.publish)
            enc.start()
        return enc

    def _drop_encoder(self, codec: str) -> None:
        enc = self._encoders.pop(codec, None)
        if enc is not None:
            enc.stop(wait=False)


class _Stats:
    """Server-side times, for the closing line and the benchmark: encode, and frame handed over
    to packet handed to a viewer's sender."""

    def __init__(self):
        self.encode_ms: collections.deque = collections.deque(maxlen=20000)
        self.to_send_ms: collections.deque = collections.deque(maxlen=20000)
        self.encoded = 0
        self.dropped = 0  # frames a viewer's queue lost (a slow viewer)

    def line(self, viewers: int) -> str:
        s = f"{viewers} viewer connection{'s' if viewers != 1 else ''}, {self.encoded} frames encoded"
        if self.to_send_ms:
            s += (f", encode median {statistics.median(self.encode_ms):.1f} ms, frame to send median "
                  f"{statistics.median(self.to_send_ms):.1f} ms")
        if self.dropped:
            s += f", {self.dropped} frames dropped for slow viewers"
        return s


def _encoder_available(codec: str) -> bool:
    import av

    return {"h264": "libx264", "vp8": "libvpx"}[codec] in av.codecs_available


class _Encoder:
    """One codec's encoder on its own thread: the newest frame in, packets out to every viewer.

    BGR is converted to I420 by OpenCV (multi-threaded, outside the GIL), not swscale in PyAV.
    A keyframe comes every two seconds and whenever a viewer joins or loses frames.
    """

    def __init__(self, output: WebOutput, codec: str, publish):
        self.output, self.codec, self.publish = output, codec, publish
        self._stop = False
        self._key = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"webrtc {codec} encoder", daemon=True)
        self._ctx = None
        self._size = None
        self._t0 = None

    def start(self) -> None:
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """``wait=False`` on the server's loop: the thread ends after the frame it encodes."""
        self._stop = True
        with self.output._cond:
            self.output._cond.notify_all()
        if wait and self._thread.is_alive():
            self._thread.join(timeout=5)

    def request_keyframe(self) -> None:
        self._key.set()

    def _open(self, w: int, h: int):
        import av

        gop = max(1, int(round(2 * self.output.fps)))
        if self.codec == "h264":
            ctx = av.CodecContext.create("libx264", "w")
            ctx.options = {"preset": "ultrafast", "tune": "zerolatency", "profile": "baseline", "crf": "26",
                           "maxrate": "8M", "bufsize": "4M", "forced-idr": "1", "g": str(gop)}
        else:
            ctx = av.CodecContext.create("libvpx", "w")
            ctx.bit_rate = 4_000_000
            ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0", "g": str(gop),
                           "error-resilient": "1", "static-thresh": "1"}
        ctx.width, ctx.height = w, h
        ctx.pix_fmt = "yuv420p"
        ctx.time_base = TIME_BASE
        ctx.framerate = Fraction(self.output.fps).limit_denominator(1001)
        ctx.thread_type = "SLICE" if self.codec == "h264" else "AUTO"
        ctx.open()
        return ctx

    def _run(self) -> None:
        out = self.output
        _lower_priority(ENCODER_NICE)
        seen = 0
        while True:
            with out._cond:
                while not self._stop and (out._slot is None or out._slot[2] == seen):
                    out._cond.wait(0.5)
                if self._stop:
                    return
                frame, handed, seen = out._slot
            try:
                self._encode(frame, handed)
            except Exception as e:  # noqa: BLE001 - never the run's problem: this codec's video stops
                print(f"actionnet: webrtc: {self.codec} encoder failed: {e}", file=out.log or sys.stderr)
                if out._encoders.get(self.codec) is self:  # the next viewer of this codec gets a fresh one
                    out._encoders.pop(self.codec, None)
                return

    def _encode(self, frame, handed: float) -> None:
        import av
        import cv2

        out = self.output
        t0 = time.monotonic()
        h, w = frame.shape[:2]
        h, w = h - h % 2, w - w % 2
        if (w, h) != self._size:  # the first frame, or a stream that changed size
            self._ctx, self._size = self._open(w, h), (w, h)
            self._key.set()
        if self._t0 is None:
            self._t0 = handed
        yuv = cv2.cvtColor(frame[:h, :w], cv2.COLOR_BGR2YUV_I420)
        vf = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
        pts = int(round((handed - self._t0) * 90000))
        vf.pts, vf.time_base = pts, TIME_BASE
        if self._key.is_set():
            self._key.clear()
            vf.pict_type = av.video.frame.PictureType.I
        packets = self._ctx.encode(vf)
        out.stats.encode_ms.append(1000 * (time.monotonic() - t0))
        out.stats.encoded += 1
        for p in packets:
            p.pts, p.time_base = pts, TIME_BASE
            self.publish(self.codec, p, p.is_keyframe, handed)


def _lower_priority(nice: int) -> None:
    """This thread (and the codec threads it starts, which inherit it) yields the CPU to the run:
    on a busy device a viewer gets fewer frames instead of the run getting fewer. Linux only
    (other systems share one nice value per process: left alone)."""
    if nice and sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError:
            pass


# -- the servers: one per address, shared by the pages on it ---------------------------------------

# The index at / of a port with several pages (one small page, kept here rather than in a file:
# web.html is the package data the runtime ships). Every page's name and link, and its current
# labels once a second from cameras.json; a ?token= in its address is passed on to both.
INDEX = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>actionnet: cameras</title><link rel="icon" href="data:,">
<style>
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: #282828; background: #fafafa; }
  header { padding: 8px 12px; border-bottom: 1px solid #ddd; background: #fff; } header b { font-size: 16px; }
  #status { color: #d62728; margin-left: 12px; }
  main { display: flex; flex-wrap: wrap; gap: 12px; padding: 12px; align-items: flex-start; }
  .cam { flex: 0 1 320px; background: #fff; border: 1px solid #ddd; border-radius: 4px; padding: 8px 10px; }
  .cam > a { font-size: 16px; font-weight: 600; }
  .now { display: flex; gap: 8px; margin-top: 4px; } .now.stale { opacity: .45; }
  .lane, .conf, .note { color: #6a6a6a; } .label { font-weight: 600; flex: 1; overflow-wrap: anywhere; }
  .note { font-style: italic; margin-top: 4px; }
</style></head>
<body><header><b>actionnet</b> cameras<span id="status"></span></header><main id="cameras"></main>
<script>
"use strict";
const TOKEN = new URLSearchParams(location.search).get("token");
const Q = TOKEN ? "?token=" + encodeURIComponent(TOKEN) : "";
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}
function card(c) {
  const box = el("div", "cam"), link = el("a", "", c.name);
  box.dataset.camera = c.name;
  link.href = c.name + (c.protected && c.labels ? Q : "");
  box.append(link);
  if (!c.labels) {
    box.append(el("div", "note", "needs its token (open this index as /?token=TOKEN)"));
    return box;
  }
  if (c.ended) box.append(el("div", "note", "run ended"));
  else if (!c.labels.length) box.append(el("div", "note", "waiting for the first classification"));
  const last = Math.max(0, ...c.labels.map(l => l.time || 0));
  for (const l of c.labels) {
    const row = el("div", "now" + (last - l.time > 3 ? " stale" : ""));
    row.dataset.lane = l.lane;
    row.append(el("span", "lane", l.lane), el("span", "label", l.label || "\u2014"),
               el("span", "conf", (100 * l.confidence).toFixed(1) + "%"));
    box.append(row);
  }
  return box;
}
async function update() {
  try {
    const r = await fetch("cameras.json" + Q, { cache: "no-store" });
    document.getElementById("cameras").replaceChildren(...(await r.json()).map(card));
    document.getElementById("status").textContent = "";
  } catch (e) {
    document.getElementById("status").textContent = "the server does not answer";
  }
}
update();
setInterval(update, 1000);
</script></body></html>
"""


_HOSTS: dict = {}  # (host, port) -> _Host: every address this process serves pages on
_HOSTS_LOCK = threading.Lock()  # held while a server starts or stops, so a port is never bound twice


def _attach(page: "_Page") -> None:
    """``page`` on the server of its address: the one this process runs there already, or a new
    one, which binds the port (an :class:`OutputError` naming the URI if it cannot)."""
    a = page.address
    with _HOSTS_LOCK:
        host = _HOSTS.get((a.host, a.port))
        if host is None:
            host = _Host(a, page.output.uri)
            host.start()
            _HOSTS[host.key] = host
        else:
            _check_name(host, a, page.output.uri)
        page.host = host  # before the page can be asked for
        host.pages[a.name] = page


def _detach(page: "_Page") -> None:
    """``page`` off its server; the last page's server stops and frees the port (under the lock:
    an output opened meanwhile on that port waits, then binds it afresh)."""
    host = page.host
    with _HOSTS_LOCK:
        if host is None or host.pages.get(page.address.name) is not page:
            return
        del host.pages[page.address.name]
        if not host.pages:
            _HOSTS.pop(host.key, None)
            host.stop()


def _check_name(host: "_Host", address: WebAddress, uri: str) -> None:
    """Pages that share a port are told apart by their names: each name once, and none without one."""
    from .config import redact

    for name, other in host.pages.items():
        taken = redact(other.output.uri)
        if not name or not address.name:
            why = (f"port {address.port} serves {taken} already; pages that share a port each need a name "
                   f"(webrtc://ADDRESS:{address.port}/NAME)")
        elif name == address.name:
            why = f"port {address.port} serves page /{name} already ({taken}); give each page its own name"
        else:
            continue
        raise UsageError(f"cannot serve {redact(uri)}: {why}")


def _authorised(request, token: Optional[str]) -> bool:
    """``?token=`` or ``Authorization: Bearer``, compared in constant time; no token: everyone."""
    if token is None:
        return True
    given = request.query.get("token")
    if given is None:
        auth = request.headers.get("Authorization", "")
        given = auth[7:] if auth.startswith("Bearer ") else None
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


class _Host:
    """The aiohttp server on one address, on its own thread and asyncio loop, and the pages on it.

    Each page answers at ``/NAME`` (``/NAME/offer``, ``/NAME/events``); ``/``, ``/offer`` and
    ``/events`` are the page's while it is the only one (a single output, as before pages could
    share a port), and with several ``/`` is the index (:data:`INDEX`, fed by ``/cameras.json``).
    Routes are looked up per request rather than added per page: aiohttp freezes an app's routes
    once it runs, and pages come and go while it does.
    """

    def __init__(self, address: WebAddress, uri: str):
        self.key = (address.host, address.port)
        self.address, self.uri = address, uri
        self.pages: dict = {}  # name -> _Page, in the order they came
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="webrtc server", daemon=True)
        self._ready = threading.Event()
        self._error: Optional[BaseException] = None
        self._runner = None
        self._feeder = None

    def start(self) -> None:
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join(timeout=5)
            raise self._error

    def call(self, coro, timeout: float) -> None:
        """Run ``coro`` on the server's loop and wait for it, ``timeout`` seconds at most."""
        if not self._thread.is_alive():
            coro.close()
            return
        try:
            asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)
        except Exception:  # noqa: BLE001 - a connection that will not close, a loop that stopped: go on
            pass

    def stop(self, timeout: float = 5.0) -> None:
        """The listening socket and every connection left closed, the loop ended (not from the loop)."""
        self.call(self._cleanup(), timeout)
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:
            pass
        self._thread.join(timeout)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self._start())
        except BaseException as e:  # noqa: BLE001 - handed to the caller of start()
            self._error = e
            self._ready.set()
            self.loop.close()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _start(self) -> None:
        from aiohttp import web

        app = web.Application()
        page, offer, events = self._route("html"), self._route("offer"), self._route("events")
        app.add_routes([web.get("/", self._root), web.get("/cameras.json", self._cameras),
                        web.post("/offer", offer), web.get("/events", events),
                        web.get("/{name}", page), web.get("/{name}/", page),
                        web.post("/{name}/offer", offer), web.get("/{name}/events", events)])
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.address.host, self.address.port)
        try:
            await site.start()
        except OSError as e:
            await self._runner.cleanup()
            raise OutputError(_bind_error(self.uri, self.address, e)) from None
        self._feeder = asyncio.ensure_future(self._feed_events())

    async def _cleanup(self) -> None:
        self._feeder.cancel()
        try:
            await asyncio.wait_for(self._runner.cleanup(), 3)
        except asyncio.TimeoutError:
            pass

    async def _feed_events(self) -> None:
        """Every 100 ms: what each run wrote since, to each of its pages, in one write each."""
        while True:
            await asyncio.sleep(0.1)
            for page in list(self.pages.values()):
                page.flush()

    # -- HTTP ------------------------------------------------------------------------------------

    def _route(self, what: str):
        """The handler of ``what`` for the page a request names (the only page for ``/offer``...),
        behind that page's token."""
        from aiohttp import web

        async def handle(request):
            name = request.match_info.get("name")
            pages = list(self.pages.values())
            page = self.pages.get(name) if name is not None else pages[0] if len(pages) == 1 else None
            if page is None or page.down:
                where = f"no page /{name} here" if name is not None else "several pages share this port"
                return web.Response(status=404, text=f"404: {where} (the index: /)\n")
            if not _authorised(request, page.address.token):
                return web.Response(status=401, headers={"Cache-Control": "no-store"},
                                    text="401: this stream needs its token (open the page as ...?token=TOKEN)\n")
            return await getattr(page, what)(request)

        return handle

    async def _root(self, request):
        """The only page, or the index of them all."""
        from aiohttp import web

        if len(self.pages) < 2:
            return await self._route("html")(request)
        return web.Response(text=INDEX, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def _cameras(self, request):
        """The index's data: every page's name, and its current labels where the request may see
        them (a page with a token: only with that token; null otherwise)."""
        from aiohttp import web

        cameras = []
        for page in list(self.pages.values()):
            events, token = page.output.events, page.address.token
            cameras.append({"name": page.address.name, "protected": token is not None,
                            "labels": list(events.now.values()) if _authorised(request, token) else None,
                            "ended": events.ended, "viewers": page.viewers})
        return web.json_response(cameras, headers={"Cache-Control": "no-store"})


class _Page:
    """One output's page on its address's server: its viewers' connections and tracks, its event
    feeds and the history a late page is sent. The handlers run on the server's loop."""

    def __init__(self, output: WebOutput):
        self.output = output
        self.address = output.address
        self.host: Optional[_Host] = None
        self.tracks: set = set()
        self.pcs: set = set()
        self.feeds: set = set()
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.segments: collections.deque = collections.deque(maxlen=SEGMENTS)
        self.sequence = 0
        self.served = 0
        self.down = False
        self._timer: Optional[threading.Timer] = None
        self._stopping = threading.Lock()
        with open(PAGE, encoding="utf-8") as f:
            self.page = f.read()

    @property
    def loop(self):
        return self.host.loop

    @property
    def viewers(self) -> int:
        return len(self.tracks)

    def start(self) -> None:
        _attach(self)

    def close_media(self) -> None:
        self.host.call(self._close_pcs(), 4.0)

    def stop_later(self, delay: float) -> None:
        """Stop ``delay`` seconds from now unless :meth:`stop` comes first."""
        self._timer = threading.Timer(delay, self.stop)
        self._timer.daemon = True
        self._timer.start()

    def stop(self, timeout: float = 5.0) -> None:
        """The last events to every page, every connection closed, the page off its server."""
        with self._stopping:
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.cancel()
            self.host.call(self._shutdown(), timeout)
            _detach(self)

    async def _close_pcs(self) -> None:
        pcs, self.pcs = list(self.pcs), set()
        if pcs:
            await asyncio.wait([asyncio.ensure_future(pc.close()) for pc in pcs], timeout=3)

    async def _shutdown(self) -> None:
        if not self.down:
            self.down = True
            self.flush()
            for q in list(self.feeds):
                q.put_nowait(None)
            await asyncio.sleep(0.05)  # the feeds write their last lines
            await self._close_pcs()

    # -- HTTP (through _Host._route: the token is checked) ---------------------------------------

    async def html(self, request):
        from aiohttp import web

        config = {"name": self.address.name or "actionnet", "path": self.address.name,
                  "index": len(self.host.pages) > 1}
        html = self.page.replace("/*CONFIG*/{}", json.dumps(config))
        return web.Response(text=html, content_type="text/html", headers={"Cache-Control": "no-store"})

    async def offer(self, request):
        from aiohttp import web
        from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription

        try:
            params = await request.json()
            offer = RTCSessionDescription(sdp=str(params["sdp"]), type=str(params["type"]))
        except (ValueError, KeyError, TypeError):
            return web.Response(status=400, text="expected a JSON offer {sdp, type}\n")
        codec = _pick_codec(offer.sdp, self.output.codecs)
        if codec is None:
            return web.Response(status=400, text=f"the browser offers none of {', '.join(self.output.codecs)}\n")
        # no STUN server: a LAN needs none, and a site may have no internet to reach one
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.pcs.add(pc)

        @pc.on("connectionstatechange")
        async def _state():
            if pc.connectionState in ("failed", "closed"):
                self.pcs.discard(pc)
                await pc.close()

        try:
            # the track and its codec before the offer, so that the offer's video takes them
            track = _track_class()(self, codec)
            sender = pc.addTrack(track)
            next(t for t in pc.getTransceivers() if t.sender is sender).setCodecPreferences(_capabilities(codec))
            _hook_keyframe_requests(sender, track)
            await pc.setRemoteDescription(offer)
            await pc.setLocalDescription(await pc.createAnswer())
        except Exception as e:  # noqa: BLE001 - a bad offer is the viewer's problem, not the run's
            self.pcs.discard(pc)
            await pc.close()
            return web.Response(status=400, text=f"cannot answer this offer: {e}\n")
        if not self.add_track(track):
            self.pcs.discard(pc)
            await pc.close()
            return web.Response(status=503, text="the stream has ended\n")
        self.served += 1
        return web.json_response({"sdp": pc.localDescription.sdp, "type": pc.localDescription.type})

    async def events(self, request):
        from aiohttp import web

        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        q: asyncio.Queue = asyncio.Queue(maxsize=2 * HISTORY)
        past = sorted(list(self.segments) + list(self.history))
        self.feeds.add(q)
        try:
            hello = b"retry: 2000\n\nevent: hello\ndata: {}\n\n"  # the page starts over, then gets the history
            await resp.write(hello + b"".join(f"data: {line}\n\n".encode() for _, line in past))
            while True:
                try:
                    lines = await asyncio.wait_for(q.get(), 15)
                except asyncio.TimeoutError:
                    await resp.write(b": keep-alive\n\n")  # finds a vanished phone, keeps proxies open
                    continue
                if lines is None:
                    break
                await resp.write(b"".join(f"data: {line}\n\n".encode() for line in lines))
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self.feeds.discard(q)
        return resp

    def flush(self) -> None:
        """What the run wrote since the last call, to every open feed (on the loop)."""
        lines = self.output.events.take()
        if lines:
            for line in lines:
                self.sequence += 1
                (self.segments if line.startswith('{"event":"segment"') else self.history).append((self.sequence, line))
            for q in list(self.feeds):
                try:
                    q.put_nowait(lines)
                except asyncio.QueueFull:  # a page that stopped reading: it reconnects and gets the history
                    self.feeds.discard(q)
                    while not q.empty():
                        q.get_nowait()
                    q.put_nowait(None)

    # -- media -----------------------------------------------------------------------------------

    def add_track(self, track) -> bool:
        enc = self.output._encoder(track.codec)
        if enc is None:  # the run has ended
            return False
        self.tracks.add(track)
        enc.request_keyframe()
        return True

    def remove_track(self, track) -> None:
        self.tracks.discard(track)
        if not any(t.codec == track.codec for t in self.tracks):
            self.output._drop_encoder(track.codec)

    def publish(self, codec: str, packet, key: bool, handed: float) -> None:
        """From an encoder thread: the packet to every viewer of its codec, on the loop."""
        try:
            self.loop.call_soon_threadsafe(self._deliver, codec, packet, key, handed)
        except RuntimeError:  # the loop closed while the encoder finished a frame
            pass

    def _deliver(self, codec: str, packet, key: bool, handed: float) -> None:
        for t in list(self.tracks):
            if t.codec == codec:
                t.offer(packet, key, handed)

    def keyframe(self, codec: str) -> None:
        enc = self.output._encoders.get(codec)
        if enc is not None:
            enc.request_keyframe()


def _pick_codec(sdp: str, codecs) -> Optional[str]:
    """The first of ``codecs`` the browser's offer lists (H.264 only in packetization mode 1,
    the one aiortc sends)."""
    rtpmap = dict(re.findall(r"a=rtpmap:(\d+) ([A-Za-z0-9-]+)/90000", sdp))
    fmtp = dict(re.findall(r"a=fmtp:(\d+) (.*)", sdp))
    for codec in codecs:
        for pt, name in rtpmap.items():
            if name.upper() == codec.upper() and (codec != "h264" or "packetization-mode=1" in fmtp.get(pt, "")):
                return codec
    return None


def _capabilities(codec: str):
    from aiortc import RTCRtpSender

    caps = RTCRtpSender.getCapabilities("video").codecs
    return [c for c in caps if c.mimeType.lower() in (f"video/{codec}", "video/rtx")]


def _hook_keyframe_requests(sender, track) -> None:
    """A browser that lost a keyframe sends a PLI/FIR; aiortc only honours it for frames it
    encodes itself, so pass it on to the shared encoder (at most twice a second)."""
    original = getattr(sender, "_send_keyframe", None)
    if original is None:  # another aiortc: keyframes still come every two seconds
        return

    def send_keyframe():
        original()
        now = time.monotonic()
        if now - track.last_key_request > 0.5:
            track.last_key_request = now
            track.server.keyframe(track.codec)

    sender._send_keyframe = send_keyframe


@functools.lru_cache(maxsize=None)
def _track_class():
    """The viewer track class, made once aiortc is known to be importable (the module is not)."""
    from aiortc import MediaStreamTrack
    from aiortc.mediastreams import MediaStreamError

    class ViewerTrack(MediaStreamTrack):
        """One viewer's video: the shared encoder's packets through a bounded queue."""

        kind = "video"

        def __init__(self, server: _Page, codec: str):
            super().__init__()
            self.server, self.codec = server, codec
            self.queue: asyncio.Queue = asyncio.Queue()
            self.need_key = True
            self.last_key_request = 0.0

        def offer(self, packet, key: bool, handed: float) -> None:
            if self.need_key and not key:
                return
            if self.queue.qsize() >= QUEUE:  # this viewer stalls: drop what it has not taken
                while not self.queue.empty():
                    self.queue.get_nowait()
                    self.server.output.stats.dropped += 1
                self.need_key = True
                self.server.keyframe(self.codec)
                return
            self.need_key = False
            self.queue.put_nowait((packet, handed))

        async def recv(self):
            if self.readyState != "live":
                raise MediaStreamError
            item = await self.queue.get()
            if item is None:
                raise MediaStreamError
            packet, handed = item
            self.server.output.stats.to_send_ms.append(1000 * (time.monotonic() - handed))
            return packet

        def stop(self) -> None:
            if self.readyState == "live":
                self.server.remove_track(self)
                self.queue.put_nowait(None)
            super().stop()

    return ViewerTrack
