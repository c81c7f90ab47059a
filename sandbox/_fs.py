"""Host-side file helpers for what a stage leaves behind: bounded reads, tree sizes, writable dirs.

Everything here treats the files as hostile: it never follows a symlink the stage made,
never blocks on a fifo, and never reads more than the caller's cap.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

_CHUNK = 1 << 16


class OutputRefused(Exception):
    """A file written by a stage that the harness will not read; `reason` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: refused ({reason})")
        self.path = path
        self.reason = reason


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """Return the content of the regular file `path`, at most `max_bytes` long.

    Raises OutputRefused with reason "missing", "symlink", "not a regular file" or
    "larger than N bytes". Only the last path component is checked for a symlink:
    the caller owns the directories above it (the stage's output dir itself).
    """
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise OutputRefused(path, "missing") from None
    except OSError as exc:
        raise OutputRefused(path, _open_failure(path, exc)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OutputRefused(path, "not a regular file")
    with os.fdopen(fd, "rb", buffering=0) as handle:
        data = _read_up_to(handle, max_bytes + 1)
    if len(data) > max_bytes:
        raise OutputRefused(path, f"larger than {max_bytes} bytes")
    return data


def _open_failure(path: Path, exc: OSError) -> str:
    # O_NOFOLLOW on a symlink fails with ELOOP; say "symlink" rather than the errno.
    try:
        if stat.S_ISLNK(os.lstat(path).st_mode):
            return "symlink"
    except OSError:
        pass
    return f"cannot open: {exc.strerror or exc}"


def _read_up_to(handle, limit: int) -> bytes:
    chunks: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = handle.read(min(_CHUNK, remaining))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def tree_size(paths: Sequence[Path], *, max_entries: int = 200_000) -> tuple[int, int]:
    """Total apparent size in bytes of the non-directory entries under `paths`, and the entry count.

    Symlinks are counted as entries but never followed. Stops early once more than
    `max_entries` entries have been seen, so the count then only says "too many".
    Entries that vanish or cannot be read during the walk are skipped, not raised.
    """
    total, entries = 0, 0
    stack = [os.fspath(p) for p in paths]
    while stack and entries <= max_entries:
        try:
            with os.scandir(stack.pop()) as listing:
                for entry in listing:
                    entries += 1
                    if entries > max_entries:
                        break
                    total += _entry_size(entry, stack)
        except OSError:
            continue
    return total, entries


def _entry_size(entry: os.DirEntry, stack: list[str]) -> int:
    try:
        if entry.is_dir(follow_symlinks=False):
            stack.append(entry.path)
            return 0
        return entry.stat(follow_symlinks=False).st_size
    except OSError:
        return 0


def copy_workspace(source: Path, dest: Path, uid: int, gid: int) -> None:
    """Copy a stage-written tree for another stage: folders, regular files and links (as links).

    Nothing is followed and anything else (FIFOs, sockets, devices) is left out, so a hostile
    tree can neither block the copy nor point it outside `source`. Copies belong to uid:gid
    (the sandbox user) when the harness runs as root. Raises OSError.
    """
    make_writable_dir(dest, uid, gid)
    stack = [(os.fspath(source), os.fspath(dest))]
    while stack:
        src_dir, dst_dir = stack.pop()
        with os.scandir(src_dir) as listing:
            for entry in listing:
                target = os.path.join(dst_dir, entry.name)
                if entry.is_symlink():
                    os.symlink(os.readlink(entry.path), target)
                elif entry.is_dir(follow_symlinks=False):
                    make_writable_dir(Path(target), uid, gid)
                    stack.append((entry.path, target))
                elif entry.is_file(follow_symlinks=False):
                    _copy_file(entry.path, target)
                else:
                    continue
                if os.geteuid() == 0:
                    os.chown(target, uid, gid, follow_symlinks=False)


def _copy_file(source: str, target: str) -> None:
    fd = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    try:
        with os.fdopen(fd, "rb", closefd=False) as src, open(target, "xb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        executable = os.fstat(fd).st_mode & 0o111
    finally:
        os.close(fd)
    os.chmod(target, 0o755 if executable else 0o644)  # a script run as ./train.sh keeps working


def make_writable_dir(path: Path, uid: int, gid: int) -> None:
    """Create `path` (and parents) so a stage running as uid:gid can write into it.

    As root the directory is chowned to uid:gid (mode 0o755); otherwise it is made
    world-writable, the only way an unprivileged harness can share it. Raises OSError.
    """
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, uid, gid)
        path.chmod(0o755)
    else:
        path.chmod(0o777)  # noqa: S103 - a scratch dir handed to the sandbox user


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (it may belong to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but belongs to another user
        pass
    return True


def open_deleted_bytes(pids: Sequence[int], devices: set[int], *, max_fds: int = 100_000) -> int:
    """Bytes held by files the processes `pids` keep open after deleting them, on `devices`.

    Such files no longer appear in a directory walk but still fill the disk, so a disk cap
    that only adds up the tree must add these too. Needs permission to read /proc/PID/fd.
    """
    total, seen, looked = 0, set(), 0
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue  # gone, or not ours to see
        for fd in fds:
            looked += 1
            if looked > max_fds:
                return total
            path = f"/proc/{pid}/fd/{fd}"
            try:
                if not os.readlink(path).endswith(" (deleted)"):
                    continue
                info = os.stat(path)  # follows the magic link to the open file itself
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if stat.S_ISREG(info.st_mode) and info.st_dev in devices and key not in seen:
                seen.add(key)
                total += info.st_blocks * 512
    return total

