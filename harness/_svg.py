"""Small inline-SVG charts for the HTML reports: strips of dots, intervals side by side, lines.

Self-contained on purpose (no plotting library, no fonts, no scripts): the pages must open
offline from a copied folder. Every mark a candidate owns is one `<g class="mark">` holding a
`<title>` (the browser's tooltip), so a reader can hover and a test can count. Text passes
through `esc`; numbers are formatted here, never taken as text from a result.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from harness._escape import esc

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf")
_WIDTH = 720
_LEFT = 170  # room for row labels
_RIGHT = 20
_TOP = 30
_ROW = 26
_FONT = 'font-family="sans-serif" font-size="11"'


def colour(index: int) -> str:
    """The colour of the candidate ranked `index` (from 0), the same in every chart of a page."""
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Axis:
    low: float
    high: float
    label: str
    log: bool = False
    ticks: Sequence[tuple[float, str]] = ()  # (value, label); empty: five even ticks

    def at(self, value: float, start: float, end: float) -> float:
        """The pixel of `value` between `start` (low) and `end` (high), clamped."""
        low, high, v = self.low, self.high, min(max(value, self.low), self.high)
        if self.log:
            low, high, v = math.log10(low), math.log10(high), math.log10(v)
        share = 0.5 if high == low else (v - low) / (high - low)
        return start + share * (end - start)

    def tick_marks(self) -> Sequence[tuple[float, str]]:
        if self.ticks:
            return [(v, t) for v, t in self.ticks if self.low <= v <= self.high]
        return nice_ticks(self.low, self.high)


def nice_ticks(low: float, high: float, count: int = 5) -> list[tuple[float, str]]:
    """About `count` ticks at round values (steps of 1, 2 or 5 times a power of ten)."""
    if not high > low:
        return [(low, f"{low:.3g}")]
    raw = (high - low) / count
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    decimals = max(0, -math.floor(math.log10(step)))
    first = math.ceil(low / step)
    return [(n * step, f"{n * step:.{decimals}f}") for n in range(first, math.floor(high / step) + 1)]


@dataclass(frozen=True)
class Dot:
    name: str
    colour: str
    value: float
    note: str = ""  # added to the tooltip


@dataclass(frozen=True)
class Interval:
    name: str
    colour: str
    value: float
    low: float | None
    high: float | None


@dataclass(frozen=True)
class Series:
    name: str
    colour: str
    points: Sequence[tuple[float, float]]
    failed: Sequence[bool] = field(default_factory=tuple)  # per point: drawn hollow (e.g. a failed step)


def _open(height: float, title: str) -> str:
    return (f'<svg role="img" width="{_WIDTH}" height="{height:.0f}" '
            f'viewBox="0 0 {_WIDTH} {height:.0f}" {_FONT}><title>{esc(title, 200)}</title>'
            f'<text x="{_LEFT}" y="16" font-size="13" font-weight="bold">{esc(title, 120)}</text>')


def _x_axis(axis: Axis, top: float, bottom: float) -> str:
    parts = [f'<line x1="{_LEFT}" y1="{bottom:.1f}" x2="{_WIDTH - _RIGHT}" y2="{bottom:.1f}" stroke="#444"/>']
    for value, label in axis.tick_marks():
        x = axis.at(value, _LEFT, _WIDTH - _RIGHT)
        parts.append(f'<line x1="{x:.1f}" y1="{top:.1f}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{bottom + 14:.1f}" text-anchor="middle">{esc(label, 20)}</text>')
    middle = (_LEFT + _WIDTH - _RIGHT) / 2
    parts.append(f'<text x="{middle:.1f}" y="{bottom + 30:.1f}" text-anchor="middle">'
                 f'{esc(axis.label, 100)}</text>')
    return "".join(parts)


def _mark(title: str, body: str) -> str:
    return f'<g class="mark"><title>{esc(title, 300)}</title>{body}</g>'


def strip_chart(rows: Sequence[tuple[str, Sequence[Dot]]], axis: Axis, title: str) -> str:
    """One row per label (a criterion), one dot per candidate along `axis`; equal values are
    spread vertically so no dot hides another."""
    bottom = _TOP + _ROW * len(rows)
    parts = [_open(bottom + 40, title), _x_axis(axis, _TOP, bottom)]
    for row, (label, dots) in enumerate(rows):
        centre = _TOP + _ROW * row + _ROW / 2
        parts.append(f'<text x="{_LEFT - 6}" y="{centre + 4:.1f}" text-anchor="end">{esc(label, 28)}</text>'
                     f'<line x1="{_LEFT}" y1="{centre:.1f}" x2="{_WIDTH - _RIGHT}" y2="{centre:.1f}" '
                     'stroke="#f0f0f0"/>')
        seen: dict[float, int] = {}
        for dot in dots:
            x = axis.at(dot.value, _LEFT, _WIDTH - _RIGHT)
            n = seen.setdefault(round(x), 0)
            seen[round(x)] = n + 1
            y = centre + (n + 1) // 2 * 4 * (-1 if n % 2 else 1)  # 0, +4, -4, +8, ...
            note = f" ({dot.note})" if dot.note else ""
            parts.append(_mark(f"{dot.name}: {dot.value:.3f}{note}",
                               f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{dot.colour}" '
                               'fill-opacity="0.8" stroke="#222" stroke-width="0.5"/>'))
    return "".join(parts) + "</svg>"


def interval_chart(items: Sequence[Interval], axis: Axis, title: str,
                   reference: tuple[float, str] | None = None) -> str:
    """One row per candidate: the value as a dot and its interval as a bar, on a shared axis;
    `reference` (value, label) is drawn as a dashed line across the rows."""
    bottom = _TOP + _ROW * len(items)
    parts = [_open(bottom + 40, title), _x_axis(axis, _TOP, bottom)]
    if reference is not None and axis.low <= reference[0] <= axis.high:
        x = axis.at(reference[0], _LEFT, _WIDTH - _RIGHT)
        parts.append(f'<line x1="{x:.1f}" y1="{_TOP}" x2="{x:.1f}" y2="{bottom:.1f}" stroke="#888" '
                     f'stroke-dasharray="4 3"/><text x="{x + 3:.1f}" y="{_TOP - 2}" fill="#555">'
                     f'{esc(reference[1], 60)}</text>')
    for row, item in enumerate(items):
        y = _TOP + _ROW * row + _ROW / 2
        x = axis.at(item.value, _LEFT, _WIDTH - _RIGHT)
        parts.append(f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(item.name, 28)}</text>')
        bar, span = "", ""
        if item.low is not None and item.high is not None:
            x1, x2 = axis.at(item.low, _LEFT, _WIDTH - _RIGHT), axis.at(item.high, _LEFT, _WIDTH - _RIGHT)
            bar = (f'<line x1="{x1:.1f}" y1="{y:.1f}" x2="{x2:.1f}" y2="{y:.1f}" stroke="{item.colour}" '
                   'stroke-width="4" stroke-opacity="0.45"/>')
            span = f" (95% CI {item.low:.3f} to {item.high:.3f})"
        off = "" if axis.low <= item.value <= axis.high else (
            f'<text x="{x + (10 if item.value < axis.low else -10):.1f}" y="{y + 4:.1f}" fill="#555" '
            f'text-anchor="{"start" if item.value < axis.low else "end"}">off scale: {item.value:.3f}</text>')
        fill = item.colour if not off else "white"
        parts.append(_mark(f"{item.name}: {item.value:.3f}{span}",
                           f'{bar}<circle cx="{x:.1f}" cy="{y:.1f}" r="4.5" fill="{fill}" '
                           f'stroke="{item.colour if off else "#222"}" stroke-width="1"/>{off}'))
    return "".join(parts) + "</svg>"


def line_chart(series: Sequence[Series], x_axis: Axis, y_axis: Axis, title: str,
               lines: Sequence[tuple[float, str]] = ()) -> str:
    """Candidates' curves overlaid, with a legend; `lines` are horizontal references (objectives)."""
    height = 300 + 16 * ((len(series) + 2) // 3)
    top, bottom = _TOP, 260
    parts = [_open(height, title), _x_axis(x_axis, top, bottom)]
    parts += _y_axis(y_axis, top, bottom)
    for value, label in lines:
        y = y_axis.at(value, bottom, top)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="red" '
                     f'stroke-dasharray="5 3"/><text x="{_WIDTH - _RIGHT}" y="{y - 3:.1f}" fill="red" '
                     f'text-anchor="end">{esc(label, 60)}</text>')
    for n, s in enumerate(series):
        pts = [(x_axis.at(x, _LEFT, _WIDTH - _RIGHT), y_axis.at(y, bottom, top)) for x, y in s.points]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)
        hollow = [*s.failed, *[False] * len(pts)]
        dots = "".join(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" stroke="{s.colour}" '
                       f'fill="{"white" if hollow[i] else s.colour}"/>' for i, (x, y) in enumerate(pts))
        legend_x, legend_y = _LEFT + 180 * (n % 3), bottom + 50 + 16 * (n // 3)
        parts.append(_mark(s.name, f'<polyline points="{path}" fill="none" stroke="{s.colour}" '
                                   f'stroke-width="1.8"/>{dots}<rect x="{legend_x}" y="{legend_y - 9}" '
                                   f'width="10" height="10" fill="{s.colour}"/><text x="{legend_x + 14}" '
                                   f'y="{legend_y}">{esc(s.name, 26)}</text>'))
    return "".join(parts) + "</svg>"


def _y_axis(axis: Axis, top: float, bottom: float) -> list[str]:
    parts = [f'<line x1="{_LEFT}" y1="{top}" x2="{_LEFT}" y2="{bottom}" stroke="#444"/>']
    for value, label in axis.tick_marks():
        y = axis.at(value, bottom, top)
        parts.append(f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_WIDTH - _RIGHT}" y2="{y:.1f}" stroke="#eee"/>'
                     f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{esc(label, 20)}</text>')
    middle = (top + bottom) / 2
    parts.append(f'<text x="{_LEFT - 50}" y="{middle:.1f}" text-anchor="middle" '
                 f'transform="rotate(-90 {_LEFT - 50} {middle:.1f})">{esc(axis.label, 60)}</text>')
    return parts


def log_ticks(low: float, high: float, unit: str = "") -> list[tuple[float, str]]:
    """1, 2, 5 per decade between `low` and `high` (both > 0)."""
    ticks = []
    for power in range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1):
        for m in (1, 2, 5):
            value = m * 10.0 ** power
            if low <= value <= high:
                ticks.append((value, f"{value:g}{unit}"))
    return ticks
