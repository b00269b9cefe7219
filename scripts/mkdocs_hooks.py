"""MkDocs hooks (mkdocs.yml ``hooks:``) for the manual.

Run as ``mkdocs build``, Python puts the ``mkdocs`` script's folder (the virtual environment's
``bin/``) first on ``sys.path``; the ``actionnet`` console script lives there too, and
mkdocstrings (griffe) would take that file for the ``actionnet`` package. Folders whose
``actionnet`` is a plain file are dropped from the search path, so the installed package is found.
"""

from __future__ import annotations

import sys
from pathlib import Path


def on_startup(command, dirty):
    sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "actionnet").is_file()]
