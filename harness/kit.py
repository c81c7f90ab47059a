"""The candidate kit: what a hiring team sends a candidate (brief, starter kit, public data, and
`check.yaml`, the spec without its hidden parts, for `harness check KIT SUBMISSION`), and the
static self-check of a submission against the assignment's contract."""

from __future__ import annotations

import functools
import importlib.util
import json
import shutil
from pathlib import Path
from types import ModuleType

import yaml

from harness.check_contract import SMOKE_OUTPUT, Check, json_check, schema_for
from harness.data import materialize
from harness.errors import SpecError, UsageError
from harness.spec import Assignment, AssignmentSpec, GraderSpec, ProbeSpec, load_spec
from sandbox import RUNNERS_DIR, RUNNERS_MOUNT

KIT_SPEC = "check.yaml"  # in a kit: the spec `harness check` runs, with nothing hidden
__all__ = ["KIT_SPEC", "Check", "check_submission", "export_kit", "load_kit", "public_spec"]


def export_kit(assignment: Assignment, dest: Path, *, cache_root: Path) -> list[Path]:
    """Write the brief, the starter kit and the data sets listed in `data.public` into `dest`.

    Hidden data and the assignment's secrets never go in. Returns the paths written (top level).
    Raises UsageError if `dest` exists and is not an empty folder, SpecError/InfraError from the data.
    """
    if dest.exists() and not dest.is_dir():
        raise UsageError(f"{dest} is a file: choose a new folder for the kit")
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"{dest} is not empty: choose a new folder for the kit")
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
    if public_spec(spec)[0].stages:  # else the check has nothing to run: the kit has no check.yaml
        written.append(dest / KIT_SPEC)
        written[-1].write_text(_kit_yaml(assignment), encoding="utf-8")
        written.append(dest / "CHECK.md")
        written[-1].write_text(_CHECK_MD.format(title=spec.title), encoding="utf-8")
    return written


def public_spec(spec: AssignmentSpec) -> tuple[AssignmentSpec, list[tuple[str, str]]]:
    """The spec as far as it runs on public data: only the public data sets (no hidden ones), and
    only the stages that mount nothing else (a stage with runs keeps its public runs, a service whose
    probe reads other data gets the smoke probe instead); with the (stage, why) of each stage left
    out. Its graders are the original's: nothing runs them."""
    public = set(spec.data.public)
    stages, skipped = [], []
    for stage in spec.stages:
        private = sorted(set(stage.data) - public)
        if stage.pytest is not None and stage.pytest.hidden:
            skipped.append((stage.name, "it runs the hiring team's held-out tests"))
        elif private:
            skipped.append((stage.name, f"it reads data that is not public ({', '.join(private)})"))
        elif stage.probe is not None and set(stage.probe.data) - public:
            stages.append(stage.model_copy(update={"probe": smoke_probe(stage.probe)}))
        elif stage.runs and not public & set(stage.runs):
            skipped.append((stage.name, "none of its runs is on public data"))
        else:
            stages.append(stage.model_copy(update={"runs": tuple(r for r in stage.runs if r in public)}))
    visible = {n: p for n, p in spec.data.visible.items() if n in public}
    data = spec.data.model_copy(update={"visible": visible, "hidden": {}})
    return spec.model_copy(update={"stages": tuple(stages), "data": data}), skipped


_CHECK_MD = """# Checking your submission before you hand it in ({title})

Install the grading harness the hiring team sent you (`pip install <the wheel or repository>`),
start Docker, and run from this folder:

    harness check . path/to/your/submission --run

It runs your submission as it will be graded (same image, same sandbox, same limits) on the public
data in `data/`, checks what it writes against the contract in the brief, and prints one line per
item: `ok`, `warn` or `fail` (exit code 4 when something will fail). Without `--run` it only checks
the files, in a second. Without Docker: `--backend local --allow-weaker-isolation` (your machine's
Python packages, weaker isolation). Nothing here is graded and nothing is sent anywhere.
"""
_SMOKE_FLAGS = ("--manifest", "--health-timeout", "--n-features", "--n-classes")


def smoke_probe(probe: ProbeSpec) -> ProbeSpec:
    """In place of a probe that reads hidden inputs: the smoke probe (sandbox/runners/smoke.py,
    /health then one /predict), given the graded probe's manifest, health timeout and shapes."""
    command = list(probe.command)
    flags = [arg for flag in _SMOKE_FLAGS if flag in command[:-1]
             for arg in (flag, command[command.index(flag) + 1])]
    return ProbeSpec(command=("python", "-s", "-E", f"{RUNNERS_MOUNT}/smoke.py", *flags,
                              "--out", f"/output/{SMOKE_OUTPUT}"),
                     timeout=min(probe.timeout, 180.0), outputs={SMOKE_OUTPUT: 64 << 10},
                     cpus=probe.cpus, memory=probe.memory)


def _kit_yaml(assignment: Assignment) -> str:
    """check.yaml: the public spec with the kit's own paths (data/<name>, no generator) and one
    placeholder grader (a spec needs one; the check runs none), so nothing in it names hidden material."""
    spec, _ = public_spec(assignment.spec)
    data = spec.data.model_copy(update={"generator": None,
                                        "visible": {n: f"data/{n}" for n in spec.data.public}})
    kit = spec.model_copy(update={
        # the reviewers' rubric and files are the team's business, not the check's
        "data": data, "brief": Path(spec.brief).name, "review_files": {}, "rubric": (),
        "graders": (GraderSpec(name="stages_finish", grader="completion", weight=1.0),)})
    raw = kit.model_dump(mode="json", exclude_defaults=True)
    raw.update(schema_version=spec.schema_version, id=spec.id, version=spec.version)
    for stage in raw["stages"]:
        if "pytest" in stage:  # the harness writes a test stage's command and outputs itself
            for generated in ("command", "outputs"):
                stage.pop(generated, None)
    header = (f"# {spec.title}: the spec `harness check` runs on the public data of this kit.\n"
              f"# Check a submission with: harness check <this folder> <your submission folder>\n")
    return header + yaml.safe_dump(raw, sort_keys=False)


def load_kit(directory: Path) -> Assignment:
    """The assignment of a kit folder (its check.yaml). Raises SpecError if it is not a kit."""
    spec = load_spec(directory / KIT_SPEC)
    for rel in (spec.brief, spec.starter, *spec.data.visible.values()):
        if rel is not None and not (directory / rel).exists():
            raise SpecError(f"{directory / KIT_SPEC}: {rel!r} is missing from the kit; export it again")
    return Assignment(spec, directory.resolve())


# --- the candidate's self-check (`harness check ASSIGNMENT SUBMISSION`) --------------------------------

_NOTEBOOK_MAX = 16 << 20
_REQUIREMENTS_MAX = 64 << 10
_RUNNER = f"{RUNNERS_MOUNT}/run.py"  # the notebook runner, as stage commands name it


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
    checks += _schema_checks(assignment, submission) + _requirements_checks(assignment, submission)
    for stage in spec.stages:
        params, entries = _notebook_stage(stage.command)
        entry = next((e for e in entries if (submission / e).is_file()), None)
        if entry and entry.endswith(".ipynb") and params:
            checks.append(_parameters_check(submission / entry, entry, params))
    return checks


def _schema_checks(assignment: Assignment, submission: Path) -> list[Check]:
    """Each required JSON file (serve.json) against the starter kit's schema for it."""
    return [json_check(submission / name, name, schema) for name in assignment.spec.required_files
            if (schema := schema_for(assignment, name)) is not None and (submission / name).is_file()]


def _requirements_checks(assignment: Assignment, submission: Path) -> list[Check]:
    """requirements.txt line by line, by the rule the image build applies (pinned `name==version`)."""
    path = submission / "requirements.txt"
    if not (assignment.spec.image.candidate_requirements and path.is_file()):
        return []
    from sandbox.images import RequirementsError, parse_requirements

    try:
        with path.open("rb") as fh:
            lines = parse_requirements(fh.read(_REQUIREMENTS_MAX + 1).decode("utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return [Check("fail", f"requirements.txt is unreadable: {exc}")]
    except RequirementsError as exc:
        return [Check("fail", f"requirements.txt: {exc}")]
    return [Check("ok", f"requirements.txt: {len(lines)} pinned requirement(s)")]


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
