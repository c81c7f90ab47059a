"""The A/B-test assignment end to end: the real CLI, Docker, the notebook runner, the hidden re-runs
and a real MLflow store, read back. The examples' order is what a reviewer would give them."""

from __future__ import annotations

import json

import pytest

from tests.conftest import REPO, earned, run_cli
from tests.test_e2e_docker import by_candidate, json_lines, mlflow_runs

pytestmark = [pytest.mark.docker, pytest.mark.slow]
EXAMPLES = REPO / "assignments" / "abtest" / "examples"
HIDDEN_RUNS = ("no_effect", "clear_win", "srm")


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    results = tmp_path_factory.mktemp("abtest-results")
    subs = sorted(str(p) for p in EXAMPLES.iterdir() if p.is_dir())
    proc = run_cli("grade", "abtest", *subs, "--jobs", "2", "--json", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return results, json_lines(proc.stdout)


AB_GROUPS = {"design", "conversion", "revenue", "cuped", "srm", "decision"}


def test_examples_order_as_a_reviewer_would(graded):
    _, lines = graded
    total = {name: line["total_score"] for name, line in lines.items()}
    assert set(total) == {"good_notebook", "good_script", "bootstrap_permutation", "no_srm",
                          "classic_mistakes", "hardcoded", "raises"}
    # The correct submissions are near full marks, whichever form they take, formulas or resampling
    # (bootstrap CIs and permutation p-values with 1,000 resamples: their Monte-Carlo error is allowed).
    assert min(total["good_notebook"], total["good_script"]) >= 90
    assert earned(lines["bootstrap_permutation"], groups=AB_GROUPS) >= 0.97 * 18.5
    assert lines["bootstrap_permutation"]["status"] == "ok"
    # Sound statistics without the SRM check: loses the SRM fields and ships the broken experiment.
    assert 50 <= total["no_srm"] < min(total["good_notebook"], total["good_script"],
                                       total["bootstrap_permutation"]) - 10
    # One-sided tests, pooled variance, peeking: below the one who only forgot a check.
    assert total["classic_mistakes"] < total["no_srm"] - 10
    # Answers pasted from the public data fit no hidden run (they are drawn unlike it): over eight
    # fresh secrets, at most 0.51 of 18.5 answer weight (partial interval credit by chance), total at
    # most 2.4. It is not ordered against classic_mistakes: what those earn depends on the secret,
    # and nothing is right where its peeking stops early on every hidden run (every number then comes
    # from part of the data): 0.0 to 12.6 over nine secrets (README).
    answers = {name: earned(line, groups=AB_GROUPS) for name, line in lines.items()}
    assert answers["hardcoded"] < 1.0
    # The notebook that raises answers nothing, and the pasted answers follow no data: neither did the
    # task, so their engineering criteria (code quality, own tests) count for nothing either, though
    # their code was reviewed (graders/abtest/gate.py).
    assert lines["raises"]["status"] == "error" and answers["raises"] == 0
    # (hardcoded may hit an answer or two by chance on some secret seeds: engineering is what is 0)
    assert total["raises"] == 0 and total["hardcoded"] < 3
    assert all(earned(lines[name], groups={"engineering"}) == 0 for name in ("raises", "hardcoded"))
    for name in ("raises", "hardcoded"):
        quality = lines[name]["criteria"]["code_quality"]["metrics"]
        assert quality["gate.share"] == 0 and quality["ungated_score"] > 0.5, name
    assert lines["good_script"]["criteria"]["code_quality"]["metrics"]["gate.share"] == 1


def test_the_hidden_reruns_are_graded_and_the_public_run_is_not(graded):
    _, lines = graded
    hard = lines["hardcoded"]
    assert hard["status"] == "ok"  # it ran fine everywhere; its answers just do not follow the data
    decision = hard["criteria"]["decision"]
    assert decision["score"] == 0  # a constant call earns nothing
    for name in ("good_script", "good_notebook", "bootstrap_permutation"):  # they read the planned split
        good = lines[name]["criteria"]
        assert good["srm_detected"]["score"] == 1 and good["decision"]["score"] == 1, name
    # classic_mistakes checks the split against 50/50: the planned 60/40 of clear_win looks broken
    assert lines["classic_mistakes"]["criteria"]["srm_detected"]["metrics"]["clear_win.score"] == 0
    no_srm = lines["no_srm"]["criteria"]
    assert no_srm["srm_detected"]["score"] == 0 and no_srm["conversion_p_value"]["score"] == 1


def test_result_folder_has_each_run_the_rendered_notebook_and_the_recommendation(graded):
    results, _ = graded
    from harness.results import load_result

    folders = {load_result(p.parent).candidate: p.parent for p in results.glob("abtest/*/*/result.json")}
    notebook = folders["good_notebook"]
    result = load_result(notebook)
    assert [s.name for s in result.stages] == [*(f"analyze/{r}" for r in ("public", *HIDDEN_RUNS)), "tests"]
    for run in ("public", *HIDDEN_RUNS):
        assert (notebook / "outputs" / run / "answers.json").is_file()
        assert "<html" in (notebook / "outputs" / run / "executed.html").read_text()[:2000].lower()
    assert (notebook / "review" / "recommendation.md").stat().st_size > 0
    details = next(c for c in result.criteria if c.name == "design_conversion_n").details
    assert all(run in str(details["runs"]) for run in HIDDEN_RUNS)  # each hidden run, explained
    assert "public" not in str(details["runs"])  # the public run is never graded
    raises = folders["raises"]
    assert "KeyError" in (raises / "outputs" / "public" / "executed.html").read_text()
    report = (raises / "report.md").read_text()
    assert "error" in report and "analyze/public" in report


def test_mlflow_shows_per_field_criteria_groups_and_the_notebook(graded):
    results, _ = graded
    from mlflow.tracking import MlflowClient

    runs = by_candidate(mlflow_runs(results, "abtest@1.0"))
    assert set(runs) >= {"good_notebook", "good_script", "no_srm", "classic_mistakes", "hardcoded", "raises"}
    metrics = runs["good_notebook"].data.metrics
    assert {"score.design_conversion_n", "score.conversion_ci_abs", "score.srm_detected", "score.decision",
            "group.design", "group.conversion", "analyze/srm.seconds"} <= set(metrics)
    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    run_id = runs["good_notebook"].info.run_id
    public = {a.path for a in client.list_artifacts(run_id, "outputs/public")}
    assert "outputs/public/executed.html" in public
    assert "review/recommendation.md" in {a.path for a in client.list_artifacts(run_id, "review")}
    assert "decision" in runs["good_notebook"].data.tags["mlflow.note.content"]


def test_a_run_cannot_tell_which_run_it_is_from_its_mounts(tmp_path):
    """Mount sources are visible inside the sandbox (/proc/self/mountinfo): they must not name the run."""
    sub = tmp_path / "sniffer"
    sub.mkdir()
    (sub / "analyze.py").write_text(
        "import json, pathlib, sys\n"
        "out = pathlib.Path(sys.argv[sys.argv.index('--output-dir') + 1])\n"
        "mounts = sorted(line.split()[3] for line in open('/proc/self/mountinfo'))\n"
        "(out / 'answers.json').write_text(json.dumps({'mounts': mounts}))\n")
    results = tmp_path / "results"
    proc = run_cli("grade", "abtest", str(sub), "--no-mlflow", "--results", str(results))
    assert proc.returncode == 0, proc.stderr[-2000:]
    folder = next(results.glob("abtest/*/sniffer*"))
    seen = {run: json.loads((folder / "outputs" / run / "answers.json").read_text())["mounts"]
            for run in ("public", *HIDDEN_RUNS)}
    # the same mount sources in every run, but for the container's own (random) id
    ours = {run: tuple(m for m in mounts if "docker" not in m) for run, mounts in seen.items()}
    assert len(set(ours.values())) == 1 and any("/input-run" in m for m in ours["srm"])
    text = json.dumps(seen)
    assert not [run for run in ("public", *HIDDEN_RUNS) if f"/{run}" in text or f"-{run}" in text]
