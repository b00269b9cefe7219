"""A stop (Ctrl-C, SIGTERM) that arrives before the first frame, while the model loads or a
TensorRT engine builds: one line, exit 0, no traceback, nothing written."""

from __future__ import annotations

import os
import signal
import time

import pytest

from actionnet import cli


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_stop_while_the_model_loads(synthetic_model, synthetic_video, tmp_path, monkeypatch, capsys, how):
    import actionnet.net

    def slow_load(*args, **kwargs):  # the signal arrives while the model is still loading
        os.kill(os.getpid(), getattr(signal, how))
        time.sleep(5)
        raise AssertionError("the stop did not interrupt the load")

    monkeypatch.setattr(actionnet.net, "ActionNet", slow_load)
    # Ctrl-C raises KeyboardInterrupt even where this test runs in a background job (SIGINT ignored)
    old_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out.mp4"
    rc = cli.main(["--model", str(synthetic_model), "--events", str(tmp_path / "e.jsonl"), "--headless",
                   str(synthetic_video("red right slow")), str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "actionnet: stopped before the first frame; nothing written"
    assert list(tmp_path.iterdir()) == []
    signal.signal(signal.SIGINT, old_int)
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored


def test_events_reader_that_goes_away_stops_the_run_cleanly(synthetic_model, tmp_path):
    """``actionnet --events=- ... | head -1``: the reader closes the pipe; the run stops as on
    Ctrl-C (video finalised, exit 0), with no BrokenPipeError traceback."""
    import subprocess
    import sys

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
