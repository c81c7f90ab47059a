"""Writing an untrusted submission tree safely: one staging sink, and the readers that feed it.

Every source (directory, zip, tar, git tree, notebook) is poured through `StagingTree`, the only
code that creates paths under the staging root. It refuses unsafe names, links that leave the
tree, writing through links, duplicates, special files and paths nested deeper than `MAX_DEPTH`
(deep trees break recursive tools such as shutil.rmtree), and it counts the bytes it actually
writes against `IntakeLimits`: sizes claimed by archive headers are never trusted.

Every problem raises `harness.errors.IntakeError` with a one-line message; `harness.intake` adds
the name of the source.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import posixpath
import re
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, Protocol

from harness.errors import IntakeError

SKIPPED_NAMES = frozenset({".git", "__pycache__", ".ipynb_checkpoints"})
ARCHIVE_SKIPPED_NAMES = SKIPPED_NAMES | {"__MACOSX"}
MAX_LINK_TARGET = 4096
MAX_DEPTH = 64  # path components per member
MAX_LINK_HOPS = 40  # the kernel's own limit (ELOOP): a longer chain is broken in the sandbox anyway
_CHUNK = 1 << 20
_SHOWN = 200  # characters of a path shown in a message
# Below this many bytes the headers and padding of a tiny archive dominate its ratio.
_RATIO_FLOOR = 1 << 20
# Headers, padding and long-name records allowed per entry on top of the content budget.
ARCHIVE_OVERHEAD_PER_ENTRY = 4096
_ARCHIVE_SLACK = 1 << 16  # end records, comments, the padding of a tar's last record
_DRIVE = re.compile(r"^[A-Za-z]:")
# Errors a hostile or damaged compressed stream can raise from read(); all mean "corrupt".
_STREAM_ERRORS = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, struct.error,
                  zipfile.BadZipFile, tarfile.TarError, NotImplementedError)


@dataclass(frozen=True)
class IntakeLimits:
    """Caps on what a submission may expand to; all counted on bytes actually written."""

    max_bytes: int = 200 << 20  # total uncompressed bytes of the submission
    max_files: int = 20_000  # files, symlinks and directories
    max_file_bytes: int = 100 << 20
    max_ratio: float = 200.0  # archive: uncompressed/compressed, against bombs


class _Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


Parts = tuple[str, ...]


def show(parts: Iterable[str]) -> str:
    """A relative path for messages: quoted, control characters escaped, long paths cut."""
    text = "/".join(parts)
    return repr(text if len(text) <= _SHOWN else text[:_SHOWN] + "\u2026")


def member_path(name: str) -> Parts:
    """Split an archive member name into safe components; () is the root itself.

    Raises IntakeError for NUL bytes, backslashes or drive letters, absolute paths and '..'.
    """
    if "\x00" in name:
        raise IntakeError(f"member {show((name,))} contains a NUL byte")
    if "\\" in name or _DRIVE.match(name):
        raise IntakeError(f"member {show((name,))} is a Windows path (backslash or drive letter)")
    if name.startswith("/"):
        raise IntakeError(f"member {show((name,))} is an absolute path")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise IntakeError(f"member {show((name,))} contains '..'")
    return parts


def real_path(path: str) -> str | None:
    """What os.path.realpath(path) returns (missing parts kept as written), without recursion.

    None if that takes following more than MAX_LINK_HOPS symlinks (a loop or a long chain);
    os.path.realpath recurses once per link and raises RecursionError on a long chain.
    """
    pending = os.path.join(os.getcwd(), path).split("/")[::-1]
    resolved, hops = "/", 0
    while pending:
        name = pending.pop()
        if name in ("", "."):
            continue
        if name == "..":
            resolved = os.path.dirname(resolved)
            continue
        candidate = os.path.join(resolved, name)
        if not os.path.islink(candidate):
            resolved = candidate
            continue
        hops += 1
        if hops > MAX_LINK_HOPS:
            return None
        target = os.readlink(candidate)
        if target.startswith("/"):
            resolved = "/"
        pending.extend(target.split("/")[::-1])
    return resolved


def max_archive_bytes(limits: IntakeLimits) -> int:
    """The largest archive file worth opening: the content budget plus headers for every entry."""
    return limits.max_bytes + limits.max_files * ARCHIVE_OVERHEAD_PER_ENTRY + _ARCHIVE_SLACK


def open_regular(path: Path) -> BinaryIO:
    """Open a regular file for reading. Raises IntakeError for a fifo, device or socket.

    O_NONBLOCK makes opening a fifo return at once instead of waiting for a writer; it does
    nothing to reads of a regular file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IntakeError("the source is not a regular file")
    return open(fd, "rb")


def open_archive(path: Path, limits: IntakeLimits) -> BinaryIO:
    """Open an archive file, refusing one larger than any submission within `limits` can be,
    before any archive reader sees it (a zip's central directory is read whole). Raises IntakeError.
    """
    stream = open_regular(path)
    cap = max_archive_bytes(limits)
    if os.fstat(stream.fileno()).st_size > cap:
        stream.close()
        raise IntakeError(f"archive file is larger than {cap} bytes (the size limit plus headers)")
    return stream


class StagingTree:
    """Creates files, directories and symlinks under an empty `root`, within `limits`.

    `skip` names (at any depth) are silently left out. With `compressed_size`, output beyond
    `limits.max_ratio` times that size is refused as a decompression bomb.
    """

    def __init__(self, root: Path, limits: IntakeLimits, *, skip: frozenset[str] = SKIPPED_NAMES,
                 compressed_size: int | None = None) -> None:
        self.root = root
        self.limits = limits
        self._skip = skip
        self._compressed = compressed_size
        self._kinds: dict[Parts, str] = {(): "directory"}
        self.total_bytes = 0

    def skipped(self, parts: Parts) -> bool:
        return any(part in self._skip for part in parts)

    def add_dir(self, parts: Parts) -> None:
        if not self.skipped(parts):
            _check_depth(parts)
            self._ensure_dir(parts)

    def add_file(self, parts: Parts, stream: _Readable, *, executable: bool) -> None:
        """Write `stream` to a new file (0755 if executable, else 0644), counting every byte."""
        if self.skipped(parts):
            return
        path = self._claim(parts, "file")
        mode = 0o755 if executable else 0o644
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
        os.fchmod(fd, mode)  # the umask may have narrowed it
        with open(fd, "wb") as out:
            written = 0
            while chunk := stream.read(_CHUNK):
                written += len(chunk)
                self._charge(parts, len(chunk), written)
                out.write(chunk)

    def add_symlink(self, parts: Parts, target: str) -> None:
        """Create a relative symlink; its target must stay inside the tree (lexically)."""
        if self.skipped(parts):
            return
        if not target or "\x00" in target or len(target) > MAX_LINK_TARGET:
            raise IntakeError(f"symlink {show(parts)} has an invalid target")
        resolved = posixpath.normpath(posixpath.join("/".join(parts[:-1]), target))
        if target.startswith("/") or resolved == ".." or resolved.startswith("../"):
            raise IntakeError(f"symlink {show(parts)} points outside the submission (-> {target!r})")
        os.symlink(target, self._claim(parts, "symlink"))

    def add_hardlink(self, parts: Parts, target: Parts) -> None:
        """Copy an already staged regular file to `parts` (a tar hard link)."""
        if self.skipped(parts):
            return
        if self._kinds.get(target) != "file":
            raise IntakeError(f"hard link {show(parts)} points to {show(target)}, "
                              "which is not an earlier file of the submission")
        source = self.root.joinpath(*target)
        with open(source, "rb") as stream:
            self.add_file(parts, stream, executable=bool(os.fstat(stream.fileno()).st_mode & 0o111))

    def check_ratio(self, produced: int) -> None:
        """Raise if `produced` bytes exceed the allowed expansion of the compressed archive."""
        if self._compressed is None or produced <= _RATIO_FLOOR:
            return
        if produced > self.limits.max_ratio * max(self._compressed, 1):
            raise IntakeError(f"archive expands to more than {self.limits.max_ratio:g} times its "
                              f"{self._compressed} bytes (a decompression bomb?)")

    def _charge(self, parts: Parts, size: int, file_bytes: int) -> None:
        self.total_bytes += size
        if file_bytes > self.limits.max_file_bytes:
            raise IntakeError(f"file {show(parts)} is larger than {self.limits.max_file_bytes} bytes")
        if self.total_bytes > self.limits.max_bytes:
            raise IntakeError(f"submission is larger than {self.limits.max_bytes} bytes uncompressed")
        self.check_ratio(self.total_bytes)

    def _claim(self, parts: Parts, kind: str) -> Path:
        """Reserve a new non-directory entry, creating its parent directories."""
        if not parts:
            raise IntakeError(f"a {kind} member has an empty name")
        if parts in self._kinds:
            raise IntakeError(f"{show(parts)} appears twice")
        _check_depth(parts)
        self._ensure_dir(parts[:-1], member=parts)
        self._count(parts, kind)
        return self.root.joinpath(*parts)

    def _ensure_dir(self, parts: Parts, *, member: Parts | None = None) -> None:
        # Checking our own record (not the disk) means nothing is ever written through a link.
        for depth in range(1, len(parts) + 1):
            prefix = parts[:depth]
            kind = self._kinds.get(prefix)
            if kind == "directory":
                continue
            if kind is not None:
                raise IntakeError(
                    f"{show(member or parts)} would be written through the {kind} {show(prefix)}")
            self._count(prefix, "directory")
            path = self.root.joinpath(*prefix)
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)  # noqa: S103 (the sandbox's non-root user must read it)

    def _count(self, parts: Parts, kind: str) -> None:
        if len(self._kinds) > self.limits.max_files:
            raise IntakeError(f"submission has more than {self.limits.max_files} files and directories")
        self._kinds[parts] = kind


def _check_depth(parts: Parts) -> None:
    if len(parts) > MAX_DEPTH:
        raise IntakeError(f"{show(parts)} is nested more than {MAX_DEPTH} levels deep")


class Guarded:
    """A read-only stream that turns a corrupt-data error into an IntakeError and counts bytes.

    With `cap`, reading more than `cap` bytes in total raises; with `tree`, the total is also
    checked against the tree's ratio limit.
    """

    def __init__(self, stream: _Readable, what: str, *, cap: int | None = None,
                 tree: StagingTree | None = None) -> None:
        self._stream = stream
        self._what = what
        self._cap = cap
        self._tree = tree
        self.count = 0

    def read(self, size: int = -1, /) -> bytes:
        if size is None or size < 0:
            size = _CHUNK  # never read an unbounded amount at once
        try:
            data = self._stream.read(size)
        except _STREAM_ERRORS as err:
            raise IntakeError(f"{self._what} is corrupt or truncated ({type(err).__name__}: {err})") from err
        self.count += len(data)
        if self._cap is not None and self.count > self._cap:
            raise IntakeError(f"{self._what} decompresses to more than {self._cap} bytes")
        if self._tree is not None:
            self._tree.check_ratio(self.count)
        return data


def extract_tar(raw: BinaryIO, tree: StagingTree) -> None:
    """Extract a tar archive (plain, gzip, bzip2 or xz) read from `raw` into `tree`, streaming.

    Every decompressed byte (headers included) is counted, against the content budget plus a
    per-entry allowance and against the ratio limit. Raises IntakeError.
    """
    stream = Guarded(_decompressor(raw), "tar archive", cap=max_archive_bytes(tree.limits) + _RATIO_FLOOR,
                     tree=tree)
    try:
        with tarfile.open(fileobj=stream, mode="r|") as tf:  # type: ignore[call-overload]
            for member in tf:
                _tar_member(tf, member, tree)
    except tarfile.TarError as err:
        raise IntakeError(f"tar archive is corrupt ({err})") from err
    # Read to the end so a damaged compressed trailer (checksum) is noticed too.
    while stream.read(_CHUNK):
        pass


def _decompressor(raw: BinaryIO) -> _Readable:
    head = raw.read(6)
    raw.seek(0)
    if head.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if head.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if head.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(raw)
    return raw


def _tar_member(tf: tarfile.TarFile, member: tarfile.TarInfo, tree: StagingTree) -> None:
    parts = member_path(member.name)
    if tree.skipped(parts):
        return
    if member.isreg():
        src: IO[bytes] | None = tf.extractfile(member)
        if src is None:
            raise IntakeError(f"member {show(parts)} has no data")
        tree.add_file(parts, Guarded(src, f"tar member {show(parts)}"), executable=bool(member.mode & 0o111))
    elif member.isdir():
        tree.add_dir(parts)
    elif member.issym():
        tree.add_symlink(parts, member.linkname)
    elif member.islnk():
        if member.linkname.startswith("/") or ".." in member.linkname.split("/"):
            raise IntakeError(
                f"hard link {show(parts)} points outside the submission (-> {member.linkname!r})")
        tree.add_hardlink(parts, member_path(member.linkname))
    elif member.ischr() or member.isblk() or member.isfifo():
        raise IntakeError(f"member {show(parts)} is a device or fifo")
    else:
        raise IntakeError(f"member {show(parts)} has an unsupported type {member.type!r}")


def copy_directory(source: Path, tree: StagingTree) -> None:
    """Copy a directory into `tree`: regular files, directories, and symlinks that resolve inside it
    (rewritten as relative links). Raises IntakeError for outside links and special files."""
    root = Path(os.path.realpath(source))
    pending: list[Parts] = [()]
    while pending:
        parts = pending.pop()
        with os.scandir(root.joinpath(*parts)) as listing:
            entries = sorted(listing, key=lambda entry: entry.name)
        for entry in entries:
            sub = (*parts, entry.name)
            if tree.skipped(sub):
                continue
            if entry.is_symlink():
                tree.add_symlink(sub, _inside_target(root, sub))
            elif entry.is_dir(follow_symlinks=False):
                tree.add_dir(sub)
                pending.append(sub)
            elif entry.is_file(follow_symlinks=False):
                _copy_file(root.joinpath(*sub), sub, tree)
            else:
                raise IntakeError(f"{show(sub)} is a device, fifo or socket")


def _inside_target(root: Path, parts: Parts) -> str:
    link = root.joinpath(*parts)
    resolved = real_path(str(link))
    if resolved is None:
        raise IntakeError(f"symlink {show(parts)} leads through more than {MAX_LINK_HOPS} links")
    if os.path.commonpath([resolved, root]) != str(root):
        raise IntakeError(f"symlink {show(parts)} points outside the submission (-> {os.readlink(link)!r})")
    # The walk never follows links, so the link's parent is a real directory under root.
    return os.path.relpath(resolved, link.parent)


def _copy_file(path: Path, parts: Parts, tree: StagingTree) -> None:
    # O_NOFOLLOW|O_NONBLOCK: a file swapped for a link or a fifo since the listing is refused, not followed.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as src:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise IntakeError(f"{show(parts)} is not a regular file")
        tree.add_file(parts, src, executable=bool(mode & 0o111))
