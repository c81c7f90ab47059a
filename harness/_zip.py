"""Reading a zip archive into a `StagingTree`, after checking its central directory.

Opening a zipfile.ZipFile reads the whole central directory into memory, one object per entry,
and it walks the directory by its size in bytes, ignoring the entry count of the end record. So
before zipfile sees an archive, its end record (zip64 too) is read here, and the directory is
walked header by header, keeping nothing. An archive that lists more than `max_files` entries,
or has a directory larger than that many entries need, is refused. The end record is found the
way zipfile (3.11) finds it, so both read the same directory. Damage is left for zipfile to report.
"""

from __future__ import annotations

import os
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass
from typing import BinaryIO

from harness._archives import (
    MAX_LINK_TARGET,
    Guarded,
    IntakeLimits,
    Parts,
    StagingTree,
    member_path,
    show,
)
from harness.errors import IntakeError

_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END_SIGNATURE = b"PK\x05\x06"
_LOCATOR = struct.Struct("<4sLQL")  # zip64 end of central directory locator
_LOCATOR_SIGNATURE = b"PK\x06\x07"
_END64 = struct.Struct("<4sQ2H2L4Q")  # zip64 end of central directory record
_END64_SIGNATURE = b"PK\x06\x06"
_ENTRY_SIZE = 46  # fixed part of a central directory header
_ENTRY_SIGNATURE = b"PK\x01\x02"
_ENTRY_LENGTHS = struct.Struct("<3H")  # name, extra field and comment lengths
_ENTRY_LENGTHS_AT = 28
_MAX_COMMENT = 0xFFFF
# Generous: a header is 46 bytes plus the name, usually under 100 bytes of extra fields.
_DIRECTORY_BYTES_PER_ENTRY = 1024


@dataclass(frozen=True)
class _Directory:
    entries: int  # as the end record claims
    start: int  # where zipfile will read the directory from
    size: int


def extract_zip(raw: BinaryIO, tree: StagingTree) -> None:
    """Extract the zip archive read from `raw` into `tree`. Raises IntakeError (corrupt, unsafe)."""
    check_directory(raw, tree.limits)
    try:
        with zipfile.ZipFile(raw) as zf:
            for info in zf.infolist():
                _zip_member(zf, info, tree)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, struct.error) as err:
        raise IntakeError(f"zip archive is corrupt ({err})") from err


def check_directory(raw: BinaryIO, limits: IntakeLimits) -> None:
    """Refuse (IntakeError) a zip whose central directory lists more than `limits.max_files`
    entries or is larger than that many entries need, reading at most that directory."""
    directory = _find_directory(raw)
    if directory is None:
        return
    if directory.entries > limits.max_files:
        raise IntakeError(f"zip archive lists more than {limits.max_files} files and directories")
    cap = (limits.max_files + 1) * _DIRECTORY_BYTES_PER_ENTRY
    if directory.size > cap:
        raise IntakeError(f"zip archive has a central directory larger than {cap} bytes")
    raw.seek(directory.start)
    data = raw.read(directory.size)
    offset = count = 0
    while offset + _ENTRY_SIZE <= len(data) and data.startswith(_ENTRY_SIGNATURE, offset):
        count += 1
        if count > limits.max_files:
            raise IntakeError(f"zip archive lists more than {limits.max_files} files and directories")
        name, extra, comment = _ENTRY_LENGTHS.unpack_from(data, offset + _ENTRY_LENGTHS_AT)
        offset += _ENTRY_SIZE + name + extra + comment


def _find_directory(raw: BinaryIO) -> _Directory | None:
    """The central directory as zipfile will find it; None where zipfile will fail anyway."""
    size = raw.seek(0, os.SEEK_END)
    if size < _END.size:
        return None
    raw.seek(size - _END.size)
    record = raw.read(_END.size)
    position = size - _END.size
    if not (record.startswith(_END_SIGNATURE) and record.endswith(b"\0\0")):
        # An archive comment follows the end record: search for it, last match wins.
        tail_start = max(size - _MAX_COMMENT - 1 - _END.size, 0)
        raw.seek(tail_start)
        tail = raw.read()
        found = tail.rfind(_END_SIGNATURE)
        if found < 0 or len(tail) - found < _END.size:
            return None
        position, record = tail_start + found, tail[found:found + _END.size]
    entries, directory_size = _END.unpack(record)[4:6]
    start = position - directory_size
    zip64 = _zip64_counts(raw, position)
    if zip64 is not None:
        entries, directory_size = zip64
        start = position - _LOCATOR.size - _END64.size - directory_size
    return _Directory(entries, start, directory_size) if start >= 0 else None


def _zip64_counts(raw: BinaryIO, end_position: int) -> tuple[int, int] | None:
    """(entries, directory size) from a zip64 end record just before the end record, if any."""
    record_position = end_position - _LOCATOR.size - _END64.size
    if record_position < 0:
        return None
    raw.seek(end_position - _LOCATOR.size)
    if not raw.read(_LOCATOR.size).startswith(_LOCATOR_SIGNATURE):
        return None
    raw.seek(record_position)
    record = raw.read(_END64.size)
    if len(record) != _END64.size or not record.startswith(_END64_SIGNATURE):
        return None
    fields = _END64.unpack(record)
    return fields[7], fields[8]


def _zip_member(zf: zipfile.ZipFile, info: zipfile.ZipInfo, tree: StagingTree) -> None:
    if "\x00" in info.orig_filename:  # zipfile silently cuts the name at the NUL
        raise IntakeError(f"member {show((info.orig_filename,))} contains a NUL byte")
    parts = member_path(info.filename)
    if tree.skipped(parts):
        return
    if info.flag_bits & 0x1:
        raise IntakeError(f"member {show(parts)} is encrypted")
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # unix mode, if made on unix
    kind = stat.S_IFMT(mode)
    if info.is_dir() or kind == stat.S_IFDIR:
        tree.add_dir(parts)
    elif kind == stat.S_IFLNK:
        tree.add_symlink(parts, _zip_link_target(zf, info, parts))
    elif kind in (0, stat.S_IFREG):
        with zf.open(info) as src:
            tree.add_file(parts, Guarded(src, f"zip member {show(parts)}"), executable=bool(mode & 0o111))
    else:
        raise IntakeError(f"member {show(parts)} is a device, fifo or socket")


def _zip_link_target(zf: zipfile.ZipFile, info: zipfile.ZipInfo, parts: Parts) -> str:
    with zf.open(info) as src:
        data = Guarded(src, f"zip member {show(parts)}").read(MAX_LINK_TARGET + 1)
    if len(data) > MAX_LINK_TARGET:
        raise IntakeError(f"symlink {show(parts)} has a target longer than {MAX_LINK_TARGET} bytes")
    return os.fsdecode(data)
