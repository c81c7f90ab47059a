"""Fakes for unit tests of pipeline logic. Nothing here claims to test Docker or a real grader."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from harness.backends import BACKENDS
from harness.core import CriterionResult, Grader, GradingContext, grader
from harness.data import materialize
from harness.runtime import Runtime, build_graders
from harness.spec import Assignment
from sandbox import RunRequest, RunResult, SandboxBackend, StageStatus

FIXTURES = Path(__file__).parent / "fixtures"
Script = Callable[[RunRequest, Path], RunResult]  # (request, host path of /output) -> result


def ok(text: str = "") -> Script:
    """A stage that succeeds, writing `text` to answer.txt when given."""

    def play(request: RunRequest, output: Path) -> RunResult:
        if text:
            (output / "answer.txt").write_text(text)
        return RunResult(status=StageStatus.OK, exit_code=0, seconds=0.01, log=f"{request.name} ran\n")

    return play


def fail(status: StageStatus = StageStatus.ERROR, code: int | None = 1) -> Script:
    def play(request: RunRequest, output: Path) -> RunResult:
        return RunResult(status=status, exit_code=code, seconds=0.01, log="Traceback: boom\n", detail="boom")

    return play


class FakeBackend(SandboxBackend):
    """Plays scripted stage outcomes keyed by (submission folder name, stage name)."""

    name = "fake"

    def __init__(self, scripts: dict[tuple[str, str], Script], default: Script | None = None) -> None:
        self.scripts = scripts
        self.default = default or ok("42")
        self.calls: list[tuple[str, str]] = []
        self.run_as = (0, 0)
        self._lock = threading.Lock()

    def run(self, request: RunRequest) -> RunResult:
        submission = next((m.source for m in request.mounts if m.target == "/submission"), None)
        output = next((m.source for m in request.mounts if m.target == "/output"), None)
        named = submission is not None and (submission / "NAME").exists()
        candidate = (submission / "NAME").read_text().strip() if named else "?"  # type: ignore[union-attr]
        with self._lock:
            self.calls.append((candidate, request.name))
        return self.scripts.get((candidate, request.name), self.default)(request, output)  # type: ignore[arg-type]


class ExactAnswerArgs(BaseModel):
    answer_file: str = "answer.txt"


@grader("exact_answer")
class ExactAnswerGrader(Grader):
    """Fake grader for pipeline tests: 1 if answer.txt equals the hidden answer."""

    version = "1"
    Args = ExactAnswerArgs

    def grade(self, ctx: GradingContext) -> CriterionResult:
        out = ctx.outputs[self.args.answer_file]
        if out.path is None:
            return self.criterion(score=0, metrics={}, explanation=f"no answer: {out.problem}")
        if out.path.read_text() == "crash-the-grader":
            raise RuntimeError("grader bug")
        expected = (ctx.hidden["answers"] / "answer.txt").read_text()
        right = out.path.read_text().strip() == expected
        return self.criterion(score=float(right), metrics={"right": float(right)}, explanation="compared")


def install_fake_backend(backend: FakeBackend) -> None:
    """Register `backend` as the "fake" sandbox backend for run_batch."""

    def runtime(assignment: Assignment, *, cache: Path, **_: object) -> Runtime:
        return Runtime(backend=backend, data=materialize(assignment, cache_root=cache),
                       graders=build_graders(assignment))

    BACKENDS._items["fake"] = runtime


def make_submission(root: Path, name: str, files: dict[str, str] | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    for rel, text in {"run.py": "print('hi')\n", "NAME": name, **(files or {})}.items():
        (folder / rel).write_text(text)
    return folder


class RunAnswerArgs(BaseModel):
    answer_file: str = "answer.txt"
    run: str


@grader("run_answer")
class RunAnswerGrader(Grader):
    """Fake grader for tests of stage runs: 1 if `<run>/answer.txt` matches the hidden line."""

    version = "1"
    Args = RunAnswerArgs

    def grade(self, ctx: GradingContext) -> CriterionResult:
        out = ctx.outputs[f"{self.args.run}/{self.args.answer_file}"]
        if out.path is None:
            return self.criterion(score=0, metrics={}, explanation=f"no answer: {out.problem}")
        lines = (ctx.hidden["answers"] / "answers.txt").read_text().splitlines()
        right = f"{self.args.run}={out.path.read_text().strip()}" in lines
        return self.criterion(score=float(right), metrics={}, explanation="compared")
