"""The README's commands that CI runs, read from README.md so that it is the one place they are
written (issue 24: CI proves what a user runs).

    python3 scripts/readme_commands.py quick-start 2     # the Quick start's second line
    python3 scripts/readme_commands.py apt-packages      # the Debian packages the Install section lists

Standard library only: .ci/run calls it with the system python3 before any environment exists.
"""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section."""
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not m:
        raise SystemExit(f"README.md has no '## {title}' section")
    return m.group(1)


def code_lines(body: str) -> list:
    """The non-empty lines of the fenced code blocks in ``body``."""
    blocks = re.findall(r"^```[a-z]*\n(.*?)^```", body, flags=re.M | re.S)
    return [line for b in blocks for line in b.splitlines() if line.strip()]


def quick_start(text: str) -> list:
    return code_lines(section(text, "Quick start"))


def apt_packages(text: str) -> list:
    """Package names of the ``apt-get install`` lines in the Install section (options and the
    trailing ``# comment`` left out)."""
    names = []
    for line in code_lines(section(text, "Install")):
        words = shlex.split(line, comments=True)
        if "apt-get" in words and "install" in words:
            names += [w for w in words[words.index("install") + 1:] if not w.startswith("-")]
    return names


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    text = README.read_text(encoding="utf-8")
    if argv[:1] == ["quick-start"] and len(argv) == 2:
        print(quick_start(text)[int(argv[1]) - 1])
    elif argv == ["apt-packages"]:
        print("\n".join(apt_packages(text)))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
