"""Typed options: what a classifier, per-person mode and a whole run are asked to do.

The CLI turns its flags into a :class:`RunConfig`; the Python API builds the same
:class:`ClassifierOptions` and :class:`PersonOptions` from keyword arguments. Each option is
checked once, here, with the flag's name in the message, so the CLI and the API cannot drift
apart. Units are the same on both sides: seconds for times (``track_timeout``,
``reconnect_timeout``), frames for strides (``skip_frames``, ``cadence``).
"""

from __future__ import annotations

import argparse
import os
import re
from dataclasses import dataclass, field, fields
from typing import Optional, Sequence, Tuple, Union

from .errors import OutputError, UsageError

CROP_MODES = ("anchored", "follow")
DETECTOR_LAYOUTS = ("yolov5", "yolov8", "end2end")
# what a video file output can be named (PyAV muxes them all; .avi gets MPEG-4 part 2)
VIDEO_OUTPUT_EXTENSIONS = (".mp4", ".mkv", ".avi", ".flv", ".mov", ".m4v", ".webm", ".ts")


def floats(n: int):
    """An argparse type: ``n`` comma-separated numbers, as ``--mean 0.43,0.40,0.37``."""

    def parse(s):
        try:
            v = tuple(float(x) for x in s.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {s!r}") from None
        if len(v) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {s!r}")
        return v

    return parse


@dataclass
class ClassifierOptions:
    """One action model and how its scores are read: the same for whole-frame and per-person mode."""

    network: Optional[str] = "resnet-18"  # a zoo name; ignored when ``model`` is given
    model: Optional[str] = None
    labels: Optional[str] = None
    input_blob: Optional[str] = None
    output_blob: Optional[str] = None
    engine: str = "auto"
    precision: Optional[str] = None
    threads: Optional[int] = None
    threshold: float = 0.01
    top_k: int = 5
    skip_frames: Optional[int] = None  # None: the stride the model was trained at, else 1
    cadence: Optional[int] = None  # None: 1 for the whole frame, per person see person_cadence
    smoothing: float = 0.0
    min_duration: float = 0.0  # seconds a new label must hold before it is reported (runtime/segments.py)
    # preprocessing overrides (None: the model's own)
    mean: Optional[Tuple[float, float, float]] = None
    std: Optional[Tuple[float, float, float]] = None
    value_scale: Optional[float] = None
    color_order: Optional[str] = None
    resize_mode: Optional[str] = None
    output_kind: Optional[str] = None

    def validate(self) -> "ClassifierOptions":
        _range(self.threshold, 0.0, 1.0, "--threshold")
        if self.skip_frames is not None and self.skip_frames < 0:
            raise UsageError(f"--skip-frames must be >= 0, got {self.skip_frames}")
        if self.cadence is not None and self.cadence < 1:
            raise UsageError(f"--cadence must be >= 1, got {self.cadence}")
        if self.top_k < 1:
            raise UsageError(f"--top-k must be >= 1, got {self.top_k}")
        if not 0.0 <= self.smoothing < 1.0:
            raise UsageError(f"--smoothing must be in [0, 1), got {self.smoothing}")
        if self.min_duration < 0:
            raise UsageError(f"--min-duration must be >= 0 seconds, got {self.min_duration:g}")
        if self.threads is not None and self.threads < 0:
            raise UsageError(f"--threads must be >= 0 (0: all cores), got {self.threads}")
        return self

    def overrides(self) -> dict:
        """The preprocessing fields a user set (the model's metadata gives the rest)."""
        return dict(mean=self.mean, std=self.std, value_scale=self.value_scale, color_order=self.color_order,
                    resize_mode=self.resize_mode, output_kind=self.output_kind)


@dataclass
class PersonOptions:
    """Per-person mode: the detector, the tracker and the crops."""

    detector: Optional[str] = None
    person_conf: float = 0.25
    nms_iou: float = 0.45
    detector_classes: Sequence = ("person",)
    detector_layout: Optional[str] = None
    track_timeout: float = 1.0  # seconds a lost person is kept
    context: float = 1.2
    crop_mode: str = "anchored"
    max_batch: int = 16
    # the detector runs on every N-th frame, Kalman predictions in between; "auto": N follows the
    # measured times (runtime/persons.py DetectEvery); None: auto for a live source, else 1
    detect_every: Optional[Union[int, str]] = None
    detector_engine: Optional[str] = None  # None: --engine's; under auto the detector's own rule

    def validate(self) -> "PersonOptions":
        if not self.detector:
            raise UsageError("--persons needs --detector=FILE.onnx (a YOLO person detector; see actionnet-export yolo)")
        _range(self.person_conf, 0.0, 1.0, "--person-conf")
        if not 0.0 < self.nms_iou <= 1.0:
            raise UsageError(f"--nms-iou must be in (0, 1], got {self.nms_iou}")
        if self.detector_layout is not None and self.detector_layout not in DETECTOR_LAYOUTS:
            raise UsageError(f"--detector-layout must be one of {', '.join(DETECTOR_LAYOUTS)}, "
                             f"got {self.detector_layout!r}")
        if self.track_timeout < 0:
            raise UsageError(f"--track-timeout must be >= 0 seconds, got {self.track_timeout}")
        if self.context < 1.0:
            raise UsageError(f"--crop-context must be >= 1 (the crop holds the whole box), got {self.context}")
        if self.crop_mode not in CROP_MODES:
            raise UsageError(f"--crop-mode must be one of {', '.join(CROP_MODES)}, got {self.crop_mode!r}")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.detect_every not in (None, "auto") and (not isinstance(self.detect_every, int)
                                                        or isinstance(self.detect_every, bool) or self.detect_every < 1):
            raise UsageError(f"--detect-every must be auto or a whole number >= 1, got {self.detect_every!r}")
        return self


PERSON_REFRESH_S = 0.5  # per person, a label about twice a second unless --cadence says otherwise


def person_cadence(fps: Optional[float], skip_frames: int) -> int:
    """The per-person default cadence: stored frames between two classifications of one person
    so that each label is refreshed about every :data:`PERSON_REFRESH_S` seconds. Per person,
    the classifier's work grows with the number of people; a whole-frame cadence of 1 would
    make it a clip per person per stored frame."""
    stored_per_s = float(fps or 30.0) / (skip_frames + 1)
    return max(1, int(round(stored_per_s * PERSON_REFRESH_S)))


@dataclass
class SourceConfig:
    """What a user may ask of a camera or stream (jetson-inference's ``--input-*`` names)."""

    width: Optional[int] = None
    height: Optional[int] = None
    rate: Optional[float] = None
    codec: Optional[str] = None
    flip: int = 0
    reconnect_timeout: float = 30.0  # seconds; 0 turns reconnecting off
    live: bool = False  # play a file at its own rate, dropping frames when behind
    loop: int = 1  # plays of a file; -1 for ever

    def validate(self) -> "SourceConfig":
        if self.loop == 0 or self.loop < -1:
            raise UsageError(f"--input-loop is a number of plays, or -1 for ever; got {self.loop}")
        for flag, v in (("--input-width", self.width), ("--input-height", self.height), ("--input-rate", self.rate)):
            if v is not None and v <= 0:
                raise UsageError(f"{flag} must be positive, got {v:g}")
        if self.reconnect_timeout < 0:
            raise UsageError(f"--reconnect-timeout must be >= 0, got {self.reconnect_timeout:g}")
        return self


@dataclass
class MqttOptions:
    """How events reach an MQTT broker (``--events mqtt://...``, :class:`~actionnet.mqtt.MqttSink`).
    A broker down at start or mid-run is retried as a camera is: ``reconnect_timeout`` is the
    same ``--reconnect-timeout``."""

    ca: Optional[str] = None  # a private CA for mqtts:// (default: the system's CA store)
    queue: Optional[str] = None  # a file for what the broker has not acknowledged, beyond memory
    queue_size: Optional[int] = None  # None: 10000 in memory, 1000000 with a queue file
    discovery: bool = False  # Home Assistant MQTT discovery
    reconnect_timeout: float = 30.0

    def validate(self, events: Sequence[str]) -> "MqttOptions":
        """The broker URIs and these flags, before anything connects or loads."""
        from .mqtt import is_broker, paho_client, parse_uri

        brokers = [parse_uri(e) for e in events if is_broker(e)]
        if brokers:  # the [mqtt] extra, before the source opens
            paho_client(next(e for e in events if is_broker(e)))
        given = [f for f, v in (("--mqtt-ca", self.ca), ("--mqtt-queue", self.queue),
                                ("--mqtt-queue-size", self.queue_size), ("--mqtt-discovery", self.discovery)) if v]
        if given and not brokers:
            raise UsageError(f"{given[0]} is for an MQTT events sink (--events mqtt://HOST/TOPIC)")
        if self.ca is not None:
            if not any(b.tls for b in brokers):
                raise UsageError("--mqtt-ca is for mqtts:// brokers (TLS)")
            if not os.path.isfile(self.ca):
                raise OutputError(f"--mqtt-ca {self.ca}: no such file")
        if self.queue is not None:
            if len(brokers) > 1:
                raise UsageError("--mqtt-queue holds one broker's queue; give one mqtt:// sink with it")
            folder = os.path.dirname(os.path.abspath(self.queue))
            if not os.path.isdir(folder):
                raise OutputError(f"--mqtt-queue {self.queue}: folder {folder} does not exist")
        if self.queue_size is not None and self.queue_size < 1:
            raise UsageError(f"--mqtt-queue-size must be >= 1, got {self.queue_size}")
        return self


@dataclass
class RunConfig:
    """A whole ``actionnet`` run: where frames come from, what analyses them, where results go."""

    input: str
    output: Optional[str] = None  # None: a window unless headless
    classifier: ClassifierOptions = field(default_factory=ClassifierOptions)
    persons: Optional[PersonOptions] = None  # per-person mode when set
    source: SourceConfig = field(default_factory=SourceConfig)
    events: Tuple[str, ...] = ()  # sinks: files, "-" for stdout, URIs (mqtt://...), as many as given
    headless: bool = False
    progress: bool = True
    timings: bool = False
    web_token: Optional[str] = None  # what a webrtc:// output's page asks of its viewers
    mqtt: MqttOptions = field(default_factory=MqttOptions)  # for mqtt:// and mqtts:// events sinks

    @property
    def output_uri(self) -> Optional[str]:
        return self.output or (None if self.headless else "display://0")

    def validate(self) -> "RunConfig":
        """Every check that needs no model and no source, so a mistake costs no model load."""
        self.classifier.validate()
        self.source.validate()
        if self.persons is not None:
            self.persons.validate()
        check_paths(self.input, self.output, self.events)
        self.mqtt.validate(self.events)
        if self.output:
            check_output(self.output)
        if self.output and self.output.startswith("webrtc://"):  # the URI, the [web] extra, a free port
            from .web import check_web_output

            check_web_output(self.output, self.web_token)
        elif self.web_token is not None:
            raise UsageError("--web-token is for a webrtc:// output (as in webrtc://@:8554/output)")
        return self


def redact(uri: str) -> str:
    """``uri`` as it may be printed: the password of ``user:password@`` and a ``token=`` value
    masked. Start-up lines and errors end up in logs and bug reports; a camera's or broker's
    password and a page's token must not. The userinfo ends at the last ``@`` before the path, so
    a password with an unescaped ``@`` or ``/`` is masked whole."""
    if "://" in uri:
        scheme, rest = uri.split("://", 1)
        at = rest.rfind("@", 0, len(rest) if "?" not in rest else rest.index("?"))
        if at >= 0 and ":" in rest[:at]:
            rest = rest[:rest.index(":")] + ":***" + rest[at:]
        uri = f"{scheme}://{rest}"
    return re.sub(r"([?&]token=)[^&#]*", r"\1***", uri)


def is_uri(name: str) -> bool:
    """``scheme://...``: a network sink or output, not a path on this machine."""
    return "://" in name and name.split("://", 1)[0].isalnum()


def check_paths(input: str, output: Optional[str], events: Sequence[str]) -> None:
    """Refuse outputs that would overwrite the input or each other."""
    if output and os.path.abspath(output) == os.path.abspath(input):
        raise UsageError("output would overwrite the input; choose another output path")
    seen = set()
    for events in events:
        key = events if events == "-" or is_uri(events) else os.path.abspath(events)
        if key in seen:
            raise UsageError(f"--events {events} is given twice")
        seen.add(key)
        if key is events:
            continue
        for what, path in (("input", input), ("output", output)):
            if path and os.path.abspath(events) == os.path.abspath(path):
                raise UsageError(f"--events would overwrite the {what} {path}; choose another events file")
        folder = os.path.dirname(os.path.abspath(events))
        if not os.path.isdir(folder):
            raise OutputError(f"cannot write events to {events}: folder {folder} does not exist")


def check_output(uri: str) -> None:
    """A file output's folder and extension, checked before anything is opened."""
    from .sources import IMAGE_EXTENSIONS

    if "://" in uri:
        return  # display://, rtp://, rtsp://: checked when opened
    path = os.path.abspath(uri)
    folder, base = os.path.split(path)
    ext = os.path.splitext(base)[1].lower()
    if "%" in base and ext in IMAGE_EXTENSIONS:
        return  # an image sequence makes its folder
    if uri.endswith(("/", os.sep)) or (os.path.isdir(path) and not ext):
        return  # an image folder: numbered JPEGs, the folder made if missing
    if ext in IMAGE_EXTENSIONS:  # one picture (a photo in, the annotated photo out)
        if not os.path.isdir(folder):
            raise OutputError(f"cannot write {uri}: folder {folder} does not exist")
        return
    if ext not in VIDEO_OUTPUT_EXTENSIONS:
        raise OutputError(f"output {uri}: unknown video type {ext or '(no extension)'}; name it "
                          f"{', '.join(VIDEO_OUTPUT_EXTENSIONS)}, out.jpg for one image, or out/%05d.jpg (or out/) for images")
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {uri}: folder {folder} does not exist")


def _range(v: float, lo: float, hi: float, flag: str) -> None:
    if not lo <= v <= hi:
        raise UsageError(f"{flag} must be between {lo:g} and {hi:g}, got {v}")


def option_names(cls) -> Tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
