"""``actionnet [options] INPUT [OUTPUT]``: wires sources, the net and sinks; does nothing else.

Flag names follow jetson-inference's ``actionnet`` (``--network``, ``--model``, ``--labels``,
``--input-blob``, ``--output-blob``, ``--threshold``, ``--skip-frames``, ``--headless``).
User errors print one line on stderr and exit non-zero; a stop (Ctrl-C, SIGTERM) finalises the
output video and the events and exits 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
from typing import List, Optional

from .errors import ActionNetError, UsageError
from .spec import COLOR_ORDERS, RESIZE_MODES


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, not usage + error
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _floats(n):
    def parse(s):
        try:
            v = tuple(float(x) for x in s.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {s!r}")
        if len(v) != n:
            raise argparse.ArgumentTypeError(f"expected {n} comma-separated numbers, got {s!r}")
        return v

    return parse


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="actionnet", allow_abbrev=False,
                description="Classify the action in a video, a camera or an image folder.",
                epilog="examples:\n  actionnet input.mp4 output.mp4\n"
                       "  actionnet --network=resnet-34 --skip-frames=0 --threshold=0.2 input.mp4 output.mp4\n"
                       "  actionnet --model=m.onnx --events=events.jsonl --headless input.mp4",
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", nargs="?", help="video file, image folder or glob, /dev/videoN, csi://N, rtsp://..., rtp://@:port")
    p.add_argument("output", nargs="?", help="video file (.mp4, .mkv, .avi, .flv), out/%%05d.jpg, display://0, "
                   "rtsp://@:port/path, rtp://host:port (default: display://0 unless --headless)")
    m = p.add_argument_group("model")
    m.add_argument("--network", default="resnet-18", help="model zoo name (default: resnet-18)")
    m.add_argument("--model", help="ONNX model file (overrides --network)")
    m.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="label file, one class per line (overrides the model's labels); zero-shot models: the "
                        "actions as text prompts (several values, one comma-separated value, or a file)")
    m.add_argument("--input-blob", help="input tensor name (models without actionnet metadata)")
    m.add_argument("--output-blob", help="output tensor name (models without actionnet metadata)")
    m.add_argument("--engine", default="auto", choices=("auto", "tensorrt", "onnxruntime", "openvino"),
                   help="inference backend; auto picks the fastest present and says which (default: auto)")
    m.add_argument("--precision", choices=("fp32", "fp16", "int8"),
                   help="engine precision: TensorRT builds for it; OpenVINO's inference precision (default fp32)")
    m.add_argument("--threads", type=int, help="CPU threads for inference (default: all cores)")
    m.add_argument("--mean", type=_floats(3), help="per-channel mean after value scaling, e.g. 0.4345,0.4051,0.3775")
    m.add_argument("--std", type=_floats(3), help="per-channel std after mean subtraction, e.g. 1,1,1")
    m.add_argument("--value-scale", type=float, help="divide pixel values by this first (default 255)")
    m.add_argument("--color-order", choices=COLOR_ORDERS, help="channel order the model expects")
    m.add_argument("--resize-mode", choices=RESIZE_MODES, help="how frames are fitted to the model's size")
    m.add_argument("--output-kind", choices=("logits", "probabilities"), help="what the model outputs")
    from .live import add_input_arguments  # live sources and outputs (issue 6)

    add_input_arguments(p)
    c = p.add_argument_group("classification")
    c.add_argument("--threshold", type=float, default=0.01, help="minimum confidence to report a label (default 0.01)")
    c.add_argument("--skip-frames", type=int, default=None,
                   help="frames dropped between stored frames (default: the model's training stride, else 1)")
    c.add_argument("--cadence", type=int, default=1, help="stored frames between classifications (default 1)")
    c.add_argument("--top-k", type=int, default=5, help="classes listed per event (default 5)")
    c.add_argument("--smoothing", type=float, default=0.0,
                   help="weight of past probabilities in a moving average, 0 (off) to <1 (default 0)")
    o = p.add_argument_group("output")
    o.add_argument("--events", help="write JSON-lines events to this file, or - for stdout")
    o.add_argument("--headless", action="store_true", help="no display window")
    o.add_argument("--no-progress", action="store_true", help="no progress bar")
    o.add_argument("--timings", action="store_true", help="print a per-stage time table at the end")
    _add_person_arguments(p)
    return p


def _add_person_arguments(p) -> None:
    """Per-person mode (runtime/persons.py): its flags, kept in one place."""
    g = p.add_argument_group("per-person mode")
    g.add_argument("--persons", action="store_true", help="detect, track and classify every person on their own")
    g.add_argument("--detector", help="person detector ONNX (YOLOv5/v8/11/26, e.g. from actionnet-export yolo)")
    g.add_argument("--person-conf", type=float, default=0.25, help="detector score threshold (default 0.25)")
    g.add_argument("--nms-iou", type=float, default=0.45, help="IoU above which NMS drops a box (default 0.45)")
    g.add_argument("--detector-classes", default="person",
                   help="comma-separated class names or ids to track (default: person)")
    g.add_argument("--detector-layout", choices=("yolov5", "yolov8", "end2end"),
                   help="detector output layout (models without actionnet metadata; default: from the shape)")
    g.add_argument("--track-timeout", type=float, default=1.0,
                   help="seconds a lost person is kept before their clip is freed (default 1)")
    g.add_argument("--crop-context", type=float, default=1.2,
                   help="crop side as a multiple of the person box's longer side (default 1.2)")
    g.add_argument("--crop-margin", type=float, metavar="PERCENT",
                   help="margin around the person box in percent of its size on each side, as the Ultralytics "
                        "zero-shot example's crop_margin_percentage (overrides --crop-context)")
    g.add_argument("--crop-mode", choices=("anchored", "follow"), default="anchored",
                   help="anchored: crop stays put while the person is inside it; follow: re-centred every frame")
    g.add_argument("--max-batch", type=int, default=16, help="most person clips per engine call (default 16)")


def _run(args, log) -> int:
    from .live import check_paths, open_input, run_with_outputs
    from .zeroshot import check_label_values, split_trailing_paths

    # hook: issue 16 (--labels takes several prompts; positionals written after them come back)
    args.labels, (args.input, args.output) = split_trailing_paths(args.labels, [args.input, args.output])
    if args.input is None:
        raise UsageError("an INPUT is required (a video file, image folder, camera or stream)")
    check_label_values(args.labels)

    if not 0.0 <= args.threshold <= 1.0:
        raise UsageError(f"--threshold must be between 0 and 1, got {args.threshold}")
    check_paths(args)
    if args.persons or args.detector:
        from .persons import cli_run

        return cli_run(args, log)
    from functools import partial

    from .net import ActionNet
    from .overlay import Overlay
    from .pipeline import run

    source = open_input(args, log)
    try:
        net = ActionNet(network=args.network, model=args.model, labels=args.labels, input_blob=args.input_blob,
                        output_blob=args.output_blob, threshold=args.threshold, top_k=args.top_k,
                        skip_frames=args.skip_frames, cadence=args.cadence, smoothing=args.smoothing,
                        engine=args.engine, threads=args.threads, log=log, precision=args.precision,
                        mean=args.mean, std=args.std,
                        value_scale=args.value_scale, color_order=args.color_order, resize_mode=args.resize_mode,
                        output_kind=args.output_kind)
        s = net.spec
        stats = run_with_outputs(args, source, net, partial(run, overlay=Overlay()), log=log,
                                 banner=f"model {net.engine.path} ({s.clip_length}x{s.height}x{s.width}, "
                                        f"{s.num_classes} classes, {net.engine.name})")
    finally:
        source.close()
    last = net.last
    summary = f"{stats.frames} frames, {stats.classifications} classifications, {stats.fps:.1f} fps"
    if last is not None:
        summary += f"; last: {last.label or '(below threshold)'} {last.confidence:.3f}"
    if stats.dropped:
        summary += f"; {stats.dropped} frames dropped (inference slower than the live source)"
    if stats.stopped:
        summary = "stopped: " + summary
    print(f"actionnet: {summary}", file=log)
    if args.timings:
        print(net.timer.table(), file=log)
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
    try:
        with _StopBeforeRun():
            args = build_parser().parse_args(argv)
            return _run(args, log)
    except ActionNetError as e:
        print(f"actionnet: error: {e}", file=log)
        return e.exit_code
    except KeyboardInterrupt:  # the run loop handles its own stops; this one came before it
        print("actionnet: stopped before the first frame; nothing written", file=log)
        return 0


if __name__ == "__main__":
    sys.exit(main())
