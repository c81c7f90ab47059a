"""Reading a commit out of a local git repository without running anything the repository configures.

Nothing in the candidate's repository config may run a program or reach a remote: only objects
are read (rev-parse, ls-tree, cat-file), never checked out or archived, so filters, hooks and
fsmonitor have no trigger.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from harness._archives import MAX_LINK_TARGET, Parts, StagingTree, member_path, show
from harness.errors import InfraError, IntakeError

_OBJECT_ID = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")
_GIT_TIMEOUT = 120


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
    """Stage the tree of `ref` in a local repository; return the commit sha."""
    git_dir = repo / ".git" if (repo / ".git").exists() else repo
    if not (git_dir == repo / ".git" or is_bare_repo(repo)):
        raise IntakeError("not a git repository")
    if not ref or ref.startswith("-") or any(ord(char) < 32 for char in ref):
        raise IntakeError(f"invalid git ref {ref!r}")
    command = _git_command(git_dir, "rev-parse", "--verify", "--quiet", "--end-of-options",
                           f"{ref}^{{commit}}")
    try:
        result = subprocess.run(command, env=_git_env(), capture_output=True, timeout=_GIT_TIMEOUT,
                                check=False)
    except subprocess.TimeoutExpired as err:
        raise IntakeError(f"git took more than {_GIT_TIMEOUT} s to resolve ref {ref!r}") from err
    commit = result.stdout.decode("ascii", "replace").strip()
    if result.returncode != 0 or not _OBJECT_ID.match(commit):
        raise IntakeError(f"git ref {ref!r} is not a commit of the repository")
    _export_commit(git_dir, commit, tree)
    return commit


def _export_commit(git_dir: Path, commit: str, tree: StagingTree) -> None:
    """Write the files of `commit` into `tree`, reading raw blobs (no filters, no attributes)."""
    env = _git_env()
    listing = subprocess.Popen(_git_command(git_dir, "ls-tree", "-r", "-z", "--full-tree", commit),
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    blobs = subprocess.Popen(_git_command(git_dir, "cat-file", "--batch"), env=env,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert listing.stdout is not None  # set by stdout=PIPE
        for record in _records(listing.stdout):
            _export_entry(record, blobs, tree)
        if listing.wait(timeout=_GIT_TIMEOUT) != 0:
            raise IntakeError(f"git ls-tree failed on commit {commit}")
    finally:
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
