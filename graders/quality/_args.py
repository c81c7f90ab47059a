"""Arguments of the `code_quality` grader: the fixed ruff rule set, the bounds, and per measure the
value that earns full marks (`good`), the value that earns nothing (`bad`) and a weight.

Every key has a default, so `grader: code_quality` alone is a complete spec; a measure given
in part (say `lint: {good: 3}`) keeps the defaults of the keys it leaves out. A weight of 0
leaves the measure out of the score (it is still reported).
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# pycodestyle errors and warnings, pyflakes, isort, bugbear, comprehensions, simplify, blind except,
# commented-out code, flake8-pie and numpy's deprecated APIs: what a reviewer would raise, and
# nothing that is merely a matter of taste (naming, quotes, print calls, magic numbers).
DEFAULT_RULES = ("E", "W", "F", "I", "B", "C4", "SIM", "BLE", "ERA", "PIE", "NPY")

# measure -> (good, bad, weight, what the value is)
MEASURES: dict[str, tuple[float, float, float, str]] = {
    "lint": (2.0, 15.0, 3.0, "ruff findings per 100 logical lines"),
    # 5 is the top of radon's rank A (simple blocks), 15 the middle of its rank C (complex ones)
    "complexity": (5.0, 15.0, 2.0, "mean cyclomatic complexity of the function each statement is in"),
    "maintainability": (50.0, 15.0, 1.0, "radon maintainability index (0-100), mean over files"),
    "function_size": (0.0, 0.5, 1.5, "share of statements in over-long functions or top-level code blocks"),
    "file_size": (0.0, 0.5, 0.5, "share of logical lines in over-long files"),
    "docstrings": (0.8, 0.2, 1.5, "share of public functions with a docstring"),
    "annotations": (0.8, 0.1, 1.0, "share of parameters and returns of public functions annotated"),
    "readme": (150.0, 20.0, 1.0, "words in the README beyond the starter kit's"),
    "dependencies": (1.0, 0.0, 1.0, "share of declared dependencies pinned to an exact version"),
    "tests": (3.0, 0.0, 1.5, "test functions"),
    "large_files": (0.0, 1.0, 1.0, "large data or binary files committed"),
    "secrets": (0.0, 1.0, 2.0, "secret-looking values committed"),
}
_RULE = re.compile(r"^[A-Z]{1,4}[0-9]{0,4}$")


class Band(BaseModel):
    """Where a measure scores 1 (`good`) and 0 (`bad`), linear in between; and its weight."""

    model_config = ConfigDict(extra="forbid")

    good: float
    bad: float
    weight: float = Field(ge=0)

    @model_validator(mode="after")
    def _apart(self) -> Band:
        if self.good == self.bad:
            raise ValueError(f"good and bad are both {self.good}; they must differ")
        return self


def _band(name: str) -> Any:
    good, bad, weight, what = MEASURES[name]
    return Field(default_factory=lambda: Band(good=good, bad=bad, weight=weight), description=what)


class CodeQualityArgs(BaseModel):
    """Arguments of the `code_quality` grader, as written under `args:` in assignment.yaml."""

    model_config = ConfigDict(extra="forbid")

    rules: tuple[str, ...] = DEFAULT_RULES  # ruff selectors, fixed here: the candidate's config is ignored
    target_version: str = "py311"
    line_length: int = Field(120, ge=40, le=400)  # E501 flags only the egregious
    complexity_limit: int = Field(10, ge=1)  # functions above it are listed (radon rank C starts at 11)
    max_function_statements: int = Field(40, ge=5)
    max_file_lines: int = Field(400, ge=50)
    require_dependencies: bool = True  # false: declaring none is fine when the image provides them
    data_file_bytes: int = Field(1 << 20, ge=1)  # data/binary files above this are "large"
    any_file_bytes: int = Field(5 << 20, ge=1)  # any file above this is "large"
    data_extensions: tuple[str, ...] = ()  # replaces the built-in list when given (".csv", ...)
    exclude_starter: bool = True
    max_files: int = Field(300, ge=1, le=5000)
    max_file_bytes: int = Field(512 << 10, ge=1024)
    max_total_bytes: int = Field(4 << 20, ge=1024)
    max_entries: int = Field(20_000, ge=10)
    timeout: float = Field(120.0, gt=0, le=3600)  # wall seconds for ruff and for the analyser each
    top_findings: int = Field(20, ge=0, le=200)
    lint: Band = _band("lint")
    complexity: Band = _band("complexity")
    maintainability: Band = _band("maintainability")
    function_size: Band = _band("function_size")
    file_size: Band = _band("file_size")
    docstrings: Band = _band("docstrings")
    annotations: Band = _band("annotations")
    readme: Band = _band("readme")
    dependencies: Band = _band("dependencies")
    tests: Band = _band("tests")
    large_files: Band = _band("large_files")
    secrets: Band = _band("secrets")

    @model_validator(mode="before")
    @classmethod
    def _partial_bands(cls, raw: Any) -> Any:
        """A measure given in part keeps the defaults of the keys it leaves out."""
        if not isinstance(raw, dict):
            return raw
        merged = dict(raw)
        for name, (good, bad, weight, _) in MEASURES.items():
            if isinstance(raw.get(name), dict):
                merged[name] = {"good": good, "bad": bad, "weight": weight, **raw[name]}
        return merged

    @field_validator("rules")
    @classmethod
    def _rules(cls, rules: tuple[str, ...]) -> tuple[str, ...]:
        if not rules:
            raise ValueError("select at least one ruff rule")
        bad = [r for r in rules if not _RULE.match(r)]
        if bad:
            raise ValueError(f"{bad} are not ruff rule selectors (such as 'F', 'E501', 'SIM')")
        return rules

    @field_validator("target_version")
    @classmethod
    def _target(cls, value: str) -> str:
        if not re.fullmatch(r"py3[0-9]{1,2}", value):
            raise ValueError(f"{value!r} is not a ruff target version such as 'py311'")
        return value

    @field_validator("data_extensions")
    @classmethod
    def _extensions(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        bad = [v for v in values if not re.fullmatch(r"\.[A-Za-z0-9]{1,10}", v)]
        if bad:
            raise ValueError(f"{bad}: give extensions with their dot, such as '.csv'")
        return tuple(v.lower() for v in values)

    def band(self, name: str) -> Band:
        """The thresholds and weight of measure `name`."""
        return getattr(self, name)

    @model_validator(mode="after")
    def _some_weight(self) -> CodeQualityArgs:
        if not any(self.band(name).weight > 0 for name in MEASURES):
            raise ValueError("every measure has weight 0; give at least one a weight")
        return self
