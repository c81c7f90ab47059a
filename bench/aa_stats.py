"""The A/A study's figures (bench/aa_latency.py): one grade parsed, and the statistics of many.

A grade is *flagged* when the harness declined to score its measurement: the result's status is
`machine_busy` (or its reason starts with "machine busy:"), or its latency or capacity criterion
carries a non-empty `ungraded` reason. A grade with no total score that is not flagged (an
infrastructure error, a crash) is *failed*. The rest are *scored*; every statistic below is over
scored grades only:

- spread: max - min; sd: the sample standard deviation (n - 1), None under two grades;
- false-alarm rate: over all unordered pairs of scored grades of one submission in one condition,
  the share whose totals differ by more than 5 points (None under two grades);
- silently low: scored grades under load more than 3 points below the idle median total.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LOAD_CRITERIA = ("latency", "capacity")
# raw figures shown beside the scores: (criterion, metric, label)
RAW_FIGURES = (("latency", "p99_ms", "p99 (ms)"), ("capacity", "capacity_rps", "capacity (req/s)"))
FALSE_ALARM_POINTS = 5.0
LOW_MARGIN_POINTS = 3.0


@dataclass(frozen=True)
class Grade:
    """One `harness grade --json` line, reduced to what the study needs. Criterion scores are 0..100."""

    status: str
    total: float | None
    criteria: dict[str, float]  # name -> score * 100
    flagged: bool
    reason: str = ""
    seconds: float = math.nan
    raw: dict[str, float] = field(default_factory=dict)  # RAW_FIGURES' labels -> the criteria's metrics

    @property
    def scored(self) -> bool:
        return not self.flagged and self.total is not None


def _ungraded(criterion: Any) -> str:
    return str(criterion.get("ungraded") or "") if isinstance(criterion, Mapping) else ""


def parse_grade(line: Mapping[str, Any], *, stored: Mapping[str, Any] | None = None,
                seconds: float = math.nan) -> Grade:
    """A grade from the `--json` line and, when given, the stored result.json (whose criteria carry
    fields the line may leave out, `ungraded` among them). Absent fields mean not flagged."""
    status = str(line.get("status", ""))
    reason = str(line.get("reason") or line.get("message") or "")
    line_criteria = line.get("criteria") or {}
    stored_criteria = {c.get("name"): c for c in (stored or {}).get("criteria", []) if isinstance(c, Mapping)}
    criteria, ungraded = {}, []
    for name, crit in line_criteria.items():
        if isinstance(crit, Mapping) and isinstance(crit.get("score"), int | float):
            criteria[name] = 100.0 * crit["score"]
        if name in LOAD_CRITERIA and (why := _ungraded(crit) or _ungraded(stored_criteria.get(name))):
            ungraded.append(f"{name}: {why}")
    raw = {}
    for name, metric, label in RAW_FIGURES:
        value = (line_criteria.get(name) or {}).get("metrics", {}).get(metric)
        if isinstance(value, int | float):
            raw[label] = float(value)
    busy = status == "machine_busy" or reason.lower().startswith("machine busy:")
    total = line.get("total_score")
    return Grade(status=status, total=float(total) if isinstance(total, int | float) else None,
                 criteria=criteria, flagged=busy or bool(ungraded),
                 reason=reason if busy or not ungraded else "; ".join(ungraded), seconds=seconds, raw=raw)


def spread(values: Sequence[float]) -> float | None:
    return max(values) - min(values) if values else None


def sample_sd(values: Sequence[float]) -> float | None:
    return statistics.stdev(values) if len(values) >= 2 else None


def false_alarms(totals: Sequence[float], points: float = FALSE_ALARM_POINTS) -> tuple[int, int]:
    """(pairs whose totals differ by more than `points`, all pairs)."""
    pairs = list(itertools.combinations(totals, 2))
    return sum(abs(a - b) > points for a, b in pairs), len(pairs)


def false_alarm_rate(totals: Sequence[float], points: float = FALSE_ALARM_POINTS) -> float | None:
    alarms, pairs = false_alarms(totals, points)
    return alarms / pairs if pairs else None


def silently_low(totals: Sequence[float], idle_median: float, margin: float = LOW_MARGIN_POINTS) -> int:
    """How many scored totals are more than `margin` points below the idle median."""
    return sum(t < idle_median - margin for t in totals)


def outside_band(totals: Sequence[float], idle_median: float, margin: float = LOW_MARGIN_POINTS) -> int:
    """How many scored totals are more than `margin` points from the idle median, either side."""
    return sum(abs(t - idle_median) > margin for t in totals)


@dataclass(frozen=True)
class Summary:
    """The figures of one submission in one condition."""

    grades: int
    scored: int
    flagged: int
    failed: int
    totals: tuple[float, ...]
    columns: dict[str, tuple[float | None, float | None, float | None, float | None, float | None]]
    false_alarms: tuple[int, int]
    seconds_median: float | None


def summarise(grades: Sequence[Grade]) -> Summary:
    """Median, min, max, spread and sd of the total, latency and capacity scores (and of the p99 and
    capacity figures behind them), and the median seconds per grade."""
    scored = [g for g in grades if g.scored]
    totals = tuple(g.total for g in scored)
    columns = {}
    rows = [("total", list(totals))]
    rows += [(name, [g.criteria[name] for g in scored if name in g.criteria]) for name in LOAD_CRITERIA]
    rows += [(label, [g.raw[label] for g in scored if label in g.raw]) for _, _, label in RAW_FIGURES]
    for name, values in rows:
        columns[name] = (statistics.median(values) if values else None, min(values, default=None),
                         max(values, default=None), spread(values), sample_sd(values))
    seconds = [g.seconds for g in grades if not math.isnan(g.seconds)]
    return Summary(grades=len(grades), scored=len(scored), flagged=sum(g.flagged for g in grades),
                   failed=sum(not g.flagged and g.total is None for g in grades), totals=totals,
                   columns=columns, false_alarms=false_alarms(totals),
                   seconds_median=statistics.median(seconds) if seconds else None)
