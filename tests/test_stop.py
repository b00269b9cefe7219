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
