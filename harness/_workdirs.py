"""Folders the harness works in: per-process staging, atomic result swaps, locks, leftovers."""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sandbox import pid_alive

_OWNED = re.compile(r"^\.?.*?\.(\d+)\.[0-9a-f]{8}\.tmp$")


def owned_name(stem: str) -> str:
    """A temporary name that records this process, so a later run can tell leftovers of the dead."""
    return f"{stem}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"


def remove_tree(path: Path) -> None:
    """Delete a tree a candidate may have shaped (any depth, links, odd modes); never raises.

    shutil.rmtree recurses, so a tree 1000+ levels deep raises RecursionError even with
    ignore_errors; `rm -rf --one-file-system` walks iteratively and stays on this file system.
    """
    if os.path.islink(path) or os.path.isfile(path):  # rmtree leaves these alone
        Path(path).unlink(missing_ok=True)
        return
    try:
        shutil.rmtree(path, ignore_errors=True)
    except RecursionError:
        pass
    if os.path.lexists(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)


def sweep_leftovers(*folders: Path) -> int:
    """Remove temporary folders (see `owned_name`) whose process is gone, e.g. after kill -9."""
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in sorted(folder.iterdir()):
            match = _OWNED.match(entry.name)
            if not match or pid_alive(int(match[1])) or entry.is_symlink() or not entry.is_dir():
                continue
            original = _replaced(entry)
            if original is not None and not original.exists():
                entry.rename(original)  # killed between the two renames of replace_folder: put it back
                continue
            remove_tree(entry)
            removed += 1
    return removed


def _replaced(entry: Path) -> Path | None:
    """For `.X.old.<pid>.<id>.tmp` (see replace_folder), the folder `X` it was moved away from."""
    name = entry.name
    if not name.startswith(".") or ".old." not in name:
        return None
    return entry.with_name(name[1:name.rindex(".old.")])


def replace_folder(new: Path, target: Path) -> None:
    """Put `new` at `target`, replacing what is there; readers see the old or the new folder."""
    old = target.with_name(owned_name(f".{target.name}.old"))
    if target.exists():
        target.rename(old)
    new.rename(target)
    remove_tree(old)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """An advisory lock held by one thread or process at a time (flock on separate opens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
