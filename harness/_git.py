"""Reading a commit out of a local git repository without running anything the repository configures.

Nothing in the candidate's repository config may run a program or reach a remote: only objects
are read (rev-parse, ls-tree, cat-file), never checked out or archived, so filters, hooks and
fsmonitor have no trigger.

Nothing in the repository may stall git either: before git runs, the files it reads (the object
store, refs, HEAD, config) must be regular files and directories inside the repository (a fifo
would block git's open() forever), and each git step is killed after `GIT_TIMEOUT` seconds.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness._archives import MAX_LINK_TARGET, Parts, StagingTree, member_path, show
from harness.errors import InfraError, IntakeError

_OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
GIT_TIMEOUT = 120.0  # seconds for each git step (resolving the ref, exporting the tree)
_MAX_GIT_ENTRIES = 200_000  # files and directories checked under objects/ and refs/
_GIT_DIRECTORIES = ("objects", "refs")
_GIT_FILES = ("HEAD", "config", "packed-refs", "shallow", "info/grafts")


def is_bare_repo(path: Path) -> bool:
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and (path / "refs").is_dir()


_GIT_OPTIONS = ("--no-pager", "--no-replace-objects", "-c", "core.hooksPath=/dev/null",
                "-c", "core.fsmonitor=false", "-c", "protocol.allow=never", "-c", "submodule.recurse=false")


def _git_env() -> dict[str, str]:
    """A clean environment: no host GIT_* variables, no system or user config."""
    return {"PATH": os.environ.get("PATH", os.defpath), "HOME": "/nonexistent", "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull, "GIT_TERMINAL_PROMPT": "0"}


def _git_command(git_dir: Path, *args: str) -> list[str]:
    git = shutil.which("git")
    if git is None:
        raise InfraError("git is not installed; it is needed to take in git submissions")
    return [git, f"--git-dir={git_dir}", *_GIT_OPTIONS, *args]


def stage_git(repo: Path, ref: str, tree: StagingTree) -> str:
    """Stage the tree of `ref` in a local repository; return the commit sha.

    Raises IntakeError (not a repository, bad ref, unsafe repository, git too slow), InfraError
    (git missing).
    """
    repo = Path(os.path.realpath(repo))  # the path we are given may be a link; what is inside may not
    git_dir = repo / ".git" if os.path.lexists(repo / ".git") else repo
    if not (git_dir == repo / ".git" or is_bare_repo(repo)):
        raise IntakeError("not a git repository")
    if not ref or ref.startswith("-") or any(ord(char) < 32 for char in ref):
        raise IntakeError(f"invalid git ref {ref!r}")
    _check_git_dir(git_dir)
    command = _git_command(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options",
                           f"{ref}^{{commit}}")
    try:
        result = subprocess.run(command, env=_git_env(), capture_output=True, timeout=GIT_TIMEOUT,
                                check=False)
    except subprocess.TimeoutExpired as err:
        raise IntakeError(f"git took more than {GIT_TIMEOUT:g} s to resolve ref {ref!r}") from err
    commit = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or not _OBJECT_ID.match(commit):
        raise IntakeError(f"git ref {ref!r} is not a commit of the repository")
    _export_commit(git_dir, commit, tree)
    return commit


def _check_git_dir(git_dir: Path) -> None:
    """Refuse a repository whose object store, refs, HEAD or config hold anything but regular
    files and directories, or whose objects live elsewhere (a worktree, alternates).

    Symlinks are not followed, and at most _MAX_GIT_ENTRIES entries are looked at. Raises IntakeError.
    """
    if not stat.S_ISDIR(_lstat_mode(git_dir)) or not stat.S_ISDIR(_lstat_mode(git_dir / "objects")):
        raise IntakeError("the repository's git directory or its objects/ is not a plain directory "
                          "(a worktree or submodule checkout?); submit the main repository")
    if os.path.lexists(git_dir / "commondir") or os.path.lexists(git_dir / "objects/info/alternates"):
        raise IntakeError("the repository keeps objects elsewhere (a worktree or alternates); "
                          "submit a standalone clone")
    for name in _GIT_FILES:
        mode = _lstat_mode(git_dir / name)
        if mode and not stat.S_ISREG(mode):
            raise IntakeError(f"the repository's {name} is not a regular file")
    seen = 0
    pending = [git_dir / name for name in _GIT_DIRECTORIES if os.path.lexists(git_dir / name)]
    while pending:
        with os.scandir(pending.pop()) as listing:
            for entry in listing:
                seen += 1
                if seen > _MAX_GIT_ENTRIES:
                    raise IntakeError(f"the repository has more than {_MAX_GIT_ENTRIES} files "
                                      "under objects/ and refs/")
                if entry.is_dir(follow_symlinks=False):
                    pending.append(Path(entry.path))
                elif not entry.is_file(follow_symlinks=False):
                    rel = os.path.relpath(entry.path, git_dir)
                    raise IntakeError(f"the repository's {show((rel,))} is not a regular file or directory")


def _lstat_mode(path: Path) -> int:
    """st_mode of `path` itself, 0 if it does not exist."""
    try:
        return os.lstat(path).st_mode
    except FileNotFoundError:
        return 0


def _export_commit(git_dir: Path, commit: str, tree: StagingTree) -> None:
    """Write the files of `commit` into `tree`, reading raw blobs (no filters, no attributes).

    Both git processes are killed after GIT_TIMEOUT seconds, so a read that git never answers
    ends (EOF) instead of blocking forever. Raises IntakeError.
    """
    env = _git_env()
    listing = subprocess.Popen(_git_command(git_dir, "ls-tree", "-r", "-z", "--full-tree", commit),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    blobs = subprocess.Popen(_git_command(git_dir, "cat-file", "--batch"), env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        listing.kill()
        blobs.kill()

    timer = threading.Timer(GIT_TIMEOUT, expire)
    timer.daemon = True
    timer.start()
    try:
        assert listing.stdout is not None  # set by stdout=PIPE
        for record in _records(listing.stdout):
            _export_entry(record, blobs, tree)
        if listing.wait() != 0:
            raise IntakeError(f"git ls-tree failed on commit {commit}")
    except (IntakeError, BrokenPipeError) as err:  # what reading from or writing to a killed git raises
        if expired.is_set():
            raise IntakeError(f"git took more than {GIT_TIMEOUT:g} s to read commit {commit}") from err
        raise
    finally:
        timer.cancel()
        timer.join()  # so the timer never signals a process reaped below
        for process in (listing, blobs):
            process.kill()
            process.communicate()


def _records(stream: IO[bytes]) -> Iterator[bytes]:
    pending = b""
    while chunk := stream.read(1 << 16):
        *done, pending = (pending + chunk).split(b"\0")
        yield from done
        if len(pending) > 1 << 16:
            raise IntakeError("git tree has a path longer than 64 KiB")
    if pending:
        raise IntakeError("git ls-tree output is truncated")


def _export_entry(record: bytes, blobs: subprocess.Popen[bytes], tree: StagingTree) -> None:
    meta, _, raw_name = record.partition(b"\t")
    fields = meta.decode("ascii", "replace").split(" ")
    if len(fields) != 3:
        raise IntakeError(f"unexpected git tree entry {record[:200]!r}")
    mode, kind, oid = fields
    parts = member_path(os.fsdecode(raw_name))
    if kind == "commit":
        return  # a submodule: never fetched
    if kind != "blob" or not _OBJECT_ID.match(oid):
        raise IntakeError(f"unexpected git tree entry {record[:200]!r}")
    blob = _Blob(blobs, oid, parts)
    if mode == "120000":
        target = blob.read(MAX_LINK_TARGET + 1)
        if len(target) > MAX_LINK_TARGET or blob.read(1):
            raise IntakeError(f"symlink {show(parts)} has a target longer than {MAX_LINK_TARGET} bytes")
        tree.add_symlink(parts, os.fsdecode(target))
    else:
        tree.add_file(parts, blob, executable=mode == "100755")


class _Blob:
    """One blob read through `git cat-file --batch`; requested lazily, so skipped files cost nothing."""

    def __init__(self, process: subprocess.Popen[bytes], oid: str, parts: Parts) -> None:
        self._process, self._oid, self._parts = process, oid, parts
        self._left: int | None = None

    def read(self, size: int = -1, /) -> bytes:
        assert self._process.stdin is not None and self._process.stdout is not None
        if self._left is None:
            self._process.stdin.write(self._oid.encode() + b"\n")
            self._process.stdin.flush()
            header = self._process.stdout.readline(200).split()
            if len(header) != 3 or header[1] != b"blob" or not header[2].isdigit():
                raise IntakeError(f"git could not read {show(self._parts)}")
            self._left = int(header[2])
        if self._left == 0:
            return b""
        wanted = min(size if size >= 0 else 1 << 20, self._left)
        data = self._process.stdout.read(wanted)
        if not data:
            raise IntakeError(f"git output ended while reading {show(self._parts)}")
        self._left -= len(data)
        if self._left == 0:
            self._process.stdout.read(1)  # the newline after each blob
        return data
