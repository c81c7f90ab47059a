"""What the code-quality grader says: the explanation, the details for reviewers, and `feedback.md`.

Candidate text (paths, names, tool messages) is shown as escaped, one-line text. Secrets are
never shown: their findings carry only a masked value (graders.quality._secrets).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from graders.quality._args import MEASURES, Band
from graders.quality._measures import Finding, Measure
from harness.core.text import one_line

FEEDBACK_FILE = "feedback.md"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~$&#])")

_DESCRIBE = {
    "lint": "{:.1f} lint findings per 100 lines",
    "complexity": "mean cyclomatic complexity {:.1f}",
    "maintainability": "maintainability index {:.0f}",
    "function_size": "{:.0%} of statements in over-long functions",
    "file_size": "{:.0%} of the code in over-long files",
    "docstrings": "{:.0%} of public functions documented",
    "annotations": "{:.0%} of parameters and returns annotated",
    "readme": "a README of {:.0f} words of your own",
    "dependencies": "{:.0%} of dependencies pinned",
    "tests": "{:.0f} test functions",
    "large_files": "{:.0f} large files committed",
    "secrets": "{:.0f} secret-looking values committed",
}
_TITLES = {
    "lint": "Lint findings", "complexity": "Complexity", "maintainability": "Maintainability",
    "function_size": "Function size", "file_size": "File size", "docstrings": "Docstrings",
    "annotations": "Type annotations", "readme": "README", "dependencies": "Dependencies", "tests": "Tests",
    "large_files": "Large files", "secrets": "Secrets",
}
_ADVICE = {
    "lint": "Run `ruff check --select {rules}` and fix what it reports.",
    "complexity": "Split functions with many branches and loops into smaller functions with one job each.",
    "maintainability": "Shorter modules with simpler functions and comments where the reason is not obvious "
                       "raise this index.",
    "function_size": "Break long functions (and long top-level scripts or notebook cells) into named steps.",
    "file_size": "Split very long files into modules by topic.",
    "docstrings": "Give each public function a docstring saying what it does and returns.",
    "annotations": "Annotate the parameters and return types of public functions.",
    "readme": "Say in the README what you did, why, how to run it and what you found.",
    "dependencies": "Declare every third-party package in requirements.txt, pinned with == to a version.",
    "tests": "Add a few pytest tests (tests/test_*.py) for the parts that are easy to get wrong.",
    "large_files": "Do not commit data sets, models or archives; generate or download them instead.",
    "secrets": "Never commit keys, tokens or passwords: remove them and revoke them; read them from the "
               "environment instead.",
}


@dataclass(frozen=True)
class Scored:
    """A measure with its thresholds and sub-score (None when it is left out of the score)."""

    measure: Measure
    band: Band
    score: float | None

    @property
    def lost(self) -> float:
        return 0.0 if self.score is None else self.band.weight * (1.0 - self.score)


def describe(measure: Measure) -> str:
    """The measure's value in words ("25% of public functions documented")."""
    if measure.value is None:
        return measure.note or "not measured"
    return _DESCRIBE[measure.name].format(measure.value)


def text(value: object, limit: int = 300) -> str:
    """Candidate text, safe inside a Markdown paragraph or bullet."""
    return _MD_SPECIAL.sub(r"\\\1", one_line(value, limit))


def finding_line(finding: Finding) -> str:
    """`train.py:12 F401: message`, on one line."""
    return one_line(f"{finding.location} {finding.rule}: {finding.message}", 400)


def top_findings(scored: list[Scored], limit: int) -> list[Finding]:
    """Up to `limit` findings, taken in turn from the measures that lost the most points."""
    queues = [sorted(s.measure.findings, key=lambda f: -f.rank)
              for s in sorted(scored, key=lambda s: -s.lost) if s.lost > 0]
    picked: list[Finding] = []
    while len(picked) < limit and any(queues):
        for queue in queues:
            if queue and len(picked) < limit:
                picked.append(queue.pop(0))
    return picked


def explanation(total: float, scored: list[Scored]) -> str:
    """One or two sentences: the score and the weakest measures."""
    weak = [s for s in sorted(scored, key=lambda s: -s.lost) if s.lost > 0][:2]
    if not weak:
        head = f"Code quality {total:.2f}: every measure meets its target."
    else:
        parts = [f"{s.measure.name} ({describe(s.measure)}, {s.score:.2f})" for s in weak]
        head = f"Code quality {total:.2f}; weakest: {' and '.join(parts)}."
    secrets = next((s for s in scored if s.measure.name == "secrets" and s.measure.value), None)
    if secrets is not None and secrets not in weak:
        head += f" {describe(secrets.measure).capitalize()}."
    return head


def measure_details(scored: list[Scored]) -> dict[str, dict[str, Any]]:
    """Per measure: raw value, thresholds, weight, sub-score, whether it counts, and a note."""
    out = {}
    for s in scored:
        m = s.measure
        out[m.name] = {"value": None if m.value is None else round(m.value, 4),
                       "score": None if s.score is None else round(s.score, 4),
                       "good": s.band.good, "bad": s.band.bad, "weight": s.band.weight,
                       "counted": s.score is not None, "findings": len(m.findings),
                       "note": one_line(m.note, 300) or MEASURES[m.name][3]}
    return out


def _section(s: Scored, rules: str, per_measure: int) -> list[str]:
    m = s.measure
    title = _TITLES[m.name]
    if s.score is None:
        why = "not part of this assignment's score" if s.band.weight == 0 else m.note or "does not apply"
        return [f"## {title}: not counted", "", f"{text(describe(m))}: {text(why)}." if m.value is not None
                else f"{text(why)}.", ""]
    lines = [f"## {title}: {s.score:.2f} of 1", "",
             f"Measured: {text(describe(m))}. Full marks at {s.band.good:g}, none at {s.band.bad:g} "
             f"({text(MEASURES[m.name][3])}).", ""]
    if s.score < 1:
        lines += [_ADVICE[m.name].format(rules=rules), ""]
    if s.score >= 1 or not m.findings:
        return lines
    for finding in sorted(m.findings, key=lambda f: -f.rank)[:per_measure]:
        lines.append(f"- {text(finding.location, 200)} {text(finding.rule, 60)}: {text(finding.message)}")
    if len(m.findings) > per_measure:
        lines.append(f"- and {len(m.findings) - per_measure} more")
    return [*lines, ""]


def feedback_markdown(total: float, scored: list[Scored], *, rules: tuple[str, ...], intro: str = "",
                      per_measure: int = 10) -> str:
    """The candidate-facing report: the score, then each measure with advice and its top findings."""
    counted = sorted((s for s in scored if s.score is not None), key=lambda s: -s.lost)
    left_out = [s for s in scored if s.score is None]
    lines = ["# Code quality feedback", "",
             f"Score: {total:.2f} of 1. Your code was read, not run: lint findings (ruff), complexity and "
             "maintainability (radon), function and file sizes, docstrings and type annotations, and the "
             "project's README, dependencies, tests and committed files. Code you kept unchanged from the "
             "starter kit is not judged. The measures that cost the most points come first.", ""]
    if intro:
        lines += [text(intro, 1000), ""]
    for s in [*counted, *left_out]:
        lines += _section(s, ",".join(rules), per_measure)
    return "\n".join(lines).rstrip() + "\n"
