"""``actionnet --config site.yaml``: several cameras in one process, one set of engines.

A site file holds global options (every key is a long option of the command without its dashes)
and ``cameras:``, each with its ``input``, ``output`` (one or a list), ``events`` (one or a list)
and any option to override. Each camera's configuration is made by turning its merged options
back into the command's argv and parsing it with the command's own parser, so one camera in a
file is exactly the command line with the same options, and a mistake is the command's own
message, with the camera and key in front of it. The whole file is checked before anything opens.

At run time each camera keeps what is its own (source and capture thread, frame buffers or stream
states, tracker, hysteresis, segments, outputs, events) and runs the same loop as the command
(:func:`actionnet.pipeline.run`) on a thread of its own, so a camera that stalls, reconnects or
ends never holds the others back. What is shared is the engines: while the cameras open,
:data:`actionnet.engines.shared_pool` hands every analyser that asks for the same model with the
same options the one engine already loaded (:class:`SharedEngine`), which runs the calls that
cameras make while it is busy as one batch. Batching there, below the analysers, leaves each
analyser exactly as the single-camera command runs it.
"""

from __future__ import annotations

import difflib
import os
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .config import redact
from .errors import ActionNetError, InputError, MissingLibraryError, UsageError

# keys a camera has that the command gives as positionals, or that make no sense in a file
POSITIONAL_KEYS = ("input", "output")
NOT_IN_FILE = ("config", "help")
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtp://", "http://", "https://", "csi://", "v4l2://")


class SiteError(UsageError):
    """A mistake in the site file: one line naming the file, the camera and the key."""


# -- the file ---------------------------------------------------------------------------------------

@dataclass
class CameraConfig:
    name: str
    config: object  # RunConfig of the first output; the others only differ in it
    outputs: List[str] = field(default_factory=list)
    argv: List[str] = field(default_factory=list)  # what the command line would be


def _options(parser) -> Dict[str, object]:
    """Every long option of the command, by its name without dashes."""
    table = {}
    for action in parser._actions:  # argparse keeps no public list; this one is stable since 3.2
        for s in action.option_strings:
            if s.startswith("--"):
                table[s[2:]] = action
    for k in NOT_IN_FILE:
        table.pop(k, None)
    return table


def _raising_parser():
    from .cli import build_parser

    p = build_parser()

    def error(message):
        raise UsageError(message)

    p.error = error  # the command's parser exits; here a mistake is reported with its camera
    return p


def _argv_for(key: str, value, action, where: str) -> List[str]:
    """One option as the command line would spell it."""
    import argparse

    flag = "--" + key
    if value is None:
        raise SiteError(f"{where}: {key}: needs a value")
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        if not isinstance(value, bool):
            raise SiteError(f"{where}: {key}: expected true or false, got {value!r}")
        return [flag] if value != isinstance(action, argparse._StoreFalseAction) else []
    if isinstance(value, bool):
        raise SiteError(f"{where}: {key}: expected a value, got {str(value).lower()}")
    if isinstance(value, dict):
        raise SiteError(f"{where}: {key}: expected a value, got a mapping")
    values = value if isinstance(value, list) else [value]
    if isinstance(action, argparse._AppendAction):
        return [f"{flag}={_text(v)}" for v in values]
    if action.nargs in ("+", "*"):
        return [flag, *(_text(v) for v in values)]
    if isinstance(value, list):
        raise SiteError(f"{where}: {key}: takes one value, got a list")
    return [f"{flag}={_text(value)}"]


def _text(v) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def _check_keys(section: dict, table: dict, where: str, allowed_extra=()) -> None:
    for key in section:
        if not isinstance(key, str):
            raise SiteError(f"{where}: key {key!r} is not a name")
        if key in table or key in allowed_extra:
            continue
        if key in POSITIONAL_KEYS:
            raise SiteError(f"{where}: {key}: is given per camera, under cameras:")
        close = difflib.get_close_matches(key.replace("_", "-"), list(table) + list(allowed_extra), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise SiteError(f"{where}: unknown option {key}{hint}")


def _key_of(message: str, keys) -> Optional[str]:
    """The option a parser or validation message is about (its first --flag)."""
    import re

    for m in re.finditer(r"--([a-z0-9-]+)", message):
        if m.group(1) in keys:
            return m.group(1)
    return None


def load_site(path: str) -> List[CameraConfig]:
    """The cameras of the site file, each checked as the command would check it, then all of
    them together (files written twice, ports bound twice). Nothing is opened."""
    try:
        import yaml
    except ImportError:  # a --no-deps install (jetson/install.sh lists it)
        raise MissingLibraryError("--config needs PyYAML: pip install pyyaml") from None

    from .cli import config_from_args

    where = os.path.basename(path)
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except FileNotFoundError:
        raise SiteError(f"--config {path}: no such file") from None
    except OSError as e:
        raise SiteError(f"--config {path}: {e.strerror}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" line {mark.line + 1}" if mark is not None else ""
        raise SiteError(f"{where}:{at}: not valid YAML ({getattr(e, 'problem', None) or e})") from None
    if not isinstance(doc, dict):
        raise SiteError(f"{where}: expected options and cameras: (a mapping)")
    parser = _raising_parser()
    table = _options(parser)
    cameras = doc.get("cameras")
    base = {k: v for k, v in doc.items() if k != "cameras"}
    _check_keys(base, table, f"{where}: top level")
    if not isinstance(cameras, dict) or not cameras:
        raise SiteError(f"{where}: cameras: expected one or more named cameras, as cameras: {{door: {{input: ...}}}}")
    out: List[CameraConfig] = []
    for name, own in cameras.items():
        cam = f"{where}: camera {name}"
        if not isinstance(name, str) or not name or not all(c.isalnum() or c in "-_." for c in name):
            raise SiteError(f"{where}: camera {name!r}: a camera's name is letters, digits, - _ or .")
        if own is None or not isinstance(own, dict):
            raise SiteError(f"{cam}: expected its options (input: ..., output: ...)")
        _check_keys(own, table, cam, allowed_extra=POSITIONAL_KEYS)
        if own.get("input") in (None, ""):
            raise SiteError(f"{cam}: input: every camera needs an input (a file, /dev/videoN, rtsp://...)")
        if isinstance(own.get("input"), (list, dict, bool)):
            raise SiteError(f"{cam}: input: expected one file, camera or stream")
        outputs = own.get("output")
        outputs = [] if outputs is None else outputs if isinstance(outputs, list) else [outputs]
        if any(not isinstance(o, (str, int)) or isinstance(o, bool) or o == "" for o in outputs):
            raise SiteError(f"{cam}: output: expected a file or URI, or a list of them")
        merged = dict(base)
        merged.update({k: v for k, v in own.items() if k not in POSITIONAL_KEYS})
        options: List[str] = []
        token: List[str] = []  # --web-token: only for a webrtc:// output (a file beside it takes none)
        for key, value in merged.items():
            args = _argv_for(key, value, table[key], cam)
            try:  # alone first: a bad value is reported with its key
                parser.parse_args(["in", *args])
            except UsageError as e:
                raise SiteError(f"{cam}: {key}: {_strip_argument(str(e))}") from None
            if key == "web-token":
                token = args
                continue
            options += args
        configs = []
        for output in outputs or [None]:
            page = output is not None and str(output).startswith("webrtc://")
            argv = [*options, *(token if page else []), "--", str(own["input"])] + \
                ([str(output)] if output is not None else [])
            try:
                configs.append(config_from_args(parser.parse_args(argv)))
            except ActionNetError as e:
                key = _key_of(str(e), table) or ("output" if output is not None and str(output) in str(e) else None)
                raise SiteError(f"{cam}: {key + ': ' if key else ''}{e}") from None
        pages = [c for c in configs if c.web_token is not None]
        if pages:  # the camera's outputs are opened from its first config: the page's token goes with it
            configs[0].web_token = pages[0].web_token
        out.append(CameraConfig(str(name), configs[0], [str(o) for o in outputs], argv))
    _check_together(out, where)
    return out


def _strip_argument(message: str) -> str:
    """argparse's "argument --x: invalid float value: 'a'" without the part the key already says."""
    if message.startswith("argument "):
        return message.split(": ", 1)[-1]
    return message


def _port(uri: str) -> Optional[int]:
    from urllib.parse import urlsplit

    if not uri.startswith(("webrtc://", "rtsp://")):
        return None
    try:
        return urlsplit(uri).port or (8554 if uri.startswith("rtsp://") else None)
    except ValueError:
        return None


def _port_clash(uri: str, port: int, camera: str, other: str) -> Optional[str]:
    """Why output ``uri`` cannot be on ``port`` beside ``camera``'s output ``other``, or None:
    webrtc:// pages of one process share one server per port (each at its own name, the index at
    /), where an rtsp:// server needs its port to itself."""
    from .web import parse_webrtc_uri

    shown, by = redact(uri), f"camera {camera} ({redact(other)})"
    if not (uri.startswith("webrtc://") and other.startswith("webrtc://")):
        return f"port {port} of {shown} is taken by {by}; an rtsp:// server needs a port of its own"
    mine, theirs = parse_webrtc_uri(uri), parse_webrtc_uri(other)
    if mine.host != theirs.host:
        return f"port {port} of {shown} is served on another address by {by}; pages that share a port share its address"
    if not mine.name or not theirs.name:
        return f"{shown} shares port {port} with {by}; pages that share a port each need a name " \
               f"(webrtc://ADDRESS:{port}/NAME)"
    if mine.name == theirs.name:
        return f"page /{mine.name} of port {port} is served by {by} already; give each page its own name"
    return None


def _broker_topic(uri: str) -> Optional[Tuple]:
    """(host, port, topic) of an mqtt:// or mqtts:// events URI, else None."""
    from urllib.parse import urlsplit

    if not uri.lower().startswith(("mqtt://", "mqtts://")):
        return None
    u = urlsplit(uri)
    return (u.hostname, u.port, u.path.strip("/"))


def _check_together(cameras: List[CameraConfig], where: str) -> None:
    """What no one camera can see: two cameras writing one file, or binding one port (but for
    webrtc:// pages, which share their port's server, each at its own name: :mod:`actionnet.web`)."""
    from .config import is_uri

    files: Dict[str, Tuple[str, str]] = {}
    ports: Dict[int, List[Tuple[str, str]]] = {}  # port -> (camera, output) of every output on it
    topics: Dict[Tuple, str] = {}
    inputs = {os.path.abspath(c.config.input): c.name for c in cameras if not is_uri(c.config.input)}
    for c in cameras:
        written = [("output", o) for o in c.outputs if not is_uri(o)] + \
                  [("events", e) for e in c.config.events if e != "-" and not is_uri(e)] + \
                  [("mqtt-queue", c.config.mqtt.queue)] * bool(c.config.mqtt.queue)
        for key, path in written:
            p = os.path.abspath(path)
            if p in files:
                other, okey = files[p]
                raise SiteError(f"{where}: camera {c.name}: {key}: {path} is written by camera {other} too ({okey})")
            if p in inputs:
                raise SiteError(f"{where}: camera {c.name}: {key}: {path} is camera {inputs[p]}'s input")
            files[p] = (c.name, key)
        for e in c.config.events:  # one camera per topic: retained state, status and will are per topic
            topic = _broker_topic(e)
            if topic in topics:
                raise SiteError(f"{where}: camera {c.name}: events: {redact(e)} is camera {topics[topic]}'s topic too; "
                                f"give each camera its own (mqtt://HOST/site/{c.name})")
            if topic:
                topics[topic] = c.name
        for o in c.outputs:
            port = _port(o)
            if port is None:
                continue
            for other, ouri in ports.get(port, []):
                clash = _port_clash(o, port, other, ouri)
                if clash:
                    raise SiteError(f"{where}: camera {c.name}: output: {clash}")
            ports.setdefault(port, []).append((c.name, o))


# -- running ----------------------------------------------------------------------------------------

class EnginePool:
    """One engine per distinct model configuration, whoever asks; closed once, at the end."""

    def __init__(self, log=sys.stderr, max_batch: int = 16):
        self.log, self.max_batch = log, max_batch
        self.engines: Dict[tuple, object] = {}
        self.opens = 0
        self._lock = threading.Lock()

    def get(self, open_engine, path, engine, threads, precision, log, max_batch):
        from .engines.triton import is_server_url

        if engine == "triton" or is_server_url(path):
            # a model on a Triton server is loaded once already, there; its dynamic batcher batches
            # the cameras' calls, which run side by side on clients of their own (the analyser
            # closes its own), where one shared client would run them one at a time
            return open_engine(path, engine, threads, precision, log, max_batch)
        key = (os.path.abspath(path) if os.path.exists(path) else path, engine, threads, precision, max_batch)
        with self._lock:
            if key not in self.engines:
                self.engines[key] = SharedEngine(open_engine(path, engine, threads, precision, log, max_batch),
                                                 self.max_batch)
                self.opens += 1
                if self.log is not None:
                    print(f"actionnet: loaded {path} once for every camera that runs it", file=self.log)
            return self.engines[key]

    def close(self) -> None:
        for e in self.engines.values():
            e.real.close()
        self.engines.clear()


class SharedEngine:
    """An engine several cameras call at once.

    ``infer`` batches across cameras the way a DeepStream muxer or Triton's dynamic batcher does,
    without a delay window: the calls that arrive while the engine is busy are run together as
    the next call (one batch along axis 0, at most ``max_batch`` rows), so nothing waits for a
    camera whose frame is not there, and the busier the engine, the larger its batches. Only
    backends whose batch axis is dynamic and that take any batch size are batched (ONNX Runtime,
    OpenVINO); a TensorRT engine is built for one batch range and a fixed batch axis is the
    model's own, so those calls, and ``run`` (streaming states, several inputs), are only
    serialised: a TensorRT context or an OpenVINO request is not reentrant. Outputs are copied
    before the next call may start (a backend may hand out its own buffers). ``close`` is the
    pool's."""

    BATCHING_BACKENDS = ("onnxruntime", "openvino")

    def __init__(self, real, max_batch: int = 16):
        self.real = real
        self.max_batch = max(1, max_batch)
        dim = real.input.shape[0] if getattr(real, "input", None) is not None and real.input.shape else 1
        self.batching = not isinstance(dim, int) and getattr(real, "name", "") in self.BATCHING_BACKENDS
        self._cv = threading.Condition(threading.Lock())
        self._queue: List[_Request] = []
        self._busy = False
        self.calls = self.rows = self.largest = 0  # what batching achieved, for the run's last lines

    def __getattr__(self, name):
        return getattr(self.real, name)

    def infer(self, x, output=None):
        if not self.batching:
            with self._cv:
                return self._count(_copy(self.real.infer(x, output)), len(x))
        req = _Request(x, output)
        with self._cv:
            self._queue.append(req)
            while not req.done:
                if self._busy:
                    self._cv.wait()
                    continue
                self._busy = True
                batch = self._take()
                self._cv.release()
                try:
                    self._run(batch)
                finally:
                    self._cv.acquire()
                    self._busy = False
                    self._cv.notify_all()
        if req.error is not None:
            raise req.error
        return req.result

    def _take(self) -> List["_Request"]:
        """The oldest call and those after it that fit one batch with it."""
        first = self._queue[0]
        key = (first.output, first.x.shape[1:], first.x.dtype)
        batch, rows = [], 0
        for r in list(self._queue):
            if (r.output, r.x.shape[1:], r.x.dtype) == key and (not batch or rows + len(r.x) <= self.max_batch):
                batch.append(r)
                rows += len(r.x)
                self._queue.remove(r)
        return batch

    def _run(self, batch: List["_Request"]) -> None:
        import numpy as np

        try:
            x = batch[0].x if len(batch) == 1 else np.concatenate([r.x for r in batch])
            out = self.real.infer(x, batch[0].output)
            self._count(None, len(x))
            at = 0
            for r in batch:
                r.result = np.array(out[at:at + len(r.x)], copy=True)
                at += len(r.x)
        except BaseException as e:  # noqa: BLE001 - every caller of this batch gets it
            for r in batch:
                r.error = e
        for r in batch:
            r.done = True

    def _count(self, out, rows: int):
        self.calls += 1
        self.rows += rows
        self.largest = max(self.largest, rows)
        return out

    def run(self, feeds, outputs=None):
        with self._cv:
            while self._busy:
                self._cv.wait()
            return [_copy(o) for o in self.real.run(feeds, outputs)]

    def describe_batching(self) -> str:
        if not self.batching:
            return f"{self.calls} calls, not batched across cameras (serialised)"
        return f"{self.calls} calls for {self.rows} inputs, up to {self.largest} per call"

    def close(self) -> None:
        pass


class _Request:
    __slots__ = ("x", "output", "result", "error", "done")

    def __init__(self, x, output):
        self.x, self.output = x, output
        self.result = self.error = None
        self.done = False


def _copy(a):
    import numpy as np

    return np.array(a, copy=True) if isinstance(a, np.ndarray) else a


class _Prefixed:
    """A camera's log lines: ``actionnet: [door] ...``; whole lines only across threads (``print``
    writes its text and its newline in two calls, so each thread's text waits for its newline)."""

    _lock = threading.Lock()

    def __init__(self, stream, name: str):
        self.stream, self.name = stream, name
        self._partial = threading.local()

    def write(self, text: str) -> int:
        *lines, rest = (getattr(self._partial, "text", "") + text).split("\n")
        self._partial.text = rest
        with self._lock:
            for line in lines:
                if line.startswith("actionnet: "):
                    line = f"actionnet: [{self.name}] " + line[len("actionnet: "):]
                elif line.strip():
                    line = f"[{self.name}] " + line
                self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()

    def isatty(self) -> bool:
        return False


class _CameraEvents:
    """A camera's events sinks; every event names its camera."""

    def __init__(self, sinks, name: str):
        self.sinks, self.name = sinks, name

    @property
    def stopped(self) -> bool:
        return self.sinks.stopped

    def __bool__(self) -> bool:
        return bool(self.sinks)

    def write(self, event: dict) -> None:
        self.sinks.write(dict(event, camera=self.name))

    def close(self, keep: bool = True) -> None:
        self.sinks.close(keep)


class _Outputs:
    """Several outputs of one camera (a file and a page): each frame to each."""

    def __init__(self, outputs):
        self.outputs = outputs

    @property
    def stopped(self) -> bool:
        return any(o.stopped for o in self.outputs)

    def write(self, frame) -> None:
        for o in self.outputs:
            o.write(frame)

    def write_at(self, frame, time: float) -> None:  # a live camera's recording keeps its capture times
        for o in self.outputs:
            o.write_at(frame, time)

    def close(self, keep: bool = True) -> None:
        first = None
        for o in self.outputs:
            try:
                o.close(keep=keep)
            except Exception as e:  # noqa: BLE001 - the others are still finalised
                first = first or e
        if first is not None:
            raise first


def _is_live(uri: str) -> bool:
    return uri.startswith(LIVE_SCHEMES) or uri.startswith("/dev/video")


class Camera:
    """One camera's own things: source, analyser, outputs, events, and the thread that runs them."""

    def __init__(self, cc: CameraConfig, log):
        self.name, self.config, self.outputs = cc.name, cc.config, cc.outputs
        self.log = _Prefixed(log, cc.name)
        self.source = self.analyser = self.output = self.events = None
        self.stats = None
        self.error: Optional[BaseException] = None
        self.thread: Optional[threading.Thread] = None

    def open_source(self, decode_threads: Optional[int] = None):
        from .cli import open_source

        self.source = open_source(self.config, self.log, decode_threads)

    def open_rest(self):
        """Analyser, then events and outputs, as the command opens them (runtime/cli.py ``run``)."""
        from .cli import open_analysis
        from .outputs import open_output

        c = self.config
        if c.headless and not self.outputs and not c.events:
            print("actionnet: warning: headless with neither an output nor events: nothing will be saved", file=self.log)
        self.analyser, events = open_analysis(c, self.source, self.log)
        self.events = _CameraEvents(events, self.name)
        opened = []
        try:
            for uri in self.outputs or ([c.output_uri] if c.output_uri else []):
                o = open_output(uri, self.source.rate, log=self.log, headless=c.headless, web_token=c.web_token)
                if o is None:
                    continue
                opened.append(o)
                if getattr(o, "events", None) is not None:
                    events.add(o.events)
        except BaseException:
            for o in opened:
                o.close(keep=False)
            self.events, events = None, self.events
            events.close()  # files and brokers: a camera opened late has no one else to close them
            raise
        self.output = opened[0] if len(opened) == 1 else _Outputs(opened) if opened else None
        shown = ", ".join(map(redact, self.outputs)) or "-"
        print(f"actionnet: {self.source.describe()} -> {shown}; {self.analyser.describe()}", file=self.log)

    def start(self, stop, opening: bool = False) -> None:
        self.thread = threading.Thread(target=self._main, args=(stop, opening), name=f"camera-{self.name}", daemon=True)
        self.thread.start()

    def _main(self, stop, opening: bool) -> None:
        from .pipeline import run as run_loop, summary_line

        try:
            if opening:  # a live camera that was down at start: retried while the others run
                self._open_late(stop)
                if self.source is None:
                    return
                self.open_rest()
            self.stats = run_loop(self.source, self.analyser, output=self.output, events=self.events or None,
                                  stop=stop)
            print(f"actionnet: {summary_line(self.stats, self.analyser)}", file=self.log)
            if self.config.timings:  # a shared engine's "infer" includes waiting for the other cameras' calls
                print(self.stats.timer.table(), file=self.log)
        except ActionNetError as e:
            self.error = e
            print(f"actionnet: error: camera {self.name}: {e}", file=self.log.stream)
        except BaseException as e:  # noqa: BLE001 - a bug: say it, and let the other cameras run
            self.error = e
            with _Prefixed._lock:
                traceback.print_exc(file=self.log.stream)
        finally:
            self.close()

    def _open_late(self, stop) -> None:
        import time

        deadline = time.monotonic() + max(self.config.source.reconnect_timeout, 0.0)
        while not stop.stopped:
            try:
                self.open_source()
                print(f"actionnet: {self.config.input} is up", file=self.log)
                return
            except InputError as e:
                if time.monotonic() >= deadline:
                    raise InputError(f"{self.config.input} did not come up within {self.config.source.reconnect_timeout:g} s "
                                     f"(--reconnect-timeout): {e}") from None
                time.sleep(1.0)

    def close(self) -> None:
        if self.source is not None:
            self.source.close()
            self.source = None
        if self.analyser is not None:
            self.analyser.close()


def _named(e: ActionNetError, name: str) -> ActionNetError:
    """The same error (its class and exit code), its one line naming the camera."""
    e.args = (f"camera {name}: {e}",)
    return e


def run_site(path: str, log=sys.stderr) -> int:
    """Check the whole file, open every camera (a file that cannot be read stops the start in one
    line naming its camera; a live camera that is down is retried while the others run), then run
    each on its own thread until all end or a stop (Ctrl-C, SIGTERM) finalises them all."""
    from . import engines
    from .pipeline import StopFlag

    configs = load_site(path)
    cameras = [Camera(cc, log) for cc in configs]
    late: List[Camera] = []
    # one bound for a shared engine's batches: the largest --max-batch any camera asks for
    pool = EnginePool(log, max(c.config.persons.max_batch if c.config.persons else 16 for c in configs))
    engines.shared_pool = pool
    # A file's decoder takes a thread per core by default, and holds a 1080p frame per thread
    # (45 MiB each here); with a camera per core or more, the cameras are the parallelism.
    threads = max(1, (os.cpu_count() or 1) // len(cameras)) if len(cameras) > 1 else None
    stop = None
    try:
        for cam in cameras:
            try:
                cam.open_source(threads)
            except InputError as e:
                if not _is_live(cam.config.input):
                    raise UsageError(f"camera {cam.name}: {e}") from None
                print(f"actionnet: [{cam.name}] cannot open {cam.config.input} yet ({e}); retrying for "
                      f"{cam.config.source.reconnect_timeout:g} s while the other cameras run", file=log)
                late.append(cam)
            except ActionNetError as e:
                raise _named(e, cam.name)
        for cam in cameras:
            if cam in late:
                continue
            try:
                cam.open_rest()
            except ActionNetError as e:
                raise _named(e, cam.name)
        print(f"actionnet: {len(cameras)} cameras, {pool.opens} {'engine' if pool.opens == 1 else 'engines'} "
              f"loaded", file=log)
        with StopFlag() as stop:
            for cam in cameras:
                cam.start(stop, opening=cam in late)
            _join(cameras, stop)
        for e in pool.engines.values():  # what sharing and batching came to
            print(f"actionnet: {e.real.path}: {e.describe_batching()}", file=log)
    except BaseException:
        for cam in cameras:
            if cam.thread is None:
                if cam.output is not None:
                    cam.output.close(keep=False)
                if cam.events is not None:
                    cam.events.close()
                cam.close()
        raise
    finally:
        engines.shared_pool = None
        if stop is not None:  # whatever ended this (an error, a Ctrl-C between two joins)
            stop.stopped = True
        if _join(cameras, stop, timeout=60.0):  # never free an engine under a camera still using it
            pool.close()
    errors = [c.error for c in cameras if c.error is not None]
    if errors:
        return max(getattr(e, "exit_code", 1) for e in errors)
    return 0


def _join(cameras, stop=None, timeout: Optional[float] = None) -> bool:
    """Wait for every camera thread to finish finalising; a further Ctrl-C (the first is the
    StopFlag's) stops them now and ends the MQTT drains they wait on. False if one is still stuck
    after ``timeout`` seconds (its engines are then left to the process's exit)."""
    import time

    end = None if timeout is None else time.monotonic() + timeout
    while any(c.thread is not None and c.thread.is_alive() for c in cameras):
        if end is not None and time.monotonic() > end:
            return False
        try:
            for c in cameras:
                if c.thread is not None:
                    c.thread.join(0.2)
        except KeyboardInterrupt:
            if stop is not None:
                stop.stopped = True
            _abandon_drains()
    return True


def _abandon_drains() -> None:
    """MQTT sinks waiting on cameras' threads for their queues to reach the broker stop waiting
    (a lone run's sink sees the Ctrl-C itself)."""
    mqtt = sys.modules.get("actionnet.mqtt")
    if mqtt is not None:
        mqtt.abandon_drains()


def check_alone(args) -> None:
    """``--config`` takes every option from the file: an INPUT or an option beside it would be
    ambiguous (which camera, and does it win over the file?)."""
    from .cli import build_parser

    defaults = vars(build_parser().parse_args([]))
    given = [k for k, v in vars(args).items() if k != "config" and v != defaults.get(k)]
    if given:
        what = "INPUT" if given[0] == "input" else "OUTPUT" if given[0] == "output" else "--" + given[0].replace("_", "-")
        raise UsageError(f"--config takes its inputs and options from the file; {what} cannot be given with it "
                         f"(put it in the file)")


__all__ = ["CameraConfig", "EnginePool", "SharedEngine", "check_alone", "load_site", "run_site"]
