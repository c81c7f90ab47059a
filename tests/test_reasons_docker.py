"""Failure reasons end to end (issue 11): an A/B notebook that fails in cell 7, graded by the real
CLI in Docker with a real MLflow store. The reason is in result.json, the `--json` line, the first
lines of report.md and the MLflow run's `reason` tag, read back through MLflow's client."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.conftest import REPO, run_cli
from tests.test_e2e_docker import json_lines, mlflow_runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NOTEBOOK = REPO / "tests" / "fixtures" / "reasons" / "ab_cell7_keyerror.ipynb"
REASON = "KeyError: 'converted_flag' (cell 7)"


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    sub = tmp_path_factory.mktemp("subs") / "renamed_column"
    sub.mkdir()
    shutil.copyfile(NOTEBOOK, sub / "analysis.ipynb")
    results = tmp_path_factory.mktemp("results")
    proc = run_cli("grade", "abtest", str(sub), "--json", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = next((results / "abtest" / "1.0").glob("renamed_column-*"))
    return results, folder, json_lines(proc.stdout)["renamed_column"]


def test_result_json_and_the_json_line_carry_the_reason(graded):
    _, folder, line = graded
    result = json.loads((folder / "result.json").read_text())
    assert result["status"] == "error" and result["reason"] == REASON and line["reason"] == REASON
    assert result["message"].endswith(f"exited with code 1: {REASON}")
    runs = [s for s in result["stages"] if s["name"].startswith("analyze/")]
    assert len(runs) == 4 and {(s["cell"], s["reason"]) for s in runs} == {(7, "KeyError: 'converted_flag'")}


def test_report_md_opens_with_the_cause(graded):
    _, folder, _ = graded
    text = (folder / "report.md").read_text()
    head = text.splitlines()[:8]
    assert head[2] == "## Why" and f"- **Reason**: `{REASON}`" in head
    first = 'converted = log["converted_flag"] # renamed in the v2 export'
    assert f"- **Notebook cell 7** (first line `{first}`) raised `KeyError: 'converted_flag'`" in head
    stage = ("- **Failing stage**: analyze on runs public, no\\_effect, clear\\_win, srm "
             "(error: exited with code 1)")
    assert any(h.startswith(stage) for h in head), head
    assert len(text.splitlines()) < 300  # the A/B fields not graded share one row (1157 lines before)


def test_the_mlflow_run_has_the_reason_tag(graded):
    results, _, _ = graded
    (run,) = mlflow_runs(results, "abtest@1.0")
    assert run.data.tags["reason"] == REASON and run.data.tags["status"] == "error"
