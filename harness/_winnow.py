"""Read a submission's Python sources, normalise them to tokens and pick winnowed fingerprints.

Winnowing is from Schleimer, Wilkerson and Aiken, "Winnowing: local algorithms for document
fingerprinting" (SIGMOD 2003), the method behind MOSS: hash every k-gram of tokens, then keep
the minimum hash of every window of W consecutive hashes. Any match of at least K + W - 1
tokens shares a fingerprint; matches shorter than K tokens never do.

Candidate files are hostile: reads are bounded (per file, per submission, file count, depth),
symlinks, hidden folders, caches and virtual environments are skipped, undecodable bytes are
replaced, and a file that `tokenize` rejects is finished with a regular-expression tokeniser.
Nothing here raises for a candidate's file; what was skipped is reported as text.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import keyword
import os
import re
import stat
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from harness.core.text import printable

# 15 tokens is one or two lines of Python once names are normalised: shorter k-grams are common
# idioms (`for V in range ( len ( V ) ) :` is 11) that unrelated solutions share by chance.
K = 15
# W = 8 guarantees that any common run of K + W - 1 = 22 tokens (two or three lines) is found,
# while keeping about 2 / (W + 1) = 22% of the positions as fingerprints.
W = 8
NORMALISER_VERSION = 1  # bump when the tokens or hashes change: older snapshots are then stale

MAX_FILE_BYTES = 512 << 10  # source text kept per file
MAX_NOTEBOOK_BYTES = 8 << 20  # a notebook's JSON holds outputs too; only its code counts below
MAX_TOTAL_BYTES = 4 << 20  # source text kept per submission
MAX_FILES = 500
MAX_ENTRIES = 50_000  # directory entries looked at: a tree of a million empty folders stays cheap
MAX_DEPTH = 24
SUFFIXES = (".py", ".ipynb")
_SKIP_DIRS = frozenset({"__pycache__", "venv", "env", "site-packages", "node_modules"})
_MAX_REASONS = 50  # skipped-file notes kept per submission

# Builtins are kept as themselves: renaming them breaks the program, so a plagiarist keeps them,
# and they tell apart solutions whose shapes differ only in the functions they call. The list is
# fixed (not dir(builtins)) so the tokens, and so the hashes, do not depend on the Python version.
BUILTINS = frozenset("""
    abs all any bool bytes callable chr dict dir divmod enumerate filter float format frozenset
    getattr hasattr hash id input int isinstance issubclass iter len list map max min next object
    open ord pow print property range repr reversed round set setattr slice sorted staticmethod
    classmethod str sum super tuple type vars zip Exception ValueError TypeError KeyError IndexError
    RuntimeError ZeroDivisionError StopIteration NotImplementedError AttributeError OSError
""".split())
_KEYWORDS = frozenset(keyword.kwlist)
_STATEMENT_START = frozenset({tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENCODING})
_DROPPED = frozenset({tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT,
                      tokenize.ENCODING, tokenize.ENDMARKER})
_FALLBACK = re.compile(r"""
    (?P<comment>\#[^\n]*)
  | (?P<string>[rRbBfFuU]{0,2}(?:'''[\s\S]*?'''|\"\"\"[\s\S]*?\"\"\"|'(?:\\.|[^'\\\n])*'|"(?:\\.|[^"\\\n])*"))
  | (?P<number>\.?\d[\w.]*)
  | (?P<name>[^\W\d]\w*)
  | (?P<op>\*\*=?|//=?|>>=?|<<=?|->|:=|[-+*/%&|^@=!<>]=|\S)
""", re.VERBOSE)
_FALLBACK_TYPES = {"string": tokenize.STRING, "number": tokenize.NUMBER, "name": tokenize.NAME,
                   "op": tokenize.OP}
_HASH_MASK = (1 << 63) - 1  # hashes fit a signed 64-bit integer (JSON readers, numpy int64)


@dataclass(frozen=True)
class Source:
    """One source file as text. A notebook's code cells are joined, each after a marker line."""

    path: str  # relative to the submission, '/'-separated
    text: str
    cells: tuple[tuple[int, int], ...] = ()  # (notebook cell index, text line of its first code line)
    truncated: bool = False


@dataclass
class Tokens:
    """Normalised tokens of one source and the 1-based text line each starts on."""

    symbols: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)


# --- reading -----------------------------------------------------------------------------------------

def read_sources(root: Path) -> tuple[list[Source], list[str]]:
    """The `.py` and `.ipynb` sources under `root` in path order, and notes on what was skipped.

    Never raises for the content of `root`; an unreadable `root` gives no sources.
    """
    sources: list[Source] = []
    skipped: list[str] = []
    budget = MAX_TOTAL_BYTES
    for path, rel in _walk(Path(root), skipped):
        source = _read_one(path, rel, skipped)
        if source is None:
            continue
        if len(source.text) > budget:
            source = _cut(source, budget)
            skipped.append(f"{rel}: total source cap of {MAX_TOTAL_BYTES} bytes reached; the rest ignored")
            budget = 0
        if source.text:
            sources.append(source)
            budget -= len(source.text)
        if budget <= 0:
            break
    return sources, skipped[:_MAX_REASONS]


def _walk(root: Path, skipped: list[str]) -> list[tuple[Path, str]]:
    """Candidate files under `root`, not following symlinks, at most MAX_FILES of them."""
    found: list[tuple[Path, str]] = []
    stack: list[tuple[Path, str, int]] = [(root, "", 0)]
    seen = 0
    while stack:
        folder, prefix, depth = stack.pop()
        try:
            with os.scandir(folder) as scan:
                entries = sorted(itertools.islice(scan, MAX_ENTRIES - seen), key=lambda e: e.name)
        except OSError:
            continue
        seen += len(entries)
        full = seen >= MAX_ENTRIES
        if full:
            skipped.append(f"more than {MAX_ENTRIES} files and folders: the rest ignored")
            stack.clear()
        for entry in entries:
            rel = prefix + printable(entry.name)
            kind = _kind(entry)
            if kind == "dir" and not full and depth < MAX_DEPTH and not _skipped_dir(entry):
                stack.append((Path(entry.path), rel + "/", depth + 1))
            elif kind == "file" and entry.name.endswith(SUFFIXES):
                if len(found) >= MAX_FILES:
                    skipped.append(f"more than {MAX_FILES} source files: the rest ignored")
                    return sorted(found, key=lambda item: item[1])
                found.append((Path(entry.path), rel))
    return sorted(found, key=lambda item: item[1])


def _kind(entry: os.DirEntry) -> str | None:
    """"dir" or "file" for what is walked: never a symlink (it may point outside), nothing hidden."""
    if entry.name.startswith("."):
        return None
    try:
        if entry.is_symlink():
            return None
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        return "file" if entry.is_file(follow_symlinks=False) else None
    except OSError:
        return None


def _skipped_dir(entry: os.DirEntry) -> bool:
    return entry.name in _SKIP_DIRS or os.path.lexists(os.path.join(entry.path, "pyvenv.cfg"))


def _read_one(path: Path, rel: str, skipped: list[str]) -> Source | None:
    notebook = rel.endswith(".ipynb")
    limit = MAX_NOTEBOOK_BYTES if notebook else MAX_FILE_BYTES
    data = _read_capped(path, limit + 1)
    if data is None:
        skipped.append(f"{rel}: not a readable regular file")
        return None
    if b"\x00" in data[:8192]:
        skipped.append(f"{rel}: binary content")
        return None
    if notebook and len(data) > limit:
        skipped.append(f"{rel}: notebook larger than {limit} bytes")
        return None
    if notebook:
        cells = notebook_cells(data)
        if cells is None:
            skipped.append(f"{rel}: not a notebook (invalid JSON or no cell list)")
            return None
        text, starts = _join_cells(cells)
        text = text.encode("utf-8", "replace").decode("utf-8")  # JSON escapes can hold lone surrogates
    else:
        text, starts = data[:limit].decode("utf-8", "replace"), ()
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    source = Source(path=rel, text=text, cells=starts, truncated=len(data) > limit)
    return _cut(source, MAX_FILE_BYTES) if len(text) > MAX_FILE_BYTES else source


def _cut(source: Source, size: int) -> Source:
    """`source` cut to at most `size` characters, at a line end; notebook cells past the cut dropped."""
    text = source.text[: source.text.rfind("\n", 0, size) + 1]
    lines = text.count("\n")
    return Source(path=source.path, text=text, cells=tuple(c for c in source.cells if c[1] <= lines),
                  truncated=True)


def _read_capped(path: Path, cap: int) -> bytes | None:
    """At most `cap` bytes of a regular file; None for anything else (a symlink swapped in, a fifo)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return stream.read(cap)
    except OSError:
        return None
    finally:
        os.close(fd)


def notebook_cells(data: bytes) -> list[tuple[int, str]] | None:
    """(cell index, source) of a notebook's code cells; None if `data` is not a notebook."""
    try:
        notebook = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        return None
    cells = notebook.get("cells") if isinstance(notebook, dict) else None
    if not isinstance(cells, list):
        return None
    code = []
    for index, cell in enumerate(cells):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = cell.get("source")
        if isinstance(source, list) and all(isinstance(part, str) for part in source):
            source = "".join(source)
        if isinstance(source, str):
            code.append((index, source))
    return code


def _join_cells(cells: list[tuple[int, str]]) -> tuple[str, tuple[tuple[int, int], ...]]:
    parts, starts, line = [], [], 1
    for index, source in cells:
        body = source if source.endswith("\n") else source + "\n"
        parts.append(f"# --- cell {index} ---\n{body}")
        starts.append((index, line + 1))
        line += 1 + body.count("\n")
    return "".join(parts), tuple(starts)


# --- tokens ------------------------------------------------------------------------------------------

def tokenise(source: Source) -> Tokens:
    """Normalised tokens of `source`; notebook cells one by one so that a broken cell spoils only itself.

    Identifiers become V, strings S, numbers N; keywords, BUILTINS and operators stay; comments,
    docstrings (any statement that is only a string), line breaks and indentation are dropped.
    """
    out = Tokens()
    lines = source.text.split("\n")
    chunks = [(1, len(lines))] if not source.cells else [
        (start, (source.cells[i + 1][1] - 2) if i + 1 < len(source.cells) else len(lines))
        for i, (_, start) in enumerate(source.cells)]
    for first, last in chunks:
        text = "\n".join(lines[first - 1: last]) + "\n"
        _normalise(_raw_tokens(text), first - 1, out)
    return out


def _raw_tokens(text: str) -> list[tuple[int, str, int]]:
    """(type, string, line) from `tokenize`; where it gives up, the rest from a regex tokeniser."""
    raw: list[tuple[int, str, int]] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            raw.append((tok.type, tok.string, tok.start[0]))
    except (tokenize.TokenError, SyntaxError, ValueError):
        resume = raw[-1][2] if raw else 1
        raw = [tok for tok in raw if tok[2] < resume]
        raw += _regex_tokens(text, resume)
    return raw


def _regex_tokens(text: str, first_line: int) -> list[tuple[int, str, int]]:
    offset = 0
    for _ in range(first_line - 1):
        offset = text.index("\n", offset) + 1
    raw, line, seen = [], first_line, offset
    for match in _FALLBACK.finditer(text, offset):
        line += text.count("\n", seen, match.start())
        seen = match.start()
        kind = match.lastgroup
        if kind in _FALLBACK_TYPES:
            raw.append((_FALLBACK_TYPES[kind], match.group(), line))
    return raw


def _normalise(raw: list[tuple[int, str, int]], line_offset: int, out: Tokens) -> None:
    pending: list[int] = []  # lines of strings that open a statement: a docstring if nothing follows
    statement_start = True
    for kind, text, line in raw:
        if kind in (tokenize.NL, tokenize.COMMENT):
            continue
        if kind == tokenize.STRING and (statement_start or pending):
            pending.append(line)
            statement_start = False
            continue
        if pending:
            if kind not in (tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.DEDENT):
                _append(out, ["S"] * len(pending), [p + line_offset for p in pending])
            pending = []
        statement_start = kind in _STATEMENT_START
        if kind in _DROPPED or (kind == tokenize.ERRORTOKEN and text.isspace()):
            continue
        _append(out, [_symbol(kind, text)], [line + line_offset])
    if pending:  # a regex-tokenised tail has no NEWLINE: keep the strings
        _append(out, ["S"] * len(pending), [p + line_offset for p in pending])


def _append(out: Tokens, symbols: list[str], lines: list[int]) -> None:
    out.symbols += symbols
    out.lines += lines


def _symbol(kind: int, text: str) -> str:
    if kind == tokenize.NAME:
        return text if text in _KEYWORDS or text in BUILTINS else "V"
    if kind == tokenize.STRING:
        return "S"
    if kind == tokenize.NUMBER:
        return "N"
    return text[:8]


# --- hashes ------------------------------------------------------------------------------------------

_CODES: dict[str, bytes] = {}


def _code(symbol: str) -> bytes:
    code = _CODES.get(symbol)
    if code is None:
        code = hashlib.blake2b(symbol.encode("utf-8", "surrogatepass"), digest_size=4).digest()
        if len(_CODES) < 4096:  # error tokens are arbitrary characters: bound the cache
            _CODES[symbol] = code
    return code


def kgram_hashes(symbols: list[str], k: int = K) -> list[int]:
    """The hash of every k-gram of `symbols`, stable across processes and Python versions."""
    buffer = b"".join(_code(symbol) for symbol in symbols)
    width = 4 * k
    return [int.from_bytes(hashlib.blake2b(buffer[i: i + width], digest_size=8).digest(), "big") & _HASH_MASK
            for i in range(0, len(buffer) - width + 4, 4)]


def winnow(hashes: list[int], w: int = W) -> list[int]:
    """Positions picked by robust winnowing: each window's minimum, keeping the previous pick on ties
    (so a run of equal hashes, e.g. repeated lines, gives one fingerprint), else the rightmost minimum.
    """
    if not hashes:
        return []
    w = min(w, len(hashes))
    picked: list[int] = []
    last = -1
    for start in range(len(hashes) - w + 1):
        window = hashes[start: start + w]
        low = min(window)
        if last >= start and hashes[last] == low:
            continue
        last = start + w - 1 - window[::-1].index(low)
        picked.append(last)
    return picked


def covered(hashes: list[int], known: frozenset[int] | set[int], tokens: int, k: int = K) -> list[bool]:
    """Per token (of `tokens`): is it inside a k-gram whose hash is in `known` (the starter kit's)?"""
    marks = [False] * tokens
    for start, value in enumerate(hashes):
        if value in known:
            marks[start: start + k] = [True] * k
    return marks
