"""`harness export`: CSV, Gradescope results.json and candidate feedback pages, from results
written by the test (results.save_result), never graded. Each output is parsed back: the CSV with
the csv module, the Gradescope files against a JSON Schema written from Gradescope's
specification (tests/data/gradescope_results.schema.json), the pages with html.parser.

The cohort (weights 6, 2, 1, 0.5, 0.5; sum 10). Totals by hand, sum(score x weight) / 10 x 100:
  alice  0.8, 0.5, 1, 0.6, 1  -> (4.8 + 1 + 1 + 0.3 + 0.5) / 10 = 76.00
  carol  0.1, 0.5, 1, 0, 0    -> (0.6 + 1 + 1) / 10 = 26.00 (own_tests gated: accuracy < 0.25)
  dave   the same             -> 26.00, a tie: ranks 1, 2, 2
  bob    infra error          -> no total, no rank (never 0)
Groups: model (accuracy, calibration; weights 6, 2), engineering (style, own_tests; 1, 0.5):
  alice model (4.8 + 1) / 8 = 72.50, engineering (1 + 0.5) / 1.5 = 100.00
  carol model (0.6 + 1) / 8 = 20.00, engineering 1 / 1.5 = 66.67
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import jsonschema
import pytest
from typer.testing import CliRunner

from harness import api, export_csv, formats
from harness.candidate_view import (
    REVIEW_PENDING,
    REVIEWED,
    WITHHELD,
    CandidateView,
    CriterionView,
    Masker,
    candidate_view,
)
from harness.cli import app
from harness.core import CriterionResult
from harness.core.text import one_line, slug
from harness.export_csv import safe_cell
from harness.export_gradescope import results_json
from harness.feedback import render_feedback
from harness.results import StageRecord, Status, SubmissionResult, save_result, total_score
from harness.rubric import MANUAL_GROUP, PENDING
from harness.similarity import snapshot
from harness.spec import Assignment, load_assignment

SCHEMA = json.loads((Path(__file__).parent / "data" / "gradescope_results.schema.json").read_text())
SEED = "271828182845904523536028747135266249775"
EXPECTED = "EXPECTED-LABELS-q17"  # what a grader of hidden data puts in its explanation
SECRET = "ROBUST-SECRET-CASE"  # the explanation of the hidden criterion
STYLE = "3 lint findings in train.py"  # an explanation a candidate may read
HOSTILE = "=cmd|' /C calc'!A0, \"Carol\" <script>alert(1)</script>\nJr"
SPEC = """\
schema_version: 1
id: cohort
version: "2.1"
title: Cohort <export> fixture
brief: BRIEF.md
data:
  visible: {train: train, holdout: holdout}
  public: [train]
  hidden: {labels: labels}
stages:
  - {name: fit, command: [python, fit.py], timeout: 5, data: [train]}
  - {name: score, command: [python, score.py], timeout: 5, data: [holdout], outputs: {scores.csv: 1k}}
graders:
  - {name: accuracy, group: model, grader: fake, weight: 6, visibility: after_published,
     args: {predictions: scores.csv, labels: labels}}
  - {name: calibration, group: model, grader: fake, weight: 2, visibility: after_due_date,
     args: {predictions: scores.csv}}
  - {name: style, group: engineering, grader: fake, weight: 1}
  - {name: robust, grader: fake, weight: 0.5, visibility: hidden, args: {cases: [labels]}}
  - {name: own_tests, group: engineering, grader: fake, weight: 0.5, visibility: after_published,
     args: {stage: fit}, requires: {accuracy: 0.25}}
"""
NAMES = ("accuracy", "calibration", "style", "robust", "own_tests")
WEIGHTS = (6, 2, 1, 0.5, 0.5)
GROUPS = ("model", "model", "engineering", None, "engineering")


@dataclass(frozen=True)
class Cohort:
    assignment: Path
    results: Path


def result(candidate: str, scores: tuple[float, ...] | None, *, status: Status = Status.OK,
           reason: str = "", stages: tuple[StageRecord, ...] = (),
           started: str = "2026-12-01T10:00:00+00:00") -> SubmissionResult:
    criteria = []
    for name, weight, group, score in zip(NAMES, WEIGHTS, GROUPS, scores or (), strict=False):
        explanation = {"accuracy": f"accuracy {score:.2f}; expected {EXPECTED}", "style": STYLE,
                       "robust": SECRET}.get(name, f"{name} {score:.2f}")
        if name == "own_tests" and scores[0] < 0.25:  # as harness.pipeline gates it: quoting accuracy's
            explanation = f"not counted: accuracy scored {scores[0]:.2f} (accuracy: expected {EXPECTED})"
        criteria.append(CriterionResult(name=name, group=group, grader="fake", grader_version="1",
                                        score=score, weight=weight, explanation=explanation,
                                        metrics={"expected_accuracy": 0.7312}, details={"labels": EXPECTED}))
    ident = one_line(candidate).split()[0].strip("=|'\"").lower() or "x"
    digest = hashlib.sha256(started.encode()).hexdigest()[:8]
    return SubmissionResult(
        key=f"k-{ident}-{started}", assignment="cohort", assignment_version="2.1",
        submission=f"/inbox/{ident}", submission_id=f"{ident}-{digest}", candidate=candidate,
        status=status, total_score=total_score(criteria) if status.graded else None, reason=reason,
        message=reason, criteria=criteria, stages=list(stages), harness_version="0.1.0", started_at=started)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    root = tmp_path_factory.mktemp("exports")
    folder = root / "assignments" / "cohort"
    (folder / "hidden").mkdir(parents=True)
    (folder / "assignment.yaml").write_text(SPEC)
    (folder / "BRIEF.md").write_text("brief")
    (folder / "hidden" / "seed.txt").write_text(SEED + "\n")
    results = root / "results"
    carol_reason = f"KeyError: 'price' (opening {folder}/hidden/seed.txt: {SEED})"
    cohort = [
        result("alice", (0.3, 0.1, 0.2, 0.1, 1.0), started="2026-11-30T09:00:00+00:00"),  # superseded
        result("alice", (0.8, 0.5, 1.0, 0.6, 1.0)),
        result(HOSTILE, (0.1, 0.5, 1.0, 0.0, 0.0), status=Status.ERROR, reason=carol_reason,
               stages=(StageRecord(name="fit", status="error", reason=carol_reason),)),
        result("dave", (0.1, 0.5, 1.0, 0.0, 0.0), status=Status.ERROR,
               reason="ValueError: could not convert 'HOLDOUT-ROW-17'",
               stages=(StageRecord(name="fit", status="ok"),
                       StageRecord(name="score", status="error",
                                   reason="ValueError: could not convert 'HOLDOUT-ROW-17'"))),
        result("bob", None, status=Status.INFRA_ERROR,
               reason=f"docker: no space left under {results}/.cache/data/cohort"),
    ]
    for r in cohort:
        save_result(r, results / "cohort" / "2.1" / r.submission_id)
    return Cohort(folder, results)


# --- csv ------------------------------------------------------------------------------------------

def read_csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text, newline="")))


def test_csv_has_one_row_per_candidate_in_a_stable_order(cohort: Cohort, tmp_path: Path) -> None:
    report = api.export(cohort.assignment, fmt="csv", results_dir=cohort.results, out=tmp_path)
    assert report.written == [tmp_path / "cohort-2.1.csv"]
    text = report.written[0].read_text(encoding="utf-8")
    assert text.splitlines()[0] == ("rank,candidate,submission_id,status,total_score,provisional,group:model,"
                                    "group:engineering,criterion:accuracy,criterion:calibration,"
                                    "criterion:style,criterion:robust,criterion:own_tests,reason,similar_to")
    rows = read_csv(text)
    assert [(r["rank"], r["candidate"][:4], r["total_score"]) for r in rows] == [
        ("1", "alic", "76.00"), ("2", "'=cm", "26.00"), ("2", "dave", "26.00"), ("", "bob", "")]
    alice, carol = rows[0], rows[1]
    assert (alice["group:model"], alice["group:engineering"]) == ("72.50", "100.00")
    assert (carol["group:model"], carol["group:engineering"]) == ("20.00", "66.67")
    assert [alice[f"criterion:{n}"] for n in NAMES] == ["0.8000", "0.5000", "1.0000", "0.6000", "1.0000"]
    assert rows[3]["status"] == "infra_error" and rows[3]["criterion:accuracy"] == ""


def test_csv_keeps_hostile_names_in_their_cell_and_never_as_a_formula(cohort: Cohort) -> None:
    report = api.export(cohort.assignment, fmt="csv", results_dir=cohort.results, out="-")
    rows = read_csv(report.text or "")
    assert len(rows) == 4 and all(len(r) == 15 for r in rows)  # the comma and quotes stayed inside
    # the stored name is one line (results.py); the export adds OWASP's leading quote before `=`
    assert rows[1]["candidate"] == "'" + one_line(HOSTILE)
    assert rows[1]["reason"].startswith("KeyError: 'price'")


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx", "\0x"])
def test_a_cell_a_spreadsheet_would_evaluate_gets_a_leading_quote(text: str) -> None:
    assert safe_cell(text) == "'" + text  # OWASP CSV Injection; ASVS 5.0 V1.2.10 (NUL)
    assert safe_cell("alice = bob") == "alice = bob"


@pytest.mark.parametrize("lead", ["\n", "\0"])
def test_the_leaderboard_csv_quotes_what_the_export_quotes(lead: str) -> None:
    # submission ids are not one_line'd by the result model: a leading LF or NUL reaches the cell
    r = result("ann", (1.0, 1.0, 1.0, 1.0, 1.0)).model_copy(update={"submission_id": lead + "=1+1"})
    row = read_csv(formats.to_csv(formats.board([r])))[0]
    assert row["submission_id"] == "'" + lead + "=1+1"  # OWASP CSV Injection; ASVS 5.0 V1.2.10 (NUL)


CODE = """\
import csv
from pathlib import Path


def load_rows(path):
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        return [row for row in reader if row.get("query_id")]


def group_by_query(rows):
    groups = {}
    for row in rows:
        groups.setdefault(row["query_id"], []).append(row)
    return groups


def features(row):
    bm25 = float(row["bm25"])
    clicks = int(row.get("clicks") or 0)
    fresh = 1.0 if row.get("in_stock") == "yes" else 0.0
    return [bm25, clicks / (1 + clicks), fresh, bm25 * fresh]


def score(weights, row):
    return sum(w * x for w, x in zip(weights, features(row)))


def rank(groups, weights):
    ranked = {}
    for query, rows in groups.items():
        ranked[query] = sorted(rows, key=lambda r: score(weights, r), reverse=True)
    return ranked


def write_scores(ranked, out):
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as handle:
        handle.write("query_id,doc_id,score\\n")
        for query, rows in ranked.items():
            for place, row in enumerate(rows):
                handle.write(f"{query},{row['doc_id']},{len(rows) - place}\\n")
"""


def test_csv_names_the_copies_found_in_the_stored_snapshots(tmp_path: Path, cohort: Cohort) -> None:
    results = tmp_path / "results"
    for name, code in (("ann", CODE), ("ben", CODE), ("cat", "print('my own work')\n" * 3)):
        sub = tmp_path / "subs" / name
        sub.mkdir(parents=True)
        (sub / "train.py").write_text(code)
        r = result(name, (0.5, 0.5, 0.5, 0.5, 0.5))
        save_result(r, results / "cohort" / "2.1" / r.submission_id)
        snapshot(sub, starter_dir=None, dest=results / "cohort" / "2.1" / r.submission_id / "similarity")
    rows = {r["candidate"]: r for r in read_csv(api.export(cohort.assignment, fmt="csv", results_dir=results,
                                                           out="-").text or "")}
    assert rows["ann"]["similar_to"] == f"{rows['ben']['submission_id']} 1.00"
    assert rows["ben"]["similar_to"] == f"{rows['ann']['submission_id']} 1.00"
    assert rows["cat"]["similar_to"] == ""


# --- gradescope -------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gradescope(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    out = tmp_path_factory.mktemp("gradescope")
    report = api.export(cohort.assignment, fmt="gradescope", results_dir=cohort.results, out=out)
    assert [line.split("-")[0] for line in report.skipped] == ["bob"]  # ungraded: no 0 is sent
    docs = [json.loads(p.read_text()) for p in sorted(out.glob("*/results.json"))]
    return {doc["extra_data"]["submission_id"].split("-")[0]: doc for doc in docs}


def test_gradescope_files_follow_the_documented_schema(gradescope: dict[str, dict]) -> None:
    assert sorted(gradescope) == ["alice", "cmd", "dave"]
    for doc in gradescope.values():
        jsonschema.validate(doc, SCHEMA)


@pytest.mark.parametrize("bad", [{"tests": [{"name": "no score anywhere"}]},
                                 {"score": 1, "visibility": "after_release"},
                                 {"score": 1, "tests": [{"score": 1, "visiblity": "visible"}]}])
def test_the_schema_rejects_what_the_specification_does_not_allow(bad: dict) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, SCHEMA)


def test_gradescope_tests_add_up_to_the_total(gradescope: dict[str, dict]) -> None:
    for who, total in (("alice", 76.0), ("cmd", 26.0), ("dave", 26.0)):
        doc = gradescope[who]
        assert doc["score"] == total
        assert sum(t["score"] for t in doc["tests"]) == pytest.approx(total, abs=0.01)
        assert [t["max_score"] for t in doc["tests"]] == [60.0, 20.0, 10.0, 5.0, 5.0]  # weight shares


def test_gradescope_tests_carry_visibility_and_only_safe_output(gradescope: dict[str, dict]) -> None:
    alice = gradescope["alice"]
    assert [(t["name"], t["visibility"]) for t in alice["tests"]] == [
        ("model / accuracy", "after_published"), ("model / calibration", "after_due_date"),
        ("engineering / style", "visible"), ("robust", "hidden"),
        ("engineering / own_tests", "after_published")]
    outputs = {t["name"]: t["output"] for t in alice["tests"]}
    assert outputs["model / accuracy"] == outputs["robust"] == WITHHELD
    assert outputs["engineering / style"] == STYLE
    assert "Not counted" in gradescope["cmd"]["tests"][4]["output"]
    # the top-level output is rendered as HTML unless told otherwise (Gradescope's simple_format)
    assert (alice["output_format"], alice["test_output_format"], alice["test_name_format"]) == ("text",) * 3
    for doc in gradescope.values():
        text = json.dumps(doc)
        assert EXPECTED not in text and SECRET not in text and SEED not in text and "hidden/" not in text


CANDIDATES = {"alice": "alice", "bob": "bob", "dave": "dave", "cmd": "Carol"}  # page key -> a name on it


# --- feedback ---------------------------------------------------------------------------------------

class Page(HTMLParser):
    """Tags, attributes, and the text of each table's first column."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: set[str] = set()
        self.attrs: set[str] = set()
        self.labels: list[str] = []
        self.text: list[str] = []
        self._row_cells = -1
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.attrs |= {name for name, _ in attrs}
        if tag == "tr":
            self._row_cells = 0
        elif tag == "td":
            self._row_cells += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._row_cells == 1 and self.lasttag == "td":
            self.labels.append(data)


@pytest.fixture(scope="module")
def pages(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], str]:
    found = {}
    for released in (False, True):
        out = tmp_path_factory.mktemp("feedback")
        report = api.export(cohort.assignment, fmt="feedback", results_dir=cohort.results, out=out,
                            released=released)
        assert len(report.written) == 4 and not report.skipped
        for path in report.written:
            found[(path.parent.name.split("-")[0], released)] = path.read_text(encoding="utf-8")
    return found


def test_feedback_shows_criteria_by_visibility(pages: dict[tuple[str, bool], str]) -> None:
    assert Page(pages[("alice", False)]).labels == ["engineering / style"]
    assert Page(pages[("alice", True)]).labels == [  # never `robust`: hidden
        "model / accuracy", "model / calibration", "engineering / style", "engineering / own_tests"]
    assert "3 more criteria are shared when the results are released" in pages[("alice", False)]
    # a hidden criterion counts towards the total, so the total is never shown (as on Gradescope)
    assert "76.00" not in pages[("alice", True)]


def test_feedback_never_shows_hidden_material(pages: dict[tuple[str, bool], str], cohort: Cohort) -> None:
    for (who, _), html in pages.items():
        for secret in (EXPECTED, SECRET, SEED, "0.7312", "hidden/", "HOLDOUT-ROW-17", str(cohort.assignment),
                       str(cohort.results), "no space left"):
            assert secret not in html, (who, secret)
        others = [name for key, name in CANDIDATES.items() if key != who]
        assert not [name for name in others if name in html], who
    assert STYLE in pages[("alice", False)]
    assert "KeyError: &#x27;price&#x27;" in pages[("cmd", False)]  # the candidate's own error, masked
    assert "Stage score ended with error on data candidates do not receive" in pages[("dave", False)]
    assert "not been graded yet" in pages[("bob", False)]


def test_feedback_escapes_candidate_text_and_loads_nothing(pages: dict[tuple[str, bool], str]) -> None:
    for html in pages.values():
        page = Page(html)
        assert page.tags <= {"html", "head", "meta", "title", "style", "body", "h1", "p", "strong", "code",
                             "br", "table", "thead", "tbody", "tr", "th", "td"}
        assert not page.attrs & {"src", "href", "action", "srcset", "style"}
        assert "default-src 'none'" in html
    carol = pages[("cmd", True)]
    assert "<script>" not in carol and "&lt;script&gt;alert(1)&lt;/script&gt;" in carol
    assert one_line(HOSTILE) in "".join(Page(carol).text)  # shown as written, as text
    assert "Cohort &lt;export&gt; fixture" in carol


def test_feedback_shows_the_total_when_every_criterion_is_shown() -> None:
    view = CandidateView(candidate="ann", submission_id="ann-1", title="T", key="t@1", status="ok",
                         graded=True, total=62.5, reason="", criteria=(
                             CriterionView(name="a", group=None, visibility="visible", score=0.5, weight=1,
                                           max_points=50.0, note=""),
                             CriterionView(name="b", group=None, visibility="after_published", score=0.75,
                                           weight=1, max_points=50.0, note="")))
    assert "62.50" not in render_feedback(view, released=False)
    assert "<strong>62.50</strong> / 100" in render_feedback(view, released=True)


# --- command line -----------------------------------------------------------------------------------

def test_cli_writes_csv_to_stdout(cohort: Cohort) -> None:
    done = CliRunner().invoke(app, ["export", str(cohort.assignment), "--format", "csv",
                                    "--results", str(cohort.results), "--out", "-"])
    assert done.exit_code == 0, done.output
    assert [r["candidate"] for r in read_csv(done.stdout)][0] == "alice"


@pytest.mark.parametrize(("args", "says"), [(["--format", "pdf"], "unknown format"),
                                            (["--format", "feedback", "--out", "-"], "give a folder"),
                                            (["--format", "csv", "--released"], "only feedback")])
def test_cli_usage_errors_exit_2(cohort: Cohort, args: list[str], says: str) -> None:
    done = CliRunner().invoke(app, ["export", str(cohort.assignment), "--results", str(cohort.results),
                                    *args])
    assert done.exit_code == 2 and says in done.output


def test_cli_with_no_results_writes_nothing_and_exits_2(cohort: Cohort, tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["export", str(cohort.assignment), "--results", str(tmp_path / "none"),
                                    "--out", str(tmp_path / "out")])
    assert done.exit_code == 2 and "no results" in done.output
    assert not (tmp_path / "out").exists()


# --- edges ------------------------------------------------------------------------------------------

def test_a_criterion_the_spec_no_longer_has_is_hidden_from_candidates(cohort: Cohort, tmp_path: Path) -> None:
    old = result("fay", (0.5, 0.5, 0.5, 0.5, 0.5))
    extra = old.criteria[0].model_copy(update={"name": "legacy", "group": None, "explanation": EXPECTED})
    old = old.model_copy(update={"criteria": [*old.criteria, extra]})
    results = tmp_path / "results"
    save_result(old, results / "cohort" / "2.1" / old.submission_id)
    feedback = api.export(cohort.assignment, fmt="feedback", results_dir=results, out=tmp_path / "f",
                          released=True)
    assert "legacy" not in Page(feedback.written[0].read_text()).labels  # nothing known of what it read
    gs = api.export(cohort.assignment, fmt="gradescope", results_dir=results, out=tmp_path / "g")
    test = json.loads(gs.written[0].read_text())["tests"][-1]
    assert (test["name"], test["visibility"], test["output"]) == ("legacy", "hidden", WITHHELD)
    header = api.export(cohort.assignment, fmt="csv", results_dir=results, out="-").text.splitlines()[0]
    assert header.endswith("criterion:own_tests,criterion:legacy,reason,similar_to")  # the team sees it


def test_host_paths_are_masked_and_sandbox_paths_kept(cohort: Cohort) -> None:
    mask = Masker(api.find_assignment(cohort.assignment), cohort.results)
    text = (f"FileNotFoundError: /data/train/x.csv; see /home/reviewer/inbox/fay.zip, "
            f"{cohort.results}/.cache and {cohort.assignment}/hidden/seed.txt ({SEED}); "
            "/submission/train.py line 3")
    assert mask(text) == ("FileNotFoundError: /data/train/x.csv; see [path], [path]/.cache and [path] "
                          "([secret]); /submission/train.py line 3")


def test_candidates_whose_names_make_one_folder_get_one_each(cohort: Cohort, tmp_path: Path) -> None:
    results = tmp_path / "results"
    for number, name in enumerate(("Ann Lee", "ann-lee"), 1):
        r = result(name, (0.5, 0.5, 0.5, 0.5, 0.5))
        r = r.model_copy(update={"submission_id": f"{slug(name)}-{number}"})
        save_result(r, results / "cohort" / "2.1" / r.submission_id)
    report = api.export(cohort.assignment, fmt="feedback", results_dir=results, out=tmp_path / "out")
    assert sorted(p.parent.name for p in report.written) == ["ann-lee-ann-lee-1", "ann-lee-ann-lee-2"]


# --- rubric items (manual review) ---------------------------------------------------------------------

REVIEWED_SPEC = """\
schema_version: 1
id: memo
version: "1"
title: Memo fixture
brief: BRIEF.md
visibility: after_published
data: {visible: {train: train}, public: [train]}
review_files: {memo.md: 4k}
stages:
  - {name: fit, command: [python, fit.py], timeout: 5, data: [train]}
graders:
  - {name: style, grader: fake, weight: 3}
rubric:
  - {name: clarity, description: The memo makes the call, weight: 1, max_points: 5, file: memo.md}
  - {name: tone, description: Plain words, weight: 1, visibility: visible}
"""


def reviewed(tmp_path: Path, marks: tuple[float, float] | None) -> tuple[Assignment, SubmissionResult]:
    """The abtest's case: every criterion after_published, rubric items reviewed (`marks`) or pending."""
    folder = tmp_path / "memo"
    folder.mkdir(exist_ok=True)
    (folder / "assignment.yaml").write_text(REVIEWED_SPEC)
    (folder / "BRIEF.md").write_text("brief")
    criteria = [CriterionResult(name="style", grader="fake", grader_version="1", score=0.5, weight=3,
                                explanation="2 lint findings")]
    for name, score in zip(("clarity", "tone"), marks or (0.0, 0.0), strict=True):
        criteria.append(CriterionResult(name=name, group=MANUAL_GROUP, grader="manual", grader_version="1",
                                        score=score, weight=1, explanation="the reviewer's own words",
                                        ungraded="" if marks else PENDING))
    who = "ann" if marks else "ben"
    r = SubmissionResult(key=f"k-{who}", assignment="memo", assignment_version="1",
                         submission=f"/inbox/{who}",
                         submission_id=f"{who}-1", candidate=who, status=Status.OK,
                         total_score=total_score(criteria), criteria=criteria, harness_version="0.1.0")
    return load_assignment(folder), r


def reviewed_view(tmp_path: Path, marks: tuple[float, float] | None) -> CandidateView:
    return candidate_view(*reviewed(tmp_path, marks))


def test_a_reviewed_rubric_item_is_shown_by_its_visibility_with_the_total(tmp_path: Path) -> None:
    view = reviewed_view(tmp_path, (1.0, 0.5))
    # by hand: (0.5 x 3 + 1.0 x 1 + 0.5 x 1) / 5 = 60.00; every criterion after_published but tone
    assert [(c.name, c.visibility) for c in view.criteria] == [
        ("style", "after_published"), ("clarity", "after_published"), ("tone", "visible")]
    assert {c.note for c in view.criteria[1:]} == {REVIEWED}  # never the reviewer's comment
    assert Page(render_feedback(view, released=False)).labels == ["manual / tone"]
    assert "<strong>60.00</strong> / 100" in render_feedback(view, released=True)
    tests = results_json(view, execution_time_s=1.0)["tests"]
    assert [(t["name"], t["visibility"]) for t in tests] == [
        ("style", "after_published"), ("manual / clarity", "after_published"), ("manual / tone", "visible")]


def test_a_provisional_total_is_not_shown_while_review_is_pending(tmp_path: Path) -> None:
    view = reviewed_view(tmp_path, None)
    assert view.total == 50.0  # by hand: over style alone, 0.5; the pending items count for nothing
    page = render_feedback(view, released=True)
    assert "50.00" not in page and REVIEW_PENDING in page
    assert Page(page).labels == ["style", "manual / clarity", "manual / tone"]


def test_csv_marks_a_total_provisional_while_review_is_pending(tmp_path: Path) -> None:
    assignment, ann = reviewed(tmp_path, (1.0, 0.5))
    _, ben = reviewed(tmp_path, None)
    rows = read_csv(export_csv.render(assignment, [ann, ben]))
    # ann 60.00 (reviewed), ben 50.00 over style alone (both items pending: the --json line's provisional)
    assert [(r["candidate"], r["total_score"], r["provisional"]) for r in rows] == [
        ("ann", "60.00", "false"), ("ben", "50.00", "true")]
