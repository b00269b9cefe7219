"""Atomic writes that leave files with the user's normal permissions.

``tempfile.mkstemp`` creates its file with mode 0600 so that nobody else can read a secret in
``/tmp``; renamed into place, such a file keeps 0600, and a model written that way cannot be read
by a service running under another user or in a container. Files written here get what ``open``
would give them (0666 minus the umask) while keeping the temporary-file-then-rename pattern.
"""

from __future__ import annotations

import os
import tempfile
from typing import Tuple


def umask() -> int:
    """The process umask, read without changing it where the system allows (Linux's
    ``/proc/self/status``); elsewhere set and restored at once."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: 0666 minus the umask."""
    return 0o666 & ~umask()


def mkstemp(dir: str, prefix: str = ".tmp-", suffix: str = "") -> Tuple[int, str]:
    """``tempfile.mkstemp`` in ``dir`` whose file, once renamed into place, has the user's normal
    permissions instead of 0600."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=dir)
    try:
        os.fchmod(fd, default_mode())
    except (AttributeError, OSError):  # Windows has no fchmod; its ACLs decide there
        pass
    return fd, path
