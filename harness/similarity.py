"""Similarity (plagiarism) detection within a batch: winnowed fingerprints of each submission's Python.

    snapshot(submission_dir, starter_dir=..., dest=...)    fingerprints + sources, once per submission
    load_snapshot(dest) -> Snapshot                         raises SnapshotError for a missing/corrupt one
    compare({name: Snapshot}, threshold=..., ...)           similar pairs, most similar first

The reviewers' pages (one per flagged pair, and an index) are harness.similarity_html's.

Submissions are tokenised with identifiers, strings and numbers normalised and layout dropped
(harness._winnow), so renaming and reformatting do not hide a copy. Fingerprints that occur
anywhere in the starter kit never count. In a round of at least `min_round` submissions, those
that more than `max_share` of the round has are boilerplate too (code everyone writes, as MOSS
ignores); in a smaller round only the starter kit is: there a fingerprint many submissions
share is as likely a leaked solution as an idiom, and counting cannot tell them apart. The
similarity of a pair is the number of fingerprints they share over the size of the smaller set:
a copy of a whole submission scores 1.0 even if the copier added code of their own. Flagged
pairs that chain together (a ring of k copies) are reported as one group (`find_groups`).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, computed_field, model_validator
from scipy import sparse

from harness import _winnow
from harness.errors import HarnessError, IntakeError
from harness.results import write_atomic

__all__ = ["MIN_ROUND", "LineRange", "MatchBlock", "SimilarGroup", "SimilarPair", "Snapshot", "SnapshotError",
           "SourceInfo", "compare", "find_groups", "load_snapshot", "make_snapshot", "save_snapshot",
           "snapshot"]

FINGERPRINTS_FILE = "fingerprints.json"
SOURCES_FILE = "sources.json"
MAX_SNAPSHOT_BYTES = 64 << 20  # a snapshot holds at most 4 MiB of text and its fingerprints
MAX_BLOCKS = 300  # matched blocks kept per pair
_GAP = 2 * (_winnow.K + _winnow.W)  # tokens between fingerprints of one block (edits inside a copy)
# Below 20 submissions the round's share is not used: at the default max_share of 0.25 the cut
# would sit at 2-4 submissions, the size of a ring of copies (a leaked solution passed between
# friends); from 20 up it needs more than 5, so a ring of up to five copies stays evidence, while
# an idiom not in the starter kit that a quarter of a large round writes is still ignored.
MIN_ROUND = 20


class SnapshotError(HarnessError):
    """A snapshot is missing, corrupt, or was made by other settings; make it again from the submission."""


class SourceInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str  # relative to the submission, '/'-separated
    lines: int
    tokens: int
    truncated: bool = False
    cells: list[tuple[int, int]] = Field(default_factory=list)  # notebook: (cell index, first text line)
    starter_lines: list[tuple[int, int]] = Field(default_factory=list)  # inclusive ranges, never counted

    def where(self, line: int) -> str:
        """`line` of the text as a reader finds it: 'path:12' or 'path cell 3 line 2'."""
        cell = next((c for c in reversed(self.cells) if c[1] <= line), None)
        if cell is None:
            return f"{self.path}:{line}"
        return f"{self.path} cell {cell[0]} line {line - cell[1] + 1}"


class Snapshot(BaseModel):
    """The fingerprints of one submission; fingerprint i is hashes[i], in files[file[i]] at token pos[i],
    text lines first[i]..last[i]. `sources` (path -> text) is stored beside, in sources.json."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    k: int = _winnow.K
    w: int = _winnow.W
    normaliser: int = _winnow.NORMALISER_VERSION
    starter_digest: str | None = None
    files: list[SourceInfo] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)
    hashes: list[int] = Field(default_factory=list)
    file: list[int] = Field(default_factory=list)
    pos: list[int] = Field(default_factory=list)
    first: list[int] = Field(default_factory=list)
    last: list[int] = Field(default_factory=list)
    sources: dict[str, str] = Field(default_factory=dict, exclude=True)

    @model_validator(mode="after")
    def _consistent(self) -> Snapshot:
        size = len(self.hashes)
        if any(len(column) != size for column in (self.file, self.pos, self.first, self.last)):
            raise ValueError("fingerprint columns differ in length")
        if self.file and not 0 <= min(self.file) <= max(self.file) < len(self.files):
            raise ValueError("a fingerprint names a file that is not listed")
        return self


class LineRange(BaseModel):
    file: str
    start: int
    end: int  # inclusive


class MatchBlock(BaseModel):
    """Matched code: lines `a` of the first submission correspond to lines `b` of the second."""

    number: int
    a: LineRange
    b: LineRange
    fingerprints: int


class SimilarPair(BaseModel):
    a: str
    b: str
    similarity: float  # shared / min(fingerprints_a, fingerprints_b)
    share_a: float  # shared / fingerprints_a: how much of a is found in b
    share_b: float
    shared: int
    fingerprints_a: int  # after the starter kit and the batch's boilerplate are removed
    fingerprints_b: int
    blocks: list[MatchBlock] = Field(default_factory=list)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ranges_a(self) -> dict[str, list[tuple[int, int]]]:
        """Matched lines of `a` per file, adjacent and overlapping blocks merged (inclusive ranges)."""
        return self.ranges("a")

    @computed_field  # type: ignore[prop-decorator]
    @property
    def ranges_b(self) -> dict[str, list[tuple[int, int]]]:
        return self.ranges("b")

    def ranges(self, side: Literal["a", "b"]) -> dict[str, list[tuple[int, int]]]:
        """Matched lines of one side per file, adjacent and overlapping blocks merged."""
        spans: dict[str, list[tuple[int, int]]] = {}
        for block in self.blocks:
            where = block.a if side == "a" else block.b
            spans.setdefault(where.file, []).append((where.start, where.end))
        return {path: _merge(found) for path, found in sorted(spans.items())}


# --- snapshots ---------------------------------------------------------------------------------------

def snapshot(submission_dir: Path, *, starter_dir: Path | None, dest: Path) -> None:
    """Fingerprint `submission_dir` (starter kit code excluded) and write it into folder `dest`.

    Never raises for the submission's content. Raises IntakeError if `submission_dir` is not a folder.
    """
    save_snapshot(make_snapshot(submission_dir, starter_dir=starter_dir), dest)


def make_snapshot(submission_dir: Path, *, starter_dir: Path | None = None) -> Snapshot:
    """The snapshot of `submission_dir`, in memory. Raises IntakeError if it is not a folder."""
    root = Path(submission_dir)
    if not root.is_dir():
        raise IntakeError(f"similarity: {root} is not a folder")
    digest, starter = _starter(Path(starter_dir)) if starter_dir is not None else (None, frozenset())
    sources, skipped = _winnow.read_sources(root)
    snap = Snapshot(starter_digest=digest, skipped=skipped, sources={s.path: s.text for s in sources})
    for index, source in enumerate(sources):
        snap.files.append(_add_source(snap, index, source, starter))
    return snap


def _add_source(snap: Snapshot, index: int, source: _winnow.Source, starter: frozenset[int]) -> SourceInfo:
    tokens = _winnow.tokenise(source)
    hashes = _winnow.kgram_hashes(tokens.symbols)
    marks = _winnow.covered(hashes, starter, len(tokens.symbols)) if starter else []
    for pos in _winnow.winnow(hashes):
        if marks and any(marks[pos: pos + _winnow.K]):
            continue  # starter code, or a k-gram straddling it: never evidence
        snap.hashes.append(hashes[pos])
        snap.file.append(index)
        snap.pos.append(pos)
        snap.first.append(tokens.lines[pos])
        snap.last.append(tokens.lines[pos + _winnow.K - 1])
    own = {line for line, mark in zip(tokens.lines, marks, strict=False) if not mark}
    kit = {line for line, mark in zip(tokens.lines, marks, strict=False) if mark} - own  # wholly starter
    starter_lines = _bridge(_merge([(line, line) for line in kit]), own)
    return SourceInfo(path=source.path, lines=source.text.count("\n"), tokens=len(tokens.symbols),
                      truncated=source.truncated, cells=list(source.cells), starter_lines=starter_lines)


_STARTERS: dict[str, frozenset[int]] = {}


def _starter(starter_dir: Path) -> tuple[str, frozenset[int]]:
    """A digest of the starter kit's sources and every k-gram hash in them (not only the winnowed ones,
    so that any starter k-gram in a submission is found). Cached by content: the batch asks per submission.
    """
    if not starter_dir.is_dir():
        raise HarnessError(f"similarity: starter kit {starter_dir} is not a folder")
    sources, _ = _winnow.read_sources(starter_dir)
    digest = hashlib.blake2b(json.dumps([(s.path, s.text) for s in sources]).encode(), digest_size=16)
    key = f"{digest.hexdigest()}-{_winnow.NORMALISER_VERSION}"
    known = _STARTERS.get(key)
    if known is None:
        hashes = (_winnow.kgram_hashes(_winnow.tokenise(source).symbols) for source in sources)
        known = frozenset(h for file_hashes in hashes for h in file_hashes)
        _STARTERS.clear()  # one assignment per batch: keep the last only
        _STARTERS[key] = known
    return key, known


def save_snapshot(snap: Snapshot, dest: Path) -> None:
    """Write `snap` into folder `dest`; sources first, so a fingerprints file means both are complete."""
    dest = Path(dest)
    write_atomic(dest / SOURCES_FILE, json.dumps(snap.sources))
    write_atomic(dest / FINGERPRINTS_FILE, snap.model_dump_json())


def load_snapshot(dest: Path) -> Snapshot:
    """The snapshot saved in `dest`. Raises SnapshotError if it is missing, corrupt, too big,
    or made by another version of the fingerprinting (snapshot the submission again)."""
    dest = Path(dest)
    try:
        raw, text = (dest / FINGERPRINTS_FILE).read_bytes(), (dest / SOURCES_FILE).read_bytes()
        if len(raw) + len(text) > MAX_SNAPSHOT_BYTES:
            raise SnapshotError(f"similarity snapshot in {dest} is larger than {MAX_SNAPSHOT_BYTES} bytes")
        snap = Snapshot.model_validate_json(raw)
        sources = json.loads(text)
    except (OSError, ValueError, ValidationError) as exc:
        raise SnapshotError(f"similarity snapshot in {dest} cannot be read: {type(exc).__name__}") from exc
    if not isinstance(sources, dict) or not all(isinstance(v, str) for v in sources.values()):
        raise SnapshotError(f"similarity snapshot in {dest}: sources.json is not a path -> text map")
    if (snap.k, snap.w, snap.normaliser) != (_winnow.K, _winnow.W, _winnow.NORMALISER_VERSION):
        raise SnapshotError(f"similarity snapshot in {dest} was made by another version: snapshot again")
    snap.sources = sources
    return snap


# --- comparison --------------------------------------------------------------------------------------

def compare(snapshots: Mapping[str, Snapshot], *, threshold: float = 0.5, max_share: float = 0.25,
            min_shared: int = 15, min_round: int = MIN_ROUND) -> list[SimilarPair]:
    """Pairs whose similarity is at least `threshold` and who share at least `min_shared` fingerprints,
    most similar first. In a round of at least `min_round` submissions, a fingerprint found in more
    than `max_share` of them (and in more than two: two is what a copy makes) is boilerplate and
    ignored, in the counts and the sizes; in a smaller round only the starter kit is left out.
    About one token in five is a fingerprint, so the default `min_shared` of 15 asks for some ten
    copied lines: less than that is no evidence, however small the submissions are.

    Raises SnapshotError if the snapshots were made with different starter kits or settings.
    """
    names = sorted(snapshots)
    kinds = {(s.starter_digest, s.k, s.w, s.normaliser) for s in snapshots.values()}
    if len(kinds) > 1:
        raise SnapshotError("similarity snapshots made with different starter kits or settings: "
                            "snapshot the submissions again")
    if len(names) < 2:
        return []
    share = max_share if len(names) >= min_round else 1.0
    matrix, columns = _incidence([snapshots[name] for name in names], share)
    sizes = np.diff(matrix.indptr)
    shared = sparse.triu(matrix @ matrix.T, k=1).tocoo()
    pairs = []
    for i, j, count in zip(shared.row, shared.col, shared.data, strict=True):
        smaller = min(sizes[i], sizes[j])
        if count < min_shared or count < threshold * smaller:
            continue
        a, b = snapshots[names[i]], snapshots[names[j]]
        keep = set(columns[matrix[i].indices].tolist()) & set(columns[matrix[j].indices].tolist())
        pairs.append(SimilarPair(
            a=names[i], b=names[j], similarity=float(count / smaller), share_a=float(count / sizes[i]),
            share_b=float(count / sizes[j]), shared=int(count), fingerprints_a=int(sizes[i]),
            fingerprints_b=int(sizes[j]), blocks=_blocks(a, b, keep)))
    return sorted(pairs, key=lambda p: (-p.similarity, -p.shared, p.a, p.b))


class SimilarGroup(BaseModel):
    """Submissions joined by flagged pairs (a connected component): one ring of copies."""

    members: list[str]  # sorted
    pairs: list[SimilarPair]  # the flagged pairs among them, most similar first

    def similarity(self, a: str, b: str) -> float | None:
        """The flagged similarity of members `a` and `b`, or None when that pair is under the threshold."""
        return next((p.similarity for p in self.pairs if {p.a, p.b} == {a, b}), None)


def find_groups(pairs: list[SimilarPair]) -> list[SimilarGroup]:
    """The connected components of the flagged `pairs`, largest first, then by most similar pair."""
    parent: dict[str, str] = {}

    def root(name: str) -> str:
        while parent.setdefault(name, name) != name:
            parent[name] = parent[parent[name]]
            name = parent[name]
        return name

    for pair in pairs:
        parent[root(pair.a)] = root(pair.b)
    members: dict[str, list[str]] = {}
    for name in parent:
        members.setdefault(root(name), []).append(name)
    groups = [SimilarGroup(members=sorted(names), pairs=[p for p in pairs if root(p.a) == top])
              for top, names in members.items()]
    return sorted(groups, key=lambda g: (-len(g.members), -g.pairs[0].similarity, g.members))


def _incidence(snaps: list[Snapshot], max_share: float) -> tuple[sparse.csr_matrix, np.ndarray]:
    """Submissions x distinct fingerprints (0/1), boilerplate columns dropped; and each column's hash."""
    per_row = [np.unique(np.asarray(s.hashes, dtype=np.int64)) for s in snaps]
    rows = np.repeat(np.arange(len(snaps)), [len(h) for h in per_row])
    columns, col = np.unique(np.concatenate(per_row), return_inverse=True)
    counts = np.bincount(col, minlength=len(columns))
    keep = counts[col] <= max(max_share * len(snaps), 2)
    matrix = sparse.csr_matrix((np.ones(int(keep.sum()), dtype=np.int32), (rows[keep], col[keep])),
                               shape=(len(snaps), len(columns)))
    matrix.sort_indices()
    return matrix, columns


def _blocks(a: Snapshot, b: Snapshot, keep: set[int]) -> list[MatchBlock]:
    """Shared fingerprints paired up (a's n-th occurrence of a hash with b's n-th) and grouped into
    blocks: runs that advance together on both sides without a gap longer than an edit leaves."""
    in_b: dict[int, list[int]] = {}
    for j, value in enumerate(b.hashes):
        if value in keep:
            in_b.setdefault(value, []).append(j)
    seen: Counter[int] = Counter()
    groups: list[list[tuple[int, int]]] = []
    for i, value in enumerate(a.hashes):
        if value not in in_b:
            continue
        options = in_b[value]
        j = options[min(seen[value], len(options) - 1)]
        seen[value] += 1
        if groups and _continues(a, b, groups[-1][-1], (i, j)):
            groups[-1].append((i, j))
        elif len(groups) < MAX_BLOCKS:
            groups.append([(i, j)])
    return [MatchBlock(number=n, a=_span(a, [i for i, _ in group]), b=_span(b, [j for _, j in group]),
                       fingerprints=len(group)) for n, group in enumerate(groups, 1)]


def _continues(a: Snapshot, b: Snapshot, previous: tuple[int, int], current: tuple[int, int]) -> bool:
    (pi, pj), (i, j) = previous, current
    return (a.file[i] == a.file[pi] and b.file[j] == b.file[pj]
            and 0 < a.pos[i] - a.pos[pi] <= _GAP and 0 < b.pos[j] - b.pos[pj] <= _GAP)


def _span(snap: Snapshot, indexes: list[int]) -> LineRange:
    return LineRange(file=snap.files[snap.file[indexes[0]]].path, start=min(snap.first[i] for i in indexes),
                     end=max(snap.last[i] for i in indexes))


def _bridge(spans: list[tuple[int, int]], own: set[int]) -> list[tuple[int, int]]:
    """`spans` joined across gaps holding none of the lines in `own` (blank lines, comments, docstrings)."""
    joined: list[tuple[int, int]] = []
    for start, end in spans:
        if joined and not any(line in own for line in range(joined[-1][1] + 1, start)):
            joined[-1] = (joined[-1][0], end)
        else:
            joined.append((start, end))
    return joined


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged
