"""The abtest example submissions and starter kit, run on the host (no Docker) on generated data.

Each example script runs with the host's Python on the public data set and on the hidden `srm`
run (a planted sample-ratio mismatch with a spurious win, the run where the examples differ
most). The answers are checked against the assignment's JSON Schema, and the good script's
numbers against the harness's reference statistics in graders/abtest/stats.py, which
tests/test_abstats.py checks against independent references (Evan Miller's calculator,
statsmodels, scipy). The notebooks run through nbclient with a parameters cell injected after
the one tagged `parameters`, as the harness does; the Docker end-to-end run is tested elsewhere.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from jsonschema import Draft202012Validator

from graders.abtest import stats as ref
from sandbox import RUNNERS_DIR
from tests.abtest_runs import materialize_runs, run_folder

ASSIGNMENT = Path(__file__).resolve().parents[1] / "assignments" / "abtest"
EXAMPLES = ASSIGNMENT / "examples"
SCHEMA = json.loads((ASSIGNMENT / "starter" / "answers.schema.json").read_text())
SECRET = 187064296731940711207012596233930876514  # drawn once with secrets.randbits(128)
RUNS = ("public", "srm")
Answers = dict[str, Any]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return materialize_runs(tmp_path_factory.mktemp("abtest-data"), SECRET)


def _files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def run_script(folder: Path, data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    """Run `analyze.py` as the harness does, from its own folder, which it must leave untouched."""
    before = _files(folder)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # the sandbox's repository is read-only
    command = [sys.executable, "analyze.py", "--data-dir", str(data_dir), "--output-dir", str(out)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True, timeout=120)
    assert _files(folder) == before, "the script wrote into its own folder"
    return done


def run_notebook(path: Path, data_dir: Path, out: Path) -> subprocess.CompletedProcess:
    """Execute a notebook with the harness's own runner (sandbox/runners/run.py), as a stage does."""
    out.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, str(RUNNERS_DIR / "run.py"), "--param", f"data_dir={data_dir}",
               "--param", f"output_dir={out}", "--executed", str(out / "executed.ipynb"), path.name]
    return subprocess.run(command, cwd=path.parent, capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def script_answers(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[str, str], Answers]:
    """answers.json of an example script on a run, each pair run once per module."""
    root = tmp_path_factory.mktemp("abtest-out")

    @functools.cache
    def answers(example: str, run: str) -> Answers:
        out = root / example / run
        done = run_script(EXAMPLES / example, run_folder(data, run), out)
        assert done.returncode == 0, done.stderr[-2000:]
        return json.loads((out / "answers.json").read_text())

    return answers


def _schema_errors(answers: Answers) -> list[str]:
    errors = Draft202012Validator(SCHEMA).iter_errors(answers)
    return [f"{list(e.absolute_path)}: {e.message}" for e in errors]


def _numbers(value: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf) for every leaf of an answers document; list items as path[i]."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")
    else:
        yield path, value


def _reference(folder: Path) -> dict[str, Any]:
    """The harness's reference statistics for one run, from the files the submission saw."""
    log = pd.read_csv(folder / "experiment.csv")
    d = json.loads((folder / "design.json").read_text())
    t = (log["variant"] == "treatment").to_numpy()
    conv, y, x = (log[c].to_numpy(float) for c in ("converted", "revenue", "pre_metric"))
    common = {"alpha": d["alpha"], "power": d["power"], "two_sided": d["two_sided"]}
    n_conv = ref.sample_size_two_proportions(baseline=d["baseline_conversion"], mde=d["mde_relative"],
                                             relative=True, **common)
    delta = d["mde_relative"] * d["baseline_revenue_per_user"]
    n_rev = ref.sample_size_continuous(std=d["revenue_std"], mde=delta, **common)
    days = functools.partial(ref.runtime_days, arms=d["arms"], daily_traffic=d["daily_traffic_eligible"],
                             allocation=d["allocation"])
    return {
        "design": {"conversion": (n_conv, days(per_arm=n_conv)), "revenue": (n_rev, days(per_arm=n_rev))},
        "conversion": ref.two_proportion_test(int(conv[~t].sum()), int((~t).sum()),
                                              int(conv[t].sum()), int(t.sum())),
        "revenue": ref.welch_test(y[~t], y[t]),
        "cuped": ref.cuped(y, x, t.astype(int)),
        "srm": ref.srm_test([int((~t).sum()), int(t.sum())], [1, 1]),
    }


def _rule(conversion_ci: list[float], cuped_ci: list[float]) -> str:
    """The brief's decision rule without its SRM step."""
    if conversion_ci[0] > 0 and cuped_ci[1] >= 0:
        return "ship"
    return "dont_ship" if conversion_ci[1] < 0 else "inconclusive"


@pytest.mark.parametrize("run", RUNS)
@pytest.mark.parametrize("example", ["good_script", "classic_mistakes", "hardcoded"])
def test_script_answers_are_schema_valid(script_answers, example: str, run: str) -> None:
    assert _schema_errors(script_answers(example, run)) == []


@pytest.mark.parametrize("run", RUNS)
def test_good_script_matches_the_reference_statistics(data: Path, script_answers, run: str) -> None:
    got, want = script_answers("good_script", run), _reference(run_folder(data, run))
    for metric in ("conversion", "revenue"):
        n, days = want["design"][metric]
        assert got["design"][metric] == {"sample_size_per_arm": n, "duration_days": days}
    close = functools.partial(pytest.approx, rel=1e-9)
    for field, r in (("conversion", want["conversion"]), ("revenue", want["revenue"])):
        a = got["analysis"][field]
        assert a["lift_abs"] == pytest.approx(r.diff, abs=1e-9)
        assert a["lift_rel"] == pytest.approx(r.relative_lift, abs=1e-9)
        assert a["p_value"] == pytest.approx(r.p_value, rel=1e-6)
        assert a["ci_abs"] == close([r.ci.low, r.ci.high])
        assert a["ci_rel"] == close([r.relative_ci.low, r.relative_ci.high])
    cuped, adjusted = got["analysis"]["revenue_cuped"], want["cuped"].adjusted
    assert cuped["lift_abs"] == pytest.approx(adjusted.diff, abs=1e-9)
    assert cuped["p_value"] == pytest.approx(adjusted.p_value, rel=1e-6)
    assert cuped["ci_abs"] == close([adjusted.ci.low, adjusted.ci.high])
    assert cuped["theta"] == pytest.approx(want["cuped"].theta, rel=1e-9)
    srm = want["srm"]
    assert got["srm"]["detected"] is srm.flagged
    assert got["srm"]["p_value"] == pytest.approx(srm.p_value, rel=1e-6)
    conversion_ci = [want["conversion"].ci.low, want["conversion"].ci.high]
    rule = _rule(conversion_ci, [adjusted.ci.low, adjusted.ci.high])
    assert got["decision"] == ("inconclusive" if srm.flagged else rule)


def test_broken_split_is_flagged_on_the_srm_run_only(script_answers) -> None:
    # the data set plants a mismatch only in `srm`; the good script must tell them apart
    assert [script_answers("good_script", run)["srm"]["detected"] for run in RUNS] == [False, True]


@pytest.mark.parametrize("run", RUNS)
def test_no_srm_lacks_exactly_the_srm_answer(script_answers, run: str) -> None:
    answers = script_answers("no_srm", run)
    assert _schema_errors(answers) == ["[]: 'srm' is a required property"]
    got = dict(_numbers(answers["analysis"]))  # the statistics themselves are sound
    for path, value in _numbers(script_answers("good_script", run)["analysis"]):
        assert got[path] == pytest.approx(value, rel=1e-6, abs=1e-12), path


def test_no_srm_ships_the_spurious_win_of_a_broken_split(script_answers) -> None:
    answers, good = script_answers("no_srm", "srm"), script_answers("good_script", "srm")
    conv, cuped = good["analysis"]["conversion"]["ci_abs"], good["analysis"]["revenue_cuped"]["ci_abs"]
    assert conv[0] > 0, "this secret's srm run should show a spurious conversion win"
    assert good["decision"] == "inconclusive"
    assert answers["decision"] == _rule(conv, cuped) == "ship"


def test_hardcoded_writes_the_same_public_answers_everywhere(script_answers) -> None:
    public, hidden = script_answers("hardcoded", "public"), script_answers("hardcoded", "srm")
    assert public == hidden
    good = dict(_numbers(script_answers("good_script", "public")))
    for path, value in _numbers(public):
        want = pytest.approx(good[path], rel=1e-9) if isinstance(value, float) else good[path]
        assert value == want, path


def test_classic_mistakes_uses_one_sided_sizes_and_narrower_intervals(script_answers) -> None:
    mistakes, good = script_answers("classic_mistakes", "public"), script_answers("good_script", "public")
    for metric in ("conversion", "revenue"):
        assert (mistakes["design"][metric]["sample_size_per_arm"]
                < 0.95 * good["design"][metric]["sample_size_per_arm"])
    for metric in ("conversion", "revenue"):
        (low, high), (good_low, good_high) = (a["analysis"][metric]["ci_abs"] for a in (mistakes, good))
        assert high - low < 0.9 * (good_high - good_low)  # z = 1.645 instead of 1.96


def test_starter_script_stops_at_its_first_todo(data: Path, tmp_path: Path) -> None:
    done = run_script(ASSIGNMENT / "starter", data / "public", tmp_path)
    assert done.returncode != 0 and "NotImplementedError" in done.stderr
    assert not (tmp_path / "answers.json").exists()


@pytest.mark.slow
@pytest.mark.parametrize("run", RUNS)
def test_good_notebook_agrees_with_good_script(data: Path, script_answers, tmp_path: Path, run: str) -> None:
    done = run_notebook(EXAMPLES / "good_notebook" / "analysis.ipynb", run_folder(data, run), tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    answers = json.loads((tmp_path / "answers.json").read_text())
    assert _schema_errors(answers) == []
    script = dict(_numbers(script_answers("good_script", run)))
    notebook = dict(_numbers(answers))
    assert notebook.keys() == script.keys()
    for path, value in script.items():
        if isinstance(value, float):
            assert notebook[path] == pytest.approx(value, rel=1e-6, abs=1e-12), path
        else:
            assert notebook[path] == value, path


@pytest.mark.slow
@pytest.mark.parametrize("notebook, error",
                         [("examples/raises", "KeyError"), ("starter", "NotImplementedError")])
def test_failing_notebooks_raise_before_writing_answers(data: Path, tmp_path: Path, notebook: str,
                                                        error: str) -> None:
    done = run_notebook(ASSIGNMENT / notebook / "analysis.ipynb", data / "public", tmp_path)
    assert done.returncode == 1 and error in done.stderr
    assert (tmp_path / "executed.ipynb").is_file()  # executed up to the error, for the reviewer
    assert not (tmp_path / "answers.json").exists()
