"""Bounded collection of a submission's files for the static code-quality grader.

Nothing here runs or imports candidate code. The walk never follows symlinks and skips `.git`,
`__pycache__`, virtual environments and hidden folders; it stops after `max_entries` entries.
Python files and the code cells of notebooks are read within per-file and total byte caps,
newlines normalised to `\\n`. A notebook becomes one Python text, its code cells one after
another with IPython magics blanked (so line numbers stay put), plus a map back to cell numbers.
Files byte-identical to a starter-kit file are left out; in a starter file the candidate changed,
the lines unchanged from the starter version are marked so their findings can be left out too.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.text import printable

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "env", "virtualenv",
                       "dist-packages"})
SOURCE_SUFFIXES = (".py", ".ipynb")
MAX_DEPTH = 32
MAX_CELLS = 2000
_HELP = re.compile(r"^\s*[\w.]+\?\??\s*$")  # `df.head?` asks IPython for help
_DIFF_LINES = 20_000  # difflib is quadratic in the worst case; longer files are compared as all-new


@dataclass(frozen=True)
class FileEntry:
    """A regular file of the submission (not followed through a symlink)."""

    rel: str  # POSIX path relative to the submission root
    size: int


@dataclass
class Tree:
    """What the walk found: regular files and notes on what it passed over."""

    files: list[FileEntry] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """A code cell of a notebook, as placed in the notebook's Python text."""

    number: int  # 1-based position among all the notebook's cells, as a reader counts them
    first_line: int  # its first line in the Python text (1-based)
    source: str  # its source as written (magics kept), for ruff's own notebook parser


@dataclass(frozen=True)
class SourceFile:
    """One Python file or notebook, ready for analysis."""

    rel: str
    text: str  # Python text with `\n` newlines; for a notebook its code cells, magics blanked
    cells: tuple[Cell, ...] = ()  # a notebook's code cells; empty for a .py file
    excluded: frozenset[int] = frozenset()  # lines unchanged from the starter version

    @property
    def notebook(self) -> bool:
        return self.rel.endswith(".ipynb")

    @property
    def line_count(self) -> int:
        return self.text.count("\n") + (0 if self.text.endswith("\n") or not self.text else 1)

    def cell_at(self, line: int) -> tuple[Cell, int] | None:
        """The cell holding Python-text `line` and the line's number inside it, or None."""
        found = None
        for cell in self.cells:
            if cell.first_line > line:
                break
            found = cell
        return (found, line - found.first_line + 1) if found else None

    def location(self, line: int) -> str:
        """`train.py:12`, or `analysis.ipynb:cell 4:12` for a notebook."""
        if self.notebook:
            hit = self.cell_at(line)
            if hit:
                return f"{self.rel}:cell {hit[0].number}:{hit[1]}"
        return f"{self.rel}:{line}"


@dataclass(frozen=True)
class Unreadable:
    """A source file that could not be analysed, and why (counted as a finding)."""

    rel: str
    reason: str


@dataclass(frozen=True)
class Starter:
    """What the grader knows of the starter kit."""

    digests: frozenset[str] = frozenset()  # sha256 of each file, newlines normalised
    sizes: frozenset[int] = frozenset()  # raw sizes, so big files are hashed only on a size match
    texts: dict[str, str] = field(default_factory=dict)  # rel -> Python text (.py and notebooks)
    readme: str = ""


@dataclass
class Collection:
    """The submission as the grader sees it."""

    tree: Tree
    sources: list[SourceFile] = field(default_factory=list)
    unreadable: list[Unreadable] = field(default_factory=list)
    starter_files: list[str] = field(default_factory=list)  # identical to the starter: not judged
    skipped: list[Unreadable] = field(default_factory=list)  # over a cap: not analysed, not counted


@dataclass(frozen=True)
class Caps:
    """Bounds on the collection."""

    max_entries: int = 20_000
    max_files: int = 300
    max_file_bytes: int = 512 << 10
    max_total_bytes: int = 4 << 20


def _skipped_dir(name: str, path: str) -> bool:
    if name.startswith(".") or name in SKIP_DIRS:
        return True
    return os.path.lexists(os.path.join(path, "pyvenv.cfg"))  # a virtual environment by another name


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def walk(root: Path, max_entries: int) -> Tree:
    """Regular files under `root`, depth-first in name order, without following any symlink."""
    tree = Tree()
    stack: list[tuple[str, str, int]] = [(str(root), "", 0)]
    seen = 0
    while stack:
        path, rel, depth = stack.pop()
        try:
            with os.scandir(path) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as exc:
            tree.notes.append(f"{rel or '.'}: not readable ({exc.strerror})")
            continue
        subdirs = []
        for entry in entries:
            seen += 1
            if seen > max_entries:
                tree.notes.append(f"more than {max_entries} entries: the rest was not looked at")
                return tree
            child = f"{rel}/{entry.name}" if rel else entry.name
            if not _utf8(entry.name):  # such a name could not be stored in the JSON result
                tree.notes.append(f"{printable(child)}: a name that is not UTF-8, not looked at")
            elif entry.is_symlink():
                tree.notes.append(f"{child}: a symlink, not followed")
            elif entry.is_dir(follow_symlinks=False):
                if depth + 1 < MAX_DEPTH and not _skipped_dir(entry.name, entry.path):
                    subdirs.append((entry.path, child, depth + 1))
            elif entry.is_file(follow_symlinks=False):
                tree.files.append(FileEntry(child, entry.stat(follow_symlinks=False).st_size))
        stack.extend(reversed(subdirs))
    return tree


def read_capped(path: Path, cap: int) -> bytes | None:
    """At most `cap` bytes of the regular file `path`; None if it is larger, a symlink or unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            return None
        data = handle.read(cap + 1)
    return None if len(data) > cap else data


def normalise(data: bytes) -> bytes:
    """`data` with CRLF and CR newlines turned into LF."""
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def digest(data: bytes) -> str:
    """SHA-256 of `data` after newline normalisation: equal for the same file checked out anywhere."""
    return hashlib.sha256(normalise(data)).hexdigest()


def decode_python(data: bytes) -> str | None:
    """UTF-8 text with `\\n` newlines, or None for binary or undecodable bytes."""
    if b"\x00" in data:
        return None
    try:
        return normalise(data).decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


def _joined(source: object) -> str | None:
    if isinstance(source, str):
        return source
    if isinstance(source, list) and all(isinstance(part, str) for part in source):
        return "".join(source)
    return None


def _blank_magics(source: str) -> str:
    """IPython-only lines as empty lines: cell magics blank the cell, line magics and `!` their line."""
    lines = source.split("\n")
    if lines and lines[0].lstrip().startswith("%%"):
        return "\n" * (len(lines) - 1)
    kept = ["" if line.lstrip().startswith(("%", "!", "?")) or _HELP.match(line) else line for line in lines]
    return "\n".join(kept)


def notebook_code(data: bytes) -> tuple[str, tuple[Cell, ...]] | str:
    """A notebook's Python text and code cells, or why it is not a usable notebook (a string)."""
    try:
        raw = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return "not a valid notebook (not JSON)"
    cells = raw.get("cells") if isinstance(raw, dict) else None
    if not isinstance(cells, list):
        return "not a valid notebook (no list of cells)"
    if len(cells) > MAX_CELLS:
        return f"more than {MAX_CELLS} cells"
    parts, found, line = [], [], 1
    for number, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _joined(cell.get("source", ""))
        if source is None:
            return f"not a valid notebook (cell {number} has no text source)"
        source = normalise(source.encode("utf-8", "surrogatepass")).decode("utf-8", "replace")
        if not source.strip():
            continue
        source = source if source.endswith("\n") else source + "\n"
        found.append(Cell(number, line, source))
        parts.append(_blank_magics(source))
        line += source.count("\n")
    return "".join(parts), tuple(found)


def unchanged_lines(starter: str, text: str) -> frozenset[int]:
    """1-based lines of `text` that match lines of `starter` in difflib's alignment of the two."""
    old, new = starter.split("\n"), text.split("\n")
    if len(old) > _DIFF_LINES or len(new) > _DIFF_LINES:
        return frozenset()
    matcher = difflib.SequenceMatcher(None, [s.rstrip() for s in old], [s.rstrip() for s in new],
                                      autojunk=False)
    return frozenset(j + k + 1 for _i, j, size in matcher.get_matching_blocks() for k in range(size))


def python_text(rel: str, data: bytes) -> tuple[str, tuple[Cell, ...]] | str:
    """The Python text (and cells) of a source file, or why it cannot be analysed."""
    if rel.endswith(".ipynb"):
        return notebook_code(data)
    text = decode_python(data)
    return (text, ()) if text is not None else "not Python source (binary or not UTF-8)"


def readme_text(root: Path, tree: Tree, cap: int) -> str:
    """The text of the top-level README (any case, any extension), or ''."""
    for entry in tree.files:
        if "/" not in entry.rel and entry.rel.lower().split(".")[0] == "readme":
            data = read_capped(root / entry.rel, cap)
            if data is not None:
                return normalise(data).decode("utf-8", "replace")
    return ""


def load_starter(root: Path | None, caps: Caps) -> Starter:
    """Digests, Python texts and README of the starter kit at `root` (None: no starter)."""
    if root is None or not root.is_dir():
        return Starter()
    tree = walk(root, caps.max_entries)
    digests, texts = set(), {}
    for entry in tree.files:
        data = read_capped(root / entry.rel, max(caps.max_file_bytes, 64 << 20))
        if data is None:
            continue
        digests.add(digest(data))
        if entry.rel.endswith(SOURCE_SUFFIXES) and len(data) <= caps.max_file_bytes:
            parsed = python_text(entry.rel, data)
            if not isinstance(parsed, str):
                texts[entry.rel] = parsed[0]
    sizes = frozenset(entry.size for entry in tree.files)
    return Starter(frozenset(digests), sizes, texts, readme_text(root, tree, caps.max_file_bytes))


def same_as_starter(path: Path, size: int, starter: Starter, cap: int = 64 << 20) -> bool:
    """Whether the file at `path` is byte-identical (newlines normalised) to a starter file."""
    if not starter.digests or size > cap:
        return False
    if size not in starter.sizes and size > (1 << 20):  # a CRLF copy of a small file differs in size
        return False
    data = read_capped(path, cap)
    return data is not None and digest(data) in starter.digests


def _sources(tree: Tree) -> Iterator[FileEntry]:
    return (entry for entry in tree.files if entry.rel.endswith(SOURCE_SUFFIXES))


def collect(root: Path, starter: Starter, caps: Caps) -> Collection:
    """Walk `root` and read its Python files and notebooks within `caps`."""
    found = Collection(walk(root, caps.max_entries))
    total = 0
    for entry in _sources(found.tree):
        if len(found.sources) + len(found.unreadable) >= caps.max_files:
            found.skipped.append(Unreadable(entry.rel, f"over the limit of {caps.max_files} files"))
            continue
        if entry.size > caps.max_file_bytes or total + entry.size > caps.max_total_bytes:
            why = (f"larger than {caps.max_file_bytes:,} bytes" if entry.size > caps.max_file_bytes
                   else f"over the total of {caps.max_total_bytes:,} bytes of source")
            found.skipped.append(Unreadable(entry.rel, why))
            continue
        data = read_capped(root / entry.rel, caps.max_file_bytes)
        if data is None:
            found.skipped.append(Unreadable(entry.rel, "not readable as a regular file"))
            continue
        total += len(data)
        if digest(data) in starter.digests:
            found.starter_files.append(entry.rel)
            continue
        parsed = python_text(entry.rel, data)
        if isinstance(parsed, str):
            found.unreadable.append(Unreadable(entry.rel, parsed))
            continue
        text, cells = parsed
        base = starter.texts.get(entry.rel)
        excluded = unchanged_lines(base, text) if base is not None else frozenset()
        found.sources.append(SourceFile(entry.rel, text, cells, excluded))
    return found

