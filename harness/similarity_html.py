"""Self-contained HTML for similar pairs: a side-by-side page per pair and an index of the pairs.

Every piece of candidate text (code, paths, names) is HTML-escaped with control and bidi
characters replaced, so a source cannot inject markup or disguise what the reviewer reads. The
pages use inline CSS only: no scripts, no external resources. Matched blocks carry the same
number and colour on both sides, and each block's label links to its counterpart.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from harness._escape import esc
from harness.results import write_atomic

if TYPE_CHECKING:
    from harness.similarity import LineRange, SimilarGroup, SimilarPair, Snapshot, SourceInfo

MAX_LINES_PER_SIDE = 6000  # lines rendered per side; past it, a note
MAX_LINE_CHARS = 300
_COLOURS = 6
_SAFE_HREF = re.compile(r"^[A-Za-z0-9._/-]+$")  # relative links only: no scheme, no query

_CSS = """
body{font-family:system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
.sides{display:grid;grid-template-columns:1fr 1fr;gap:1em}
.side{overflow:auto;max-height:90vh;border:1px solid #ccc;padding:0 .5em}
pre{margin:0;font-size:12px;line-height:1.35}
.n{color:#999;user-select:none}.st{color:#aaa}.tag{font-weight:bold;text-decoration:none}
.m0{background:#fde2e2}.m1{background:#e2f0fd}.m2{background:#e5fbe2}
.m3{background:#fdf6d8}.m4{background:#efe2fd}.m5{background:#d8f7f4}
"""


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{esc(title, 200)}</title><style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def render_pair(pair: SimilarPair, a: Snapshot, b: Snapshot) -> str:
    """The side-by-side page of `pair`, whose snapshots are `a` and `b` (with their sources)."""
    head = (f"<h1>{esc(pair.a, 120)} \u2194 {esc(pair.b, 120)}</h1>\n"
            f"<p>Similarity {pair.similarity:.0%}: {pair.shared} shared fingerprints, "
            f"{pair.share_a:.0%} of {pair.fingerprints_a} on the left, {pair.share_b:.0%} of "
            f"{pair.fingerprints_b} on the right. Starter-kit lines are grey and never count; "
            f"click a block's number to jump to its counterpart.</p>\n")
    rows = "".join(
        f'<tr><td>{block.number}</td><td><a href="#a{block.number}">{_where(a, block.a)}</a></td>'
        f'<td><a href="#b{block.number}">{_where(b, block.b)}</a></td><td>{block.fingerprints}</td></tr>\n'
        for block in pair.blocks)
    table = ("<table><tr><th>block</th><th>left</th><th>right</th><th>fingerprints</th></tr>\n"
             f"{rows}</table>\n")
    sides = (f'<div class="sides"><div class="side"><h2>{esc(pair.a, 120)}</h2>{_side(pair, a, "a")}</div>'
             f'<div class="side"><h2>{esc(pair.b, 120)}</h2>{_side(pair, b, "b")}</div></div>')
    return _page(f"{pair.a} vs {pair.b}", head + table + sides)


def _where(snap: Snapshot, lines: LineRange) -> str:
    """Where a block starts, as a reader finds it (a notebook's cell and line), and its length."""
    info = next((f for f in snap.files if f.path == lines.file), None)
    start = info.where(lines.start) if info else f"{lines.file}:{lines.start}"
    return f"{esc(start, 200)}, {lines.end - lines.start + 1} lines"


def _side(pair: SimilarPair, snap: Snapshot, side: str) -> str:
    other = "b" if side == "a" else "a"
    marks: dict[str, dict[int, int]] = {}  # file -> line -> block number (the first block wins)
    labels: dict[str, dict[int, list[int]]] = {}  # file -> first line -> blocks starting there
    for block in pair.blocks:
        where = block.a if side == "a" else block.b
        lines = marks.setdefault(where.file, {})
        for line in range(where.start, where.end + 1):
            lines.setdefault(line, block.number)
        labels.setdefault(where.file, {}).setdefault(where.start, []).append(block.number)
    parts, budget = [], MAX_LINES_PER_SIDE
    for info in snap.files:
        if info.path not in marks:
            continue
        text = snap.sources.get(info.path, "")
        shown = text.split("\n")[:budget]
        budget -= len(shown)
        parts.append(f"<h3>{esc(info.path, 200)}</h3>\n<pre>"
                     + "".join(_line(n, line, info, marks[info.path], labels[info.path], side, other)
                               for n, line in enumerate(shown, 1)) + "</pre>\n")
        if budget <= 0:
            parts.append(f"<p>Only the first {MAX_LINES_PER_SIDE} lines are shown.</p>")
            break
    unmatched = sum(1 for info in snap.files if info.path not in marks)
    if unmatched:
        parts.append(f"<p>{unmatched} file(s) with no match not shown.</p>")
    return "".join(parts)


def _line(number: int, text: str, info: SourceInfo, marks: dict[int, int], labels: dict[int, list[int]],
          side: str, other: str) -> str:
    tags = "".join(f'<a class="tag" id="{side}{n}" href="#{other}{n}">[{n}]</a> '
                   for n in labels.get(number, []))
    code = esc(text, MAX_LINE_CHARS)
    block = marks.get(number)
    if block is not None:
        code = f'<span class="m{block % _COLOURS}">{code}</span>'
    elif any(start <= number <= end for start, end in info.starter_lines):
        code = f'<span class="st">{code}</span>'
    return f'<span class="n">{number:5d}</span> {tags}{code}\n'


def _view(links: Mapping[tuple[str, str], str], pair: SimilarPair, label: str = "view") -> str:
    href = links.get((pair.a, pair.b))
    return f'<a href="{esc(href)}">{esc(label)}</a>' if href and _SAFE_HREF.match(href) else esc(label)


def _groups_section(groups: Sequence[SimilarGroup], links: Mapping[tuple[str, str], str]) -> str:
    """A table per group of three or more: members by members, each flagged pair's similarity linked."""
    parts = []
    for number, group in enumerate((g for g in groups if len(g.members) >= 3), 1):
        head = "".join(f"<th>{esc(name, 60)}</th>" for name in group.members)
        rows = []
        for a in group.members:
            cells = []
            for b in group.members:
                pair = next((p for p in group.pairs if (p.a, p.b) in ((a, b), (b, a))), None)
                cells.append("<td></td>" if a == b else "<td>under threshold</td>" if pair is None
                             else f"<td>{_view(links, pair, f'{pair.similarity:.0%}')}</td>")
            rows.append(f"<tr><th>{esc(a, 60)}</th>{''.join(cells)}</tr>\n")
        parts.append(f"<h2>Group {number}: {len(group.members)} submissions</h2>\n"
                     f"<table><tr><th></th>{head}</tr>\n{''.join(rows)}</table>\n")
    if not parts:
        return ""
    return ("<p>Flagged pairs that chain together are one group: likely one solution passed round. "
            "Each cell links to that pair's side-by-side page.</p>\n" + "".join(parts))


def render_index(pairs: Sequence[SimilarPair], links: Mapping[tuple[str, str], str],
                 groups: Sequence[SimilarGroup] = ()) -> str:
    """A page listing `groups` of three or more, then `pairs`, each linked to its page
    `links[(pair.a, pair.b)]` (a relative path)."""
    rows = []
    for rank, pair in enumerate(pairs, 1):
        view = _view(links, pair) if (pair.a, pair.b) in links else ""
        rows.append(f"<tr><td>{rank}</td><td>{esc(pair.a, 120)}</td><td>{esc(pair.b, 120)}</td>"
                    f"<td>{pair.similarity:.0%}</td><td>{pair.shared}</td><td>{len(pair.blocks)}</td>"
                    f"<td>{view}</td></tr>\n")
    table = ("<table><tr><th>#</th><th>submission</th><th>submission</th><th>similarity</th>"
             f"<th>shared fingerprints</th><th>blocks</th><th></th></tr>\n{''.join(rows)}</table>")
    body = (f"<h1>Similar submissions</h1>\n<p>{len(pairs)} pair(s) over the threshold, most similar "
            f"first. Starter-kit code (and in a large round, code a large share of it writes) is "
            f"ignored.</p>\n{_groups_section(groups, links)}<h2>Pairs</h2>\n{table}")
    return _page("Similar submissions", body)


def pair_page(a: str, b: str) -> str:
    """The file name of the page of pair (a, b): stable across batches, naming neither candidate."""
    digest = hashlib.sha256(f"{a}\n{b}".encode()).hexdigest()[:12]  # ids hold no newline
    return f"pair-{digest}.html"


def write_report(pairs: Sequence[SimilarPair], snapshots: Mapping[str, Snapshot], dest: Path,
                 groups: Sequence[SimilarGroup] = ()) -> Path:
    """Write `dest`/index.html (groups, then pairs) and one `pair-<hash>.html` per pair (named by
    `pair_page`, never by the candidates); return the index's path."""
    dest = Path(dest)
    links = {}
    for pair in pairs:
        name = pair_page(pair.a, pair.b)
        write_atomic(dest / name, render_pair(pair, snapshots[pair.a], snapshots[pair.b]))
        links[(pair.a, pair.b)] = name
    write_atomic(dest / "index.html", render_index(pairs, links, groups))
    return dest / "index.html"
