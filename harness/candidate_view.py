"""What a candidate may see of a result: the one place feedback pages and Gradescope files get it.

Built from the structured result (criteria, scores, the candidate's own failure), never by
filtering report.md, which is for reviewers and shows hidden data. The rules:

* A criterion is shown by its visibility (spec: graders[].visibility or rubric[].visibility, else
  the assignment's; Gradescope's vocabulary):
  `visible` always, `after_due_date` and `after_published` once released, `hidden` never.
* Its explanation is shown only when its grader reads nothing candidates do not have (its
  arguments name no hidden data set, no data set outside `data.public`, no stage that mounts
  one or runs a hidden test suite, no output of such a stage) and it was not zeroed by
  `requires` (that explanation quotes the required criterion's). Otherwise one fixed line
  says why there is no detail: expected values and reference answers never reach a candidate.
* A rubric item (manual review) reads nothing hidden: its note says a person reviewed it (the
  reviewer's comment, written for the hiring team, is not quoted).
* Metrics and details (where graders keep expected values) are never part of the view.
* The failure reason is the candidate's own: shown when it comes from no stage, or from a
  stage that mounts only public data; host paths outside the sandbox and the secret seed are
  masked in every text.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.core import CriterionResult
from harness.core.text import one_line
from harness.results import Status, SubmissionResult
from harness.rubric import PENDING
from harness.secret_seed import SEED_FILE
from harness.spec import SECRETS_DIR, VISIBILITIES, Assignment, AssignmentSpec, GraderSpec, Visibility

RELEASED: frozenset[Visibility] = frozenset({"after_due_date", "after_published"})
NOTE_CHARS = 600
WITHHELD = ("Scored on material candidates do not receive (hidden data, reference answers or a "
            "hidden test suite): only the score is shared.")
# a rubric item's note: the reviewer's comment is written for the hiring team, so it is not quoted
REVIEWED = "Reviewed by a person (manual review)."
REVIEW_PENDING = "Reviewed by a person: not reviewed yet."
_SEED_BYTES = 256
# absolute paths a candidate's code sees inside the sandbox: kept, they help the candidate
_SANDBOX_ROOTS = ("/data/", "/submission", "/output", "/workspace", "/tmp", "/opt/mlgrade")  # noqa: S108
_ABS_PATH = re.compile(r"(?<![\w.~\]-])/(?:[\w.+@~-]+/?)+")
_SECRETS_PATH = re.compile(rf"\S*\b{SECRETS_DIR}/\S*")


@dataclass(frozen=True)
class CriterionView:
    """One criterion as a candidate may see it."""

    name: str
    group: str | None
    visibility: Visibility
    score: float | None  # 0-1; None when ungraded
    weight: float
    max_points: float  # its share of the 100-point total
    note: str  # the explanation when safe, else why there is none

    @property
    def label(self) -> str:
        return f"{self.group} / {self.name}" if self.group else self.name

    @property
    def points(self) -> float | None:
        return None if self.score is None else self.score * self.max_points


@dataclass(frozen=True)
class CandidateView:
    """A result reduced to what its candidate may see (before the visibility filter)."""

    candidate: str
    submission_id: str
    title: str
    key: str  # assignment@version
    status: str
    graded: bool
    total: float | None
    reason: str  # "" when ok
    criteria: tuple[CriterionView, ...]

    def shown(self, *, released: bool) -> list[CriterionView]:
        return [c for c in self.criteria if is_shown(c.visibility, released=released)]

    def withheld(self, *, released: bool) -> int:
        """Criteria not shown that count towards the total (hidden ones included)."""
        return sum(not is_shown(c.visibility, released=released) and c.weight > 0 for c in self.criteria)


def is_shown(visibility: Visibility, *, released: bool) -> bool:
    return visibility == "visible" or (released and visibility in RELEASED)


def candidate_view(assignment: Assignment, result: SubmissionResult, *,
                   results_dir: Path | None = None) -> CandidateView:
    """The view of `result`; `results_dir` (where hidden data is cached) is masked in texts too."""
    mask = Masker(assignment, results_dir)
    spec = assignment.spec
    by_name = {c.name: c for c in result.criteria}
    weight = sum(c.weight for c in result.criteria)
    views = tuple(_criterion(spec, c, by_name, weight, mask) for c in result.criteria)
    return CandidateView(
        candidate=result.candidate, submission_id=result.submission_id, title=spec.title,
        key=f"{result.assignment}@{result.assignment_version}", status=result.status.value,
        graded=result.status.graded, total=result.total_score, reason=mask(own_reason(spec, result)),
        criteria=views)


def _criterion(spec: AssignmentSpec, c: CriterionResult, by_name: dict[str, CriterionResult],
               total_weight: float, mask: Masker) -> CriterionView:
    graders = {g.name: g for g in spec.graders}
    rubric = {r.name for r in spec.rubric}
    visibility: Visibility = "hidden"
    if c.name in graders:
        visibility = spec.criterion_visibility(c.name)
        note = _note(spec, graders[c.name], c, by_name)
    elif c.name in rubric:  # a person's mark on what the candidate handed in: nothing hidden is read
        visibility = spec.criterion_visibility(c.name)
        note = REVIEW_PENDING if c.ungraded == PENDING else REVIEWED
    else:  # not in this spec any more: nothing is known about what it read
        note = WITHHELD
    share = 100.0 * c.weight / total_weight if total_weight > 0 else 0.0
    return CriterionView(name=c.name, group=c.group, visibility=visibility,
                         score=None if c.ungraded else c.score, weight=c.weight, max_points=share,
                         note=mask(one_line(note, NOTE_CHARS)))


def _note(spec: AssignmentSpec, gspec: GraderSpec, c: CriterionResult,
          by_name: dict[str, CriterionResult]) -> str:
    if c.ungraded:
        return "Not graded yet: it is measured again."
    failed = [(name, least) for name, least in gspec.requires.items()
              if name in by_name and (by_name[name].score == 0 or by_name[name].score < least)]
    if failed:
        needs = " and ".join(f"{name} scoring at least {least:g}" if least else f"{name} scoring above 0"
                             for name, least in failed)
        return f"Not counted: it counts only with {needs}."
    if reads_hidden(spec, gspec):
        return WITHHELD
    return c.explanation


def hidden_names(spec: AssignmentSpec) -> set[str]:
    """Names that point at material candidates do not get: hidden data sets, visible data sets
    outside `data.public`, and the stages (and their outputs) that mount one or run a hidden suite."""
    public = set(spec.data.public)
    names = set(spec.data.hidden) | (set(spec.data.visible) - public)
    for stage in spec.stages:
        mounts = set(stage.data) | set(stage.runs) | set(stage.probe.data if stage.probe else ())
        if mounts - public or (stage.pytest is not None and stage.pytest.hidden):
            names |= {stage.name, *stage.output_keys()}
            names |= {key.rsplit("/", 1)[-1] for key in stage.output_keys()}
            if stage.pytest is not None and stage.pytest.hidden:
                names.add(stage.pytest.suite)
    return names


def reads_hidden(spec: AssignmentSpec, gspec: GraderSpec) -> bool:
    """Whether any text in the grader's arguments names hidden material (hidden_names)."""
    names = hidden_names(spec)
    return any(text in names for text in _texts(gspec.args))


def _texts(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _texts(key)
            yield from _texts(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _texts(item)


def own_reason(spec: AssignmentSpec, result: SubmissionResult) -> str:
    """Why the result is not ok, as far as it is the candidate's to know ("" when ok)."""
    if result.status is Status.OK:
        return ""
    if not result.status.graded and result.status is not Status.REJECTED:
        return "The grading service had a problem, not your submission: it is graded again."
    failed = [s for s in result.stages if s.status == result.status.value]
    if not failed:
        return result.reason
    stage = failed[0]
    if _stage_is_public(spec, stage.name):
        return result.reason
    where = stage.name.split("/")[0]
    return (f"Stage {where} ended with {stage.status} on data candidates do not receive; the error "
            "message is not shared, as it may quote that data.")


def _stage_is_public(spec: AssignmentSpec, record: str) -> bool:
    """Whether the stage (or run: "stage/run") that `record` names mounts public data only."""
    stage_name, _, run = record.partition("/")
    stage = next((s for s in spec.stages if s.name == stage_name), None)
    if stage is None:
        return False
    public = set(spec.data.public)
    mounts = set(stage.data) | ({run} if run else set(stage.runs))
    mounts |= set(stage.probe.data if stage.probe else ())
    return not (mounts - public) and not (stage.pytest is not None and stage.pytest.hidden)


class Masker:
    """Masks the secret seed, host paths (the assignment folder, the results with their cached
    hidden data, anything outside the sandbox's own folders) and anything under `hidden/`."""

    def __init__(self, assignment: Assignment, results_dir: Path | None) -> None:
        self._seed = _read_seed(assignment.dir / SECRETS_DIR / SEED_FILE)
        # absolute forms only: a relative "results" would mask the word everywhere
        roots = [assignment.dir, assignment.dir.resolve()]
        if results_dir is not None:
            roots += [results_dir, results_dir.resolve()]
        self._roots = sorted({str(p) for p in roots if p.is_absolute() and str(p) != "/"}, key=len,
                             reverse=True)

    def __call__(self, text: str) -> str:
        if self._seed:
            text = text.replace(self._seed, "[secret]")
        for root in self._roots:
            text = text.replace(root, "[path]")
        text = _ABS_PATH.sub(lambda m: m[0] if m[0].startswith(_SANDBOX_ROOTS) else "[path]", text)
        return _SECRETS_PATH.sub("[path]", text)


def _read_seed(path: Path) -> str:
    try:
        with path.open("rb") as fh:
            seed = fh.read(_SEED_BYTES).decode("ascii", "replace").strip()
    except OSError:
        return ""
    return seed if len(seed) >= 8 else ""  # a short string would mask ordinary digits


__all__ = ["RELEASED", "VISIBILITIES", "WITHHELD", "CandidateView", "CriterionView", "Masker",
           "candidate_view", "hidden_names", "is_shown", "own_reason", "reads_hidden"]
