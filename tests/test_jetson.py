"""The jetson/ folder: the script parses and refuses non-Jetsons, the unit runs actionnet as a
service, the Dockerfile starts from NVIDIA's L4T JetPack image and never pip-installs OpenCV."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

JETSON = Path(__file__).resolve().parents[1] / "jetson"


def test_install_script_is_valid_bash_and_refuses_non_jetsons(tmp_path):
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    script = JETSON / "install.sh"
    assert subprocess.run([bash, "-n", str(script)]).returncode == 0
    text = script.read_text()
    assert "python3-libnvinfer" in text and "python3-opencv" in text and "--system-site-packages" in text
    assert "--no-deps" in text and "opencv-python" not in text.split("uninstall")[0]  # pip never installs opencv
    if Path("/etc/nv_tegra_release").exists():
        pytest.skip("this is a Jetson")
    r = subprocess.run([bash, str(script)], capture_output=True, text=True)
    assert r.returncode == 1 and "not a Jetson" in r.stderr
    r = subprocess.run([bash, str(script), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown option --bogus" in r.stderr


def test_systemd_unit():
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read_string((JETSON / "actionnet.service").read_text())
    assert set(unit.sections()) == {"Unit", "Service", "Install"}
    svc = unit["Service"]
    cmd = svc["ExecStart"].split()
    assert cmd[0].endswith("/actionnet") and "--headless" in cmd and "--no-progress" in cmd
    assert any(a.startswith("--model=") and a.endswith(".engine") for a in cmd)
    assert any(a.startswith("--events=") for a in cmd) and cmd[-1].startswith("/dev/video")
    # events survive a restart: actionnet truncates an --events file, so the unit appends stdout
    assert "--events=-" in cmd and svc["StandardOutput"].startswith("append:/var/lib/actionnet/")
    assert svc["Restart"] == "on-failure" and svc["KillSignal"] == "SIGTERM" and "video" in svc["SupplementaryGroups"]
    assert "ACTIONNET_HOME=" in svc["Environment"] and unit["Install"]["WantedBy"] == "multi-user.target"
    # the flags the unit passes exist
    from actionnet.cli import build_parser

    args = build_parser().parse_args(cmd[1:])
    assert args.headless and args.model.endswith(".engine")


def test_dockerfile_uses_l4t_jetpack_base_and_keeps_its_opencv():
    text = (JETSON / "Dockerfile").read_text()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]
    assert lines[0].startswith("ARG L4T=r36")
    assert [ln for ln in lines if ln.startswith("FROM")] == ["FROM nvcr.io/nvidia/l4t-jetpack:${L4T}"]
    assert "--no-deps" in text and "pip install opencv" not in text and "python3-libnvinfer" in text
    assert lines[-2:] == ['ENTRYPOINT ["actionnet"]', 'CMD ["--help"]']


def test_jetson_readme_covers_the_topics():
    text = (JETSON / "README.md").read_text().lower()
    for topic in ("nvpmodel", "jetson_clocks", "dla", "not portable", "memory", "install.sh", "dockerfile",
                  "actionnet.service", "not run"):
        assert topic in text, topic
