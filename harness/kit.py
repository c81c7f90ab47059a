"""The candidate kit: what a hiring team sends a candidate (brief, starter kit, public data), and
the static self-check of a submission against the assignment's contract."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from harness.data import materialize
from harness.errors import HarnessError
from harness.spec import Assignment
from sandbox import RUNNERS_DIR, RUNNERS_MOUNT


def export_kit(assignment: Assignment, dest: Path, *, cache_root: Path) -> list[Path]:
    """Write the brief, the starter kit and the data sets listed in `data.public` into `dest`.

    Hidden data and the assignment's secrets never go in. Returns the paths written (top level).
    Raises HarnessError if `dest` exists and is not empty, SpecError/InfraError from the data.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise HarnessError(f"{dest} exists and is not empty: choose a new folder for the kit")
    spec = assignment.spec
    dest.mkdir(parents=True, exist_ok=True)
    written = [dest / Path(spec.brief).name]
    shutil.copyfile(assignment.path(spec.brief), written[0])
    if spec.starter:
        written.append(dest / "starter")
        shutil.copytree(assignment.path(spec.starter), written[-1], symlinks=True)
    if spec.data.public:
        sets = materialize(assignment, cache_root=cache_root)
        for name in spec.data.public:
            written.append(dest / "data" / name)
            shutil.copytree(sets.visible[name], written[-1])
    return written


# --- the candidate's self-check (`harness check ASSIGNMENT SUBMISSION`) --------------------------------

_NOTEBOOK_MAX = 16 << 20
_RUNNER = f"{RUNNERS_MOUNT}/run.py"  # the notebook runner, as stage commands name it


@dataclass(frozen=True)
class Check:
    """One line of the self-check: `level` is ok, warn or fail."""

    level: str
    text: str


def check_submission(assignment: Assignment, submission: Path) -> list[Check]:
    """What can be told about a submission folder without running it: the files the contract
    requires, and for each notebook a stage runs with parameters, its cell tagged `parameters`
    (without one, the values land in a new first cell and a cell that sets them again wins, as
    papermill warns). Never runs the candidate's code; raises nothing for odd files."""
    spec = assignment.spec
    checks = [Check("ok" if (submission / f).is_file() else "fail", f"required file {f}")
              for f in spec.required_files]
    if spec.required_one_of:
        found = [f for f in spec.required_one_of if (submission / f).is_file()]
        checks.append(Check("ok" if found else "fail", f"one of {' or '.join(spec.required_one_of)}"
                            + (f": {found[0]} is used" if found else " is required")))
    for stage in spec.stages:
        params, entries = _notebook_stage(stage.command)
        entry = next((e for e in entries if (submission / e).is_file()), None)
        if entry and entry.endswith(".ipynb") and params:
            checks.append(_parameters_check(submission / entry, entry, params))
    return checks


def _notebook_stage(command: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """(parameter names, entries) of a stage that runs the notebook runner, else ([], [])."""
    if _RUNNER not in command:
        return [], []
    args = list(command[command.index(_RUNNER) + 1:])
    params, entries = [], []
    while args:
        arg = args.pop(0)
        if arg in ("--param", "--executed") and args:
            value = args.pop(0)
            if arg == "--param":
                params.append(value.partition("=")[0])
        else:
            entries.append(arg)
    return params, entries


@functools.cache
def _runner() -> ModuleType:
    """The notebook runner (sandbox/runners/run.py, standard library only at import): the self-check
    reads tags and assignments exactly as the runner does."""
    spec = importlib.util.spec_from_file_location("mlgrade_notebook_runner", RUNNERS_DIR / "run.py")
    assert spec is not None and spec.loader is not None  # noqa: S101 - a file shipped with the package
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _parameters_check(path: Path, entry: str, params: list[str]) -> Check:
    try:
        with path.open("rb") as fh:
            cells = json.loads(fh.read(_NOTEBOOK_MAX + 1)[:_NOTEBOOK_MAX]).get("cells")
    except (OSError, ValueError, AttributeError, RecursionError):
        return Check("fail", f"{entry} is not a readable notebook (nbformat 4 JSON)")
    cells = [c for c in cells if isinstance(c, dict)] if isinstance(cells, list) else []
    runner = _runner()
    if any(runner.PARAMETERS_TAG in runner.cell_tags(c) for c in cells):
        return Check("ok", f"{entry} has a cell tagged \"parameters\" "
                           f"({', '.join(params)} are injected after it)")
    setters = [f"cell {n} sets {', '.join(sorted(names))}" for n, c in enumerate(cells, 1)
               if c.get("cell_type") == "code" and (names := runner.assigned_names(_source(c)) & set(params))]
    where = f"; {'; '.join(setters[:5])}, which would override them" if setters else ""
    return Check("warn", f"{entry} has no cell tagged \"parameters\": the harness's {', '.join(params)} "
                         f"would go in a new first cell{where}. Give the cell that defines them the cell tag "
                         "\"parameters\", as papermill expects")


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(s for s in source if isinstance(s, str)) if isinstance(source, list) else str(source)
