"""What watching costs: the runtime's FPS with 0, 1 and 3 browsers on a ``webrtc://`` output,
and the delay a viewer sees.

    python scripts/bench_web.py [--repeats 5] [--frames 150] [--viewers 0,e,1,3] [--whole-frame]

One process, the CLI's own pieces: the clip through :func:`actionnet.video_source` (capture
thread), the analyser :func:`actionnet.cli.open_analyser` builds for ``--persons`` (or the
whole frame with ``--whole-frame``), :func:`actionnet.pipeline.run`, and one
:class:`actionnet.web.WebOutput` on 127.0.0.1 kept open across runs (the run's events feed its
page too). Before each timed run, N headless Chromium viewers (Debian's ``chromium`` through the
system ``chromedriver``) open the page and wait until their peer connection is up; the run then
plays the whole clip as fast as it can (a file: nothing is dropped) while a sampler reads each
viewer's WebRTC ``getStats()`` once a second. Runs alternate 0, 1, 3, 0, 1, 3, ... so each
setting sees the same machine; medians are reported.

Clip and models, as ``scripts/bench_persons.py``: the 1920x1080 two-person mosaic made from
``people_walking.mp4``, ``r3d_18`` 16x112x112 with seeded random weights (exported here with
torch), the shared YOLOv5n ONNX as the person detector (``--detector`` to use another). On a
machine with as few cores as this one the viewers share the CPU with the run: ``--nice`` (19 by
default) starts them at the lowest priority; they still take the idle CPU (and, on cores with
two hardware threads, some of the run's speed), so the table gives their CPU share, the server
thread's (aiortc: packets, SRTP, sending) and a setting ``e``: the encoder running as for a
viewer, with no browser here, which is what a viewer on another machine costs the run, less the
server thread's small share per viewer.

Delay, per viewer: the jitter buffer's mean delay per frame (``jitterBufferDelay /
jitterBufferEmittedCount``) and the mean decode time (``totalDecodeTime / framesDecoded``), over
each one-second interval; the server's own part is frame handed to ``write()`` -> packet handed
to the viewer's sender (encode included). Loopback adds no network time; a LAN adds its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ACTIONNET_SHARED_DATA", ROOT.parent / "shared" / "data"))
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def bench_persons():
    spec = importlib.util.spec_from_file_location("bench_persons", ROOT / "scripts" / "bench_persons.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def chrome(folder: str, nice: int, size=(1280, 860)):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = CHROMIUM
    if nice:
        binary = os.path.join(folder, "chromium-nice")
        with open(binary, "w") as f:
            f.write(f'#!/bin/sh\nexec nice -n {nice} {CHROMIUM} "$@"\n')
        os.chmod(binary, 0o755)
    o = webdriver.ChromeOptions()
    o.binary_location = binary
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--autoplay-policy=no-user-gesture-required", "--disable-dev-shm-usage",
              f"--window-size={size[0]},{size[1]}",
              f"--user-data-dir={tempfile.mkdtemp(dir=folder)}"):
        o.add_argument(a)
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=o)


STATS_JS = "const done = arguments[arguments.length - 1]; window.actionnetStats().then(done, () => done(null));"


class Sampler:
    """Each viewer's getStats() once a second, on a thread; per-interval delays."""

    def __init__(self, drivers):
        self.drivers = drivers
        self.jitter_ms, self.decode_ms, self.fps = [], [], []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def _run(self):
        prev = {}
        while not self._stop.wait(1.0):
            now = time.monotonic()
            for i, d in enumerate(self.drivers):
                try:
                    s = d.execute_async_script(STATS_JS)
                except Exception:  # noqa: BLE001 - a viewer that is busy or gone: skip this sample
                    continue
                if not s:
                    continue
                p = prev.get(i)
                prev[i] = (now, s)
                if p is None:
                    continue
                t0, s0 = p
                emitted = s["jitterBufferEmittedCount"] - s0["jitterBufferEmittedCount"]
                decoded = s["framesDecoded"] - s0["framesDecoded"]
                if emitted > 0:
                    self.jitter_ms.append(1000 * (s["jitterBufferDelay"] - s0["jitterBufferDelay"]) / emitted)
                if decoded > 0:
                    self.decode_ms.append(1000 * (s["totalDecodeTime"] - s0["totalDecodeTime"]) / decoded)
                    self.fps.append(decoded / (now - t0))

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


class Kept:
    """The web output as the loop sees it, minus close(): the bench keeps one server for all runs."""

    def __init__(self, out):
        self.out, self.stopped = out, False

    def write(self, frame):
        self.out.write(frame)

    def close(self, keep=True):
        pass


class KeptEvents(Kept):
    def write(self, event):
        self.out.events.write(event)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=150, help="frames of the clip (default 150: 5 s at 30 fps)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--viewers", default="0,e,1,3",
                   help="settings, alternated: a number of browsers, or e: the encoder running with no browser "
                        "here (a viewer on another machine, less its ~1%% of sending) (default 0,e,1,3)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--nice", type=int, default=19, help="the viewers' niceness (default 19; 0: as the run)")
    p.add_argument("--whole-frame", action="store_true", help="whole-frame recognition instead of --persons")
    p.add_argument("--model", help="classifier ONNX (default: r3d_18 random weights, exported here)")
    p.add_argument("--detector", default=str(SHARED / "weights" / "yolov5n.onnx"))
    p.add_argument("--video", help="a clip instead of the 1080p two-person mosaic")
    p.add_argument("--screenshot", help="save the page of a 1-viewer run here (docs/webrtc.png)")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)

    from actionnet.cli import build_parser, config_from_args, open_analyser
    from actionnet.pipeline import run as run_loop
    from actionnet.sources import video_source
    from actionnet.web import WebOutput

    counts = args.viewers.split(",")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        bp = bench_persons()
        clip = args.video or os.path.join(folder, "two_people_1080p.mp4")
        if not args.video:
            bp.make_clip(clip, args.frames, SHARED / "videos" / "people_walking.mp4")
        model = args.model or bp.build_classifier(folder)[2]
        flags = ["--model", model, "--threads", str(args.threads), "--headless", "--no-progress"]
        if not args.whole_frame:
            flags += ["--persons", "--detector", args.detector]
        config = config_from_args(build_parser().parse_args(flags + [clip]))
        port = args.port or free_port()
        out = WebOutput(f"webrtc://127.0.0.1:{port}/bench", 30, log=None)
        url = f"http://127.0.0.1:{port}/bench"
        results = {n: [] for n in counts}
        try:
            warm = open_analyser(config, 30.0, log=open(os.devnull, "w"))
            run_loop(video_source(clip), warm)  # engines compiled, caches warm: not timed
            warm.close()
            for r in range(args.repeats):
                for setting in counts:
                    n = 0 if setting == "e" else int(setting)
                    drivers = [chrome(folder, args.nice) for _ in range(n)]
                    try:
                        for d in drivers:
                            d.get(url)
                        wait(lambda ds=drivers: all(d.execute_script("return document.getElementById('status')"
                                                                     ".className") == "live" for d in ds),
                             60, "viewers connected")
                        if setting == "e":
                            out._encoder("h264")  # what a viewer starts, without a browser on this machine
                        analyser = open_analyser(config, 30.0, log=open(os.devnull, "w"))
                        out.stats = type(out.stats)()
                        pids = browser_pids()
                        browsers, server = cpu_seconds(pids), thread_cpu("webrtc server")
                        with Sampler(drivers) as sampler:
                            stats = run_loop(video_source(clip), analyser, output=Kept(out), events=KeptEvents(out))
                        browsers = cpu_seconds(pids) - browsers
                        server = thread_cpu("webrtc server") - server
                        analyser.close()
                        if setting == "e":
                            out._drop_encoder("h264")
                        if args.screenshot and setting == "1" and r == args.repeats - 1:
                            time.sleep(1.0)  # the last events drawn
                            drivers[0].save_screenshot(args.screenshot)
                    finally:
                        for d in drivers:
                            d.get("about:blank")  # the page's pagehide closes its connection
                            d.quit()
                    wait(lambda: out.viewers == 0, 60, "the viewers gone")
                    res = dict(fps=stats.fps, frames=stats.frames, encode=median(out.stats.encode_ms),
                               to_send=median(out.stats.to_send_ms), encoded=out.stats.encoded,
                               jitter=median(sampler.jitter_ms), decode=median(sampler.decode_ms),
                               shown=median(sampler.fps), browsers=browsers / stats.seconds,
                               server=server / stats.seconds)
                    results[setting].append(res)
                    print(f"run {r + 1}, {LABELS.get(setting, setting + ' viewers')}: {res['fps']:.2f} fps "
                          f"({res['frames']} frames, {res['encoded']} encoded; CPU share of the browsers "
                          f"{res['browsers']:.2f}, of the server thread {res['server']:.3f})", file=sys.stderr)
        finally:
            out.close()
            out.events.close()
    load_after = os.getloadavg()

    mode = "whole frame" if args.whole_frame else "--persons"
    print(f"\n{args.frames} frames of {Path(args.video).name if args.video else 'the 1080p two-person mosaic'}, "
          f"{mode}, {args.threads} threads, viewers at nice {args.nice}, {args.repeats} alternating rounds "
          f"(medians); load average {load_before[0]:.1f} before, {load_after[0]:.1f} after")
    print("| viewers | runtime FPS | vs no viewer, round by round (median) | encode ms/frame | frame to send ms "
          "| viewer jitter buffer ms | viewer decode ms | frames shown/s | CPU: browsers here, server thread |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for setting in counts:
        rs = results[setting]
        fps = median([x["fps"] for x in rs])
        rel = "-"
        if "0" in results and setting != "0":  # each round against the no-viewer run of the same round
            ratios = [x["fps"] / z["fps"] for x, z in zip(rs, results["0"])]
            rel = ", ".join(f"{r:.2f}" for r in ratios) + f" (**{median(ratios):.2f}**)"
        cells = [median([x[k] for x in rs]) for k in ("encode", "to_send", "jitter", "decode", "shown")]
        cpu = f"{median([x['browsers'] for x in rs]):.2f}, {median([x['server'] for x in rs]):.3f}"
        print(f"| {LABELS.get(setting, setting)} | {fps:.2f} | {rel} | "
              + " | ".join("-" if c != c else f"{c:.1f}" for c in cells) + f" | {cpu} |")
    return 0


LABELS = {"0": "no viewer", "e": "encoder, no browser here", "1": "1 viewer", "3": "3 viewers"}


def browser_pids() -> list:
    pids = []
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/cmdline", "rb") as f:
                    if b"chromium" in f.read():
                        pids.append(p)
            except OSError:
                pass
    return pids


def cpu_seconds(pids) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    total = 0.0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except OSError:
            pass
    return total


def thread_cpu(name: str) -> float:
    """CPU seconds of this process's thread called ``name`` (the server's loop: aiortc's sending)."""
    for t in threading.enumerate():
        if t.name == name:
            try:
                with open(f"/proc/self/task/{t.native_id}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            except OSError:
                return 0.0
    return 0.0


def wait(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"bench_web: timed out waiting for {what}")
        time.sleep(0.2)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    sys.exit(main())
