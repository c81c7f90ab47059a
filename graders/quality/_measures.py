"""The code-quality measures: raw values and the findings behind them, from the analysers' output.

Only the candidate's code counts: lines unchanged from the starter kit are left out of every
measure, and a function counts when any of its lines changed. Weights are the candidate's own
statements (or logical lines), so a starter file with one changed line weighs one line.

A file that does not parse cannot be measured, but it is the candidate's code: each of its code
lines (non-blank, not only a comment) counts in every line-weighted measure (lint, complexity,
maintainability, function and file size) at the measure's `bad` value, so its cost follows its
size: a 2,000-line module that does not parse outweighs a 16-line neighbour, and a 3-line stray
file in a large project costs little. ruff's own findings in such a file are not counted as
well (one syntax error can make ruff report one finding per line after it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from graders.quality._args import CodeQualityArgs
from graders.quality._collect import SourceFile, Unreadable
from graders.quality._tools import Block, Hit, RuffRun, UnitResult
from harness.core.text import one_line


@dataclass(frozen=True)
class Finding:
    """One reason a measure is not perfect, pointing at a place in the submission."""

    location: str  # "train.py:12", "analysis.ipynb:cell 4:12", or a file
    rule: str  # a ruff code, or the grader's own name for the problem
    message: str
    rank: float = 0.0  # larger is listed first within its measure


@dataclass
class Measure:
    """A measure's raw value (None when it could not be measured or does not apply)."""

    name: str
    value: float | None
    applicable: bool = True  # False: left out of the score (e.g. no public function to document)
    note: str = ""
    findings: list[Finding] = field(default_factory=list)


@dataclass(frozen=True)
class FileView:
    """A source file with the worker's analysis, seen through the starter exclusion."""

    source: SourceFile
    result: UnitResult
    test: bool

    def mine(self, line: int) -> bool:
        return line not in self.source.excluded

    @property
    def logical(self) -> int:
        return sum(self.mine(line) for line in self.result.logical)

    def blocks(self) -> list[tuple[Block, int]]:
        """Blocks with at least one changed line, each with its count of the candidate's statements."""
        out = []
        for block in self.result.blocks:
            if not self.source.excluded or any(self.mine(n) for n in range(block.line, block.end + 1)):
                out.append((block, sum(self.mine(n) for n in block.statements)))
        return out


@dataclass(frozen=True)
class Unparsed:
    """A source file the worker could not parse, with its size in the candidate's own code lines."""

    view: FileView
    lines: int

    @property
    def where(self) -> str:
        """Where the parser stopped: `train.py:12`, or a notebook's cell and line."""
        return self.view.source.location(self.view.result.line)

    def error_line(self) -> str:
        """The source line the parser stopped at, stripped ('' if out of range)."""
        lines = self.view.source.text.split("\n")
        line = self.view.result.line
        return lines[line - 1].strip() if 1 <= line <= len(lines) else ""


def code_lines(view: FileView) -> int:
    """The candidate's non-blank lines that are not only a comment (no parse needed)."""
    return sum(1 for number, line in enumerate(view.source.text.split("\n"), start=1)
               if line.strip() and not line.lstrip().startswith("#") and view.mine(number))


def unparsed_files(views: list[FileView]) -> list[Unparsed]:
    """The files the worker could not parse or analyse, with their own code lines."""
    return [Unparsed(view, code_lines(view)) for view in views if not view.result.ok]


def _blend(value: float | None, weight: float, bad: float, unparsed: list[Unparsed]) -> float | None:
    """`value` over `weight` units, mixed with the unparsed files' lines counted at `bad`."""
    lines = sum(u.lines for u in unparsed)
    if not lines:
        return value
    return ((value or 0.0) * weight + bad * lines) / (weight + lines)


def _weighted(pairs: list[tuple[float, int]]) -> float | None:
    total = sum(weight for _, weight in pairs)
    return sum(value * weight for value, weight in pairs) / total if total else None


def hit_lines(source: SourceFile, hit: Hit) -> range | None:
    """The lines of `source`'s Python text that a ruff finding covers (notebook cells mapped)."""
    if hit.cell is None:
        return range(hit.row, hit.end_row + 1)
    if 1 <= hit.cell <= len(source.cells):
        first = source.cells[hit.cell - 1].first_line - 1
        return range(first + hit.row, first + hit.end_row + 1)
    return None


def _ruff_findings(sources: dict[str, SourceFile], ruff: RuffRun, unparsed: set[str]) -> list[Finding]:
    """ruff's findings, except those in `unparsed` files or entirely on lines unchanged from the starter."""
    findings = []
    for hit in ruff.hits:
        source = sources.get(hit.rel) if hit.rel not in unparsed else None
        lines = hit_lines(source, hit) if source else None
        if source and lines and (not source.excluded or any(n not in source.excluded for n in lines)):
            rank = 50 if hit.code == "invalid-syntax" else 0
            findings.append(Finding(source.location(lines[0]), hit.code, hit.message, rank))
    return findings


def _file_findings(views: list[FileView], ruff: RuffRun, unreadable: list[Unreadable]) -> list[Finding]:
    """A finding per file not read or not linted (files that do not parse are counted by size instead)."""
    findings = [Finding(u.rel, "unreadable", u.reason, 100) for u in unreadable]
    findings += [Finding(view.source.rel, "not-lintable", ruff.failed[view.source.rel], 100)
                 for view in views if view.result.ok and view.source.rel in ruff.failed]
    return findings


def unparsed_finding(unparsed: Unparsed, counted_as: str) -> Finding:
    """The finding that names a file that did not parse, where, the line, and what it counts as."""
    line = unparsed.error_line()
    shown = f" at `{one_line(line, 120)}`" if line else ""
    return Finding(unparsed.where, "not-parsed", f"{unparsed.view.result.error}{shown}; its {unparsed.lines} "
                   f"code lines count as {counted_as}", 100 + unparsed.lines)


def lint(views: list[FileView], sources: dict[str, SourceFile], ruff: RuffRun,
         unreadable: list[Unreadable], bad: float) -> Measure:
    """Findings per 100 lines: ruff's and each unreadable file's over the logical lines of the files that
    parse, with each code line of a file that does not parse counted at `bad` findings per 100."""
    unparsed = unparsed_files(views)
    counted = _file_findings(views, ruff, unreadable) + _ruff_findings(
        sources, ruff, {u.view.source.rel for u in unparsed})
    logical = sum(view.logical for view in views if view.result.ok)
    lines = sum(u.lines for u in unparsed)
    if not logical and not counted and not lines and not ruff.problem:
        return Measure("lint", None, applicable=False, note="no code to lint")
    findings = [unparsed_finding(u, f"{bad:g} findings per 100") for u in unparsed] + counted
    note = f"{len(counted)} findings in {logical} logical lines"
    if unparsed:
        note += f"; {lines} code lines that do not parse, at {bad:g} findings per 100"
    measure = Measure("lint", (100.0 * len(counted) + bad * lines) / max(logical + lines, 1),
                      findings=findings, note=note)
    if ruff.problem:
        measure.value, measure.note = None, ruff.problem
    elif ruff.truncated:
        measure.note += "; ruff's output was cut at the cap"
    return measure


def _code_blocks(views: list[FileView]) -> list[tuple[FileView, Block, int]]:
    return [(view, block, weight) for view in views if view.result.ok for block, weight in view.blocks()]


def _block_name(view: FileView, block: Block) -> str:
    if block.kind != "script":
        return f"`{block.name}`"
    return f"top-level code of cell {view.source.cells[block.cell - 1].number}" if view.source.cells \
        else "top-level code"


def complexity(views: list[FileView], limit: int, bad: float) -> Measure:
    """Mean cyclomatic complexity (radon) of the block each of the candidate's statements is in."""
    blocks = _code_blocks(views)
    value = _blend(_weighted([(block.cc, weight) for _, block, weight in blocks]),
                   sum(weight for *_, weight in blocks), bad, unparsed_files(views))
    findings = [Finding(view.source.location(block.line), "complexity",
                        f"{_block_name(view, block)} has cyclomatic complexity {block.cc} "
                        f"(more than {limit})", block.cc)
                for view, block, _ in blocks if block.cc > limit]
    return Measure("complexity", value, applicable=value is not None, findings=findings,
                   note="" if value is not None else "no analysable code")


def function_size(views: list[FileView], limit: int, bad: float) -> Measure:
    """Share of the candidate's statements in functions (or top-level code) of over `limit` statements."""
    blocks = _code_blocks(views)
    total = sum(weight for _, _, weight in blocks)
    long = [(view, block, weight) for view, block, weight in blocks if len(block.statements) > limit]
    findings = [Finding(view.source.location(block.line), "long-function",
                        f"{_block_name(view, block)} has {len(block.statements)} statements "
                        f"(more than {limit}) over {block.end - block.line + 1} lines", len(block.statements))
                for view, block, _ in long]
    value = _blend(sum(weight for *_, weight in long) / total if total else None, total, bad,
                   unparsed_files(views))
    return Measure("function_size", value, applicable=value is not None, findings=findings)


def file_size(views: list[FileView], limit: int, bad: float) -> Measure:
    """Share of the candidate's logical lines in files of more than `limit` lines."""
    analysed = [view for view in views if view.result.ok]
    total = sum(view.logical for view in analysed)
    long = [view for view in analysed if view.source.line_count > limit]
    findings = [Finding(view.source.rel, "long-file", f"{view.source.line_count} lines (more than {limit})",
                        view.source.line_count) for view in long]
    value = _blend(sum(view.logical for view in long) / total if total else None, total, bad,
                   unparsed_files(views))
    return Measure("file_size", value, applicable=value is not None, findings=findings)


def maintainability(views: list[FileView], bad: float) -> Measure:
    """radon's maintainability index per file, averaged with the candidate's logical lines as weights."""
    analysed = [view for view in views if view.result.ok and view.logical]
    value = _blend(_weighted([(view.result.mi, view.logical) for view in analysed]),
                   sum(view.logical for view in analysed), bad, unparsed_files(views))
    findings = [Finding(view.source.rel, "maintainability", f"maintainability index {view.result.mi:.0f}",
                        -view.result.mi) for view in sorted(analysed, key=lambda v: v.result.mi)[:5]
                if view.result.mi < 50]
    return Measure("maintainability", value, applicable=value is not None, findings=findings)


def _public(views: list[FileView]) -> list[tuple[FileView, Block]]:
    return [(view, block) for view, block, _ in _code_blocks(views)
            if block.public and block.kind != "script" and not view.test]


def docstrings(views: list[FileView]) -> Measure:
    """Share of public functions and methods (outside tests) with a docstring."""
    public = _public(views)
    findings = [Finding(view.source.location(block.line), "missing-docstring",
                        f"public {block.kind} `{block.name}` has no docstring", len(block.statements))
                for view, block in public if not block.doc]
    value = 1 - len(findings) / len(public) if public else None
    return Measure("docstrings", value, applicable=bool(public), findings=findings,
                   note=f"{len(public) - len(findings)} of {len(public)} public functions documented"
                   if public else "no public function")


def type_annotations(views: list[FileView]) -> Measure:
    """Share of parameters (self/cls aside) and returns of public functions that carry a type annotation."""
    public = _public(views)
    slots = sum(block.slots for _, block in public)
    done = sum(block.annotated for _, block in public)
    findings = [Finding(view.source.location(block.line), "missing-annotations",
                        f"`{block.name}`: {block.annotated} of {block.slots} parameters and return annotated",
                        block.slots - block.annotated)
                for view, block in public if block.annotated < block.slots]
    value = done / slots if slots else None
    return Measure("annotations", value, applicable=bool(slots), findings=findings,
                   note=f"{done} of {slots} annotated" if slots else "no public function")


def code_measures(views: list[FileView], sources: dict[str, SourceFile], ruff: RuffRun,
                  unreadable: list[Unreadable], args: CodeQualityArgs) -> list[Measure]:
    """The measures computed from the code itself, in the order of the spec's arguments."""
    def bad(name: str) -> float:
        return args.band(name).bad

    return [lint(views, sources, ruff, unreadable, bad("lint")),
            complexity(views, args.complexity_limit, bad("complexity")),
            maintainability(views, bad("maintainability")),
            function_size(views, args.max_function_statements, bad("function_size")),
            file_size(views, args.max_file_lines, bad("file_size")), docstrings(views),
            type_annotations(views)]
