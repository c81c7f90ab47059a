"""Reviewer artifacts for the endpoint graders: the latency distribution and the capacity curve."""

from __future__ import annotations

import math
from pathlib import Path

from graders.endpoint._probe_report import Capacity


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def decode_histogram(encoded: str):
    """The probe's base64 HdrHistogram (microseconds); ValueError if it does not decode."""
    from hdrh.histogram import HdrHistogram

    try:
        return HdrHistogram.decode(encoded.encode("ascii"))
    except Exception as exc:  # noqa: BLE001 - hdrh raises assorted errors on bad input
        raise ValueError(f"latency histogram does not decode: {type(exc).__name__}") from None


def write_histogram_files(histogram, folder: Path) -> list[str]:
    """latency.hgrm (percentile distribution, ms) and latency.hdr (base64): the raw measurement."""
    with (folder / "latency.hgrm").open("wb") as handle:
        histogram.output_percentile_distribution(handle, 1000.0)  # microseconds -> milliseconds
    (folder / "latency.hdr").write_bytes(histogram.encode())
    return ["latency.hgrm", "latency.hdr"]


def plot_latency(histogram, folder: Path, *, objective_ms: float, rate: float) -> str:
    """Latency by percentile on the usual HdrHistogram axis (1/(1-p), log), with the objective."""
    plt = _pyplot()
    percentiles = [50, 75, 90, 95, 99, 99.5, 99.9, 99.95, 99.99]
    values = [histogram.get_value_at_percentile(p) / 1000 for p in percentiles]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot([1 / (1 - p / 100) for p in percentiles], values, marker="o", label="latency")
    ax.axhline(objective_ms, color="red", linestyle="--", label=f"objective {objective_ms:g} ms")
    ax.set_xscale("log")
    ax.set_xticks([1 / (1 - p / 100) for p in percentiles], [f"p{p:g}" for p in percentiles], rotation=45)
    ax.set_ylabel("latency from the scheduled send (ms)")
    ax.set_title(f"Open-loop latency at {rate:g} requests/s (coordinated omission corrected)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "latency.png", dpi=100)
    plt.close(fig)
    return "latency.png"


def _positive(value: float | None) -> float:
    """A value a log axis can show, else NaN (a gap in the line)."""
    return value if value is not None and math.isfinite(value) and value > 0 else math.nan


def plot_capacity(capacity: Capacity, folder: Path, *, objective_ms: float) -> str | None:
    """p50 and p99 (with its 95% interval) against the offered rate, each step marked pass or fail,
    and the capacity; None (no plot) when no step has a latency to show (no request was answered
    at any rate)."""
    steps = sorted((s for s in capacity.steps if s.rate > 0), key=lambda s: s.rate)
    shown = [s for s in steps if not math.isnan(_positive(s.p99_ms))]
    if not shown:
        return None
    plt = _pyplot()
    rates = [s.rate for s in steps]
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, values in (("p50", [s.p50_ms for s in steps]), ("p99", [s.p99_ms for s in steps])):
        ax.plot(rates, [_positive(v) for v in values], marker="o", label=name)
    for step in shown:  # the p99's 95% interval, where the probe measured one
        low, high = step.p99_ci_ms or (None, None)
        if _positive(low) <= _positive(step.p99_ms) <= _positive(high):  # shown: p99 is positive
            ax.vlines(step.rate, low, high, color="tab:orange", alpha=0.5, linewidth=3)
    for step in shown:
        ax.annotate("ok" if step.ok else "fail", (step.rate, step.p99_ms), fontsize=7,
                    textcoords="offset points", xytext=(0, 6), ha="center")
    ax.axhline(objective_ms, color="red", linestyle="--", label=f"objective {objective_ms:g} ms")
    if capacity.capacity_rps:
        ax.axvline(capacity.capacity_rps, color="green", linestyle=":",
                   label=f"capacity {capacity.capacity_rps:g}/s")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("offered rate (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_title("Throughput and latency (capacity search)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(folder / "capacity.png", dpi=100)
    plt.close(fig)
    return "capacity.png"
