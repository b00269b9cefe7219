"""Several cameras: one ``actionnet --config`` process against as many separate processes.

For N = 1, 2, 4 cameras (the same video file per camera: every frame read, so both sides do
exactly the same work; or with ``--live`` played at its own rate, as cameras send, each side
processing what it keeps up with and dropping the rest), runs

* one process: ``actionnet --config site.yaml`` with N cameras (engines shared, runtime/site.py);
* N processes: ``actionnet MODEL ... VIDEO`` each, all started together;

and reports the frames processed per second in total (every camera's frames over the longest
camera's loop time, from each camera's summary line: start-up excluded), the frames dropped
(``--live``), the wall time (start-up included) and the peak resident memory of all processes
together (sampled from /proc).

    python scripts/bench_cameras.py --model m.onnx --video clip.mp4 [--loop 3] [--cameras 1,2,4] [--option cadence=8]
                                    [--persons --detector d.onnx] [--live]

Linux only (/proc). Say what else ran on the machine when quoting the figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

SUMMARY = re.compile(r"(?:\[(?P<cam>[^\]]+)\] )?(?:stopped: )?(?P<frames>\d+) frames?, (?P<fps>[\d.]+) fps")


def rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def run_all(cmds):
    """Start every command at once; (stderrs, wall seconds, peak summed RSS in MiB)."""
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True) for c in cmds]
    peak, done = [0], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], sum(rss_kib(p.pid) for p in procs))
            time.sleep(0.05)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    errs = [p.communicate()[1] for p in procs]
    done.set()
    t.join()
    wall = time.perf_counter() - t0
    for c, p, e in zip(cmds, procs, errs):
        if p.returncode != 0:
            sys.exit(f"failed ({p.returncode}): {' '.join(c)}\n{e}")
    return errs, wall, peak[0] / 1024


def throughput(errs):
    """Total frames over the longest camera's loop time (each camera's summary line), and the
    frames live cameras dropped."""
    frames, seconds = 0, 0.0
    for err in errs:
        for m in SUMMARY.finditer(err):
            n, fps = int(m["frames"]), float(m["fps"])
            frames += n
            seconds = max(seconds, n / fps if fps else 0.0)
    dropped = sum(int(d) for err in errs for d in re.findall(r"(\d+) frames dropped", err))
    return frames, frames / seconds if seconds else 0.0, dropped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--video", required=True)
    ap.add_argument("--loop", type=int, default=1, help="plays of the video per camera (default 1)")
    ap.add_argument("--cameras", default="1,2,4")
    ap.add_argument("--persons", action="store_true")
    ap.add_argument("--live", action="store_true",
                    help="play each camera's file at its own rate (--live): the frames processed per second "
                         "then count what each side keeps up with, and the frames dropped what it does not")
    ap.add_argument("--detector")
    ap.add_argument("--engine", default="auto")
    ap.add_argument("--threads", type=int, help="--threads for every engine (default: the engine's)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="any other option of the command, for every camera (e.g. cadence=8)")
    a = ap.parse_args()
    opts = {"model": a.model, "engine": a.engine, "headless": True, "no-progress": True, "input-loop": a.loop}
    if a.threads is not None:
        opts["threads"] = a.threads
    if a.persons:
        opts.update(persons=True, detector=a.detector)
    if a.live:
        opts["live"] = True
    opts.update(o.split("=", 1) for o in a.option)
    cli = [sys.executable, "-m", "actionnet.cli"]
    argv = [f"--{k}" if v is True else f"--{k}={v}" for k, v in opts.items()]
    with open("/proc/loadavg") as f:
        print(f"load average before: {f.read().split()[:3]}, {os.cpu_count()} cores")
    print(f"{'cameras':>7} {'mode':<12} {'frames':>7} {'total fps':>10} {'dropped':>8} {'wall s':>7} {'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in a.cameras.split(",")):
            site = os.path.join(tmp, f"site{n}.yaml")
            with open(site, "w") as f:
                for k, v in opts.items():
                    f.write(f"{k}: {str(v).lower() if isinstance(v, bool) else v}\n")
                f.write("cameras:\n" + "".join(f"  cam{i}:\n    input: {a.video}\n" for i in range(n)))
            for mode, cmds in (("one process", [[*cli, "--config", site]]),
                               ("processes", [[*cli, *argv, a.video] for _ in range(n)])):
                errs, wall, rss = run_all(cmds)
                frames, fps, dropped = throughput(errs)
                print(f"{n:>7} {mode:<12} {frames:>7} {fps:>10.1f} {dropped:>8} {wall:>7.1f} {rss:>13.0f}", flush=True)
    with open("/proc/loadavg") as f:
        print(f"load average after: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
