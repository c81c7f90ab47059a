"""`harness`: a thin command line over harness.api."""

from __future__ import annotations

import enum
import json
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from harness.defaults import DEFAULT_RESULTS
from harness.errors import HarnessError, sandbox_errors
from harness.options import GradeOptions

if TYPE_CHECKING:
    from harness.output import Console

# The commands import the API (and through it the pipeline, scipy, pydantic) when they run, not
# when the program starts: `harness --help` and a mistyped option answer at once.


class Format(enum.StrEnum):
    """The summary's format on stdout (harness.formats writes each)."""

    TABLE = "table"
    CSV = "csv"
    MARKDOWN = "markdown"
    JSON = "json"



def _plain_arguments() -> None:
    """Arguments as click shows them (ASSIGNMENT, [PATHS]...): typer 0.29 shows their Python names and
    types (`assignment <str>`) and braces required ones in the usage line (`{assignment}`)."""
    from typer.core import TyperArgument

    def usage_name(self: TyperArgument) -> str:
        name = self.display_name_raw if self.required else f"[{self.display_name_raw}]"
        return name + ("..." if self.nargs != 1 else "")

    # a property of typer's: mypy types it on the class as its getter, so a property looks like a type change
    TyperArgument.display_name_raw = property(  # type: ignore[assignment]
        lambda self: self.metavar or (self.name or "").upper())
    TyperArgument.display_type_rich = lambda self, ctx: None  # type: ignore[method-assign]
    TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]


# Plain click help (rich_markup_mode=None): no <bool>/<str> type column, and option names are
# never cut to fit a narrow terminal; value options name their value (N, DIR, URI) instead.
_plain_arguments()
app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode=None,
                  help="Grade ML take-home submissions in hardened sandboxes; results to JSON and MLflow.")
assignments_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                              help="List, show and validate assignment specs; export a candidate kit.")
app.add_typer(assignments_app, name="assignments")

ResultsDir = Annotated[Path, typer.Option("--results", metavar="DIR",
                                          help="Results root (JSON results, MLflow store).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON line per submission on stdout.")]
AssignmentArg = Annotated[str, typer.Argument(metavar="ASSIGNMENT", show_default=False,
                                              help="Assignment name (folder under assignments/) or path.")]
FormatOption = Annotated[Format, typer.Option("--format", case_sensitive=False, metavar="FORMAT",
                                              help="The summary on stdout: table (fitted to the terminal), "
                                                   "csv, markdown or json (as --json).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"harness {version('mlgrade-harness')}")
        except PackageNotFoundError:  # run from a source tree that was never installed
            from harness import __version__

            typer.echo(f"harness {__version__} (not installed)")
        raise typer.Exit()


@app.callback()
def _main(_version_flag: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                      help="Print the version and exit.")] = False) -> None:
    """Grade ML take-home submissions in hardened sandboxes; results to JSON and MLflow."""


def _print_summary(console: Console, found: list, fmt: Format, *, skipped: set[str] | None = None) -> None:
    """The summary on stdout in `fmt` (the table fitted to the terminal's width)."""
    from harness.formats import board, to_csv, to_json_lines, to_markdown
    from harness.output import summary_table

    if fmt is Format.TABLE:
        console.print_table(summary_table(found, skipped=skipped, width=console.width))
        return
    text = {Format.CSV: to_csv, Format.MARKDOWN: to_markdown, Format.JSON: to_json_lines}[fmt](board(found))
    typer.echo(text, nl=False)


@contextmanager
def _harness_errors() -> Iterator[None]:
    try:
        with sandbox_errors():  # a backstop: the API maps the sandbox's errors where it calls it
            yield
    except HarnessError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: running containers were removed; finished results are kept", err=True)
        raise typer.Exit(130) from None


@app.command()
def grade(
    assignment: AssignmentArg,
    submissions: Annotated[list[str], typer.Argument(metavar="SUBMISSION", show_default=False,
                                                     help="Folders, .zip/.tar.gz, .ipynb, git repos (a "
                                                          "folder of submissions: FOLDER/*/).")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N",
                                      help="Submissions graded in parallel.")] = GradeOptions.jobs,
    force: Annotated[bool, typer.Option("--force", help="Re-grade even what is already graded.")] = False,
    ref: Annotated[str | None, typer.Option(metavar="REF",
                                            help="Git ref to grade for git submissions.")] = None,
    as_json: JsonFlag = False,
    results_dir: ResultsDir = DEFAULT_RESULTS,
    tracking_uri: Annotated[str | None, typer.Option(
        metavar="URI", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under "
                            "--results).")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log runs to MLflow.")] = True,
    backend: Annotated[str | None, typer.Option(metavar="NAME",
                                                help="docker (default if a daemon answers), local.")] = None,
    allow_weaker_isolation: Annotated[bool, typer.Option("--allow-weaker-isolation",
                                                         help="Required with --backend local.")] = False,
    retries: Annotated[int, typer.Option(min=0, metavar="N",
                                         help="Retries of infrastructure failures.")] = GradeOptions.retries,
    cluster: Annotated[str | None, typer.Option(
        metavar="ADDRESS", envvar="HARNESS_CLUSTER", show_envvar=True,
        help="A Dask scheduler (tcp://HOST:8786): run the stages on its `harness worker`s.")] = None,
    fmt: FormatOption = Format.TABLE,
) -> None:
    """Grade submissions; exit 0 when every submission was graded."""
    from harness import api
    from harness.output import Console, similarity_lines
    from harness.progress import progress_callback

    _check_backend(backend, allow_weaker_isolation)
    as_json = as_json or fmt is Format.JSON
    console = Console()
    shown = progress_callback(console.err, total=len(submissions), as_json=as_json)
    with _harness_errors(), shown as on_event:
        options = GradeOptions(results_dir=results_dir, jobs=jobs, backend=backend, force=force, ref=ref,
                               tracking_uri=tracking_uri, log_to_mlflow=mlflow, retries=retries,
                               allow_weaker_isolation=allow_weaker_isolation, cluster=cluster)
        report = api.grade(assignment, submissions, options=options, on_event=on_event)
    if not as_json:
        skipped = {i.result.submission_id for i in report.items if i.skipped}
        _print_summary(console, [i.result for i in report.items], fmt, skipped=skipped)
        if report.tracking_uri:
            from harness.mlflow_sink import ui_base, ui_command
            from harness.mlflow_view import view_url

            console.note(f"MLflow: {ui_command(report.tracking_uri)}")
            if report.experiment_id:
                console.note(f"leaderboard: {view_url(ui_base(report.tracking_uri), report.experiment_id)}")
    if report.cpu_plan and not as_json:
        console.note(f"timing: {report.cpu_plan}")
    for line in similarity_lines(report.similarity):
        console.note(line)
    if report.cohort_page and not as_json:
        console.note(f"cohort page: {report.cohort_page}")
    for line in report.warnings:
        console.note(f"warning: {line}")
    if report.unlogged:
        console.note(f"warning: {report.unlogged} graded result(s) were not logged to MLflow; "
                     "`harness log` (or re-running) logs them")
    raise typer.Exit(report.exit_code)


def _check_backend(backend: str | None, allow_weaker_isolation: bool) -> None:
    from harness.backends import BACKENDS

    if backend is not None and backend not in BACKENDS.names():
        raise typer.BadParameter(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS.names())}",
                                 param_hint="--backend")
    if backend == "local" and not allow_weaker_isolation:
        raise typer.BadParameter("the local backend isolates less than Docker; add --allow-weaker-isolation "
                                 "to accept that", param_hint="--backend")


@app.command()
def results(assignment: AssignmentArg, as_json: JsonFlag = False,
            results_dir: ResultsDir = DEFAULT_RESULTS,
            show_all: Annotated[bool, typer.Option("--all", help="Every version a candidate submitted, "
                                                   "not just the newest.")] = False,
            fmt: FormatOption = Format.TABLE) -> None:
    """List what is already graded for ASSIGNMENT (grades nothing)."""
    from harness import api
    from harness.output import Console

    with _harness_errors():
        found = api.results(assignment, results_dir=results_dir, latest_only=not show_all)
    if as_json:
        for result in found:
            typer.echo(json.dumps(result.summary_line()))
        return
    console = Console()
    _print_summary(console, found, fmt)
    if not found:
        console.note(f"nothing graded yet for {assignment} under {results_dir}")


@app.command("review")
def review_command(
    assignment: AssignmentArg,
    candidate: Annotated[str, typer.Argument(
        metavar="CANDIDATE", show_default=False,
        help="Candidate name (or submission id) as in `harness results`.")],
    scores: Annotated[list[str] | None, typer.Option("--score", metavar="NAME=VALUE",
                                                     help="A rubric item's score (repeatable).")] = None,
    comments: Annotated[list[str] | None, typer.Option("--comment", metavar="NAME=TEXT",
                                                       help="A rubric item's comment (repeatable).")] = None,
    file: Annotated[Path | None, typer.Option("--file", metavar="FILE",
                                              help="YAML with reviewer, scores and comments.")] = None,
    reviewer: Annotated[str | None, typer.Option(
        "--reviewer", metavar="WHO", help="Who reviews (default: the file's, else your login).")] = None,
    as_json: JsonFlag = False,
    results_dir: ResultsDir = DEFAULT_RESULTS,
    tracking_uri: Annotated[str | None, typer.Option(metavar="URI", help="MLflow tracking URI.")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Update the MLflow run.")] = True,
) -> None:
    """Record a reviewer's rubric scores and comments in CANDIDATE's newest result (grades nothing)."""
    from harness import api

    with _harness_errors():
        outcome = api.review(assignment, candidate, results_dir=results_dir, scores=scores or [],
                             comments=comments or [], file=file, reviewer=reviewer, tracking_uri=tracking_uri,
                             log_to_mlflow=mlflow)
    result = outcome.result
    if as_json:
        typer.echo(json.dumps(result.summary_line()))
    else:
        total = "n/a" if result.total_score is None else f"{result.total_score:.2f}"
        pending = f" (provisional: pending {', '.join(result.pending_review)})" \
            if result.pending_review else ""
        who = result.review.reviewer if result.review else "?"
        typer.echo(f"{result.candidate}: reviewed by {who}; total {total}{pending}; {outcome.folder}")
    if outcome.warning:
        typer.echo(f"warning: {outcome.warning}", err=True)


@app.command("export")
def export_command(
    assignment: AssignmentArg,
    fmt: Annotated[str, typer.Option("--format", metavar="FORMAT",
                                     help="csv, gradescope or feedback.")] = "csv",
    results_dir: ResultsDir = DEFAULT_RESULTS,
    out: Annotated[str | None, typer.Option(
        "--out", metavar="DIR",
        help="Folder to write into (default exports/<id>-<version>); - : CSV on stdout.")] = None,
    released: Annotated[bool, typer.Option(
        "--released", help="Feedback: add the criteria shown after the due date or once published.")] = False,
) -> None:
    """Export the newest result of each candidate as CSV, Gradescope results.json or candidate-safe
    feedback pages (grades nothing)."""
    from harness import api
    from harness.exports import FORMATS

    if fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}",
                                 param_hint="--format")
    if out == "-" and fmt != "csv":
        raise typer.BadParameter(f"--format {fmt} writes one file per candidate: give a folder",
                                 param_hint="--out")
    if released and fmt != "feedback":  # CSV is the team's (everything); Gradescope applies visibility itself
        raise typer.BadParameter("only feedback pages are released", param_hint="--released")
    with _harness_errors():
        report = api.export(assignment, fmt=fmt, results_dir=results_dir, out=out,  # type: ignore[arg-type]
                            released=released)
    for line in [*report.skipped, *report.problems]:
        typer.echo(f"warning: {line}", err=True)
    if not report.results:
        typer.echo(f"error: no results for {assignment} under {results_dir}: grade first, or give "
                   "the folder with --results", err=True)
        raise typer.Exit(2)
    if report.text is not None:
        typer.echo(report.text, nl=False)
        return
    for path in report.written:
        typer.echo(str(path))


@app.command("report")
def report_command(assignment: AssignmentArg, results_dir: ResultsDir = DEFAULT_RESULTS) -> None:
    """Rebuild the cohort page (results/<id>/<version>/index.html) and each candidate's page from
    the results on disk (grades nothing); print the cohort page's path."""
    from harness import api

    with _harness_errors():
        typer.echo(str(api.report(assignment, results_dir=results_dir)))


@app.command()
def check(
    assignment: Annotated[str, typer.Argument(help="Assignment name or path, or a candidate kit folder.")],
    submission: Annotated[Path, typer.Argument(help="The submission folder.")],
    run: Annotated[bool, typer.Option("--run", help="Also run the stages on the public data, in the "
                                      "grading image and sandbox, and check what they write.")] = False,
    backend: Annotated[str | None, typer.Option(metavar="NAME", help="With --run: docker (default if a "
                                                                     "daemon answers), local.")] = None,
    allow_weaker_isolation: Annotated[bool, typer.Option("--allow-weaker-isolation",
                                                         help="Required with --backend local.")] = False,
    results_dir: ResultsDir = DEFAULT_RESULTS,
) -> None:
    """Check a submission folder against the contract before handing in: its files (and with --run,
    its stages on the public data and their outputs; never hidden data, never a result); exit 4
    when something will fail."""
    from harness import api
    from harness.kit import check_submission

    _check_backend(backend, allow_weaker_isolation)
    with _harness_errors():
        loaded = api.find_checkable(assignment)
    if not submission.is_dir():
        raise typer.BadParameter(f"{submission} is not a folder", param_hint="SUBMISSION")
    with _harness_errors():
        checks = (api.check_run(loaded, submission, backend=backend, results_dir=results_dir,
                                allow_weaker_isolation=allow_weaker_isolation).checks
                  if run else check_submission(loaded, submission))
    for item in checks:
        typer.echo(f"{item.level:<5}{item.text}")
    raise typer.Exit(4 if any(c.level == "fail" for c in checks) else 0)


@app.command()
def demo(assignment: Annotated[str, typer.Argument(help="Assignment whose examples to grade.")] = "ranker",
         jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, metavar="N",
                                           help="Submissions graded in parallel.")] = 2,
         results_dir: ResultsDir = DEFAULT_RESULTS,
         force: Annotated[bool, typer.Option("--force", help="Re-grade the examples.")] = False) -> None:
    """Grade an assignment's example submissions (default: ranker) and print the leaderboard."""
    from harness import api

    with _harness_errors():
        folder = api.find_assignment(assignment).dir / "examples"
        examples = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    grade(assignment, [str(p) for p in examples], jobs=jobs, force=force, ref=None, as_json=False,
          results_dir=results_dir, tracking_uri=None, mlflow=True, backend=None, allow_weaker_isolation=False,
          retries=GradeOptions.retries)


@app.command()
def prepare(assignments: Annotated[list[str], typer.Argument(help="Assignment names or paths.")],
            results_dir: ResultsDir = DEFAULT_RESULTS) -> None:
    """Build the images and data ASSIGNMENTS need (cached; a later grade builds nothing)."""
    from harness import api

    with _harness_errors():
        for assignment in assignments:
            typer.echo(f"{assignment}: {api.prepare(assignment, results_dir=results_dir)}")


@app.command()
def clean(images: Annotated[bool, typer.Option("--images", help="Also remove candidates' requirement "
                                               "images (rebuilt when needed).")] = False) -> None:
    """Remove stage containers left behind by a harness process that was killed."""
    from harness import api

    with _harness_errors():
        containers, removed = api.clean(images=images)
    typer.echo(f"removed {containers} leftover container(s)" + (f" and {removed} image(s)" if images else ""))


@app.command()
def worker(
    cluster: Annotated[str, typer.Option(metavar="ADDRESS", envvar="HARNESS_CLUSTER", show_envvar=True,
                                         help="The Dask scheduler to work for (tcp://HOST:8786).")],
    slots: Annotated[int, typer.Option(min=1, metavar="N", help="Submissions run at once.")] = 1,
    host: Annotated[str | None, typer.Option(metavar="HOST",
                                             help="Address to listen on (default: the one facing the "
                                                  "scheduler).")] = None,
    name: Annotated[str | None, typer.Option(metavar="NAME", help="Worker name (default: host-pid).")] = None,
    results_dir: ResultsDir = DEFAULT_RESULTS,
) -> None:
    """Run submissions' sandboxed stages for `harness grade --cluster` (a Dask worker; images and
    visible data cached under --results/.cache). Removes containers a killed worker left first."""
    from harness.worker import serve

    with _harness_errors():
        serve(cluster=cluster, slots=slots, cache=results_dir / ".cache", host=host, name=name)


@app.command("log")
def log_command(assignment: AssignmentArg, results_dir: ResultsDir = DEFAULT_RESULTS,
                tracking_uri: Annotated[str | None, typer.Option(metavar="URI",
                                                                 help="MLflow tracking URI.")] = None,
                ) -> None:
    """Log the results on disk to MLflow (idempotent: a result already logged is not logged again)."""
    from harness import api

    with _harness_errors():
        count = api.log_results(assignment, results_dir=results_dir, tracking_uri=tracking_uri)
    typer.echo(f"{count} result(s) are in MLflow")


@app.command()
def ui(results_dir: ResultsDir = DEFAULT_RESULTS,
       port: Annotated[int, typer.Option(metavar="PORT", help="The UI's port on 127.0.0.1.")] = 5000,
       serve: Annotated[bool, typer.Option(help="Start the MLflow UI, not just print it.")] = False) -> None:
    """Print (or run) the command that opens the MLflow UI on the results, and each assignment's
    leaderboard (its runs sorted by total score)."""
    from harness.mlflow_sink import default_tracking_uri, leaderboard_urls, ui_command

    uri = default_tracking_uri(results_dir.resolve())
    command = ui_command(uri, port=port)
    with _harness_errors():
        urls = leaderboard_urls(uri, port=port)
    if not serve or not uri.startswith("sqlite:"):
        typer.echo(command)
    for name, url in urls:
        typer.echo(f"{name} leaderboard: {url}", err=serve)
    if not serve or not uri.startswith("sqlite:"):
        return
    import shlex
    import subprocess

    raise typer.Exit(subprocess.call(shlex.split(command)))


@assignments_app.command("list")
def assignments_list() -> None:
    """Every assignment under the assignments root, and whether its spec is valid."""
    from harness import api

    for folder, loaded in api.list_assignments():
        if isinstance(loaded, HarnessError):
            typer.echo(f"{folder.name:<16} INVALID  {str(loaded).splitlines()[-1].strip()}")
        else:
            typer.echo(f"{loaded.spec.id:<16} {loaded.spec.version:<8} {loaded.spec.title}")


@assignments_app.command("show")
def assignments_show(assignment: str) -> None:
    """Print the validated spec (with defaults filled in) as JSON."""
    from harness import api

    with _harness_errors():
        loaded = api.find_assignment(assignment)
    typer.echo(loaded.spec.model_dump_json(indent=2))


@assignments_app.command("kit")
def assignments_kit(
    assignment: AssignmentArg,
    dest: Annotated[Path, typer.Argument(metavar="DEST", show_default=False,
                                         help="A new (or empty) folder to write the kit into.")],
    results_dir: ResultsDir = DEFAULT_RESULTS,
) -> None:
    """Write the candidate kit: the brief, the starter kit and the public data (never hidden data)."""
    from harness import api

    with _harness_errors():
        written = api.export_kit(assignment, dest, results_dir=results_dir)
    for path in written:
        typer.echo(str(path))


@assignments_app.command("validate")
def assignments_validate(paths: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Validate specs (all, or the given names/paths), including each grader's arguments."""
    from harness import api
    from harness.runtime import build_graders

    targets = paths or [str(folder) for folder, _ in api.list_assignments()]
    failed = 0
    for target in targets:
        try:
            loaded = api.find_assignment(target)
            build_graders(loaded)
            typer.echo(f"ok       {loaded.key}")
        except HarnessError as exc:
            failed = exc.exit_code
            typer.echo(f"invalid  {exc}", err=True)
    raise typer.Exit(failed)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    typer.echo(f"warning: {message}", err=True)


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up like Ctrl-C: running containers are removed


def main() -> None:
    warnings.showwarning = _show_warning
    signal.signal(signal.SIGTERM, _interrupt)
    app()
