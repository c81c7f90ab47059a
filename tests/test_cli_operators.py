"""What an operator sees from the command line (issue 13, "Operators"): names of the known
assignments, usage errors (exit 2, one line) for a non-empty kit folder, an inbox given as one
submission and a missing results folder; the batch's steps and ETA; the leaderboard at 80 columns
and in CSV, Markdown and JSON; --version and the help at 80 columns.

Everything runs through the real command line (typer's CliRunner, in-process) on results the
tests write themselves, or on the toy assignment played by the fake backend: nothing is graded
in a sandbox."""

from __future__ import annotations

import csv
import io
import json
import shutil
from importlib.metadata import version
from pathlib import Path

import pytest
import typer
from markdown_it import MarkdownIt
from rich.console import Console
from typer.testing import CliRunner

from harness import api
from harness.batch import BatchItem, StepStarted
from harness.cli import app
from harness.core import CriterionResult
from harness.formats import board, to_csv
from harness.inbox import inbox_globs
from harness.progress import BatchProgress, eta_seconds
from harness.results import Status, SubmissionResult, ranks, save_result
from tests.fakes import FIXTURES, FakeBackend, install_fake_backend, make_submission

TOY = FIXTURES / "assignments" / "toy"


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(app, list(args), env=env)


def error_lines(done) -> list[str]:
    return [line for line in done.output.splitlines() if line.strip()]


# --- 1. an unknown assignment lists the assignments' names ----------------------------------------

UNKNOWN = [["grade", "nosuch", "x"], ["results", "nosuch"], ["log", "nosuch"], ["check", "nosuch", "."],
           ["prepare", "nosuch"], ["assignments", "show", "nosuch"], ["assignments", "kit", "nosuch", "k"]]


@pytest.mark.parametrize("command", UNKNOWN, ids=lambda c: c[1] if c[0] == "assignments" else c[0])
def test_an_unknown_assignment_names_the_known_ones(tmp_path, command):
    root = tmp_path / "assignments"
    for name in ("alpha", "beta"):  # two assignments whose spec files are both assignment.yaml
        shutil.copytree(TOY, root / name)
    done = cli(*command, env={"HARNESS_ASSIGNMENTS": str(root)})
    assert done.exit_code == 3, done.output
    assert "known: alpha, beta" in done.output
    assert "assignment.yaml," not in done.output


def test_a_near_miss_is_suggested(tmp_path):
    root = tmp_path / "assignments"
    shutil.copytree(TOY, root / "ranker")
    done = cli("results", "rankr", env={"HARNESS_ASSIGNMENTS": str(root)})
    assert done.exit_code == 3 and "did you mean 'ranker'?" in done.output


# --- 2. a kit into a non-empty folder is a usage error ---------------------------------------------

def test_a_kit_into_a_folder_that_is_not_empty_is_a_usage_error(tmp_path):
    (tmp_path / "kit").mkdir()
    (tmp_path / "kit" / "notes.txt").write_text("mine\n")
    done = cli("assignments", "kit", str(TOY), str(tmp_path / "kit"), "--results", str(tmp_path / "r"))
    assert done.exit_code == 2
    assert error_lines(done) == [f"error: {tmp_path / 'kit'} is not empty: choose a new folder for the kit"]
    assert sorted(p.name for p in (tmp_path / "kit").iterdir()) == ["notes.txt"]


# --- 3. an inbox folder given as one submission ----------------------------------------------------

def test_an_inbox_folder_is_refused_with_the_glob_to_type(tmp_path):
    for name in ("alice", "bob"):
        make_submission(tmp_path / "subs", name)  # each holds run.py, the toy contract's file
    done = cli("grade", str(TOY), str(tmp_path / "subs"), "--backend", "local", "--allow-weaker-isolation",
               "--no-mlflow", "--results", str(tmp_path / "results"))
    assert done.exit_code == 2, done.output
    subs = tmp_path / "subs"
    assert error_lines(done) == [f"error: {subs} is a folder of 2 submissions, not one submission: grade "
                                 f"them with `harness grade {TOY} {subs}/*/`"]
    assert not (tmp_path / "results" / "toy").exists()  # nothing graded


def test_what_counts_as_an_inbox(tmp_path):
    toy = api.find_assignment(TOY)
    one = make_submission(tmp_path, "one")  # a submission with sub-folders that hold run.py too
    make_submission(one, "nested")
    make_submission(one, "tools")
    assert inbox_globs(toy, str(one)) == ([], 0)  # it has run.py of its own: one submission
    wrapped = tmp_path / "wrapped"
    make_submission(wrapped, "inner")
    assert inbox_globs(toy, str(wrapped)) == ([], 0)  # one candidate's wrapped folder: graded as given
    zips = tmp_path / "zips"
    zips.mkdir()
    for name in ("alice.zip", "bob.zip", "README.txt"):
        (zips / name).write_bytes(b"PK")
    assert inbox_globs(toy, str(zips)) == ([f"{zips}/*.zip"], 2)
    spaced = tmp_path / "my subs"
    for name in ("a", "b", "c"):
        make_submission(spaced, name)
    assert inbox_globs(toy, str(spaced)) == ([f"'{spaced}'/*/"], 3)  # quoted for the shell


# --- 4. a missing results folder -----------------------------------------------------------------

def test_results_from_a_missing_folder_is_a_usage_error(tmp_path):
    done = cli("results", str(TOY), "--results", str(tmp_path / "nonexistent"))
    assert done.exit_code == 2
    assert len(error_lines(done)) == 1
    assert error_lines(done)[0].startswith(f"error: no results folder {tmp_path / 'nonexistent'}")


def test_log_opens_no_store_where_nothing_was_graded(tmp_path):
    missing = cli("log", str(TOY), "--results", str(tmp_path / "missing"))
    assert missing.exit_code == 2 and len(error_lines(missing)) == 1
    assert error_lines(missing)[0].startswith(f"error: no results folder {tmp_path / 'missing'}")
    (tmp_path / "empty").mkdir()
    empty = cli("log", str(TOY), "--results", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and len(error_lines(empty)) == 1
    assert "nothing to log: no result of toy@1.0" in empty.output
    assert not (tmp_path / "missing").exists() and list((tmp_path / "empty").iterdir()) == []


# --- 5. progress: each submission's step, and the batch's ETA ----------------------------------------

def test_the_batch_tells_each_step_as_it_starts(tmp_path):
    install_fake_backend(FakeBackend({}))
    events = []
    sub = make_submission(tmp_path / "subs", "alice")
    api.grade(TOY, [str(sub)], results_dir=tmp_path / "results", backend="fake", log_to_mlflow=False,
              on_event=events.append)
    steps = [payload.step for kind, payload in events if kind == "stage"]
    assert all(isinstance(p, StepStarted) and p.source == str(sub) for k, p in events if k == "stage")
    assert steps == ["intake", "fit", "answer", "scoring"]  # the toy spec's stages, in its order
    # "queued" comes from the batch's thread, the rest from the worker's, in this order
    assert [kind for kind, _ in events if kind != "queued"] == ["start", *["stage"] * 4, "done"]


def test_eta_is_the_graded_rate_times_what_is_left():
    # hand computation: 2 graded in 60 s (30 s each, whatever the parallelism); 3 left: 90 s
    assert eta_seconds(elapsed=60.0, graded=2, remaining=3) == pytest.approx(90.0)
    assert eta_seconds(elapsed=5.0, graded=0, remaining=3) is None  # nothing to go by yet
    assert eta_seconds(elapsed=5.0, graded=1, remaining=0) == 0.0


def test_the_display_never_passes_a_folder_names_escapes_to_the_terminal():
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True)  # a terminal: rich's own codes allowed
    shown = BatchProgress(console, total=1, write_json=None)
    shown(("start", "subs/\x1b]0;x\x07eve\x1b[31mred/"))
    console.print(shown.renderable())
    text = out.getvalue()
    # an OSC title write (ESC ] ... BEL) and a colour (ESC [ 31 m) must not reach the terminal whole
    assert "\x1b]0;" not in text and "\x07" not in text and "\x1b[31m" not in text
    assert "]0;x evered" in text  # the colour removed whole, ESC and BEL as spaces (core.text.one_line)


def test_the_display_shows_steps_in_flight_and_the_eta():
    clock = [0.0]
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=False)
    shown = BatchProgress(console, total=3, write_json=None, get_time=lambda: clock[0])
    for source in ("subs/alice/", "subs/bob/"):
        shown(("start", source))
    shown(("stage", StepStarted("subs/alice/", "train")))
    shown(("stage", StepStarted("subs/bob/", "predict/first")))
    clock[0] = 40.0
    item = BatchItem("subs/bob/", _result("bob", 50.0), None)
    shown(("done", item))
    console.print(shown.renderable())
    text = out.getvalue()
    lines = text.splitlines()
    assert "1/3" in lines[0] and "eta 0:01:20" in lines[0]  # 40 s for one graded, two left
    assert any("alice" in line and "train" in line for line in lines[1:])
    assert not any("bob" in line for line in lines[1:])  # done: no longer in flight


def test_grade_keeps_stdout_for_json_lines_and_prints_its_summary_in_a_format(tmp_path):
    install_fake_backend(FakeBackend({}))
    subs = [make_submission(tmp_path / "subs", name) for name in ("alice", "bob")]
    done = CliRunner().invoke(app, ["grade", str(TOY), *map(str, subs), "--backend", "fake", "--json",
                                    "--no-mlflow", "--results", str(tmp_path / "results")])
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert sorted(json.loads(line)["candidate"] for line in lines) == ["alice", "bob"]
    again = CliRunner().invoke(app, ["grade", str(TOY), *map(str, subs), "--backend", "fake", "--format",
                                     "csv", "--no-mlflow", "--results", str(tmp_path / "results")])
    assert again.exit_code == 0, again.output
    rows = list(csv.DictReader(io.StringIO(again.stdout)))  # grade's summary in the same forms as results'
    assert sorted((r["candidate"], r["status"]) for r in rows) == [("alice", "ok"), ("bob", "ok")]


# --- 6. the leaderboard at 80 columns, and as CSV, Markdown and JSON ---------------------------------

LONG = "a-candidate-with-a-very-long-folder-name"
HOSTILE = '=HYPERLINK("http://x") | *bold* [link](javascript:x) <script>alert(1)</script>, "quoted"'


def _result(candidate: str, score: float, *, message: str = "",
            status: Status = Status.OK) -> SubmissionResult:
    criteria = [CriterionResult(name=n, group=g, grader="fake", grader_version="1", score=score / 100,
                                weight=1, explanation="-")
                for n, g in (("ndcg", None), ("hidden_tests", None), ("code_quality", "engineering"))]
    return SubmissionResult(key=candidate, assignment="toy", assignment_version="1.0", submission=candidate,
                            submission_id=f"{candidate}-0", candidate=candidate, status=status,
                            total_score=score, message=message, criteria=criteria, harness_version="0",
                            duration_s=12.5)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A results folder as grading leaves it: three toy results, one long name, one hostile message."""
    results = tmp_path_factory.mktemp("stored") / "results"
    for result in (_result(LONG, 91.0), _result("bob", 75.5),
                   _result("eve", 0.0, status=Status.ERROR, message=HOSTILE)):
        save_result(result, results / "toy" / "1.0" / result.submission_id)
    return results


def test_the_table_fits_80_columns_and_cuts_names_rather_than_folding_them(stored):
    done = cli("results", str(TOY), "--results", str(stored), env={"COLUMNS": "80"})
    assert done.exit_code == 0, done.output
    lines = done.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    rows = [line for line in lines if line[:1].isdigit()]
    assert len(rows) == 3  # one line per candidate: nothing folded onto a second line
    assert rows[0].startswith("1  a-candidate-with") and "…" in rows[0] and "91.0" in rows[0]
    assert rows[1].split()[:4] == ["2", "bob", "ok", "75.5"]


def test_csv_round_trips_candidate_text_and_defuses_formulas(stored):
    done = cli("results", str(TOY), "--results", str(stored), "--format", "csv")
    assert done.exit_code == 0, done.output
    rows = list(csv.DictReader(io.StringIO(done.stdout)))
    assert [r["candidate"] for r in rows] == [LONG, "bob", "eve"]
    assert rows[0]["total"] == "91" and rows[0]["ndcg"] == "91" and rows[0]["engineering"] == "91"
    # OWASP CSV injection: a cell starting with = is prefixed with ' so a spreadsheet shows it as text
    assert rows[2]["message"] == "'" + HOSTILE


def test_markdown_cells_hold_candidate_text_literally(stored):
    done = cli("results", str(TOY), "--results", str(stored), "--format", "markdown")
    assert done.exit_code == 0, done.output
    tokens = MarkdownIt("commonmark").enable("table").parse(done.stdout)  # the reference parser
    assert not [t for t in tokens if t.type in ("html_block", "html_inline")]
    rows, row = [], None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "inline" and row is not None:
            assert all(child.type == "text" for child in token.children), token.children  # no link, emphasis
            row.append("".join(child.content for child in token.children))
        elif token.type == "tr_close":
            rows.append(row)
    header, *body = rows
    assert header[:4] == ["#", "candidate", "status", "total"] and len({len(r) for r in rows}) == 1
    assert body[2][1] == "eve" and body[2][-1] == HOSTILE and body[0][1] == LONG


def test_ties_share_a_rank_and_the_ungraded_have_none():
    # the rule (harness.results.ranks, as harness export has it): competition ranking 1, 2, 2, 4; an
    # ungraded result (infra error, no total) gets no number, never one after the last
    found = [_result(n, s) for n, s in (("ann", 80.0), ("bob", 60.0), ("cid", 60.0), ("dee", 10.0))]
    found.append(_result("eve", 0.0, status=Status.INFRA_ERROR).model_copy(update={"total_score": None}))
    shown = board(found)
    assert [(row[0], row[1]) for row in shown.rows] == [
        ("1", "ann"), ("2", "bob"), ("2", "cid"), ("4", "dee"), ("—", "eve")]
    assert [r["rank"] for r in csv.DictReader(io.StringIO(to_csv(shown)))] == ["1", "2", "2", "4", ""]
    assert ranks([]) == [] and ranks(found[3:]) == [1, None]


def test_format_json_is_the_json_lines(stored):
    as_format = cli("results", str(TOY), "--results", str(stored), "--format", "json")
    as_flag = cli("results", str(TOY), "--results", str(stored), "--json")
    assert as_format.exit_code == as_flag.exit_code == 0
    assert as_format.stdout == as_flag.stdout
    assert [json.loads(line)["candidate"] for line in as_format.stdout.splitlines()] == [LONG, "bob", "eve"]


# --- 7. --version and the help at 80 columns ------------------------------------------------------

def test_version_is_the_installed_package_version():
    done = cli("--version")
    assert done.exit_code == 0 and done.stdout.strip() == f"harness {version('mlgrade-harness')}"


def _commands(group, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command of the CLI's click tree (typer bundles its own click), by its path."""
    found = [(path, group)]
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            found += _commands(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


@pytest.mark.parametrize("path", [p for p, _ in _commands(typer.main.get_command(app))],
                         ids=lambda p: " ".join(p) or "harness")
def test_help_at_80_columns_has_no_type_placeholders_and_whole_option_names(path):
    command = dict(_commands(typer.main.get_command(app)))[path]
    done = cli(*path, "--help", env={"COLUMNS": "80"})
    assert done.exit_code == 0
    text = done.stdout
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "<bool>" not in text and "<str>" not in text and "<int" not in text and "<path>" not in text
    names = ["--help", *(opt for param in command.params if param.param_type_name == "option"
                         for opt in (*param.opts, *param.secondary_opts))]
    words = text.replace(",", " ").split()
    assert all(name in words for name in names), text  # each option name whole, none cut
