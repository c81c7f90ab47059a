"""A folder as bytes and back, for what travels between a coordinator and its workers
(harness.cluster): deterministic (the same tree gives the same bytes, so its hash names it), and
unpacked within a size bound, with no member outside the destination."""

from __future__ import annotations

import hashlib
import io
import os
import tarfile
from pathlib import Path

from harness.errors import InfraError


def pack_tree(root: Path) -> bytes:
    """The tree under `root` as an uncompressed tar: sorted paths, no owners or times, the mode
    bits kept; regular files, folders and symbolic links only (anything else is left out)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(root).as_posix()
            info = tarfile.TarInfo(rel)
            info.mode = path.lstat().st_mode & 0o777
            if path.is_symlink():
                info.type, info.linkname = tarfile.SYMTYPE, os.readlink(path)
                tar.addfile(info)
            elif path.is_dir():
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif path.is_file():
                info.size = path.stat().st_size
                with path.open("rb") as fh:
                    tar.addfile(info, fh)
    return buffer.getvalue()


def tree_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:24]


def unpack_tree(data: bytes, dest: Path, *, max_bytes: int, what: str) -> None:
    """Unpack `pack_tree`'s bytes into the new folder `dest`. InfraError (naming `what`) if they
    hold more than `max_bytes` of files, a member of another kind, or one that would land outside."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            members = tar.getmembers()
            size = sum(m.size for m in members)
            odd = [m.name for m in members if not (m.isfile() or m.isdir() or m.issym())]
            if size > max_bytes:
                raise InfraError(f"{what} refused: {size} bytes of files, over {max_bytes}")
            if odd:
                raise InfraError(f"{what} refused: {odd[0]!r} is not a file, folder or link")
            dest.mkdir(parents=True)
            tar.extractall(dest, filter="data")  # no absolute paths, no way out, no device files
    except (tarfile.TarError, OSError) as exc:
        raise InfraError(f"{what} could not be unpacked: {exc.__class__.__name__}: {exc}") from exc
