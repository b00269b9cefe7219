"""The runtime imports and runs without torch.

The script runs in a second environment that has only ``pip install -e .``, no torch at all
(the ``lean_python`` fixture builds it once, tests/envs.py), so a dependency the runtime forgot to
declare fails here as it would for a user of the runtime install.
"""

import json
import subprocess
import textwrap

BLOCK = textwrap.dedent("""
    import importlib.abc, sys
    class _NoTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("torch", "torchvision", "ultralytics"):
                raise ImportError(f"{name} is blocked: the runtime must not import it")
    sys.meta_path.insert(0, _NoTorch())
""")

SCRIPT = textwrap.dedent("""
    import json, sys
    import actionnet
    from actionnet.cli import main
    code = main(sys.argv[1:])
    heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "ultralytics"))
    print(json.dumps({"code": code, "heavy": heavy}))
""")


def test_runtime_runs_without_torch(synthetic_model, synthetic_video, tmp_path, lean_python):
    python, script = lean_python, SCRIPT
    ev, out = tmp_path / "ev.jsonl", tmp_path / "out.mp4"
    video = synthetic_video("red left slow")
    r = subprocess.run([python, "-c", script, "--model", str(synthetic_model), "--skip-frames=0", "--events",
                        str(ev), str(video), str(out)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result == {"code": 0, "heavy": []}
    labels = {e["label"] for e in map(json.loads, open(ev)) if e["event"] == "classification"}
    assert labels == {"red left slow"}
    assert out.stat().st_size > 0
    # the timeline draws with what the base install has (OpenCV), no plotting library
    r = subprocess.run([python, "-c", script, "timeline", str(ev), "-o", str(tmp_path / "t.png")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"code": 0, "heavy": []}
    assert (tmp_path / "t.png").stat().st_size > 0
    probe = subprocess.run([python, "-c", "import torch"], capture_output=True)
    assert probe.returncode != 0, "the lean environment has torch installed"
