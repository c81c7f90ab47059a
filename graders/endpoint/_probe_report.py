"""probe.json, the endpoint probe's findings, read back on the host: bounded, validated, typed.

The probe (sandbox/runners/probe.py) is harness code, but it ran next to a hostile server and
its file crossed the sandbox boundary, so it is parsed like any other output: a size cap, strict
JSON (no NaN), a schema with bounds. A file that fails any of it is reported, never raised.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from harness.core.grading import OutputFile
from harness.core.text import one_line

MAX_BYTES = 32 << 20
_Ms = Annotated[float, Field(ge=0, le=3_600_000)]
_Text = Annotated[str, Field(max_length=2000)]
#: a 95% interval in ms; an end is None where the probe wrote null (unbounded, or nothing answered)
_Interval = tuple[_Ms | None, _Ms | None]
#: [start, end] in time.monotonic() seconds (CLOCK_MONOTONIC: the host's clock too)
_Window = tuple[Annotated[float, Field(ge=0)], Annotated[float, Field(ge=0)]]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ManifestCheck(_Model):
    port: int | None = None
    problem: _Text = ""


class ColdStart(_Model):
    healthy: bool
    seconds: float | None = Field(None, ge=0, le=86_400)
    attempts: int = Field(0, ge=0)
    problem: _Text = ""
    exited: bool = False  # the server exited before it answered


class Prediction(_Model):
    label: int
    probabilities: list[float] = Field(max_length=1000)


class Correctness(_Model):
    sent: int = Field(ge=0)
    answered: int = Field(0, ge=0)
    predictions: list[Prediction | None] = Field(default_factory=list, max_length=100_000)
    problems: list[_Text] = Field(default_factory=list, max_length=10_000)


class RobustnessCase(_Model):
    case: Annotated[str, Field(max_length=100)]
    expected: _Text = "4xx"
    status: int | None = None
    json_body: bool | None = None
    ms: _Ms | None = None
    healthy_after: bool | None = None
    passed: bool
    problem: _Text = ""


class Latency(_Model):
    rate: float = Field(ge=0)
    duration_s: float = Field(ge=0)
    scheduled: int = Field(ge=0)
    completed: int = Field(ge=0)
    errors: int = Field(ge=0)
    timeouts: int = Field(ge=0)
    p50_ms: _Ms | None = None
    p90_ms: _Ms | None = None
    p99_ms: _Ms | None = None
    p999_ms: _Ms | None = None
    max_ms: _Ms | None = None
    achieved_rate: float = Field(0, ge=0)
    histogram: Annotated[str, Field(max_length=4 << 20)] = ""
    p99_ci_ms: _Interval | None = None  # 95% block-bootstrap interval of p99
    window: _Window | None = None  # the measured part of the run

    @property
    def error_rate(self) -> float:
        return (self.errors + self.timeouts) / self.scheduled if self.scheduled else 1.0


class CapacityStep(_Model):
    rate: float = Field(ge=0)
    phase: Annotated[str, Field(max_length=20)] = "capacity"  # "latency": the latency run, as a step
    p50_ms: _Ms | None = None
    p99_ms: _Ms | None = None
    p99_ci_ms: _Interval | None = None
    error_rate: float = Field(ge=0, le=1)
    achieved_rate: float = Field(0, ge=0)
    duration_s: float | None = Field(None, ge=0)  # measured seconds (fewer when it stopped early)
    stopped: Annotated[str, Field(max_length=20)] = ""  # "pass"/"fail": its interval excluded the objective
    window: _Window | None = None
    ok: bool


class Capacity(_Model):
    capacity_rps: float | None = Field(None, ge=0)
    capacity_low_rps: float | None = Field(None, ge=0)  # the bracket: the highest rate that passed...
    capacity_high_rps: float | None = Field(None, ge=0)  # ...and the lowest above it that failed (None: none)
    capped: bool = False
    cut_short: bool = False  # the probe's time budget ended the search
    steps: list[CapacityStep] = Field(default_factory=list, max_length=1000)


class LoadSample(_Model):
    """One load-phase answer the probe kept: which load input it was for, and what came back."""

    input: int = Field(ge=0, le=10_000_000)
    phase: Annotated[str, Field(max_length=20)]
    rate: float = Field(0, ge=0)
    status: int | None = None
    prediction: Prediction | None = None
    problem: _Text = ""


class LoadCheck(_Model):
    pool: int = Field(ge=0)
    distinct: bool = False  # the load inputs are not the correctness inputs
    requests: int = Field(0, ge=0)
    reused: bool = False  # more load requests than load inputs: some were sent twice
    samples: list[LoadSample] = Field(default_factory=list, max_length=10_000)


class Settings(_Model):
    timeout: float | None = Field(None, ge=0)  # seconds per load request


class ProbeReport(_Model):
    version: int = 1
    manifest: ManifestCheck = ManifestCheck()
    cold_start: ColdStart | None = None
    correctness: Correctness | None = None
    robustness: list[RobustnessCase] = Field(default_factory=list, max_length=1000)
    latency: Latency | None = None
    capacity: Capacity | None = None
    load_check: LoadCheck | None = None
    skipped: list[_Text] = Field(default_factory=list, max_length=100)
    settings: Settings = Settings()
    service_exited_s: float | None = Field(None, ge=0, le=86_400)  # from its start to the word it exited
    phases: dict[Annotated[str, Field(max_length=20)], _Window] = Field(default_factory=dict, max_length=20)


@dataclass(frozen=True)
class ProbeRead:
    report: ProbeReport | None
    problem: str = ""  # why there is no report


def _nan_to_none(value: str) -> None:
    return None  # the probe writes NaN percentiles as null; a bare NaN token is read as "unknown"


def read_probe_report(output: OutputFile | None) -> ProbeRead:
    """Parse the probe's output file; a missing or malformed one becomes a ProbeRead.problem."""
    if output is None or output.path is None:
        return ProbeRead(None, output.problem if output else "the probe wrote no report")
    try:
        raw = _read(output.path)
        data = json.loads(raw, parse_constant=_nan_to_none)
        return ProbeRead(ProbeReport.model_validate(data))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return ProbeRead(None, f"probe report unusable: {one_line(str(exc), 300)}")
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return ProbeRead(None, f"probe report unusable: {where}: {one_line(first['msg'], 200)}")


def _read(path: Path) -> str:
    with path.open("rb") as handle:
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise ValueError(f"larger than {MAX_BYTES} bytes")
    return data.decode("utf-8")


def finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
