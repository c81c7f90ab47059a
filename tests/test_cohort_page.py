"""The cohort page and the candidates' pages, parsed back: ranking, totals and their ranges, the
failure reason first, links that resolve, nothing external, hostile text escaped, one chart mark
per candidate. Results are built here and saved with results.save_result (no grading); the batch
hook is played by the fake backend (tests/fakes.py).

The expected totals and ranges are computed by hand in the comments from the scoring rules
(harness.core.grading.linear_score: baseline -> 0, target -> 1, clipped; harness.results.total_score:
the weighted mean on 0-100).
"""

from __future__ import annotations

import base64
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from typer.testing import CliRunner

from graders.endpoint.grader import LatencyGrader
from graders.ranking.grader import RankingGrader
from harness import api
from harness.batch_similarity import BatchSimilarity
from harness.cli import app
from harness.cohort import write_cohort
from harness.core import CriterionResult, linear_score
from harness.report import render_report
from harness.results import StageRecord, Status, SubmissionResult, save_result, total_score
from harness.similarity import SimilarPair
from tests.fakes import FIXTURES, FakeBackend, fail, install_fake_backend, make_submission, ok

HOSTILE = "<script>alert(1)</script>\"quoted\" 'single' & co"
HOSTILE_REASON = "<img src=x onerror=alert(2)> RuntimeError: \"bad\" </td></tr><tr><td>"
RANKING_SPEC = {"labels": "qrels", "queries": "test", "baseline": 0.5, "target": 0.8}
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(range(64))  # the signature is what is checked


class Page(HTMLParser):
    """What a reader of the page gets: text, links, the first table's rows, and the SVG marks."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.rows: list[list[str]] = []
        self.svgs: list[list[str]] = []  # per svg: the title of each mark
        self._tables = 0
        self._cell: list[str] | None = None
        self._mark_title: bool | None = None  # None: not in a mark; True: in its title
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        if tag == "table":
            self._tables += 1
        elif tag == "tr" and self._tables == 1:
            self.rows.append([])
        elif tag in ("td", "th") and self._tables == 1:
            self._cell = []
        elif tag == "svg":
            self.svgs.append([])
        elif tag == "g" and dict(attrs).get("class") == "mark":
            self._mark_title = False
        elif tag == "title" and self._mark_title is False:
            self._mark_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None
        elif tag == "table":
            self._tables += 100  # only the first table is collected
        elif tag == "g":
            self._mark_title = None

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)
        if self._mark_title:
            self.svgs[-1].append(data)
            self._mark_title = False

    @property
    def links(self) -> list[str]:
        return [a["href"] or "" for tag, a in self.tags if tag == "a" and "href" in a]

    @property
    def all_text(self) -> str:
        return "".join(self.text)


def criterion(name: str, score: float, weight: float, **kwargs) -> CriterionResult:
    return CriterionResult(name=name, grader=kwargs.pop("grader", "completion"), grader_version="1",
                           score=score, weight=weight, explanation=f"{name} scored", **kwargs)


def ndcg(value: float, low: float, high: float) -> CriterionResult:
    score = linear_score(value, baseline=0.5, target=0.8)
    return criterion("ndcg", score, 6, grader="ranking", spec=RANKING_SPEC,
                     metrics={"ndcg_at_10": value, "ndcg_at_10_ci_low": low, "ndcg_at_10_ci_high": high,
                              "baseline_ndcg_at_10": 0.5})


def result(candidate: str, sid: str, criteria: list[CriterionResult], status: Status = Status.OK,
           **kwargs) -> SubmissionResult:
    return SubmissionResult(key=sid, assignment="ranker", assignment_version="1.0", submission=f"subs/{sid}",
                            submission_id=sid, candidate=candidate, status=status,
                            total_score=total_score(criteria) if status.graded else None, criteria=criteria,
                            harness_version="0.1.0", **kwargs)


def save(root: Path, r: SubmissionResult, files: dict[str, bytes] | None = None) -> None:
    folder = root / r.submission_id
    for rel, data in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_bytes(data)
    r.artifacts = {rel: rel for rel in files or {}} | {"report": "report.md"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(render_report(r, folder))  # as the pipeline writes it
    save_result(r, folder)


@pytest.fixture(scope="module")
def ranker(tmp_path_factory) -> Path:
    """Four candidates: bob 94, alice 88, the hostile one 32 (error), carol ungraded."""
    root = tmp_path_factory.mktemp("results") / "ranker" / "1.0"
    # alice: NDCG 0.74 -> (0.74-0.5)/0.3 = 0.8; total (6*0.8 + 4*1)/10 = 88.0;
    #   at the interval's ends 0.71 -> 0.7 and 0.77 -> 0.9: (4.2+4)/10 = 82.0, (5.4+4)/10 = 94.0
    save(root, result("alice", "alice-00000001", [ndcg(0.74, 0.71, 0.77), criterion("hidden", 1.0, 4)]))
    # bob: 0.77 -> 0.9; total (5.4+4)/10 = 94.0; range 0.74 -> 0.8: 88.0, 0.80 -> 1.0: 100.0
    save(root, result("bob", "bob-00000002", [ndcg(0.77, 0.74, 0.80), criterion("hidden", 1.0, 4)]))
    # hostile: 0.56 -> 0.2, hidden 0.5: (1.2+2)/10 = 32.0; 0.53 -> 0.1, 0.59 -> 0.3: 26.0, 38.0
    stage = StageRecord(name="train", status="error", exit_code=1, log_file="logs/train.log",
                        detail="exit code 1", reason=HOSTILE_REASON)
    save(root, result(HOSTILE, "hostile-00000003", [ndcg(0.56, 0.53, 0.59), criterion("hidden", 0.5, 4)],
                      Status.ERROR, reason=HOSTILE_REASON, stages=[stage]),
         {"logs/train.log": f"Traceback (most recent call last):\n{HOSTILE_REASON}\n".encode()})
    save(root, result("carol", "carol-00000004", [], Status.INFRA_ERROR, message="docker went away"))
    write_cohort("ranker", "1.0", f"Ranker {HOSTILE}", root)
    return root


def pages(root: Path) -> dict[Path, str]:
    return {p: p.read_text(encoding="utf-8") for p in [root / "index.html", *root.glob("*/report.html")]}


def test_ranking_order_totals_ranges_and_reason(ranker):
    page = Page((ranker / "index.html").read_text())
    head, *rows = page.rows
    col = {name: i for i, name in enumerate(head)}
    assert [r[col["candidate"]] for r in rows] == ["bob", "alice", HOSTILE, "carol"]
    assert [r[col["#"]] for r in rows] == ["1", "2", "3", "–"]  # the ungraded one has no rank
    assert [r[col["total"]] for r in rows] == ["94.00", "88.00", "32.00", "ungraded"]
    assert [r[col["range"]] for r in rows] == ["88.0–100.0", "82.0–94.0", "26.0–38.0", ""]
    assert rows[2][col["why not ok"]] == HOSTILE_REASON.strip()
    assert rows[3][col["why not ok"]] == "docker went away"
    assert rows[0][col["ndcg"]] == "90.0" and rows[0][col["hidden"]] == "100.0"  # group scores


def test_links_resolve_and_nothing_is_external(ranker):
    for path, text in pages(ranker).items():
        for href in Page(text).links:
            if href.startswith("#"):
                continue
            assert (path.parent / unquote(href)).resolve().exists(), (path, href)
        lowered = text.lower()
        assert "<script" not in lowered and "http://" not in lowered and "https://" not in lowered, path
        for tag, attrs in Page(text).tags:
            assert tag not in ("script", "link", "iframe", "object"), path
            assert not (attrs.get("src") or "data:").startswith(("/", "http")), path
    index = Page((ranker / "index.html").read_text())
    ids = ("alice-00000001", "bob-00000002", "carol-00000004", "hostile-00000003")
    assert sorted(h for h in index.links if h.endswith("report.html")) == [f"{i}/report.html" for i in ids]


def test_hostile_text_is_only_escaped(ranker):
    for path, text in pages(ranker).items():
        assert "<script>alert" not in text and "<img src=x" not in text, path
        assert "</td></tr><tr><td>" not in text, path  # the reason cannot end its cell
    index = Page((ranker / "index.html").read_text())
    assert HOSTILE in index.all_text and HOSTILE_REASON.strip() in index.all_text  # shown, as text
    assert len(index.rows) == 5  # header + 4: no row injected


def test_candidate_page_puts_the_cause_first(ranker):
    text = (ranker / "hostile-00000003" / "report.html").read_text()
    page = Page(text)
    assert HOSTILE_REASON.strip() in page.all_text
    why, criteria = text.index("<h2>Why</h2>"), text.index("<h2>Criteria</h2>")
    assert why < criteria and text.index("Failing stage") < criteria
    assert text.index("Traceback (most recent call last)") < criteria  # the log tail is in the Why box
    assert "../index.html" in page.links
    assert "no rank" in (ranker / "carol-00000004" / "report.html").read_text()


def test_charts_have_one_mark_per_candidate(ranker):
    page = Page((ranker / "index.html").read_text())
    strip, intervals = page.svgs
    graded = ["bob", "alice", HOSTILE]
    # rows: total, ndcg, hidden; carol (ungraded) has no dot
    assert sorted(t.split(": ")[0] for t in strip) == sorted(graded * 3)
    assert [t.split(": ")[0] for t in intervals] == graded  # ranking order
    assert intervals[0] == "bob: 0.770 (95% CI 0.740 to 0.800)"


def test_ranking_score_bounds_use_the_paired_interval_on_the_gain_share_scale():
    spec = RANKING_SPEC | {"scale": "gain_share", "calibration": "calibration.json", "baseline": 0.0,
                           "target": 0.7}
    # oracle 0.9, reference 0.5: the oracle's gain 0.4. delta 0.2 -> share 0.5 -> 0.5/0.7 = 0.714;
    # delta CI 0.1 -> 0.25/0.7 = 0.357; 0.3 -> 0.75/0.7, clipped to 1
    metrics = {"ndcg_at_10": 0.7, "ndcg_at_10_ci_low": 0.65, "ndcg_at_10_ci_high": 0.75,
               "oracle_ndcg_at_10": 0.9, "baseline_ndcg_at_10": 0.5, "delta_vs_baseline": 0.2,
               "delta_ci_low": 0.1, "delta_ci_high": 0.3}
    c = criterion("ndcg", 0.5 / 0.7, 6, grader="ranking", spec=spec, metrics=metrics)
    low, high = RankingGrader.score_bounds(c)
    assert low == pytest.approx(0.25 / 0.7) and high == 1.0
    # the reference ranking itself: delta 0 with a paired interval of 0 -> no share of the gain at either end,
    # though its own NDCG interval (0.45 to 0.55) reaches above the reference
    reference = metrics | {"ndcg_at_10": 0.5, "ndcg_at_10_ci_low": 0.45, "ndcg_at_10_ci_high": 0.55,
                           "delta_vs_baseline": 0.0, "delta_ci_low": 0.0, "delta_ci_high": 0.0}
    assert RankingGrader.score_bounds(criterion("ndcg", 0.0, 6, grader="ranking", spec=spec,
                                                metrics=reference)) == (0.0, 0.0)
    # a score the interval does not explain (no usable scores: 0 though NDCG is high): no bounds
    unexplained = criterion("ndcg", 0.0, 6, grader="ranking", spec=spec, metrics=metrics)
    assert RankingGrader.score_bounds(unexplained) is None


def test_latency_score_bounds_follow_the_p99_interval():
    spec = {"zero": 200.0, "full": 20.0}
    # p99 56 -> (56-200)/(20-200) = 0.8, scaled by a correct share of 0.5: 0.4; p99 38 -> 0.9 -> 0.45,
    # p99 74 -> 0.7 -> 0.35
    metrics = {"p99_ms": 56.0, "p99_ci_low_ms": 38.0, "p99_ci_high_ms": 74.0}
    c = criterion("latency", 0.4, 2, grader="endpoint_latency", spec=spec, metrics=metrics)
    assert LatencyGrader.score_bounds(c) == pytest.approx((0.35, 0.45))
    unbounded = {k: v for k, v in metrics.items() if k != "p99_ci_high_ms"}  # nothing bounds p99 above
    c = criterion("latency", 0.4, 2, grader="endpoint_latency", spec=spec, metrics=unbounded)
    assert LatencyGrader.score_bounds(c) == pytest.approx((0.0, 0.45))


HGRM = b"""       Value     Percentile TotalCount 1/(1-Percentile)

       1.000 0.000000000000          1           1.00
       2.000 0.500000000000        500           2.00
       5.000 0.900000000000        900          10.00
      20.000 0.990000000000        990         100.00
      50.000 1.000000000000       1000
#[Mean    =        3.000, StdDeviation   =        4.000]
"""


def endpoint_result(name: str, p99: float, steps: list[tuple[float, float, bool]]) -> SubmissionResult:
    latency = criterion("latency", 0.5, 2, grader="endpoint_latency", spec={"zero": 200.0, "full": 20.0},
                        metrics={"p99_ms": p99})
    capacity = criterion("capacity", 0.5, 1, grader="endpoint_capacity", spec={"objective_ms": 50.0},
                         details={"steps": [{"rate": r, "p99_ms": p, "ok": good} for r, p, good in steps]})
    return result(name, f"{name}-0000000a", [latency, capacity])


def test_endpoint_curves_are_overlaid_and_plots_embedded(tmp_path):
    root = tmp_path / "endpoint" / "1.0"
    files = {"artifacts/latency/latency.hgrm": HGRM, "artifacts/latency/latency.png": PNG}
    save(root, endpoint_result("fast", 20.0, [(50, 10, True), (100, 30, True), (200, 90, False)]), files)
    save(root, endpoint_result("slow", 20.0, [(50, 40, True), (100, 120, False)]), files)
    save(root, endpoint_result("silent", 0.0, []))  # no histogram, no step: in no curve
    write_cohort("endpoint", "1.0", "Endpoint", root)
    page = Page((root / "index.html").read_text())
    _, latency, capacity = page.svgs
    assert sorted(latency) == ["fast", "slow"] and sorted(capacity) == ["fast", "slow"]
    # the percentile file's rows below p100 (1/(1-p) finite): 4 points per curve
    lines = [a["points"] for tag, a in page.tags if tag == "polyline"]
    assert [len(p.split()) for p in lines] == [4, 4, 3, 2]
    text = (root / "fast-0000000a" / "report.html").read_text()
    uris = [a["src"] for tag, a in Page(text).tags if tag == "img"]
    assert len(uris) == 1 and base64.b64decode(uris[0].removeprefix("data:image/png;base64,")) == PNG


TOY = FIXTURES / "assignments" / "toy"


def test_a_batch_writes_the_page_and_a_failure_to_write_it_is_a_warning(tmp_path, monkeypatch):
    subs = tmp_path / "subs"
    good, wrong, broken = (make_submission(subs, n) for n in ("good", "wrong", "broken"))
    install_fake_backend(FakeBackend({("wrong", "answer"): ok("41"), ("broken", "fit"): fail()}))
    results = tmp_path / "results"
    report = api.grade(TOY, [str(good), str(wrong), str(broken)], results_dir=results, backend="fake",
                       backoff_s=0.0, log_to_mlflow=False)
    assert report.cohort_page == results.resolve() / "toy" / "1.0" / "index.html"
    assert not report.warnings
    head, *rows = Page(report.cohort_page.read_text()).rows
    assert [r[1] for r in rows] == ["good", "wrong", "broken"]  # 100, 25, 0 (tests/test_batch.py)
    assert CliRunner().invoke(app, ["report", str(TOY), "--results", str(results)]).exit_code == 0
    missing = CliRunner().invoke(app, ["report", str(TOY), "--results", str(tmp_path / "none")])
    assert missing.exit_code == 2

    def broken_writer(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("harness.cohort.write_cohort", broken_writer)
    report = api.grade(TOY, [str(good)], results_dir=results, backend="fake", backoff_s=0.0,
                       log_to_mlflow=False, force=True)
    assert report.cohort_page is None and any("No space left" in w for w in report.warnings)
    assert report.items[0].result.total_score == 100.0 and report.exit_code == 0
    assert (report.items[0].folder / "result.json").is_file()


def test_copy_flags_name_the_partner_and_link_the_pair_page(tmp_path):
    root = tmp_path / "ranker" / "1.0"
    for name in ("alice", "bob", "carol"):
        save(root, result(name, f"{name}-00000001", [criterion("hidden", 1.0, 4)]))
    pair = SimilarPair(a="alice-00000001", b="bob-00000001", similarity=0.83, share_a=0.83, share_b=0.8,
                       shared=83, fingerprints_a=100, fingerprints_b=104)
    page = root / "similarity" / "pair-0123456789ab.html"
    page.parent.mkdir(parents=True)
    page.write_text("<!DOCTYPE html><title>pair</title>")
    found = BatchSimilarity(checked=True, pairs=[pair], threshold=0.5,
                            pages={("alice-00000001", "bob-00000001"): page},
                            compared={n: root / f"{n}-00000001" for n in ("alice", "bob", "carol")})
    write_cohort("ranker", "1.0", "Ranker", root, similarity=found)
    index = Page((root / "index.html").read_text())
    head, *rows = index.rows
    flags = {r[head.index("candidate")]: r[head.index("copy flags")] for r in rows}
    assert flags == {"alice": "83% like bob", "bob": "83% like alice", "carol": ""}
    assert index.links.count("similarity/pair-0123456789ab.html") == 2
    own = Page((root / "alice-00000001" / "report.html").read_text())
    assert "../similarity/pair-0123456789ab.html" in own.links and "83% like bob" in own.all_text


def test_the_range_is_over_the_criteria_the_total_counts():
    from harness.cohort import total_range
    from harness.rubric import PENDING

    # alice's criteria (88.0, range 82.0-94.0, as above) plus a memo not yet reviewed: the total leaves
    # it out (weight 10, not 12), so the range must too, and contain the total
    memo = criterion("memo", 0.0, 2, grader="rubric", ungraded=PENDING)
    r = result("alice", "alice-00000001", [ndcg(0.74, 0.71, 0.77), criterion("hidden", 1.0, 4), memo])
    assert r.total_score == 88.0
    assert total_range(r) == (82.0, 94.0)


def test_run_ids_are_merged_under_the_cohort_lock(tmp_path, monkeypatch):
    import fcntl

    from harness import cohort

    root = tmp_path / "ranker" / "1.0"
    save(root, result("alice", "alice-00000001", [criterion("hidden", 1.0, 4)]))
    (root / ".locks").mkdir()
    held: list[bool] = []
    real_write = cohort.write_atomic

    def write_checking_the_lock(path: Path, text: str) -> None:
        if path.name == cohort.RUNS_FILE:  # another open of the lock file must not get it now
            with (root / ".locks" / "cohort.lock").open("w") as other:
                try:
                    fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    held.append(False)
                except BlockingIOError:
                    held.append(True)
        real_write(path, text)

    monkeypatch.setattr(cohort, "write_atomic", write_checking_the_lock)
    assert cohort.record_runs(root, {"alice-00000001": "abc123"}) == {"alice-00000001": "abc123"}
    write_cohort("ranker", "1.0", "Ranker", root, run_ids={"bob-00000002": "def456"})  # no self-deadlock
    assert held == [True, True]
    assert cohort.read_runs(root) == {"alice-00000001": "abc123", "bob-00000002": "def456"}


def test_pending_review_and_a_regrade_are_shown_on_both_pages(tmp_path):
    from harness.rubric import PENDING, PreviousResult

    root = tmp_path / "ranker" / "1.0"
    memo = criterion("memo", 0.0, 2, grader="rubric", ungraded=PENDING)
    # hidden 1.0 x 4, memo pending (left out): 100.0; the result it replaced had hidden at 0.5 and a
    # total of 62.5, so the total moved by +37.50 and hidden by +0.500
    previous = PreviousResult(key="old-key", started_at="2026-12-01T10:00:00+00:00", status="ok",
                              total_score=62.5, scores={"hidden": 0.5})
    save(root, result("dora", "dora-00000005", [criterion("hidden", 1.0, 4), memo], previous=previous))
    write_cohort("ranker", "1.0", "Ranker", root)
    head, *rows = Page((root / "index.html").read_text()).rows
    assert rows[0][head.index("total")] == "100.00 provisional re-graded +37.50"
    text = (root / "dora-00000005" / "report.html").read_text()
    page = Page(text).all_text
    assert "provisional: manual review pending (memo)" in page
    assert "Changed since the previous grading" in page and "62.50 → 100.00 (+37.50)" in page
    section = text[text.index("Changed since the previous grading"):text.index("<h2>Criteria</h2>")]
    assert Page(section).rows[1:] == [["hidden", "0.500", "1.000", "+0.500"]]
    assert "memo: pending (weight 2)" in page and "memo: 0.000" not in page  # no score yet, not 0
    assert "### memo: pending (weight 2)" in (root / "dora-00000005" / "report.md").read_text()


def test_paths_in_a_hostile_result_json_stay_in_the_result_folder(tmp_path):
    root = tmp_path / "ranker" / "1.0"
    r = result("eve", "eve-00000006", [criterion("hidden", 1.0, 4)])
    save(r=r, root=root, files={"artifacts/hidden/ok.png": PNG})
    folder = root / "eve-00000006"
    (root / "secret.png").write_bytes(PNG)  # beside the folder: reached by "..", by a symlinked parent
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "plot.png").write_bytes(PNG)
    (outside / "notes.txt").write_text("private")
    (folder / "artifacts" / "hidden" / "link").symlink_to(outside, target_is_directory=True)
    r.artifacts = {"ok": "artifacts/hidden/ok.png", "up": "artifacts/hidden/../../../secret.png",
                   "linked": "artifacts/hidden/link/plot.png", "file": "artifacts/hidden/link/notes.txt",
                   "abs": str(outside / "notes.txt"), "report": "report.md"}
    save_result(r, folder)
    write_cohort("ranker", "1.0", "Ranker", root)
    page = Page((folder / "report.html").read_text())
    images = [a["src"] for tag, a in page.tags if tag == "img"]
    assert len(images) == 1  # ok.png only
    assert sorted(h for h in page.links if "artifacts" in h or "notes" in h) == ["artifacts/hidden/ok.png"]


def test_a_latency_file_behind_a_symlink_is_not_read_for_the_curves(tmp_path):
    root = tmp_path / "endpoint" / "1.0"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "latency.hgrm").write_bytes(HGRM)
    save(root, endpoint_result("fast", 20.0, [(50, 10, True)]), {"artifacts/latency/latency.hgrm": HGRM})
    leak = endpoint_result("leak", 20.0, [(50, 10, True)])
    save(root, leak)
    (root / leak.submission_id / "artifacts").mkdir()
    (root / leak.submission_id / "artifacts" / "latency").symlink_to(outside, target_is_directory=True)
    leak.artifacts["latency"] = "artifacts/latency/latency.hgrm"
    save_result(leak, root / leak.submission_id)
    write_cohort("endpoint", "1.0", "Endpoint", root)
    _, latency, _ = Page((root / "index.html").read_text()).svgs
    assert latency == ["fast"]  # leak's file is outside its folder: no curve from it
