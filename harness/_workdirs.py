"""Folders the harness works in: per-process staging, atomic result swaps, locks, leftovers."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import pid_alive

_OWNED = re.compile(r"^\.?.*?\.(\d+)\.[0-9a-f]{8}\.tmp$")


def owned_name(stem: str) -> str:
    """A temporary name that records this process, so a later run can tell leftovers of the dead."""
    return f"{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def sweep_leftovers(*folders: Path) -> int:
    """Remove temporary folders (see `owned_name`) whose process is gone, e.g. after kill -9."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            match = _OWNED.match(entry.name)
            if match and not pid_alive(int(match[1])) and entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
    return removed


def replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`, replacing what is there; readers see the old or the new folder."""
    old = target.with_name(owned_name(f".{target.name}.old"))
    if target.exists():
        target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An advisory lock held by one thread or process at a time (flock on separate opens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
