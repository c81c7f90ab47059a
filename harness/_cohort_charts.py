"""The cohort page's charts, drawn from the stored results (harness._svg): each criterion's score
across the candidates; each measure with a 95% interval side by side (the ranker's NDCG, the
endpoint's p99); and the endpoint's latency-by-percentile and capacity curves overlaid.

What is drawn is found in the data, not by assignment name: a metric pair `<m>_ci_low[_unit]` /
`<m>_ci_high[_unit]`, a `latency.hgrm` artifact, capacity steps in a criterion's details.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from harness._svg import (
    Axis,
    Dot,
    Interval,
    Series,
    colour,
    interval_chart,
    line_chart,
    log_ticks,
    strip_chart,
)
from harness.cohort import Cohort, CohortRow, inside

_CI = re.compile(r"^(?P<stem>.+)_ci_low(?P<unit>_[a-z]+)?$")
_HGRM_BYTES = 1 << 20
_PERCENTILES = ((50, "p50"), (90, "p90"), (99, "p99"), (99.9, "p99.9"), (99.99, "p99.99"))


@dataclass(frozen=True)
class Chart:
    heading: str
    svg: str
    caption: str


def charts(cohort: Cohort) -> list[Chart]:
    """Every chart the cohort's results have data for, in reading order."""
    found = [_distribution(cohort)] if any(r.rank is not None for r in cohort.rows) else []
    found += list(_intervals(cohort))
    found += [c for c in (_latency_curves(cohort), _capacity_curves(cohort)) if c is not None]
    return found


def _colours(cohort: Cohort) -> dict[str, str]:
    return {row.result.submission_id: colour(i) for i, row in enumerate(cohort.rows)}


def _graded(cohort: Cohort) -> list[CohortRow]:
    return [row for row in cohort.rows if row.rank is not None]


def _distribution(cohort: Cohort) -> Chart:
    colours, rows = _colours(cohort), _graded(cohort)
    names = list(dict.fromkeys(c.name for row in rows for c in row.result.criteria))
    strips = [("total / 100", [Dot(r.result.candidate, colours[r.result.submission_id],
                                   (r.result.total_score or 0) / 100) for r in rows])]
    for name in names:
        dots = [Dot(r.result.candidate, colours[r.result.submission_id], c.score, f"weight {c.weight:g}")
                for r in rows for c in r.result.criteria if c.name == name and not c.ungraded]
        strips.append((name, dots))
    svg = strip_chart(strips, Axis(0.0, 1.0, "score (0 to 1)"),
                      "Score of each criterion, one dot per candidate")
    return Chart("Scores by criterion", svg, "Each dot is a candidate (hover for the name and score; the "
                 "colours match the swatches in the ranking). The first row is the total divided by 100.")


def interval_of(metrics: dict[str, float]) -> tuple[str, float, float, float] | None:
    """The first measure with a 95% interval in `metrics`: (name, value, low, high). Differences
    against a baseline (`delta_*`) are left out: they rank candidates no differently."""
    for name in metrics:
        match = _CI.match(name)
        if match is None or match["stem"].startswith("delta"):
            continue
        unit = match["unit"] or ""
        value, high = f"{match['stem']}{unit}", f"{match['stem']}_ci_high{unit}"
        if value in metrics and high in metrics:
            return value, metrics[value], metrics[name], metrics[high]
    return None


def _intervals(cohort: Cohort) -> Iterator[Chart]:
    colours, rows = _colours(cohort), _graded(cohort)
    names = list(dict.fromkeys(c.name for row in rows for c in row.result.criteria))
    for name in names:
        items, measure, reference = [], "", None
        for row in rows:
            c = next((c for c in row.result.criteria if c.name == name), None)
            found = interval_of(c.metrics) if c is not None else None
            if c is None or found is None:
                continue
            measure, value, low, high = found
            items.append(Interval(row.result.candidate, colours[row.result.submission_id], value, low, high))
            base = c.metrics.get(f"baseline_{measure}")
            reference = reference or ((base, f"baseline {base:.3f}") if base is not None else None)
        if not items:
            continue
        shown = _near_the_leader(items)
        values = [v for i in shown for v in (i.value, i.low, i.high) if v is not None]
        values += [reference[0]] if reference and len(shown) == len(items) else []
        low, high = min(values), max(values)
        pad = (high - low) * 0.08 or abs(high) * 0.05 or 0.05
        axis = Axis(low - pad, high + pad, measure.replace("_", " "))
        off = len(items) - len(shown)
        zoom = (f" The axis is zoomed on the leader's neighbourhood: {off} candidate(s) far from it are "
                "drawn hollow at the edge, with their values.") if off else ""
        yield Chart(f"{name}: {measure} with its 95% interval",
                    interval_chart(items, axis, f"{name}: {measure}, 95% interval per candidate", reference),
                    "Candidates in ranking order. Where two bars overlap, the data does not tell those two "
                    f"candidates apart on this measure.{zoom}")


def _near_the_leader(items: list[Interval]) -> list[Interval]:
    """The candidates whose value lies within eight median interval widths of the first-ranked
    one's: when the others are farther, an axis spanning all would shrink every interval to a dot."""
    widths = sorted(i.high - i.low for i in items if i.low is not None and i.high is not None)
    if not widths:
        return items
    reach = 8 * widths[len(widths) // 2]
    near = [i for i in items if abs(i.value - items[0].value) <= reach]
    return near if len(near) >= 2 else items


def read_hgrm(path: Path) -> list[tuple[float, float]]:
    """(1/(1-percentile), latency ms) points of an HdrHistogram percentile file, thinned to about
    20 per decade; [] when missing or unreadable."""
    try:
        with path.open("rb") as fh:
            text = fh.read(_HGRM_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return []
    points: list[tuple[float, float]] = []
    for line in text.splitlines():
        fields = line.split()
        try:
            value, percentile = float(fields[0]), float(fields[1])
        except (IndexError, ValueError):
            continue
        if not (0 <= percentile < 1 and math.isfinite(value) and value > 0):
            continue
        x = 1 / (1 - percentile)
        if not points or math.log10(x) - math.log10(points[-1][0]) >= 0.05:
            points.append((x, value))
    return points


def _latency_curves(cohort: Cohort) -> Chart | None:
    colours, series, objective = _colours(cohort), [], None
    for row in cohort.rows:
        for c in row.result.criteria:
            rel = next((p for p in row.result.artifacts.values()
                        if p == f"artifacts/{c.name}/latency.hgrm"), None)
            path = inside(row.folder, rel) if rel else None  # result.json's names are not trusted
            points = read_hgrm(path) if path else []
            if points:
                series.append(Series(_label(row), colours[row.result.submission_id], points))
                objective = objective or _number(c.spec.get("full"))
    if not series:
        return None
    ys = [y for s in series for _, y in s.points] + ([objective] if objective else [])
    x = Axis(1.0, 1e4, "percentile (log scale of 1/(1-p))", log=True,
             ticks=[(1 / (1 - p / 100), label) for p, label in _PERCENTILES])
    y = _log_axis(ys, "latency (ms)")
    lines = [(objective, f"full marks at {objective:g} ms")] if objective else []
    return Chart("Latency by percentile", line_chart(series, x, y, "Latency by percentile, all candidates",
                                                     lines),
                 "Open-loop latency from each candidate's latency run (coordinated omission corrected).")


def _capacity_curves(cohort: Cohort) -> Chart | None:
    colours, series, objective = _colours(cohort), [], None
    for row in cohort.rows:
        for c in row.result.criteria:
            steps = [s for s in c.details.get("steps", []) if isinstance(s, dict)] \
                if isinstance(c.details.get("steps"), list) else []
            shown = sorted((s for s in steps if _number(s.get("rate")) and _number(s.get("p99_ms"))),
                           key=lambda s: s["rate"])
            if shown:
                series.append(Series(_label(row), colours[row.result.submission_id],
                                     [(float(s["rate"]), float(s["p99_ms"])) for s in shown],
                                     [not s.get("ok") for s in shown]))
                objective = objective or _number(c.spec.get("objective_ms"))
    if not series:
        return None
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points] + ([objective] if objective else [])
    x, y = _log_axis(xs, "offered rate (requests/s)"), _log_axis(ys, "p99 latency (ms)")
    lines = [(objective, f"objective {objective:g} ms")] if objective else []
    return Chart("Capacity", line_chart(series, x, y, "p99 against offered rate, all candidates", lines),
                 "Each point is a step of a candidate's capacity search; hollow points missed the objective "
                 "or erred.")


def _label(row: CohortRow) -> str:
    """A curve's name: the candidate's, saying so when the result has no total (e.g. measured on a
    busy machine: drawn, but not to be compared)."""
    return row.result.candidate + (" (ungraded)" if row.rank is None else "")


def _log_axis(values: list[float], label: str) -> Axis:
    low, high = min(values) * 0.8, max(values) * 1.25
    return Axis(low, high, label, log=True, ticks=log_ticks(low, high))


def _number(value: object) -> float | None:
    """`value` if it is a positive finite number (a rate, a latency), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value) if value > 0 else None
