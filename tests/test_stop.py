"""A stop (Ctrl-C, SIGTERM) that arrives before the first frame, while the model loads or a
TensorRT engine builds: one line, exit 0, no traceback, nothing written.

The CLI runs in a child process: a signal sent to the test process itself would also reach the
threads that torch, OpenVINO and earlier tests left in it (seen: a segmentation fault)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent("""
    import os, signal, sys, time
    import actionnet.net
    from actionnet import cli

    def slow_load(*args, **kwargs):  # the signal arrives while the model is still loading
        os.kill(os.getpid(), getattr(signal, sys.argv[1]))
        time.sleep(5)
        raise AssertionError("the stop did not interrupt the load")

    actionnet.net.ActionNet = slow_load
    signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job starts with SIGINT ignored
    before = signal.getsignal(signal.SIGTERM)
    rc = cli.main(sys.argv[2:])
    assert signal.getsignal(signal.SIGTERM) is before, "handlers not restored"
    sys.exit(rc)
""")


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_stop_while_the_model_loads(synthetic_model, synthetic_video, tmp_path, how):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    r = subprocess.run([sys.executable, "-c", CHILD, how, "--model", str(synthetic_model),
                        "--events", str(out_dir / "e.jsonl"), "--headless",
                        str(synthetic_video("red right slow")), str(out_dir / "out.mp4")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().splitlines()[-1] == "actionnet: stopped before the first frame; nothing written"
    assert list(out_dir.iterdir()) == []


def test_events_reader_that_goes_away_stops_the_run_cleanly(synthetic_model, tmp_path):
    """``actionnet --events=- ... | head -1``: the reader closes the pipe; the run stops as on
    Ctrl-C (video finalised, exit 0), with no BrokenPipeError traceback."""
    import av

    from conftest import shared_file

    video = shared_file("videos/people_walking.mp4")  # 1394 frames: seconds of run after the first flush
    out = tmp_path / "out.mp4"
    p = subprocess.Popen([sys.executable, "-m", "actionnet.cli", "--model", str(synthetic_model), "--headless",
                          "--skip-frames=0", "--events=-", str(video), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith('{"frame":')
    p.stdout.close()  # as `head -1` does
    err = p.stderr.read()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err, err
    assert "actionnet: stopped:" in err, err
    with av.open(str(out)) as c:
        assert 0 < sum(1 for _ in c.decode(video=0)) < 1394  # finalised early: playable, not the whole clip
