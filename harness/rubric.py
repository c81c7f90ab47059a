"""Manual review: the rubric a spec declares, the review a person stores, and what a re-grade
remembers of the result it replaced. Data only (pydantic), so harness.spec and harness.results
can both import it; the logic is in harness.review."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from harness.core.text import one_line, printable

MANUAL_GROUP = "manual"  # every rubric item is a criterion of this group (the summary's column)
MANUAL_GRADER = "manual"
PENDING = "manual review pending"  # CriterionResult.ungraded of an item nobody has scored yet
COMMENT_CHARS = 2000
Score01 = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


class RubricItem(BaseModel):
    """One item a reviewer scores by hand, e.g. the clarity of a written recommendation."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]  # criterion name
    description: str = Field(min_length=1)  # what the reviewer judges
    weight: float = Field(gt=0, allow_inf_nan=False)  # on the same scale as the graders' weights
    #: the reviewer scores 0..max_points (e.g. 5); None: a score between 0 and 1
    max_points: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    file: str | None = None  # the review file (spec review_files) it judges, if any
    visibility: str | None = None  # as graders[].visibility; checked by the spec

    @property
    def top(self) -> float:
        return self.max_points if self.max_points is not None else 1.0


class ItemReview(BaseModel):
    """A reviewer's mark on one rubric item: the value as given and the scale it was given on."""

    model_config = ConfigDict(extra="forbid")

    value: float = Field(ge=0.0, allow_inf_nan=False)
    top: float = Field(gt=0.0, allow_inf_nan=False)  # the item's max_points (1 on a 0-1 scale) then
    comment: str = ""

    @field_validator("comment")
    @classmethod
    def _plain(cls, value: str) -> str:
        return one_line(printable(value), COMMENT_CHARS)

    @property
    def score(self) -> float:
        return min(1.0, self.value / self.top)


class ManualReview(BaseModel):
    """What a person scored (harness review): who, when, and per rubric item its mark. Stored in
    result.json; carried to a re-grade of the same content."""

    model_config = ConfigDict(extra="forbid")

    reviewer: str = Field(min_length=1)
    at: str  # ISO time of the last change
    content_hash: str | None = None  # the content reviewed: a re-grade of other content drops it
    items: dict[str, ItemReview] = Field(default_factory=dict)

    @field_validator("reviewer")
    @classmethod
    def _who(cls, value: str) -> str:
        return one_line(printable(value), 200)


class PreviousResult(BaseModel):
    """The result a re-grade under a new key replaced (same submission folder): enough to show
    what changed (harness.review.changes)."""

    model_config = ConfigDict(extra="forbid")

    key: str
    started_at: str
    status: str
    total_score: float | None = None
    scores: dict[str, Score01] = Field(default_factory=dict)  # criterion -> score, as graded then
    grader_versions: dict[str, str] = Field(default_factory=dict)
