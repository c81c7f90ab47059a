"""`harness`: a thin command line over harness.api."""

from __future__ import annotations

import json
import signal
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from harness import api
from harness.errors import HarnessError
from harness.output import Console, progress_callback, similarity_lines, summary_table

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Grade ML take-home submissions in hardened sandboxes; results to JSON and MLflow.")
assignments_app = typer.Typer(no_args_is_help=True,
                              help="List, show and validate assignment specs; export a candidate kit.")
app.add_typer(assignments_app, name="assignments")

ResultsDir = Annotated[Path, typer.Option("--results", help="Results root (JSON results, MLflow store).")]
JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON line per submission on stdout.")]


@contextmanager
def _harness_errors() -> Iterator[None]:
    try:
        yield
    except HarnessError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted: running containers were removed; finished results are kept", err=True)
        raise typer.Exit(130) from None


@app.command()
def grade(
    assignment: Annotated[str, typer.Argument(help="Assignment name (folder under assignments/) or path.")],
    submissions: Annotated[list[str], typer.Argument(help="Directories, .zip/.tar.gz, .ipynb, git repos.")],
    jobs: Annotated[int, typer.Option("--jobs", "-j", min=1, help="Submissions graded in parallel.")] = 1,
    force: Annotated[bool, typer.Option("--force", help="Re-grade even what is already graded.")] = False,
    ref: Annotated[str | None, typer.Option(help="Git ref to grade for git submissions.")] = None,
    as_json: JsonFlag = False,
    results_dir: ResultsDir = api.DEFAULT_RESULTS,
    tracking_uri: Annotated[str | None, typer.Option(
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite under --results).")] = None,
    mlflow: Annotated[bool, typer.Option("--mlflow/--no-mlflow", help="Log runs to MLflow.")] = True,
    backend: Annotated[str | None, typer.Option(help="docker (default if a daemon answers), local.")] = None,
    allow_weaker_isolation: Annotated[bool, typer.Option("--allow-weaker-isolation",
                                                         help="Required with --backend local.")] = False,
    retries: Annotated[int, typer.Option(min=0, help="Retries of infrastructure failures.")] = 2,
) -> None:
    """Grade submissions; exit 0 when every submission was graded."""
    _check_backend(backend, allow_weaker_isolation)
    console = Console()
    with _harness_errors(), progress_callback(console, total=len(submissions), as_json=as_json) as on_event:
        report = api.grade(assignment, submissions, results_dir=results_dir, jobs=jobs, backend=backend,
                           force=force, ref=ref, tracking_uri=tracking_uri, log_to_mlflow=mlflow,
                           retries=retries, allow_weaker_isolation=allow_weaker_isolation, on_event=on_event)
    if not as_json:
        skipped = {i.result.submission_id for i in report.items if i.skipped}
        console.print_table(summary_table([i.result for i in report.items], skipped=skipped))
        if report.tracking_uri:
            from harness.mlflow_sink import ui_command

            console.note(f"MLflow: {ui_command(report.tracking_uri)}")
    for line in similarity_lines(report.similarity):
        console.note(line)
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
def results(assignment: str, as_json: JsonFlag = False, results_dir: ResultsDir = api.DEFAULT_RESULTS,
            show_all: Annotated[bool, typer.Option("--all", help="Every version a candidate submitted, "
                                                   "not just the newest.")] = False) -> None:
    """List what is already graded for ASSIGNMENT (grades nothing)."""
    with _harness_errors():
        found = api.results(assignment, results_dir=results_dir, latest_only=not show_all)
    if as_json:
        for result in found:
            typer.echo(json.dumps(result.summary_line()))
    else:
        Console().print_table(summary_table(found))


@app.command()
def check(assignment: Annotated[str, typer.Argument(help="Assignment name or path.")],
          submission: Annotated[Path, typer.Argument(help="The submission folder.")]) -> None:
    """Check a submission folder against the contract before handing it in (runs nothing); exit 4
    when something required is missing."""
    from harness.kit import check_submission

    with _harness_errors():
        loaded = api.find_assignment(assignment)
    if not submission.is_dir():
        raise typer.BadParameter(f"{submission} is not a folder", param_hint="SUBMISSION")
    checks = check_submission(loaded, submission)
    for item in checks:
        typer.echo(f"{item.level:<5}{item.text}")
    raise typer.Exit(4 if any(c.level == "fail" for c in checks) else 0)


@app.command()
def demo(assignment: Annotated[str, typer.Argument(help="Assignment whose examples to grade.")] = "ranker",
         jobs: Annotated[int, typer.Option("--jobs", "-j", min=1)] = 2,
         results_dir: ResultsDir = api.DEFAULT_RESULTS,
         force: Annotated[bool, typer.Option("--force", help="Re-grade the examples.")] = False) -> None:
    """Grade an assignment's example submissions (default: ranker) and print the leaderboard."""
    with _harness_errors():
        folder = api.find_assignment(assignment).dir / "examples"
        examples = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    grade(assignment, [str(p) for p in examples], jobs=jobs, force=force, ref=None, as_json=False,
          results_dir=results_dir, tracking_uri=None, mlflow=True, backend=None, allow_weaker_isolation=False,
          retries=2)


@app.command()
def prepare(assignments: Annotated[list[str], typer.Argument(help="Assignment names or paths.")],
            results_dir: ResultsDir = api.DEFAULT_RESULTS) -> None:
    """Build the images and data ASSIGNMENTS need (cached; a later grade builds nothing)."""
    with _harness_errors():
        for assignment in assignments:
            typer.echo(f"{assignment}: {api.prepare(assignment, results_dir=results_dir)}")


@app.command()
def clean(images: Annotated[bool, typer.Option("--images", help="Also remove candidates' requirement "
                                               "images (rebuilt when needed).")] = False) -> None:
    """Remove stage containers left behind by a harness process that was killed."""
    with _harness_errors():
        containers, removed = api.clean(images=images)
    typer.echo(f"removed {containers} leftover container(s)" + (f" and {removed} image(s)" if images else ""))


@app.command("log")
def log_command(assignment: str, results_dir: ResultsDir = api.DEFAULT_RESULTS,
                tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI.")] = None,
                ) -> None:
    """Log the results on disk to MLflow (idempotent: a result already logged is not logged again)."""
    with _harness_errors():
        count = api.log_results(assignment, results_dir=results_dir, tracking_uri=tracking_uri)
    typer.echo(f"{count} result(s) are in MLflow")


@app.command()
def ui(results_dir: ResultsDir = api.DEFAULT_RESULTS, port: int = 5000,
       serve: Annotated[bool, typer.Option(help="Start the MLflow UI, not just print it.")] = False) -> None:
    """Print (or run) the command that opens the MLflow UI on the results."""
    from harness.mlflow_sink import default_tracking_uri, ui_command

    uri = default_tracking_uri(results_dir.resolve())
    command = ui_command(uri, port=port)
    if not serve or not uri.startswith("sqlite:"):
        typer.echo(command)
        return
    import shlex
    import subprocess

    raise typer.Exit(subprocess.call(shlex.split(command)))


@assignments_app.command("list")
def assignments_list() -> None:
    """Every assignment under the assignments root, and whether its spec is valid."""
    for folder, loaded in api.list_assignments():
        if isinstance(loaded, HarnessError):
            typer.echo(f"{folder.name:<16} INVALID  {str(loaded).splitlines()[-1].strip()}")
        else:
            typer.echo(f"{loaded.spec.id:<16} {loaded.spec.version:<8} {loaded.spec.title}")


@assignments_app.command("show")
def assignments_show(assignment: str) -> None:
    """Print the validated spec (with defaults filled in) as JSON."""
    with _harness_errors():
        loaded = api.find_assignment(assignment)
    typer.echo(loaded.spec.model_dump_json(indent=2))


@assignments_app.command("kit")
def assignments_kit(
    assignment: str,
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder to write the kit into.")],
    results_dir: ResultsDir = api.DEFAULT_RESULTS,
) -> None:
    """Write the candidate kit: the brief, the starter kit and the public data (never hidden data)."""
    with _harness_errors():
        written = api.export_kit(assignment, dest, results_dir=results_dir)
    for path in written:
        typer.echo(str(path))


@assignments_app.command("validate")
def assignments_validate(paths: Annotated[list[str] | None, typer.Argument()] = None) -> None:
    """Validate specs (all, or the given names/paths), including each grader's arguments."""
    from harness.pipeline import build_graders

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
