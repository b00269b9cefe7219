"""The README and the manual stay true (issue 29).

- ruff (pyflakes, pycodestyle, import order; configured in pyproject.toml) is clean over the code;
- ``mkdocs build --strict`` builds the manual (docs/, mkdocs.yml): a broken link, a missing page
  or anchor, or a docstring mkdocstrings cannot read fails;
- every fenced shell or Python block of README.md and docs/*.md is either run here, as written,
  in a folder where the file names it uses are the test fixtures (``m.onnx`` and ``r3d18.onnx``
  the synthetic model, ``input.mp4`` a synthetic video, ``frames/`` its frames), or is marked
  ``<!-- not-run: REASON -->`` on the line before it (hardware, network, installs). Blocks with
  another info string (``text``, ``yaml``) are output or data, not commands. jetson/README.md (the
  manual's Jetson page) needs a Jetson throughout. The commands run are listed at the end of the
  test output (tests/conftest.py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MARKDOWN_COMMANDS_RUN, MARKDOWN_NOT_RUN, ROOT

PAGES = [ROOT / "README.md"] + sorted((ROOT / "docs").glob("*.md"))
SHELL = {"", "sh", "bash", "shell", "console"}
NOT_RUN = re.compile(r"^<!-- not-run: (.+?) -->$")


def markdown_blocks(path: Path):
    """(line, info string, body, not-run reason or None) of each fenced block of ``path``."""
    lines = path.read_text(encoding="utf-8").split("\n")
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\S*)\s*$", lines[i])
        if m:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            before = next((ln for ln in reversed(lines[:i]) if ln.strip()), "")
            reason = NOT_RUN.match(before.strip())
            blocks.append((i + 1, m.group(1), "\n".join(lines[i + 1:end]) + "\n", reason and reason.group(1)))
            i = end
        i += 1
    return blocks


def _commands():
    run, not_run = [], []
    for page in PAGES:
        for line, info, body, reason in markdown_blocks(page):
            where = f"{page.relative_to(ROOT)}:{line}"
            if info not in SHELL and info != "python":
                continue
            (not_run if reason else run).append(pytest.param(info, body, id=where))
    return run, not_run


RUN, NOT_RUN_BLOCKS = _commands()
MARKDOWN_NOT_RUN[:] = [p.id for p in NOT_RUN_BLOCKS]


def test_ruff_is_clean():
    r = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "runtime", "export", "scripts", "tests"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def test_mkdocs_builds_the_manual_strictly(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    site = tmp_path / "site"
    for page in ("install", "run", "models", "persons", "zero-shot", "streaming", "engines", "jetson", "triton",
                 "live", "events", "cameras", "train", "benchmarks", "architecture", "limits", "api"):
        assert (site / page / "index.html").is_file(), page
    assert "ActionNet" in (site / "api" / "index.html").read_text()
    # read offline: no script, stylesheet or font from another host
    html = "".join(p.read_text(encoding="utf-8") for p in site.rglob("*.html"))
    assert not re.findall(r'<(?:script|link)[^>]*(?:src|href)="(?:https?:)?//', html)


def test_readme_links_point_at_files_and_headings_that_exist():
    """The README is not part of the site build; its links into the manual are checked here."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for target in re.findall(r"\]\(([^)\s]+)\)", readme):
        if target.startswith(("http://", "https://")):
            continue
        path, _, anchor = target.partition("#")
        page = ROOT / path if path else ROOT / "README.md"
        assert page.exists(), target
        if anchor:
            slugs = {re.sub(r"[^\w\- ]", "", h.lower()).strip().replace(" ", "-")
                     for h in re.findall(r"^#+ (.+)$", page.read_text(encoding="utf-8"), flags=re.M)}
            assert anchor in slugs, target


def test_every_shell_and_python_block_runs_or_says_why_not():
    """Unmarked blocks are run (above); a marked one says why in its marker."""
    assert len(RUN) >= 4, RUN
    readme = markdown_blocks(ROOT / "README.md")
    # the Quick start (the first block) is CI's own: .ci/run runs its line 2 in a fresh venv
    assert readme[0][2].startswith("pip install -e . && actionnet input.mp4 output.mp4") and ".ci/run" in readme[0][3]
    for page in PAGES:
        for line, info, _, reason in markdown_blocks(page):
            assert reason is None or len(reason) > 8, f"{page.name}:{line}: say why it is not run"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, synthetic_model, synthetic_video):
    """A folder where the manual's file names are the fixtures."""
    import cv2

    d = tmp_path_factory.mktemp("markdown")
    for name in ("m.onnx", "r3d18.onnx"):
        shutil.copy(synthetic_model, d / name)
    video = synthetic_video("red right slow")
    shutil.copy(video, d / "input.mp4")
    (d / "frames").mkdir()
    cap = cv2.VideoCapture(str(video))
    n = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        cv2.imwrite(str(d / "frames" / f"{n:04d}.jpg"), frame)
        n += 1
    assert n >= 20
    return d


@pytest.mark.parametrize("info,body", RUN)
def test_markdown_block_runs_as_written(request, info, body, workdir):
    where = request.node.callspec.id
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    if info == "python":
        MARKDOWN_COMMANDS_RUN.append((where, "python: " + body.strip().splitlines()[0] + " ..."))
        r = subprocess.run([sys.executable, "-c", body], cwd=workdir, capture_output=True, text=True,
                           timeout=300, env=env)
        assert r.returncode == 0, r.stderr
        return
    for command in (ln.strip() for ln in body.splitlines()):
        if not command or command.startswith("#"):
            continue
        MARKDOWN_COMMANDS_RUN.append((where, command))
        r = subprocess.run(["bash", "-c", command], cwd=workdir, capture_output=True, text=True, timeout=300,
                           env=env, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, f"{where}: {command}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
