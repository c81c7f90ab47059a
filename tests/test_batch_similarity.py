"""Copy detection across a hiring round: snapshots taken while grading, pairs flagged after each
batch over everything graded so far, in the summary, the HTML report, and as tags on both MLflow
runs (a real sqlite store, read back).

The stages are played by the fake backend (tests/fakes.py); similarity and MLflow are real. The
submissions are the similarity fixtures: `loops` and `renamed_copy` (its disguised copy) against
solutions written independently (described in test_similarity.py).
"""

from __future__ import annotations

import shutil

import pytest

from harness import api
from harness.output import similarity_lines
from tests.fakes import FIXTURES, FakeBackend, install_fake_backend

TOY = FIXTURES / "assignments" / "toy"
SIMILAR = FIXTURES / "similarity"


def submissions(tmp_path, names):
    """The fixtures as toy submissions (each also gets the toy's required run.py)."""
    subs = []
    for name in names:
        folder = shutil.copytree(SIMILAR / name, tmp_path / "subs" / name)
        (folder / "run.py").write_text("print('toy')\n")
        subs.append(str(folder))
    return subs


@pytest.fixture
def graded(tmp_path):
    install_fake_backend(FakeBackend({}))
    subs = submissions(tmp_path, ["loops", "renamed_copy", "numpy_vec", "welford"])
    report = api.grade(TOY, subs, results_dir=tmp_path / "results", backend="fake", backoff_s=0.0)
    return tmp_path, subs, report


def stems(pairs):
    """Candidate names of the pairs (submission ids are <candidate>-<hash8>)."""
    return [(p.a.rsplit("-", 1)[0], p.b.rsplit("-", 1)[0]) for p in pairs]


def _runs(results):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{results}/mlflow.db")
    experiment = client.get_experiment_by_name("toy@1.0")
    runs = client.search_runs([experiment.experiment_id])
    return {r.data.tags["candidate"]: r for r in runs if "candidate" in r.data.tags}, client


def test_the_copy_is_flagged_and_only_the_copy(graded) -> None:
    _, _, report = graded
    found = report.similarity
    assert len(found.compared) == 4
    assert stems(found.pairs) == [("loops", "renamed_copy")]
    assert found.pairs[0].similarity > 0.8
    text = "\n".join(similarity_lines(found))
    assert "loops-" in text and "renamed_copy-" in text and "1 pair(s) of the 4" in text
    assert found.report is not None and found.report.name == "index.html"
    page = found.pages[(found.pairs[0].a, found.pairs[0].b)].read_text()
    assert "renamed_copy" in page and "<script" not in page.lower()


def test_both_runs_carry_the_flag_and_the_page_in_mlflow(graded) -> None:
    tmp_path, _, _ = graded
    runs, client = _runs(tmp_path / "results")
    for name, partner in (("loops", "renamed_copy"), ("renamed_copy", "loops")):
        tags = runs[name].data.tags
        assert tags["similarity.flagged"] == "true" and partner in tags["similarity.partners"]
        assert float(tags["similarity.max"]) > 0.8
        artifacts = [a.path for a in client.list_artifacts(runs[name].info.run_id, "similarity")]
        assert len(artifacts) == 1 and artifacts[0].startswith("similarity/pair-")
    assert runs["welford"].data.tags["similarity.flagged"] == "false"


def test_a_rerun_of_a_subset_still_sees_the_round(graded) -> None:
    tmp_path, subs, report = graded
    # loops and numpy_vec again: nothing is re-graded, and the copy graded earlier is still found
    again = api.grade(TOY, [subs[0], subs[2]], results_dir=tmp_path / "results", backend="fake",
                      backoff_s=0.0)
    assert all(i.skipped for i in again.items)
    assert len(again.similarity.compared) == 4
    assert [(p.a, p.b) for p in again.similarity.pairs] == [(p.a, p.b) for p in report.similarity.pairs]
    runs, _ = _runs(tmp_path / "results")
    assert runs["loops"].data.tags["similarity.flagged"] == "true"


def test_a_resubmission_without_the_copy_clears_both_flags(graded) -> None:
    tmp_path, _, _ = graded
    # the copier sends new work (welford's solution under their name): their newest result
    # replaces the copy, and the pair's flags and page go
    resubmitted = shutil.copytree(SIMILAR / "welford", tmp_path / "v2" / "renamed_copy")
    (resubmitted / "run.py").write_text("print('toy, v2')\n")
    again = api.grade(TOY, [str(resubmitted)], results_dir=tmp_path / "results", backend="fake",
                      backoff_s=0.0)
    assert again.similarity.checked and len(again.similarity.compared) == 4
    assert stems(again.similarity.pairs) == [("renamed_copy", "welford")]  # now a copy of welford's
    runs, _ = _runs(tmp_path / "results")
    assert runs["loops"].data.tags["similarity.flagged"] == "false"
    pages = list((tmp_path / "results" / "toy" / "1.0" / "similarity").glob("pair-*.html"))
    assert len(pages) == 1


def test_a_damaged_snapshot_leaves_one_submission_out_not_the_batch(graded) -> None:
    tmp_path, subs, report = graded
    folder = next(i.folder for i in report.items if i.result.candidate == "welford")
    (folder / "similarity" / "fingerprints.json").write_text("{damaged")
    from harness.batch_similarity import check_round
    from harness.spec import load_assignment

    folders = {i.result.submission_id: i.folder for i in report.items}
    found = check_round(load_assignment(TOY), folders, tmp_path / "pages")
    assert len(found.compared) == 3 and len(found.pairs) == 1
    assert any(p.startswith("welford-") for p in found.problems)


RING = FIXTURES / "similarity_ring"  # one solution and two lightly edited copies (see test_similarity.py)


@pytest.fixture(scope="module")
def ring_round(tmp_path_factory):
    """A round of four: the three copies of the ring and one honest solution."""
    tmp_path = tmp_path_factory.mktemp("ring")
    install_fake_backend(FakeBackend({}))
    subs = []
    for name in ("ring_a", "ring_b", "ring_c"):
        folder = shutil.copytree(RING / name, tmp_path / "subs" / name)
        (folder / "run.py").write_text("print('toy')\n")
        subs.append(str(folder))
    subs += submissions(tmp_path, ["welford"])
    report = api.grade(TOY, subs, results_dir=tmp_path / "results", backend="fake", backoff_s=0.0)
    return tmp_path, report


def test_a_ring_of_three_copies_in_a_round_of_four_is_flagged_as_one_group(ring_round) -> None:
    tmp_path, report = ring_round
    found = report.similarity
    assert len(found.compared) == 4
    assert sorted(stems(found.pairs)) == [("ring_a", "ring_b"), ("ring_a", "ring_c"), ("ring_b", "ring_c")]
    [group] = found.groups
    assert [m.rsplit("-", 1)[0] for m in group.members] == ["ring_a", "ring_b", "ring_c"]
    text = "\n".join(similarity_lines(found))
    assert "3 pair(s) of the 4" in text and "group of 3: ring_a-" in text and "welford" not in text
    index = found.report.read_text()
    assert "Group 1: 3 submissions" in index and "welford" not in index
    runs, _ = _runs(tmp_path / "results")
    for name in ("ring_a", "ring_b", "ring_c"):
        partners = runs[name].data.tags["similarity.partners"]
        assert sum(other in partners for other in ("ring_a", "ring_b", "ring_c")) == 2
    assert runs["welford"].data.tags["similarity.flagged"] == "false"
