"""The README's Quick start is what CI runs (issue 24): two lines; the second installs everything
the tests need without mixing torch builds and runs them; .ci/run installs the Install section's
Debian packages and runs that line verbatim in a fresh environment, and nothing else."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import stat
import subprocess
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
import readme_commands  # noqa: E402

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_quick_start_is_two_commands_the_second_pins_torch_as_a_pair_and_runs_the_tests():
    lines = readme_commands.quick_start(README)
    assert len(lines) == 2, lines
    run, test = ([c.strip() for c in line.split("&&")] for line in lines)
    assert "pip install -e ." in run and run[-1] == "actionnet input.mp4 output.mp4"
    pins = dict(re.findall(r"\b(torch|torchvision)==([0-9.]+)", test[0]))
    assert set(pins) == {"torch", "torchvision"}, f"torch and torchvision must be pinned as a pair first: {test[0]}"
    assert "index-url" not in lines[1], "an index that may be unreachable must not decide the torch build"
    extras = re.search(r"-e '?\.\[([a-z,]+)\]'?", lines[1])
    assert extras and {"export", "dev"} <= set(extras.group(1).split(",")), lines[1]
    dev = re.search(r"^dev = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert dev and "pytest" in dev.group(1)
    assert shlex.split(test[-1]) == ["python", "-m", "pytest", "-q"]


def test_install_lists_the_debian_packages_the_tests_need():
    packages = readme_commands.apt_packages(README)
    # the RTSP test server (tests/rtsp_server.py), the Triton server's Python (tests/envs.py) and
    # the browser of the webrtc:// tests (tests/test_web.py)
    assert {"python3-gi", "gir1.2-gst-rtsp-server-1.0", "gstreamer1.0-plugins-good", "python3-venv",
            "libpython3-dev", "chromium", "chromium-driver"} <= set(packages), packages
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9.+-]+", p) for p in packages), packages


def _stub(folder, name, body):
    p = folder / name
    p.write_text("#!/bin/sh\n" + body + "\n")
    p.chmod(p.stat().st_mode | stat.S_IXUSR)


def _ci_copy(tmp_path, test_line):
    """.ci/run, its README parser and the README with line 2 replaced, in a folder of their own."""
    (tmp_path / ".ci").mkdir(parents=True)
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / ".ci" / "run", tmp_path / ".ci" / "run")
    shutil.copy(ROOT / "scripts" / "readme_commands.py", tmp_path / "scripts")
    line2 = readme_commands.quick_start(README)[1]
    (tmp_path / "README.md").write_text(README.replace(line2, test_line, 1))
    return tmp_path


def test_ci_installs_the_readme_packages_then_runs_its_line_verbatim_in_a_fresh_venv(tmp_path):
    """.ci/run driven for real: apt-get and dpkg-query are stubs that record what they are asked;
    the README's line 2 is swapped for one that records where it ran."""
    repo = _ci_copy(tmp_path / "repo", "echo \"$VIRTUAL_ENV\" > ran.txt && python -c 'import sys; print(sys.prefix)' >> ran.txt")
    (repo / ".venv").mkdir()
    (repo / ".venv" / "stale").write_text("from an earlier run")
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "apt.log"
    _stub(bin_, "dpkg-query", "exit 1")  # nothing installed yet
    _stub(bin_, "apt-get", f'echo "$@" >> {log}')
    _stub(bin_, "sudo", '"$@"')
    env = {**os.environ, "PATH": f"{bin_}{os.pathsep}{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    r = subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    venv = str(repo / ".venv")
    assert (repo / "ran.txt").read_text().split() == [venv, venv], "the line did not run in the fresh venv"
    assert not (repo / ".venv" / "stale").exists(), "the venv was not made afresh"
    calls = log.read_text().splitlines()
    assert "update" in calls[0].split()
    install = calls[1].split()
    assert install[install.index("install") + 1:][-len(readme_commands.apt_packages(README)):] == \
        readme_commands.apt_packages(README)
    # with every package present, apt is not touched; a failing line fails CI
    _stub(bin_, "dpkg-query", "echo 'install ok installed'")
    log.unlink()
    repo = _ci_copy(tmp_path / "repo2", "python -c 'raise SystemExit(3)'")
    r = subprocess.run(["bash", str(repo / ".ci" / "run")], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 3 and not log.exists()


def test_ci_script_installs_nothing_the_readme_does_not_say():
    ci = (ROOT / ".ci" / "run").read_text()
    code = [line for line in ci.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert not [line for line in code if re.search(r"\bpip\b|pytest|ACTIONNET_", line)], code
