"""Reading ranking files: the trusted test rows and qrels, and a candidate's untrusted scores.

A candidate's scores file is parsed line by line and every line lands in exactly one class:

    valid       a known (query_id, doc_id), seen for the first time, with a finite score
    malformed   not CSV, or a different number of fields than the header
    unknown_id  a (query_id, doc_id) that is not a test row
    duplicate   a test row already given on an earlier line (the first line wins, even if invalid)
    bad_score   the score is not a number
    non_finite  the score is NaN or infinite

and `missing` counts the test rows no line names. Blank lines are skipped.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Set
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from harness.core import HarnessError, SpecError

Key = tuple[str, str]  # (query_id, doc_id)
PREDICTION_COLUMNS = ("query_id", "doc_id", "score")
PROBLEMS = ("malformed", "unknown_id", "duplicate", "bad_score", "non_finite", "missing")
MAX_PREDICTION_BYTES = 256 << 20  # the harness caps outputs far lower; this guards direct use
EXAMPLES_PER_PROBLEM = 5
_EXAMPLE_CHARS = 80
_MAX_LINE_CHARS = 4096  # a longer line is malformed without being split (bounds memory)


@dataclass(frozen=True)
class Reference:
    """The judged test set, read from trusted files."""

    queries: dict[str, list[str]]  # query id -> its test doc ids, in file order
    labels: dict[Key, int]  # qrels: (query, doc) -> label >= 0
    baseline: dict[Key, float]  # the baseline feature of every test row


@dataclass
class RowDiagnostics:
    """What was wrong with which lines of a scores file: counts and the first few examples."""

    lines: int = 0  # non-blank lines after the header
    valid: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBLEMS, 0))
    examples: dict[str, list[str]] = field(default_factory=lambda: {p: [] for p in PROBLEMS})

    def add(self, problem: str, example: str) -> None:
        self.counts[problem] += 1
        if len(self.examples[problem]) < EXAMPLES_PER_PROBLEM:
            self.examples[problem].append(example[:_EXAMPLE_CHARS])

    @property
    def invalid_lines(self) -> int:
        return sum(n for p, n in self.counts.items() if p != "missing")


@dataclass(frozen=True)
class Predictions:
    """The usable scores of a file, and why the rest was not usable."""

    scores: dict[Key, float]
    diagnostics: RowDiagnostics
    fatal: str = ""  # set when nothing in the file can be used (missing file, no header, ...)


def _split(line: str) -> list[str] | None:
    if len(line) > _MAX_LINE_CHARS:
        return None
    if '"' not in line:
        return line.split(",")
    try:
        return next(csv.reader([line]))
    except (csv.Error, StopIteration):
        return None


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """Non-blank lines with their numbers, lazily (a file of empty lines must not become a list)."""
    for number, line in enumerate(io.StringIO(text, newline="\n"), start=1):
        line = line.rstrip("\r\n")
        if line.strip():
            yield number, line


def _trusted_rows(path: Path, required: tuple[str, ...]) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a harness-made CSV. Raises HarnessError if it is unreadable or ragged."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HarnessError(f"cannot read reference data {path}: {exc}") from None
    rows = list(csv.reader(text.splitlines()))
    if not rows or any(len(r) != len(rows[0]) for r in rows):
        raise HarnessError(f"reference data {path} is empty or has ragged rows")
    header = [h.strip() for h in rows[0]]
    absent = [c for c in required if c not in header]
    if absent:
        raise HarnessError(f"reference data {path} lacks columns {absent}; it has {header}")
    return header, rows[1:]


def _read_qrels(path: Path) -> dict[Key, int]:
    header, rows = _trusted_rows(path, ("query_id", "doc_id", "label"))
    qi, di, li = (header.index(c) for c in ("query_id", "doc_id", "label"))
    labels: dict[Key, int] = {}
    for row in rows:
        try:
            label = int(row[li])
        except ValueError:
            raise HarnessError(f"{path}: label {row[li]!r} is not an integer") from None
        if label < 0:
            raise HarnessError(f"{path}: negative label {label} (graded labels are >= 0)")
        labels[(row[qi], row[di])] = label
    return labels


def _read_test_rows(path: Path, feature: str) -> tuple[dict[str, list[str]], dict[Key, float]]:
    header, rows = _trusted_rows(path, ("query_id", "doc_id"))
    if feature not in header:
        raise SpecError(f"baseline_feature {feature!r} is not a column of {path.name}; columns: {header}")
    qi, di, fi = header.index("query_id"), header.index("doc_id"), header.index(feature)
    queries: dict[str, list[str]] = {}
    baseline: dict[Key, float] = {}
    for row in rows:
        key = (row[qi], row[di])
        value = _to_float(row[fi])
        if key in baseline or not math.isfinite(value):
            raise HarnessError(f"{path}: row {key} is repeated or has a non-finite {feature!r}")
        queries.setdefault(key[0], []).append(key[1])
        baseline[key] = value
    return queries, baseline


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


@lru_cache(maxsize=4)
def _cached_reference(test_csv: Path, qrels_csv: Path, feature: str, stamp: tuple) -> Reference:
    queries, baseline = _read_test_rows(test_csv, feature)
    return Reference(queries=queries, labels=_read_qrels(qrels_csv), baseline=baseline)


def load_reference(test_csv: Path, qrels_csv: Path, feature: str) -> Reference:
    """Read the test rows and qrels (cached while the files are unchanged).

    Raises SpecError if `feature` is not a test column, HarnessError if a file is missing or bad.
    """
    try:
        stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in (test_csv, qrels_csv))
    except OSError as exc:
        raise HarnessError(f"reference data missing: {exc}") from None
    return _cached_reference(test_csv, qrels_csv, feature, stamp)


def _read_text(path: Path | None, problem: str) -> tuple[str, str]:
    """(the file's text, "") or ("", why it cannot be used)."""
    if path is None:
        return "", problem or "the file was not produced"
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_PREDICTION_BYTES + 1)
    except OSError as exc:
        return "", f"the file cannot be read ({exc.strerror})"
    if len(data) > MAX_PREDICTION_BYTES:
        return "", f"the file is larger than {MAX_PREDICTION_BYTES} bytes"
    return data.decode("utf-8", errors="replace").removeprefix("\ufeff"), ""


def _header(lines: Iterator[tuple[int, str]]) -> tuple[dict[str, int], int, str]:
    """Column positions and field count from the first non-blank line, or why it is no header."""
    first = next(lines, None)
    if first is None:
        return {}, 0, "the file is empty"
    fields = [f.strip().lower() for f in (_split(first[1]) or [])]
    if not all(c in fields for c in PREDICTION_COLUMNS):
        shown = first[1][:_EXAMPLE_CHARS]
        return {}, 0, f"the first line {shown!r} is not a header naming {','.join(PREDICTION_COLUMNS)}"
    return {c: fields.index(c) for c in PREDICTION_COLUMNS}, len(fields), ""


def _classify(fields: list[str] | None, width: int, columns: dict[str, int], keys: Set[Key],
              seen: set[Key]) -> tuple[str, Key | None, float]:
    """The class of one line (see the module docstring), its key and its score."""
    if fields is None or len(fields) != width:
        return "malformed", None, math.nan
    key = (fields[columns["query_id"]].strip(), fields[columns["doc_id"]].strip())
    if key not in keys:
        return "unknown_id", key, math.nan
    if key in seen:
        return "duplicate", key, math.nan
    try:
        score = float(fields[columns["score"]])
    except ValueError:
        return "bad_score", key, math.nan
    return ("valid" if math.isfinite(score) else "non_finite"), key, score


def read_predictions(path: Path | None, keys: Set[Key], *, problem: str = "") -> Predictions:
    """Parse an untrusted `query_id,doc_id,score` file against the test rows `keys`.

    Never raises for bad content: every line is classified (module docstring), and a file with
    no usable score at all (absent, unreadable, no header, no valid line) has `fatal` set.
    """
    diagnostics = RowDiagnostics()
    text, fatal = _read_text(path, problem)
    lines = _lines(text)
    columns, width, header_problem = _header(lines) if not fatal else ({}, 0, "")
    fatal = fatal or header_problem
    scores: dict[Key, float] = {}
    seen: set[Key] = set()
    for number, line in ([] if fatal else lines):
        diagnostics.lines += 1
        kind, key, score = _classify(_split(line), width, columns, keys, seen)
        if key is not None and kind not in ("unknown_id", "duplicate"):
            seen.add(key)
        if kind == "valid":
            scores[key] = score  # type: ignore[index]
            diagnostics.valid += 1
        else:
            diagnostics.add(kind, f"line {number}: {line}")
    missing = keys - seen
    diagnostics.counts["missing"] = len(missing)
    diagnostics.examples["missing"] = [f"{q},{d}" for q, d in sorted(missing)[:EXAMPLES_PER_PROBLEM]]
    if not fatal and not scores:
        fatal = "no line gives a valid score for a test row"
    return Predictions(scores=scores, diagnostics=diagnostics, fatal=fatal)
