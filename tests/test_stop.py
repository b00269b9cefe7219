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
    before = signal.getsignal(signal.SIGTERM)
    out = tmp_path / "out.mp4"
    rc = cli.main(["--model", str(synthetic_model), "--events", str(tmp_path / "e.jsonl"), "--headless",
                   str(synthetic_video("red right slow")), str(out)])
    err = capsys.readouterr().err
    assert rc == 0 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "actionnet: stopped before the first frame; nothing written"
    assert list(tmp_path.iterdir()) == []
    assert signal.getsignal(signal.SIGTERM) is before  # handlers restored
