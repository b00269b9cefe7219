"""Live sources and outputs without a camera: URI parsing, pipeline strings, the capture thread's
drop policy, reconnecting, the pipeline's reset after a reconnect, outputs, and graceful stops."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

import av
import numpy as np
import pytest

from actionnet.capture import Capture
from actionnet.errors import InputError, UsageError
from actionnet.outputs import ImageSequenceSink, display_available, open_output, pick_codec
from actionnet.sources import (
    Reconnecting,
    Source,
    SourceOptions,
    StreamEnded,
    StreamLost,
    csi_gst_pipeline,
    open_source,
    parse_source_uri,
    rtp_sdp,
    rtsp_av_options,
    v4l2_av_options,
)
from conftest import run_cli, shared_file

# ---------------------------------------------------------------------------------------------
# URIs and pipeline strings


@pytest.mark.parametrize("uri, expected", [
    ("/dev/video0", ("v4l2", "/dev/video0")),
    ("/dev/video12", ("v4l2", "/dev/video12")),
    ("v4l2:///dev/video1", ("v4l2", "/dev/video1")),
    ("v4l2://2", ("v4l2", "/dev/video2")),
    ("csi://0", ("csi", "0")),
    ("csi://1", ("csi", "1")),
    ("rtsp://camera.local:8554/cam", ("rtsp", "rtsp://camera.local:8554/cam")),
    ("rtp://@:5000", ("rtp", "0.0.0.0:5000")),
    ("rtp://239.1.2.3:5004", ("rtp", "239.1.2.3:5004")),
    ("clip.mp4", ("file", "clip.mp4")),
    ("frames/*.jpg", ("images", "frames/*.jpg")),
])
def test_source_uris(uri, expected):
    assert parse_source_uri(uri) == expected


@pytest.mark.parametrize("uri", ["csi://x", "v4l2://cam", "rtp://nohost", "rtp://@:port"])
def test_bad_source_uris(uri):
    with pytest.raises(UsageError):
        parse_source_uri(uri)


def test_v4l2_options_ask_for_mjpeg_unless_told():
    assert v4l2_av_options(SourceOptions(width=1280, height=720, fps=30)) == {
        "video_size": "1280x720", "framerate": "30", "input_format": "mjpeg"}
    assert v4l2_av_options(SourceOptions(fps=30), mjpeg=False) == {"framerate": "30"}
    assert v4l2_av_options(SourceOptions(codec="yuyv")) == {"input_format": "yuyv422"}
    assert v4l2_av_options(SourceOptions(codec="raw")) == {}
    assert v4l2_av_options(SourceOptions(fps=29.97))["framerate"] == "2997/100"
    with pytest.raises(UsageError, match="go together"):
        v4l2_av_options(SourceOptions(width=640))
    with pytest.raises(UsageError, match="not a V4L2 format"):
        v4l2_av_options(SourceOptions(codec="vp9"))


def test_csi_gstreamer_pipeline():
    assert csi_gst_pipeline(0, SourceOptions()) == (
        "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1,format=NV12"
        " ! nvvidconv flip-method=0 ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR"
        " ! appsink drop=true max-buffers=1 sync=false")
    p = csi_gst_pipeline(1, SourceOptions(width=1920, height=1080, fps=60, flip=2))
    assert "sensor-id=1 " in p and "width=1920,height=1080,framerate=60/1" in p and "flip-method=2 " in p
    with pytest.raises(UsageError):
        csi_gst_pipeline(0, SourceOptions(flip=9))


def test_rtp_sdp_and_rtsp_options():
    sdp = rtp_sdp("0.0.0.0", 5000, "h264")
    assert "m=video 5000 RTP/AVP 96\r\n" in sdp and "a=rtpmap:96 H264/90000\r\n" in sdp
    mjpeg = rtp_sdp("0.0.0.0", 5002, "mjpeg")
    assert "m=video 5002 RTP/AVP 26" in mjpeg and "rtpmap" not in mjpeg  # static payload type
    with pytest.raises(UsageError):
        rtp_sdp("0.0.0.0", 5000, "prores")
    assert rtsp_av_options(SourceOptions(timeout=2.5)) == {"rtsp_transport": "tcp", "timeout": "2500000"}


def test_missing_camera_is_one_clear_line(tmp_path):
    with pytest.raises(InputError, match="camera not found: /dev/video9"):
        open_source("/dev/video9")
    r = run_cli("--model", tmp_path / "none.onnx", "/dev/video9")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "actionnet: error: camera not found: /dev/video9 does not exist (is the camera attached? `ls /dev/video*`)"]


def test_bad_live_flags_are_usage_errors(tmp_path):
    r = run_cli("--input-width=-5", "/dev/video9")
    assert r.returncode == 2 and "--input-width must be positive" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------
# The capture thread


class FakeSource(Source):
    """``n`` numbered frames (the number is in pixel [0, 0]), as fast as asked, optionally failing."""

    def __init__(self, n, live, fail_after=None, period=0.0, end=None):
        self.n, self.live, self.fail_after, self.period, self.end = n, live, fail_after, period, end
        self.uri, self.fps, self.width, self.height = "fake://", 100.0, 4, 4
        self.closed = False

    def __iter__(self):
        for i in range(self.n):
            if self.fail_after is not None and i == self.fail_after:
                raise StreamLost(f"fake lost after frame {i}")
            if self.period:
                time.sleep(self.period)
            f = np.zeros((4, 4, 3), np.uint16)
            f[0, 0, 0] = i
            yield f, i / self.fps
        if self.end is not None:
            raise self.end

    def close(self):
        self.closed = True


def numbers(frames):
    return [int(f[0, 0, 0]) for f, _ in frames]


def test_live_capture_newest_frame_wins_and_drops_are_counted():
    cap = Capture(FakeSource(200, live=True, period=0.001))
    got = []
    for item in cap:
        got.append(item)
        time.sleep(0.01)  # a consumer ten times slower than the camera
    cap.close()
    seen = numbers(got)
    assert seen == sorted(seen) and len(set(seen)) == len(seen)  # in order, no repeats
    assert seen[-1] == 199  # the newest frame is always the one handed out
    assert cap.dropped > 50 and cap.dropped + len(seen) == cap.captured == 200


def test_live_capture_rides_out_a_slow_frame_without_dropping():
    """A consumer that keeps up on average but takes 80 ms once (a detection, a key frame) loses
    nothing: the live queue holds the frames that came meanwhile; a consumer that stays behind
    still sees the present, the oldest frames going."""
    cap = Capture(FakeSource(30, live=True, period=0.02))
    got = []
    for i, item in enumerate(cap):
        got.append(item)
        time.sleep(0.08 if i == 5 else 0.0)
    cap.close()
    assert numbers(got) == list(range(30)) and cap.dropped == 0


def test_several_cameras_decode_a_file_with_the_threads_they_are_given(synthetic_video):
    path = str(synthetic_video("red right fast", frames=12))
    with open_source(path, SourceOptions(decode_threads=1)) as one, open_source(path) as default:
        assert one._stream.codec_context.thread_count == 1
        a, b = [f for f, _ in one], [f for f, _ in default]
    assert len(a) == len(b) == 12 and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_file_capture_processes_every_frame():
    cap = Capture(FakeSource(50, live=False))
    got = []
    for item in cap:
        got.append(item)
        time.sleep(0.002)
    cap.close()
    assert numbers(got) == list(range(50)) and cap.dropped == 0


def test_capture_raises_the_source_error_after_its_frames():
    cap = Capture(FakeSource(50, live=False, fail_after=10))
    got = []
    with pytest.raises(StreamLost, match="after frame 10"):
        for item in cap:
            got.append(item)
    assert numbers(got) == list(range(10))
    cap.close()
    assert cap.source.closed


def test_capture_close_stops_a_thread_blocked_on_a_full_queue():
    cap = Capture(FakeSource(10_000, live=False), queue_size=2)
    it = iter(cap)
    next(it)
    cap.close()
    assert not cap._thread.is_alive() and cap.source.closed


# ---------------------------------------------------------------------------------------------
# Reconnecting


class Factory:
    """Opens FakeSources: fails ``failures`` times between successes; each source loses after 5."""

    def __init__(self, failures, sources=3, fail_after=5, last_end=None):
        self.failures, self.sources, self.fail_after, self.last_end = failures, sources, fail_after, last_end
        self.opened = self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.opened and self.calls % (self.failures + 1) != 1 % (self.failures + 1):
            raise InputError("connection refused")
        if self.opened >= self.sources:
            raise InputError("connection refused")
        self.opened += 1
        last = self.opened == self.sources
        return FakeSource(5 if last else 100, live=True, fail_after=None if last else self.fail_after,
                          end=self.last_end if last else None)


def test_reconnects_with_backoff_and_keeps_time_monotonic(capsys):
    f = Factory(failures=2)
    src = Reconnecting(f, timeout=5, first_delay=0.01, max_delay=0.02, log=sys.stderr)
    frames, gens = [], []
    for frame, t in src:
        frames.append(t)
        gens.append(src.generation)
    assert len(frames) == 5 + 5 + 5 and f.opened == 3
    assert all(b > a for a, b in zip(frames, frames[1:]))  # times never go back across reconnects
    assert gens == [0] * 5 + [1] * 5 + [2] * 5
    err = capsys.readouterr().err
    assert err.count("reconnecting") == 2 and err.count("reconnected to fake://") == 2


def test_gives_up_after_the_reconnect_timeout():
    src = Reconnecting(Factory(failures=10**6, sources=9), timeout=0.3, first_delay=0.01, max_delay=0.05,
                       log=open(os.devnull, "w"))
    t0 = time.monotonic()
    with pytest.raises(InputError, match="did not come back within 0.3 s"):
        list(src)
    assert time.monotonic() - t0 < 2


def test_an_ended_stream_that_does_not_return_ends_cleanly():
    f = Factory(failures=10**6, sources=1, last_end=StreamEnded("fake ended"))
    src = Reconnecting(f, timeout=0.2, first_delay=0.01, max_delay=0.05, log=open(os.devnull, "w"))
    assert len(list(src)) == 5 and f.calls > 2  # it tried, then ended without an error


def test_reconnect_timeout_zero_means_no_reconnect():
    f = Factory(failures=0, sources=3)
    src = Reconnecting(f, timeout=0, log=open(os.devnull, "w"))
    with pytest.raises(StreamLost):
        list(src)
    assert f.opened == 1


def test_pipeline_starts_a_fresh_window_after_a_reconnect(synthetic_model, synthetic_video):
    from actionnet import ActionNet
    from actionnet.outputs import Events
    from actionnet.pipeline import run
    from actionnet.sources import VideoFileSource

    video = str(synthetic_video("red right slow", frames=30))

    class TwoStreams(Source):
        live = True
        uri, fps, width, height = "two://", 30.0, 128, 96
        generation = 0

        def __iter__(self):
            for gen in range(2):
                self.generation = gen
                with VideoFileSource(video) as s:
                    for i, item in enumerate(s):
                        if i == 20:
                            break
                        yield item

    events = []

    class Sink(Events):
        def write(self, e):
            events.append(e)

        def close(self):
            pass

    net = ActionNet(model=str(synthetic_model), skip_frames=0, threshold=0.0, log=open(os.devnull, "w"))
    stats = run(TwoStreams(), net, events=Sink())
    # 20 frames per stream, T=8: 13 classifications each; the second stream's first comes at its 8th frame
    assert stats.frames == 40 and stats.classifications == 26
    assert [e["frame"] for e in events if e["event"] == "classification"][12:14] == [19, 27]


# ---------------------------------------------------------------------------------------------
# Outputs


def test_h264_falls_back_to_mpeg4_where_ffmpeg_lacks_it():
    assert pick_codec("libx264", available={"libx264", "mpeg4"}) == "libx264"
    assert pick_codec("libx264", available={"mpeg4", "libvpx"}) == "mpeg4"
    assert pick_codec("mpeg4", available=set()) == "mpeg4"


def test_display_is_headless_without_a_display_or_gui(capsys):
    class FakeCv2:
        def __init__(self, gui):
            self.gui = gui

        def getBuildInformation(self):
            return f"  GUI:                           {self.gui}\n"

    assert not display_available(FakeCv2("GTK3"), env={})
    assert not display_available(FakeCv2("NONE"), env={"DISPLAY": ":0"})
    assert display_available(FakeCv2("GTK3"), env={"DISPLAY": ":0"})
    assert display_available(FakeCv2("QT5"), env={"WAYLAND_DISPLAY": "wayland-0"})
    assert open_output("display://0", headless=True) is None
    with pytest.raises(UsageError):
        open_output("display://x")


def test_image_sequence_output(tmp_path):
    sink = open_output(str(tmp_path / "out" / "%05d.jpg"))
    assert isinstance(sink, ImageSequenceSink)
    for i in range(3):
        sink.write(np.full((24, 32, 3), 60 * i, np.uint8))
    sink.close()
    import cv2

    files = sorted(os.listdir(tmp_path / "out"))
    assert files == ["00000.jpg", "00001.jpg", "00002.jpg"]
    assert abs(int(cv2.imread(str(tmp_path / "out" / "00002.jpg")).mean()) - 120) <= 2


def test_cli_writes_an_image_sequence(synthetic_model, synthetic_video, tmp_path):
    video = synthetic_video("blue left slow", frames=12)
    r = run_cli("--model", synthetic_model, video, tmp_path / "seq" / "f%03d.png")
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "seq")) == [f"f{i:03d}.png" for i in range(12)]


def test_no_output_means_display_and_that_goes_headless_here(synthetic_model, synthetic_video):
    env_has_display = bool(os.environ.get("DISPLAY"))
    video = synthetic_video("blue left slow", frames=12)
    r = run_cli("--model", synthetic_model, video)
    assert r.returncode == 0, r.stderr
    if not env_has_display:
        assert "running headless" in r.stderr


# ---------------------------------------------------------------------------------------------
# Graceful stops


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_run_leaves_a_playable_video_and_flushed_events(synthetic_model, tmp_path, sig):
    video = shared_file("videos/people_walking.mp4")  # 1394 frames: seconds of work, stopped early
    out, ev, err = tmp_path / "out.mp4", tmp_path / "ev.jsonl", tmp_path / "stderr.txt"
    with open(err, "w") as ef:
        p = subprocess.Popen([sys.executable, "-m", "actionnet.cli", "--model", str(synthetic_model), "--skip-frames=0",
                              "--threshold=0", "--events", str(ev), str(video), str(out)], stdout=subprocess.DEVNULL, stderr=ef)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and p.poll() is None:
            if ev.exists() and ev.stat().st_size > 0:  # flushed at least once a second: the run is under way
                break
            time.sleep(0.1)
        assert p.poll() is None, open(err).read()
        p.send_signal(sig)
        rc = p.wait(timeout=60)
    stderr = open(err).read()
    assert rc == 0, stderr
    assert "stopped:" in stderr and "Traceback" not in stderr
    with av.open(str(out)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert 0 < n < 1394
    lines = [e for e in map(json.loads, open(ev).read().splitlines()) if e["event"] == "classification"]
    assert lines and all(e["label"] for e in lines)
    assert lines[-1]["frame"] < n  # every event written, none past the last encoded frame
    assert not [f for f in os.listdir(tmp_path) if ".partial-" in f]


def test_a_stop_request_ends_a_wait_for_a_stalled_stream():
    from actionnet.pipeline import StopFlag

    class Stalled(Source):
        live = True
        uri, fps, width, height = "stalled://", 30.0, 4, 4

        def __init__(self):
            self.release = threading.Event()

        def __iter__(self):
            self.release.wait(30)  # a stream that delivers nothing
            return iter(())

        def close(self):
            self.release.set()

    cap = Capture(Stalled())
    stop = StopFlag()
    cap.stop_when(lambda: stop.stopped)
    threading.Timer(0.3, lambda: setattr(stop, "stopped", True)).start()
    t0 = time.monotonic()
    assert list(cap) == []
    assert time.monotonic() - t0 < 3
    cap.source.close()
    cap.close()


def test_live_modules_stay_torch_free():
    from test_lean_runtime import BLOCK

    code = BLOCK + ("import sys\nimport actionnet.sources, actionnet.capture, actionnet.outputs, "
                    "actionnet.rtspserve\nprint(sorted(m for m in sys.modules if m.split('.')[0] in "
                    "('torch', 'torchvision', 'ultralytics')))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_v4l2_asks_for_mjpeg_then_falls_back_to_the_default_format(monkeypatch, tmp_path):
    import actionnet.sources as sources

    device = tmp_path / "video0"
    device.write_bytes(b"")
    calls = []

    class FakeAV:
        def __init__(self, url, uri, fmt=None, options=None, timeout=5.0, what="stream"):
            calls.append((url, fmt, dict(options)))
            if options.get("input_format") == "mjpeg":
                raise InputError(f"cannot open camera {uri}: Invalid argument")  # camera without MJPG

    monkeypatch.setattr(sources, "AVLiveSource", FakeAV)
    sources.open_v4l2(str(device), SourceOptions(width=640, height=480))
    assert calls == [(str(device), "v4l2", {"video_size": "640x480", "input_format": "mjpeg"}),
                     (str(device), "v4l2", {"video_size": "640x480"})]
    calls.clear()
    with pytest.raises(InputError, match="Invalid argument"):  # a format asked for is not second-guessed
        sources.open_v4l2(str(device), SourceOptions(codec="mjpeg"))
    assert len(calls) == 1


def test_rtsp_helper_that_logs_a_lot_is_never_blocked(tmp_path):
    """The gst-rtsp-server helper runs for as long as the run (days, as a service); what it logs
    after "ready" must not fill a pipe nobody reads, or the helper, and the stream, freeze."""
    from actionnet.rtspserve import RtspServer

    marker = tmp_path / "done"
    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\necho ready\nhead -c 400000 /dev/zero | tr '\\0' x >&2\n"
                    f"touch {marker}\nsleep 30\n")
    fake.chmod(0o755)
    srv = RtspServer(8554, "/x", python=str(fake)).start()
    try:
        deadline = time.monotonic() + 10
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the helper blocked writing its log"
    finally:
        srv.stop()
    assert srv.proc is None


def test_rtsp_helper_that_never_gets_ready_is_killed_and_reported(tmp_path):
    """A helper stuck before "ready" (a plugin waiting on something) must not hang the run."""
    from actionnet.errors import OutputError
    from actionnet.rtspserve import RtspServer

    fake = tmp_path / "fake-python"
    fake.write_text("#!/bin/sh\nexec sleep 60\n")
    fake.chmod(0o755)
    t0 = time.monotonic()
    with pytest.raises(OutputError, match="did not start within 0.5 s"):
        RtspServer(8554, "/x", python=str(fake)).start(timeout=0.5)
    assert time.monotonic() - t0 < 10


def test_rtp_output_removes_its_sdp_file_when_the_stream_ends():
    from actionnet.outputs import RtpSink

    sink = RtpSink("127.0.0.1", 5999, 20.0)
    assert sink.sdp_path is not None and os.path.exists(sink.sdp_path)
    path = sink.sdp_path
    sink.write(np.zeros((64, 64, 3), np.uint8))
    sink.close()
    assert not os.path.exists(path)


def test_a_stream_that_opens_but_never_sends_gives_up_after_the_reconnect_timeout():
    """A silent RTP port or a server that accepts and sends nothing: every reopen succeeds and
    every read times out. That is not a reconnect; the loss clock runs until a frame arrives."""
    opens = []

    def silent():
        opens.append(1)
        time.sleep(0.05)  # the read timeout of a silent stream

        class Silent(FakeSource):
            def __iter__(self):
                time.sleep(0.05)
                raise StreamLost("fake lost after frame 0: timed out")
                yield  # pragma: no cover

        return Silent(0, live=True)

    src = Reconnecting(silent, timeout=0.3, first_delay=0.01, max_delay=0.02, log=open(os.devnull, "w"))
    t0 = time.monotonic()
    with pytest.raises(InputError, match="did not come back within 0.3 s"):
        list(src)
    assert time.monotonic() - t0 < 2 and len(opens) < 10


# ---------------------------------------------------------------------------------------------
# Recorded footage played as a camera: --live, --input-loop (issue 27)


class _Frames(Source):
    """``n`` numbered 4x4 frames at ``fps``, times from ``t0``; counts how often it was opened."""

    opened = 0

    def __init__(self, n=5, fps=10.0, t0=0.0):
        _Frames.opened += 1
        self.n, self.fps, self.t0, self.width, self.height, self.kind = n, fps, t0, 4, 4, "file"
        self.frame_count = n

    def __iter__(self):
        for i in range(self.n):
            yield np.full((4, 4, 3), i, np.uint8), self.t0 + i / self.fps


def test_input_loop_plays_every_frame_of_every_play_with_times_running_on():
    from actionnet.sources import Replay

    _Frames.opened = 0
    src = Replay(lambda: _Frames(t0=0.5), _Frames(t0=0.5), loops=3)
    got = list(src)
    assert [int(f[0, 0, 0]) for f, _ in got] == list(range(5)) * 3 and _Frames.opened == 3
    times = [t for _, t in got]
    assert all(b > a for a, b in zip(times, times[1:])), times
    assert times[5] - times[4] == pytest.approx(0.1 + 0.5)  # the next play starts a frame after the last
    assert src.frame_count == 15 and not src.live and "played 3 times" in src.describe()


def test_live_replay_paces_frames_at_the_file_rate_on_the_wall_clock():
    from actionnet.sources import Replay

    now = [100.0]
    slept = []

    def sleep(s):
        slept.append(round(s, 6))
        now[0] += s

    src = Replay(lambda: _Frames(), _Frames(), loops=-1, live=True, clock=lambda: now[0], sleep=sleep)
    it = iter(src)
    for _ in range(12):
        next(it)
        now[0] += 0.04  # the consumer's own work: 40 ms of each 100 ms frame
    assert src.live and src.frame_count is None and "looped for ever" in src.describe()
    assert slept[:3] == [pytest.approx(0.06)] * 3 and len(slept) == 11  # frame 0 is due at once


def test_live_replay_behind_drops_the_oldest_and_counts_them(tmp_path):
    """A consumer slower than the footage sees the newest frame, as from a camera: frames taken
    plus frames dropped is every frame played."""
    from actionnet.export.synthetic import video_frames, write_video
    from actionnet.sources import video_source

    path = write_video(str(tmp_path / "fast.mp4"), video_frames("red left slow", 30, 0.8), fps=200)
    src = video_source(path, SourceOptions(live=True, loop=2))
    taken = 0
    try:
        for _ in src:
            taken += 1
            time.sleep(0.02)  # 50 fps against the footage's 200
    finally:
        src.close()
    assert src.dropped > 0 and taken + src.dropped == 60, (taken, src.dropped)


def test_cli_input_loop_classifies_every_play_and_refuses_a_bad_count(synthetic_model, synthetic_video, tmp_path):
    video = synthetic_video("red left slow")
    ev = tmp_path / "ev.jsonl"
    r = run_cli("--model", synthetic_model, "--skip-frames=0", "--headless", "--input-loop", "2", "--events", ev, video)
    assert r.returncode == 0, r.stderr
    assert "played 2 times" in r.stderr and "60 frames" in r.stderr, r.stderr
    frames = [e["frame"] for e in map(json.loads, ev.read_text().splitlines()) if e["event"] == "classification"]
    assert frames == sorted(frames) and frames[-1] == 59
    r = run_cli("--model", synthetic_model, "--headless", "--input-loop", "0", video)
    assert r.returncode == 2 and "--input-loop" in r.stderr and "Traceback" not in r.stderr


def test_a_replayed_file_is_not_wrapped_to_reconnect_like_a_camera(tmp_path):
    from actionnet.export.synthetic import video_frames, write_video
    from actionnet.sources import Reconnecting, Replay, video_source

    path = write_video(str(tmp_path / "v.mp4"), video_frames("red left slow", 8, 0.8))
    src = video_source(path, SourceOptions(live=True), reconnect_timeout=30)
    try:
        assert isinstance(src.source, Replay) and not isinstance(src.source, Reconnecting)
    finally:
        src.close()


def test_a_play_that_gives_no_frame_ends_an_endless_loop():
    from actionnet.sources import Replay

    class Emptied(_Frames):  # readable when opened, empty when played again (files deleted meanwhile)
        def __iter__(self):
            if _Frames.opened == 1:
                yield from super().__iter__()

    _Frames.opened = 0
    src = Replay(lambda: Emptied(), Emptied(), loops=-1)
    with pytest.raises(InputError, match="no frame on play 2"):
        assert len(list(src)) == 5


def test_live_whole_frame_classifies_in_the_background(synthetic_model, synthetic_video):
    """A live source, whole frame: a 150 ms classifier call (five frame periods) runs beside the
    run loop. No frame waits for it; each classification keeps its own clip's frame and time and
    the synchronous run's scores; windows due while it runs are skipped, not queued; finish()
    reports the call still running. update() (the jetson-inference API) stays synchronous."""
    from actionnet.net import ActionNet

    frames = [f for f, _ in open_source(str(synthetic_video("red right slow", frames=30, speed=0.5)))] * 2
    with ActionNet(model=str(synthetic_model), skip_frames=0, threads=1) as net:
        assert net.background is None
        sync = {e["frame"]: e for f_i, f in enumerate(frames) for e in net.process(f, f_i / 30)
                if e["event"] == "classification"}
    with ActionNet(model=str(synthetic_model), skip_frames=0, threads=1, live=True) as net:
        assert net.background is not None
        infer = net.engine.infer
        net.engine.infer = lambda x, *a: time.sleep(0.15) or infer(x, *a)
        events, slowest, start = [], 0.0, time.perf_counter()
        for i, f in enumerate(frames):  # at 30 fps, as a camera gives them
            time.sleep(max(0.0, start + i / 30 - time.perf_counter()))
            t = time.perf_counter()
            events += net.process(f, i / 30)
            slowest = max(slowest, time.perf_counter() - t)
        running = net.background.busy
        events += net.finish()
    cls = [e for e in events if e["event"] == "classification"]
    assert slowest < 0.1, slowest
    assert running and 3 <= len(cls) < len(sync) / 2, (len(cls), len(sync))
    assert [e["frame"] for e in cls] == sorted(e["frame"] for e in cls)
    for e in cls:
        assert e["time"] == pytest.approx(e["frame"] / 30, abs=1e-4)
        assert e["topk"] == sync[e["frame"]]["topk"]


def test_a_failed_last_background_call_still_closes_the_events(synthetic_model, synthetic_video, tmp_path):
    """The classification still running at the end fails: the open segment and the run's summary
    are written all the same, then the error is raised."""
    from actionnet.errors import ModelError
    from actionnet.net import ActionNet
    from actionnet.outputs import EventSink
    from actionnet.pipeline import run

    frames = [f for f, _ in open_source(str(synthetic_video("red right slow", frames=30, speed=0.5)))]
    path = tmp_path / "ev.jsonl"
    with ActionNet(model=str(synthetic_model), skip_frames=0, threads=1, live=True) as net:
        infer, calls = net.engine.infer, []

        def failing_last(x, *a):
            calls.append(1)
            if len(calls) > 1:  # the second call outlasts the 0.3 s run: it fails in finish()
                time.sleep(1.0)
                raise ModelError("the engine failed")
            return infer(x, *a)

        net.engine.infer = failing_last
        paced = ((f, i / 30) for i, f in enumerate(frames) if time.sleep(0.01) is None)
        with pytest.raises(ModelError, match="the engine failed"):
            run(paced, net, events=EventSink(str(path)))
    kinds = [json.loads(line)["event"] for line in path.read_text().splitlines()]
    assert kinds[0] == "classification" and kinds[-1] == "summary" and "segment" in kinds, kinds
