"""Manual review and re-grade memory: rubric items as criteria, a reviewer's marks, and what a
re-grade carries over from the result it replaces.

Rubric items (spec `rubric:`) are criteria of group "manual", weighted like the graders. Until a
reviewer scores an item it is ungraded (CriterionResult.ungraded = PENDING): the total is then
over the automatic criteria only and the result says it is provisional; a missing review never
counts as 0 nor as full marks. The rubric is not part of the result key (batch._spec_hash):
adding or editing one changes what a person judges, not what the harness ran, so no submission
is re-run; the manual criteria are rebuilt from the stored marks whenever a result is read by a
batch or reviewed.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core import CriterionResult
from harness.errors import UsageError
from harness.results import Status, SubmissionResult, total_score
from harness.rubric import MANUAL_GRADER, MANUAL_GROUP, PENDING, ItemReview, ManualReview, PreviousResult
from harness.spec import AssignmentSpec

REVIEW_FILE_BYTES = 256 << 10


class ReviewFile(BaseModel):
    """`harness review --file review.yaml`: the flags' content as YAML."""

    model_config = ConfigDict(extra="forbid")

    reviewer: str | None = None
    scores: dict[str, float] = Field(default_factory=dict)
    comments: dict[str, str] = Field(default_factory=dict)


def manual_criteria(spec: AssignmentSpec, review: ManualReview | None,
                    status: Status = Status.OK) -> list[CriterionResult]:
    """One criterion per rubric item: scored from `review`, else pending; an invalid submission's
    unreviewed items score 0 instead (nothing ran: there is nothing to wait for, and a pending item
    would keep its total provisional for ever). A reviewer can still mark them."""
    found = []
    for item in spec.rubric:
        mark = review.items.get(item.name) if review else None
        details: dict[str, Any] = {"description": item.description, "max_points": item.top}
        if item.file:
            details["file"] = item.file
        if (mark is None or review is None) and status is Status.INVALID:
            found.append(CriterionResult(
                name=item.name, group=MANUAL_GROUP, grader=MANUAL_GRADER, grader_version="1", score=0.0,
                weight=item.weight, details=details,
                explanation=f"Not reviewed, scored 0: the submission is invalid (nothing ran). "
                            f"{item.description}"))
            continue
        if mark is None or review is None:
            found.append(CriterionResult(
                name=item.name, group=MANUAL_GROUP, grader=MANUAL_GRADER, grader_version="1", score=0.0,
                weight=item.weight, explanation=f"Manual review pending: {item.description}",
                details=details, ungraded=PENDING))
            continue
        details |= {"value": mark.value, "reviewer": review.reviewer, "at": review.at}
        said = f" {mark.comment}" if mark.comment else ""
        found.append(CriterionResult(
            name=item.name, group=MANUAL_GROUP, grader=MANUAL_GRADER, grader_version="1", score=mark.score,
            weight=item.weight, metrics={"points": mark.value},
            explanation=f"Reviewed by {review.reviewer} ({review.at}): {mark.value:g} of {mark.top:g}.{said}",
            details=details | ({"comment": mark.comment} if mark.comment else {})))
    return found


def with_review(result: SubmissionResult, spec: AssignmentSpec,
                review: ManualReview | None) -> SubmissionResult:
    """`result` with its manual criteria rebuilt from `review` under the current rubric, and its
    total recomputed (an ungraded status keeps no total)."""
    criteria = [c for c in result.criteria if c.grader != MANUAL_GRADER]
    criteria += manual_criteria(spec, review, result.status)
    total = result.total_score
    if result.status.graded and result.status is not Status.MACHINE_BUSY:
        total = total_score(criteria)
    return result.model_copy(update={"criteria": criteria, "review": review, "total_score": total})


def carried_review(earlier: SubmissionResult | None, content_hash: str | None) -> ManualReview | None:
    """The review a re-grade keeps: the earlier result's, when it judged this very content."""
    if earlier is None or earlier.review is None or content_hash is None:
        return None
    reviewed = earlier.review.content_hash or earlier.content_hash
    return earlier.review if reviewed == content_hash else None


def previous_of(earlier: SubmissionResult | None, key: str) -> PreviousResult | None:
    """What a re-grade under `key` remembers of the graded result it replaces. Under the same key
    (a forced re-grade) that result's own memory is kept: the diff stays against the older key."""
    if earlier is None or not earlier.status.graded:
        return None
    if earlier.key == key:
        return earlier.previous
    return PreviousResult(key=earlier.key, started_at=earlier.started_at, status=earlier.status.value,
                          total_score=earlier.total_score, grader_versions=earlier.grader_versions,
                          scores={c.name: c.score for c in earlier.criteria if not c.ungraded})


def changes(result: SubmissionResult) -> list[tuple[str, float | None, float | None]]:
    """(criterion, score before, score now) for each criterion whose score changed since
    `result.previous` (None: the criterion did not exist, or is not graded, on that side)."""
    if result.previous is None:
        return []
    before = result.previous.scores
    now = {c.name: c.score for c in result.criteria if not c.ungraded}
    names = list(dict.fromkeys([*now, *before]))
    return [(n, before.get(n), now.get(n)) for n in names
            if before.get(n) is None or now.get(n) is None or abs(before[n] - now[n]) > 1e-9]


def total_change(result: SubmissionResult) -> str:
    """"before → now (change)" of the total since `result.previous`, 2 decimals like the totals."""
    previous = result.previous
    if previous is None or result.total_score is None or previous.total_score is None:
        return "n/a"
    delta = result.total_score - previous.total_score
    return f"{previous.total_score:.2f} → {result.total_score:.2f} ({delta:+.2f})"


def change_cells(result: SubmissionResult) -> list[tuple[str, str, str, str]]:
    """`changes` as text: criterion, before, now, change (3 decimals, as the scores)."""
    def score(value: float | None) -> str:
        return "—" if value is None else f"{value:.3f}"

    return [(name, score(before), score(now),
             "—" if before is None or now is None else f"{now - before:+.3f}")
            for name, before, now in changes(result)]


def summary_fields(result: SubmissionResult) -> dict[str, Any]:
    """The `--json` line's review and re-grade parts."""
    fields: dict[str, Any] = {"provisional": bool(result.pending_review),
                              "pending_review": result.pending_review}
    if result.review is not None:
        fields["review"] = {"reviewer": result.review.reviewer, "at": result.review.at,
                            "items": {n: m.model_dump() for n, m in result.review.items.items()}}
    if result.previous is not None:
        total = result.total_score
        old = result.previous.total_score
        fields["previous"] = {
            "key": result.previous.key, "total_score": old,
            "total_change": None if total is None or old is None else round(total - old, 2),
            "changed": {n: {"before": b, "after": a,
                            "change": None if a is None or b is None else round(a - b, 6)}
                        for n, b, a in changes(result)}}
    return fields


def read_marks(spec: AssignmentSpec, scores: list[str], comments: list[str],
               file: Path | None) -> tuple[str | None, dict[str, float], dict[str, str]]:
    """(reviewer from the file, scores, comments) from `--file` then the flags (flags win), checked
    against the rubric. Raises UsageError (one line) naming what is wrong."""
    loaded = _review_file(file) if file else ReviewFile()
    given = loaded.scores | {name: _number(name, text) for name, text in map(_pair, scores)}
    said = loaded.comments | dict(map(_pair, comments))
    items = {item.name: item for item in spec.rubric}
    if not items:
        raise UsageError(f"{spec.id} has no rubric: add `rubric:` items to its assignment.yaml")
    if not given and not said:
        raise UsageError("nothing to record: give --score NAME=VALUE (or --comment NAME=TEXT, or --file)")
    for name in [*given, *said]:
        if name not in items:
            raise UsageError(f"unknown rubric item {name!r}; the rubric of {spec.id}: {', '.join(items)}")
    for name, value in given.items():
        top = items[name].top
        if not 0 <= value <= top:
            raise UsageError(f"--score {name}={value:g} is out of range: {name} is scored from 0 to {top:g}")
    return loaded.reviewer, given, said


def review_result(spec: AssignmentSpec, result: SubmissionResult, *, reviewer: str,
                  scores: dict[str, float], comments: dict[str, str]) -> SubmissionResult:
    """`result` with these marks added to its review (items not named keep their earlier mark)."""
    earlier = carried_review(result, result.content_hash)
    items = dict(earlier.items) if earlier else {}
    for name in {*scores, *comments}:
        old = items.get(name)
        if name not in scores and old is None:
            raise UsageError(f"--comment {name}: {name} has no score yet; give --score {name}=VALUE too")
        top = {i.name: i.top for i in spec.rubric}[name]
        value = scores[name] if name in scores else old.value  # type: ignore[union-attr]
        comment = comments.get(name, old.comment if old else "")
        items[name] = ItemReview(value=value, top=top if name in scores else old.top,  # type: ignore[union-attr]
                                 comment=comment)
    # milliseconds: MLflow keeps, of two values logged at one time stamp, the larger (not the newer)
    at = datetime.now(UTC).isoformat(timespec="milliseconds")
    review = ManualReview(reviewer=reviewer, at=at, content_hash=result.content_hash, items=items)
    return with_review(result, spec, review)


def _pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"{text!r}: write NAME=VALUE, e.g. clarity=4")
    return name.strip(), value.strip()


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"--score {name}={text!r}: the score must be a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise UsageError(f"--score {name}={text!r}: the score must be a finite number")
    return value


def _review_file(path: Path) -> ReviewFile:
    try:
        with path.open("rb") as fh:
            data = fh.read(REVIEW_FILE_BYTES + 1)
        if len(data) > REVIEW_FILE_BYTES:
            raise UsageError(f"--file {path}: larger than {REVIEW_FILE_BYTES >> 10} KiB")
        raw = yaml.safe_load(data)
    except OSError as exc:
        raise UsageError(f"--file {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"--file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    try:
        return ReviewFile.model_validate(raw if raw is not None else {})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(top level)"
        raise UsageError(f"--file {path}: {where}: {first['msg']} "
                         "(keys: reviewer, scores, comments)") from None
