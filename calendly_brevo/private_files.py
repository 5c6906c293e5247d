"""Files that hold secrets or PII (SQLite databases, key files) are private to the service user.

A directory the connector creates is 0700 and a file 0600, whatever the umask; SQLite gives its
``-wal`` and ``-shm`` files the mode of the database file, so creating that file first is enough.
An existing directory is left as the operator made it; an existing file of ours is tightened.

An existing file is never opened here, only chmod-ed: SQLite holds POSIX advisory locks, and
closing *any* descriptor of a file drops every lock this process holds on it, so an open and
close beside a live connection corrupts the database (sqlite.org/howtocorrupt.html, 2.2).
"""

from __future__ import annotations

import os
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path) -> None:
    """Create ``path`` (and missing parents) as 0700; an existing directory is not changed."""
    if path.is_dir():
        return
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    os.chmod(path, DIR_MODE)  # mkdir's mode is filtered by the umask


def private_file(path: Path) -> None:
    """Make sure ``path`` exists with mode 0600 (created empty when absent), its directory 0700."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        pass
    else:
        os.close(fd)
    os.chmod(path, FILE_MODE)
