"""``actionnet [options] INPUT [OUTPUT]``: flags -> a typed :class:`~actionnet.config.RunConfig`
-> source, analyser, outputs -> the run loop. Nothing else happens here.

Flag names follow jetson-inference's ``actionnet`` (``--network``, ``--model``, ``--labels``,
``--input-blob``, ``--output-blob``, ``--threshold``, ``--skip-frames``, ``--headless``).
User errors print one line on stderr and exit non-zero, and every one that can be found without
the model is found before it loads; a stop (Ctrl-C, SIGTERM) finalises the output video and the
events and exits 0.

The frame's path, in call order (:func:`run`)::

    video_source(INPUT) -> ActionNet | PersonActionNet -> pipeline.run -> EventSink, video_output(OUTPUT)
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

from .config import (
    CROP_MODES,
    DETECTOR_LAYOUTS,
    ClassifierOptions,
    MqttOptions,
    PersonOptions,
    RunConfig,
    SourceConfig,
    floats,
    redact,
)
from .engines import ENGINES
from .errors import ActionNetError, UsageError
from .spec import COLOR_ORDERS, RESIZE_MODES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="actionnet", allow_abbrev=False,
                description="Classify the action in a video, a camera or an image folder.",
                epilog="examples:\n  actionnet input.mp4 output.mp4\n"
                       "  actionnet --network=resnet-34 --skip-frames=0 --threshold=0.2 input.mp4 output.mp4\n"
                       "  actionnet --model=m.onnx --events=events.jsonl --headless input.mp4",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="video file, image folder or glob, /dev/videoN, csi://N, rtsp://..., rtp://@:port")
    p.add_argument("output", nargs="?", help="video file (.mp4, .mkv, .avi, .flv), out/%%05d.jpg, display://0, "
                   "rtsp://@:port/path, rtp://host:port, webrtc://@:port/name (a page for browsers; "
                   "default: display://0 unless --headless)")
    p.add_argument("--config", metavar="FILE", help="several cameras in one process, one set of engines: a YAML "
                   "site file (options and cameras:; see docs/cameras.md) instead of INPUT and options "
                   "(default: none)")
    m = p.add_argument_group("model")
    m.add_argument("--network", default="resnet-18", help="model zoo name (default: resnet-18)")
    m.add_argument("--model", help="ONNX model file, or a TensorRT .engine (default: the --network model)")
    m.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="label file, one class per line (default: the model's labels); zero-shot models: the "
                        "actions as text prompts (several values, one comma-separated value, or a file)")
    m.add_argument("--input-blob", help="input tensor name, for models without actionnet metadata (default: the model's first input)")
    m.add_argument("--output-blob", help="output tensor name, for models without actionnet metadata (default: the model's first output)")
    m.add_argument("--engine", default="auto", choices=ENGINES,
                   help="inference backend; auto picks the fastest present and says which (default: auto)")
    m.add_argument("--server", help="Triton Inference Server, grpc://HOST:PORT (default: none; with it --model "
                   "and --detector are model names on that server, and --engine is triton)")
    m.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="engine precision: TensorRT builds for it; OpenVINO's inference precision (default fp32)")
    m.add_argument("--threads", type=int, help="CPU threads for inference (default: all cores)")
    m.add_argument("--mean", type=floats(3), help="per-channel mean after value scaling, e.g. 0.4345,0.4051,0.3775 "
                   "(default: the model's; jetson-inference's Kinetics mean for models without metadata). "
                   "--mean, --std and --value-scale apply where the host normalises (foreign float models); "
                   "a model that normalises in its graph (actionnet's exports) refuses other values than its own")
    m.add_argument("--std", type=floats(3), help="per-channel std after mean subtraction, e.g. 1,1,1 (default: the model's)")
    m.add_argument("--value-scale", type=float, help="divide pixel values by this first (default: the model's, else 255)")
    m.add_argument("--color-order", choices=COLOR_ORDERS, help="channel order the model expects (default: the model's)")
    m.add_argument("--resize-mode", choices=RESIZE_MODES,
                   help="how frames are fitted to the model's size (default: the model's)")
    m.add_argument("--output-kind", choices=("logits", "probabilities"),
                   help="what the model outputs (default: the model's, else logits)")
    g = p.add_argument_group("input (cameras and streams)")
    g.add_argument("--input-width", type=int, help="capture width (V4L2, CSI; default: the camera's)")
    g.add_argument("--input-height", type=int, help="capture height (V4L2, CSI; default: the camera's)")
    g.add_argument("--input-rate", type=float, help="capture frame rate (V4L2, CSI; default: the camera's)")
    g.add_argument("--input-codec", help="V4L2: mjpeg, yuyv, h264, raw (default: MJPG where offered); "
                                         "RTP: h264, h265, mjpeg, mpeg4 (default h264)")
    g.add_argument("--input-flip", type=int, default=0, help="CSI: nvvidconv flip-method 0-7 (default 0)")
    g.add_argument("--live", action="store_true",
                   help="play a file or image folder at its own frame rate, as a camera: frames the analysis "
                        "cannot keep up with are dropped and counted (default: files are read exactly, every frame)")
    g.add_argument("--input-loop", type=int, default=1, metavar="N",
                   help="play a file or image folder N times, -1 for ever (default 1)")
    g.add_argument("--reconnect-timeout", type=float, default=30.0,
                   help="seconds to keep reconnecting a lost camera or stream before giving up (default 30)")
    c = p.add_argument_group("classification")
    c.add_argument("--threshold", type=float, default=0.01, help="minimum confidence to report a label (default 0.01)")
    c.add_argument("--skip-frames", type=int, default=None,
                   help="frames dropped between stored frames (default: the model's training stride, else 1)")
    c.add_argument("--cadence", type=int, default=None,
                   help="stored frames between classifications (default 1; per person: each person's label "
                        "refreshed about twice a second, round(0.5 s x fps / (skip-frames + 1)) stored frames, "
                        "e.g. 8 at 30 fps with --skip-frames 1)")
    c.add_argument("--top-k", type=int, default=5, help="classes listed per event (default 5)")
    c.add_argument("--smoothing", type=float, default=0.0,
                   help="weight of past probabilities in a moving average, 0 (off) to <1 (default 0)")
    c.add_argument("--min-duration", type=float, default=0.0, metavar="SECONDS",
                   help="a new label is reported only after it has been the top class this long (default 0: at once)")
    o = p.add_argument_group("output")
    o.add_argument("--events", action="append", default=[], metavar="FILE|-|URI",
                   help="write JSON-lines events to this file, - for stdout, or a broker URI (mqtt://HOST/TOPIC); "
                        "may be given more than once (default: no events)")
    o.add_argument("--web-token", metavar="TOKEN", help="a webrtc:// page, its video and its events refuse "
                   "viewers without this token; open it as http://HOST:PORT/?token=TOKEN (default: none)")
    o.add_argument("--headless", action="store_true", help="no display window")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--timings", action="store_true", help="print a per-stage time table at the end")
    _add_person_arguments(p)
    _add_mqtt_arguments(p)
    return p


def _add_person_arguments(p) -> None:
    g = p.add_argument_group("per-person mode")
    g.add_argument("--persons", action="store_true", help="detect, track and classify every person on their own")
    g.add_argument("--detector", help="person detector ONNX (YOLOv5/v8/11/26, e.g. from actionnet-export yolo; default: none, "
                   "needed with --persons)")
    g.add_argument("--person-conf", type=float, default=0.25, help="detector score threshold (default 0.25)")
    g.add_argument("--nms-iou", type=float, default=0.45, help="IoU above which NMS drops a box (default 0.45)")
    g.add_argument("--detector-classes", default="person",
                   help="comma-separated class names or ids to track (default: person)")
    g.add_argument("--detector-layout", choices=DETECTOR_LAYOUTS,
                   help="detector output layout (models without actionnet metadata; default: from the shape)")
    g.add_argument("--track-timeout", type=float, default=1.0,
                   help="seconds a lost person is kept before their clip is freed (default 1)")
    g.add_argument("--crop-context", type=float, default=1.2,
                   help="crop side as a multiple of the person box's longer side (default 1.2)")
    g.add_argument("--crop-margin", type=float, metavar="PERCENT",
                   help="margin around the person box in percent of its size on each side, as the Ultralytics "
                        "zero-shot example's crop_margin_percentage (overrides --crop-context; default: none)")
    g.add_argument("--crop-mode", choices=CROP_MODES, default="anchored",
                   help="anchored: crop stays put while the person is inside it; follow: re-centred every frame "
                        "(default: anchored)")
    g.add_argument("--max-batch", type=int, default=16, help="most person clips per engine call (default 16)")
    g.add_argument("--detector-engine", choices=ENGINES,
                   help="the detector's backend (default: --engine's; under auto, ONNX Runtime for a float detector "
                        "on the CPU, OpenVINO for an INT8 one)")
    g.add_argument("--detect-every", type=_detect_every, default=None, metavar="N|auto",
                   help="run the detector on every N-th frame; the tracker's Kalman prediction carries each box "
                        "in between; auto: N from 1 to 8 chosen and adjusted from the measured times to keep up "
                        "(default: auto for a camera, a stream or --live, else 1: every frame)")


def _add_mqtt_arguments(p) -> None:
    g = p.add_argument_group("events to an MQTT broker (--events mqtt://[USER[:PASS]@]HOST[:PORT]/TOPIC, mqtts:// for TLS)")
    g.add_argument("--mqtt-ca", metavar="FILE", help="CA certificate (PEM) of a private CA for mqtts:// "
                   "(default: the system's CA store)")
    g.add_argument("--mqtt-queue", metavar="FILE", help="events the broker has not acknowledged go to FILE beyond the "
                   "first 1000; what a stopped run could not send is sent first by the next run with the same FILE "
                   "(default: memory only)")
    g.add_argument("--mqtt-queue-size", type=int, metavar="N", help="most events kept while the broker is away; "
                   "beyond it the oldest are dropped (default 10000, 1000000 with --mqtt-queue)")
    g.add_argument("--mqtt-discovery", action="store_true",
                   help="announce the camera to Home Assistant (MQTT discovery) as a sensor of the current action")


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The parsed flags as a typed, validated configuration (no file is opened but to check it)."""
    from .engines.triton import apply_server_args  # --engine triton --server URL (issue 19)
    from .zeroshot import check_label_values, split_trailing_paths

    # --labels takes several prompts (zero-shot models); positionals written after them come back
    args.labels, (args.input, args.output) = split_trailing_paths(args.labels, [args.input, args.output])
    if args.input is None:
        raise UsageError("an INPUT is required (a video file, image folder, camera or stream)")
    check_label_values(args.labels)
    if args.crop_margin is not None:  # the Ultralytics zero-shot example's margin, in percent per side
        if args.crop_margin < 0:
            raise UsageError(f"--crop-margin must be >= 0 percent, got {args.crop_margin}")
        args.crop_context = 1.0 + 2.0 * args.crop_margin / 100.0

    apply_server_args(args)
    classifier = ClassifierOptions(
        network=args.network, model=args.model, labels=args.labels, input_blob=args.input_blob,
        output_blob=args.output_blob, engine=args.engine, precision=args.precision, threads=args.threads,
        threshold=args.threshold, top_k=args.top_k, skip_frames=args.skip_frames, cadence=args.cadence,
        smoothing=args.smoothing, min_duration=args.min_duration, mean=args.mean, std=args.std, value_scale=args.value_scale,
        color_order=args.color_order, resize_mode=args.resize_mode, output_kind=args.output_kind)
    persons = None
    if args.persons or args.detector:
        persons = PersonOptions(
            detector=args.detector, person_conf=args.person_conf, nms_iou=args.nms_iou,
            detector_classes=tuple(c.strip() for c in args.detector_classes.split(",") if c.strip()),
            detector_layout=args.detector_layout, track_timeout=args.track_timeout, context=args.crop_context,
            crop_mode=args.crop_mode, max_batch=args.max_batch, detect_every=args.detect_every,
            detector_engine=args.detector_engine)
    source = SourceConfig(width=args.input_width, height=args.input_height, rate=args.input_rate,
                          codec=args.input_codec, flip=args.input_flip, reconnect_timeout=args.reconnect_timeout,
                          live=args.live, loop=args.input_loop)
    mqtt = MqttOptions(ca=args.mqtt_ca, queue=args.mqtt_queue, queue_size=args.mqtt_queue_size,
                       discovery=args.mqtt_discovery, reconnect_timeout=args.reconnect_timeout)
    return RunConfig(input=args.input, output=args.output, classifier=classifier, persons=persons, source=source,
                     events=tuple(args.events), headless=args.headless, progress=not args.no_progress,
                     timings=args.timings, web_token=args.web_token, mqtt=mqtt).validate()


def _detect_every(value: str):
    if value == "auto":
        return value
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected auto or a whole number >= 1, got {value!r}")
    return n


def open_analyser(config: RunConfig, fps: float, log=sys.stderr, live: bool = False):
    """The whole-frame or per-person analyser the configuration asks for (``live``: the source
    is a camera, a stream or ``--live``, where ``--detect-every`` defaults to auto)."""
    c, p = config.classifier, config.persons
    if p is None:
        from .net import ActionNet

        return ActionNet(log=log, live=live, **vars(c))
    from .persons import PersonActionNet

    o = dict(vars(c))
    model = o.pop("model")
    return PersonActionNet(model, p.detector, person_conf=p.person_conf, nms_iou=p.nms_iou,
                           detector_classes=p.detector_classes, detector_layout=p.detector_layout,
                           track_timeout=p.track_timeout, context=p.context, crop_mode=p.crop_mode,
                           max_batch=p.max_batch, detect_every=p.detect_every, detector_engine=p.detector_engine,
                           fps=fps, log=log, live=live, **o)


def open_source(config: RunConfig, log=sys.stderr, decode_threads: Optional[int] = None):
    """The run's source as the command opens it (reconnecting when live, on a capture thread)."""
    from .sources import SourceOptions, video_source

    sc = config.source
    options = SourceOptions(width=sc.width, height=sc.height, fps=sc.rate, codec=sc.codec, flip=sc.flip,
                            live=sc.live, loop=sc.loop, decode_threads=decode_threads)
    return video_source(config.input, options, reconnect_timeout=sc.reconnect_timeout, log=log)


def open_analysis(config: RunConfig, source, log=sys.stderr):
    """``(analyser, events)`` for an open source, in the order that costs least when something is
    wrong: brokers before the model (a bad URI, a refused login or a TLS failure costs no model
    load), event files after it (nothing written for a model that does not load). Brokers follow
    the files in the fan-out: their drain at the end never holds back a file's last lines. On a
    failure whatever was opened is closed again."""
    from .mqtt import is_broker
    from .outputs import open_events

    brokers = open_events([e for e in config.events if is_broker(e)], log=log, mqtt=config.mqtt)
    analyser = None
    try:
        analyser = open_analyser(config, float(source.rate or 30.0), log, live=source.live)
        events = open_events([e for e in config.events if not is_broker(e)], log=log)
    except BaseException:
        brokers.close()
        if analyser is not None:
            analyser.close()
        raise
    for sink in brokers.sinks:
        events.add(sink)
    return analyser, events


def run(config: RunConfig, log=sys.stderr) -> int:
    """Open the source, the analyser and the outputs, in that order (a bad input costs no model
    load), run the loop, and say what came of it."""
    from .outputs import open_output
    from .pipeline import Progress, StopFlag, run as run_loop, summary_line

    if config.headless and not config.output and not config.events:
        print("actionnet: warning: --headless with neither an output nor --events: nothing will be saved", file=log)
    source = open_source(config, log)
    analyser = output = events = None
    try:
        analyser, events = open_analysis(config, source, log)
        # outputs last, once the source and the model are known good; removed again on failure
        if config.output_uri:
            output = open_output(config.output_uri, source.rate, log=log, headless=config.headless,
                                 web_token=config.web_token)
            if getattr(output, "events", None) is not None:  # an output that shows the events too (a page)
                events.add(output.events)
        print(f"actionnet: {source.describe()} -> {redact(config.output or '-')}; {analyser.describe()}", file=log)
        progress = Progress(source.frame_count, log) if config.progress and log.isatty() else None
        with StopFlag() as stop:
            stats = run_loop(source, analyser, output=output, events=events or None, progress=progress, stop=stop)
    except BaseException:
        if output is not None:
            output.close(keep=False)
        if events is not None:
            events.close()
        raise
    finally:
        source.close()
        if analyser is not None:
            analyser.close()
    print(f"actionnet: {summary_line(stats, analyser)}", file=log)
    if analyser.segment_summary is not None:  # the longest actions (runtime/segments.py)
        print(f"actionnet: {analyser.segment_summary.text()}", file=log)
    if config.timings:
        print(stats.timer.table(), file=log)
    return 0


class _StopBeforeRun:
    """Until the run loop takes over signals (:class:`~actionnet.pipeline.StopFlag`), SIGTERM
    interrupts like Ctrl-C: a stop while the model loads or an engine builds (minutes) ends at
    once, with the outputs removed, instead of a traceback (SIGINT) or a kill (SIGTERM)."""

    def __enter__(self):
        self._old = None
        try:
            if signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
                self._old = signal.signal(signal.SIGTERM, self._interrupt)
        except ValueError:  # not the main thread: leave signals alone
            pass
        return self

    @staticmethod
    def _interrupt(signum, frame):
        raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._old is not None:
            signal.signal(signal.SIGTERM, self._old)


def main(argv: Optional[List[str]] = None) -> int:
    log = sys.stderr
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["timeline"]:  # ``actionnet timeline EVENTS.jsonl -o timeline.png``
        from .timeline import main as timeline_main

        return timeline_main(argv[1:])
    try:
        with _StopBeforeRun():
            args = build_parser().parse_args(argv)
            if args.config is not None:  # runtime/site.py: the file holds every option
                from .site import check_alone, run_site

                check_alone(args)
                return run_site(args.config, log)
            return run(config_from_args(args), log)
    except ActionNetError as e:
        print(f"actionnet: error: {e}", file=log)
        return e.exit_code
    except KeyboardInterrupt:  # the run loop handles its own stops; this one came before it
        print("actionnet: stopped before the first frame; nothing written", file=log)
        return 0


if __name__ == "__main__":
    sys.exit(main())
