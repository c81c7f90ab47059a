"""The A/A study's statistics (bench/aa_stats.py) on numbers worked out by hand. No Docker, no timing."""

from __future__ import annotations

import math

import pytest

from bench.aa_stats import (
    false_alarm_rate,
    false_alarms,
    outside_band,
    parse_grade,
    sample_sd,
    silently_low,
    spread,
    summarise,
)


def _line(status="ok", total=96.8, latency_score=1.0, **extra_by_criterion):
    """A `harness grade --json` line (results.SubmissionResult.summary_line's shape)."""
    criteria = {"latency": {"score": latency_score, "weight": 2}, "capacity": {"score": 0.5, "weight": 1.5},
                "correctness": {"score": 1.0, "weight": 3}}
    for name, extra in extra_by_criterion.items():
        criteria[name].update(extra)
    return {"status": status, "total_score": total, "message": "", "reason": "", "criteria": criteria}


def test_spread_and_sample_sd():
    assert spread([96.8, 65.0, 95.2]) == pytest.approx(31.8)  # the two grades of `fast`, and one more
    assert spread([]) is None
    # 2,4,4,4,5,5,7,9: mean 5, squared deviations 9+1+1+1+0+0+4+16 = 32, over n - 1 = 7: sqrt(32/7)
    assert sample_sd([2, 4, 4, 4, 5, 5, 7, 9]) == pytest.approx(math.sqrt(32 / 7))
    assert sample_sd([96.8]) is None


def test_false_alarms_count_every_pair_more_than_five_apart():
    # pairs of 90, 94, 96, 100: differences 4, 6, 10, 2, 6, 4 -> three over 5, of six
    assert false_alarms([90, 94, 96, 100]) == (3, 6)
    assert false_alarm_rate([90, 94, 96, 100]) == pytest.approx(0.5)
    assert false_alarms([90, 95]) == (0, 1)  # exactly 5 apart is no alarm
    assert false_alarm_rate([90]) is None


def test_silently_low_is_more_than_three_below_the_idle_median():
    totals = [96.0, 92.9, 93.0, 65.0, 99.5]
    assert silently_low(totals, idle_median=96.0) == 2  # 92.9 and 65.0; 93.0 is exactly 3 below
    assert outside_band(totals, idle_median=96.0) == 3  # and 99.5, 3.5 above


def test_a_grade_is_flagged_by_status_reason_or_an_ungraded_load_criterion():
    assert parse_grade(_line()).scored
    assert parse_grade(_line(status="machine_busy", total=None)).flagged
    assert parse_grade({**_line(), "reason": "machine busy: reference p99 4.1 ms vs 0.9 ms expected"}).flagged
    ungraded = parse_grade(_line(latency={"ungraded": "machine busy: run queue 3.2"}))
    assert ungraded.flagged and not ungraded.scored and "latency" in ungraded.reason
    stored = {"criteria": [{"name": "capacity", "ungraded": "machine busy: steal 12%"}]}
    assert parse_grade(_line(), stored=stored).flagged  # the field only in result.json still counts
    assert not parse_grade(_line(correctness={"ungraded": "not a load criterion"})).flagged
    assert not parse_grade(_line(latency={"ungraded": ""})).flagged


def test_summary_leaves_flagged_and_failed_grades_out_of_the_figures():
    grades = [parse_grade(_line(total=t, latency_score=lat), seconds=s)
              for t, lat, s in ((96.0, 1.0, 100), (94.0, 0.9, 110), (88.0, 0.5, 90))]
    grades.append(parse_grade(_line(status="machine_busy", total=None), seconds=120))
    grades.append(parse_grade(_line(status="infra_error", total=None), seconds=5))
    summary = summarise(grades)
    assert (summary.grades, summary.scored, summary.flagged, summary.failed) == (5, 3, 1, 1)
    median, low, high, spread_, sd = summary.columns["total"]
    # 96, 94, 88: median 94, spread 8, mean 92.67, squared deviations 11.11+1.78+21.78 = 34.67 over 2
    assert (median, low, high, spread_) == (94.0, 88.0, 96.0, 8.0)
    assert sd == pytest.approx(math.sqrt(34.6667 / 2), rel=1e-4)
    assert summary.columns["latency"][:4] == (90.0, 50.0, 100.0, 50.0)  # scores shown of 100
    assert summary.false_alarms == (2, 3)  # 96-88 and 94-88 are over 5 apart; 96-94 is not
    assert summary.seconds_median == 100  # of every grade, flagged and failed included


def test_the_p99_and_capacity_behind_the_scores_are_summarised_too():
    lines = [_line(latency={"metrics": {"p99_ms": p99}}, capacity={"metrics": {"capacity_rps": rps}})
             for p99, rps in ((2.5, 1600.0), (313.0, 32.0), (3.1, 1131.4))]
    columns = summarise([parse_grade(line) for line in lines]).columns
    assert columns["p99 (ms)"][:4] == (3.1, 2.5, 313.0, 310.5)
    assert columns["capacity (req/s)"][:4] == (1131.4, 32.0, 1600.0, 1568.0)
