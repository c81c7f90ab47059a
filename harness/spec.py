"""Assignment specs: versioned YAML, validated strictly, with errors that name file and field."""

from __future__ import annotations

import difflib
import re
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from harness.core.names import plain_file_name
from harness.errors import SpecError
from harness.rubric import MANUAL_GROUP, RubricItem
from sandbox import Limits

SPEC_FILE = "assignment.yaml"
SCHEMA_VERSION = 1
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.IGNORECASE)
_NAME = r"^[a-z][a-z0-9_-]{0,62}$"
_NAME_RE = re.compile(_NAME)
_PATH_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$")
RUN_INPUT = "input"  # a stage run's data set is mounted at /data/input
SECRETS_DIR = "hidden"  # the assignment folder's secrets (harness/data.py passes it to the generator)


def parse_size(value: Any) -> int:
    """'512m', '2g', '1.5GiB', 1048576 -> bytes (binary units)."""
    if isinstance(value, bool):
        raise ValueError("a size is a number of bytes or a string such as '512m'")
    if isinstance(value, int):
        return value
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"{value!r} is not a size; write bytes or e.g. '512m', '2g'")
    number, unit = float(match[1]), match[2].lower()
    return int(number * (1 << (10 * " kmgt".index(unit or " "))))


def relative_path(value: str) -> str:
    """Check and normalise a plain relative path ('test/' -> 'test', './a//b' -> 'a/b').

    Raises ValueError (naming the fix) for an empty, absolute or Windows path, a `..` part, or a
    part outside letters, digits and `. _ -`: such a path could leave the assignment folder.
    """
    if "\\" in value or re.match(r"^[A-Za-z]:", value):
        raise ValueError(f"{value!r}: write paths with forward slashes, relative to the assignment folder")
    if value.startswith("/"):
        raise ValueError(f"{value!r} is absolute; give a path relative to the assignment folder")
    parts = [p for p in value.split("/") if p not in ("", ".")]
    if not parts:
        raise ValueError(f"{value!r} names no file or folder; give a relative path such as 'data/train'")
    for part in parts:
        if part == "..":
            raise ValueError(f"{value!r} has a '..' part; give a plain path inside the assignment folder")
        if not _PATH_PART.match(part):
            raise ValueError(f"{value!r}: {part!r} must be letters, digits, '.', '_' or '-' "
                             "(no spaces or other characters)")
    return "/".join(parts)


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not a name: use lower-case letters, digits, '_' and '-', "
                         "starting with a letter (at most 63 characters)")
    return value


Size = Annotated[int, BeforeValidator(parse_size), Field(gt=0)]
RelPath = Annotated[str, AfterValidator(relative_path)]
Name = Annotated[str, AfterValidator(_name)]
FileName = Annotated[str, AfterValidator(plain_file_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class ImageSpec(_Strict):
    base: str = "auto"  # auto | debian | python:3.11-slim | any image already present locally
    python_packages: tuple[str, ...] = ()
    candidate_requirements: bool = True  # install the submission's requirements.txt (binary wheels only)


class LimitsSpec(_Strict):
    cpus: float = Field(1.0, gt=0, le=64)
    memory: Size = 1 << 30
    pids: int = Field(256, ge=8, le=32768)
    output: Size = 1 << 20
    tmpfs: Size = 256 << 20
    disk: Size = 1 << 30


class DataSpec(_Strict):
    generator: RelPath | None = None  # file in the assignment folder defining materialize(root, hidden_dir)
    visible: dict[Name, RelPath] = Field(default_factory=dict)  # name -> subfolder; mountable at /data/<name>
    hidden: dict[Name, RelPath] = Field(default_factory=dict)  # name -> subfolder; graders only
    public: tuple[Name, ...] = ()  # visible data sets that go to candidates (`harness assignments kit`)

    @field_validator("visible")
    @classmethod
    def _not_secrets(cls, visible: dict[str, str]) -> dict[str, str]:
        for vname, vpath in visible.items():
            if PurePosixPath(vpath).parts[0] == SECRETS_DIR:  # without a generator, that is the seed folder
                raise ValueError(f"visible data {vname!r} ({vpath}) lies in {SECRETS_DIR}/, the assignment's "
                                 "secrets folder; move it to another folder")
        return visible

    @model_validator(mode="after")
    def _disjoint(self) -> DataSpec:
        unknown = sorted(set(self.public) - set(self.visible))
        if unknown:
            raise ValueError(f"public data sets {unknown} are not visible data sets {sorted(self.visible)}")
        for hname, hpath in self.hidden.items():
            for vname, vpath in self.visible.items():
                h, v = PurePosixPath(hpath), PurePosixPath(vpath)
                if h == v or v in h.parents or h in v.parents:
                    raise ValueError(f"hidden data {hname!r} ({hpath}) overlaps visible data "
                                     f"{vname!r} ({vpath}); hidden data must never be mounted, "
                                     "so give the two separate folders")
        return self


class QuietSpec(_Strict):
    """How quiet the machine must be for a service's timing criteria to be graded (README
    "Fair latency"). Before the service, a reference server shipped with the harness is measured
    in the same image, under the same limits, on the same cores; during the probe's timed phases
    the host's CPU counters show what other processes took from those cores. Beyond either bound
    the service is measured again, after a pause, up to `retries` times; if the machine stays
    busy, `criteria` are left ungraded (status machine_busy), never scored low."""

    criteria: tuple[str, ...] = Field(min_length=1)  # the criteria a busy machine would falsify
    phases: tuple[str, ...] = ("latency", "capacity")  # probe.json sections whose `window`s are checked
    reference_p99_ms: float = Field(gt=0)  # the reference server's p99 at `rate` on an idle machine
    max_reference_p99_ms: float = Field(gt=0)  # busy beyond this
    max_other_cores: float = Field(0.25, gt=0)  # cores used by other processes, mean over a window
    rate: float = Field(100.0, gt=0)  # the reference run's requests/s
    duration: float = Field(2.0, gt=0, le=60)  # its measured seconds
    warmup: float = Field(0.5, ge=0, le=60)
    retries: int = Field(2, ge=0, le=5)
    backoff: float = Field(10.0, ge=0, le=600)  # seconds before the first re-measurement, doubling
    #: modules imported in the assignment's image (harness-controlled: no candidate package) just
    #: before each measurement, so the server's cold start does not depend on what the page cache
    #: kept from earlier work (a cold torch import took 15-23 s here, a warm one 2-3 s)
    warm_imports: tuple[Annotated[str, Field(pattern=r"^[A-Za-z_][\w.]*$")], ...] = ()

    @model_validator(mode="after")
    def _bounds(self) -> QuietSpec:
        if self.max_reference_p99_ms <= self.reference_p99_ms:
            raise ValueError("max_reference_p99_ms must be above reference_p99_ms")
        return self


class ProbeSpec(_Strict):
    """A harness-owned client run next to a service stage, in the stage's network namespace."""

    command: tuple[str, ...] = Field(min_length=1)
    timeout: float = Field(gt=0, le=6 * 3600)
    data: tuple[str, ...] = ()  # visible data sets mounted at /data/<name> in the probe only
    outputs: dict[FileName, Size] = Field(default_factory=dict)  # read back from the probe's /output
    cpus: float = Field(1.0, gt=0, le=64)
    memory: Size = 1 << 30
    quiet: QuietSpec | None = None  # timing criteria need a quiet machine


TEST_PACKAGES = ("pytest==9.0.3", "coverage==7.17.4")  # in the image of any assignment with test stages
TESTS_MOUNT = "/opt/mlgrade-tests"  # a hidden test suite, read-only, in its own stage only
CANDIDATE_SUITE = "submission"
TEST_OUTPUTS = {"junit.xml": 4 << 20, "coverage.json": 8 << 20, "run.json": 64 << 10}


class PytestSpec(_Strict):
    """A test stage: pytest run by the harness's runner, its report parsed outside the sandbox."""

    #: "submission": the candidate's own tests, with line coverage of the candidate's code;
    #: otherwise a folder of the assignment holding a hidden suite, mounted read-only at
    #: /opt/mlgrade-tests and run with the harness's configuration (the submission's conftest,
    #: ini files, plugins and sitecustomize are not loaded).
    suite: RelPath = CANDIDATE_SUITE

    @property
    def hidden(self) -> bool:
        return self.suite != CANDIDATE_SUITE

    def command(self, stage: str) -> tuple[str, ...]:
        """The runner's command line: isolated (-I) and without site (-S): no .pth file, no
        sitecustomize and no PYTHON* variable runs before the runner has set pytest up."""
        return ("python", "-I", "-S", "/opt/mlgrade/pytest_run.py", "--mode",
                "hidden" if self.hidden else "own", "--prefix", stage)


class StageSpec(_Strict):
    name: Name
    command: tuple[str, ...] = Field(min_length=1)
    timeout: float = Field(gt=0, le=24 * 3600)  # wall seconds
    data: tuple[str, ...] = ()  # visible data sets mounted read-only at /data/<name>
    #: Run the stage once per data set named here, each in a fresh container with that data set at
    #: /data/input and a private copy of /workspace; outputs are then collected as "<run>/<file>".
    runs: tuple[str, ...] = ()
    outputs: dict[FileName, Size] = Field(default_factory=dict)  # file in /output -> max bytes read back
    #: Makes the stage a service (e.g. an HTTP server): the probe starts next to it, and the
    #: service is stopped when the probe ends. The probe's outputs are graded like the stage's.
    probe: ProbeSpec | None = None
    #: A test stage (see PytestSpec): the harness writes its command and outputs.
    pytest: PytestSpec | None = None
    #: When false, the stage is independent of the others (e.g. tests): it runs even when an
    #: earlier stage failed, and its own failure is reported by its criteria, not as the
    #: submission's status. Test stages default to false, others to true.
    blocking: bool = True
    #: "copy": the stage runs in a writable working copy of the submission at /submission, made once
    #: per submission and shared by its stages in order (a model file a stage writes beside its
    #: script is there for the next); each run of a `runs` stage gets a private copy of it. The
    #: original stays read-only: it is what is hashed and graded for quality. "read_only": the
    #: original itself, mounted read-only.
    submission: Literal["copy", "read_only"] = "copy"

    @model_validator(mode="before")
    @classmethod
    def _test_stage(cls, raw: Any) -> Any:
        """A `pytest:` stage gets the runner's command and the report files as outputs."""
        if not isinstance(raw, dict) or raw.get("pytest") is None:
            return raw
        clash = sorted({"command", "outputs", "runs", "probe"} & set(raw))
        if clash:
            raise ValueError(f"a pytest stage has no {', '.join(clash)}: the harness runs the suite "
                             "and collects its report")
        suite = PytestSpec.model_validate(raw["pytest"])
        name = str(raw.get("name", ""))
        raw = {"blocking": False, **raw}  # tests are independent of the other stages unless told
        files = {f: cap for f, cap in TEST_OUTPUTS.items() if not (suite.hidden and f == "coverage.json")}
        return {**raw, "pytest": suite, "command": suite.command(name),
                "outputs": {f"{name}.{file}": cap for file, cap in files.items()}}

    @field_validator("runs")
    @classmethod
    def _distinct_runs(cls, runs: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(runs)) != len(runs):
            raise ValueError(f"runs repeat: {list(runs)}")
        return runs

    @model_validator(mode="after")
    def _probe_fits(self) -> StageSpec:
        if self.probe is None:
            return self
        if self.runs:
            raise ValueError(f"stage {self.name!r}: a stage has either runs or a probe, not both")
        if self.probe.timeout >= self.timeout:
            raise ValueError(f"stage {self.name!r}: the probe's timeout ({self.probe.timeout:g} s) must be "
                             f"shorter than the stage's ({self.timeout:g} s), which bounds the service")
        return self

    def output_keys(self) -> list[str]:
        """How graders find this stage's outputs: "<file>", or "<run>/<file>" for each run."""
        probe = list(self.probe.outputs) if self.probe else []
        if not self.runs:
            return list(self.outputs) + probe
        return [f"{run}/{name}" for run in self.runs for name in self.outputs]

    @field_validator("command", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        if isinstance(v, str):
            raise ValueError("give the command as a list of arguments, e.g. [python, train.py]")
        return v


class SimilaritySpec(_Strict):
    """Copy detection across each batch (harness.similarity): pairs at or over `threshold` are flagged."""

    enabled: bool = True
    threshold: float = Field(0.5, gt=0, le=1)  # shared fingerprints / the smaller submission's
    max_share: float = Field(0.25, gt=0, le=1)  # fingerprints in more of the batch are boilerplate
    min_shared: int = Field(15, ge=1)  # fewer shared fingerprints never flag a pair


#: When a candidate may see a criterion, in Gradescope's words (autograder specification,
#: https://gradescope-autograders.readthedocs.io/en/latest/specs/, "Controlling Test Case
#: Visibility"): never, after the due date, once the grades are published, or always. Listed from
#: the most open to the most closed; `harness export` shows the last two only with `--released`.
Visibility = Literal["visible", "after_due_date", "after_published", "hidden"]
VISIBILITIES: tuple[Visibility, ...] = get_args(Visibility)


class GraderSpec(_Strict):
    name: Name  # criterion name
    group: Name | None = None  # criteria of a group share one column in the summary table
    grader: str  # registered grader
    weight: float = Field(gt=0)
    args: dict[str, Any] = Field(default_factory=dict)
    #: Criteria this one needs to count, with the least score each must reach (a list means: above
    #: 0): a criterion never rewards a submission that does not do the task (e.g. code quality of
    #: a ranker that ranks no better than the given bm25 feature).
    requires: dict[Name, Annotated[float, Field(ge=0, le=1)]] = Field(default_factory=dict)
    #: when candidates see this criterion (harness export); None: the assignment's `visibility`
    visibility: Visibility | None = None

    @field_validator("requires", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, list | tuple):
            if len(set(value)) != len(value):
                raise ValueError(f"requires repeats a criterion: {list(value)}")
            return dict.fromkeys(value, 0.0)
        return value


class AssignmentSpec(_Strict):
    schema_version: Literal[1]
    id: Name
    version: Annotated[str, Field(pattern=r"^\d+(\.\d+){0,2}$")]
    title: str = Field(min_length=1)
    brief: RelPath  # markdown file, relative to the assignment folder
    starter: RelPath | None = None  # starter kit folder
    image: ImageSpec = ImageSpec()
    limits: LimitsSpec = LimitsSpec()
    data: DataSpec = DataSpec()
    required_files: tuple[RelPath, ...] = ()  # relative to the submission's root
    required_one_of: tuple[RelPath, ...] = ()  # at least one of these must exist (e.g. notebook or script)
    review_files: dict[RelPath, Size] = Field(default_factory=dict)  # copied (capped) for reviewers
    stages: tuple[StageSpec, ...] = Field(min_length=1)
    graders: tuple[GraderSpec, ...] = Field(min_length=1)
    similarity: SimilaritySpec = SimilaritySpec()
    visibility: Visibility = "visible"  # the criteria's default (Gradescope's default too)
    #: items a reviewer scores by hand (`harness review`): criteria of group "manual", pending
    #: (the total provisional) until scored; see harness.review
    rubric: tuple[RubricItem, ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _drop_extensions(cls, raw: Any) -> Any:
        """Top-level keys starting with `x-` hold YAML anchors for reuse; the harness ignores them."""
        if isinstance(raw, dict):
            return {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
        return raw

    @field_validator("version", mode="before")
    @classmethod
    def _version_is_text(cls, v: Any) -> Any:
        if not isinstance(v, str):  # YAML turns 1.10 into 1.1, so the number may not be what was written
            raise ValueError(f"got the number {v!r}; quote the version, e.g. version: \"1.10\" "
                             "(unquoted YAML reads 1.10 as the number 1.1)")
        return v

    @model_validator(mode="after")
    def _references(self) -> AssignmentSpec:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names repeat: {names}")
        for stage in self.stages:
            probe_data = set(stage.probe.data) if stage.probe else set()
            unknown = (set(stage.data) | set(stage.runs) | probe_data) - set(self.data.visible)
            if unknown:
                hint = " (hidden data can never be mounted)" if unknown & set(self.data.hidden) else ""
                raise ValueError(f"stage {stage.name!r} mounts unknown data {sorted(unknown)}{hint}; "
                                 f"visible data sets: {sorted(self.data.visible)}")
            if stage.pytest and stage.pytest.hidden:
                self._check_suite(stage.name, PurePosixPath(stage.pytest.suite))
            if stage.runs and RUN_INPUT in stage.data:
                raise ValueError(f"stage {stage.name!r} has runs, which use /data/{RUN_INPUT}: "
                                 f"rename the data set {RUN_INPUT!r}")
        owner: dict[str, str] = {}
        for stage in self.stages:
            for output in stage.output_keys():
                if output in owner:
                    raise ValueError(f"output {output!r} is declared by stages {owner[output]!r} and "
                                     f"{stage.name!r}; each output file belongs to one stage")
                owner[output] = stage.name
        criteria = [g.name for g in self.graders]
        if len(set(criteria)) != len(criteria):
            raise ValueError(f"grader names repeat: {criteria}")
        for stage in self.stages:
            quiet = stage.probe.quiet if stage.probe else None
            wrong = [c for c in quiet.criteria if c not in criteria] if quiet else []
            if wrong:
                raise ValueError(f"stage {stage.name!r}: probe.quiet.criteria {wrong} are not criteria; "
                                 f"criteria: {criteria}")
            if quiet and stage.runs:
                raise ValueError(f"stage {stage.name!r}: probe.quiet is for a service without runs")
        gating = {g.name for g in self.graders if g.requires}
        for g in self.graders:
            wrong = [r for r in g.requires if r not in criteria or r == g.name or r in gating]
            if wrong:
                raise ValueError(f"grader {g.name!r} requires {wrong}: name other criteria, which require "
                                 f"none themselves; criteria: {criteria}")
        self._check_visibility()
        self._check_rubric()
        ungrouped = {g.name for g in self.graders if g.group is None}
        clash = sorted({g.group for g in self.graders if g.group} & ungrouped)
        if clash:
            raise ValueError(f"group {clash[0]!r} has the name of an ungrouped criterion: the summary "
                             "would merge them; rename one")
        return self

    def criterion_visibility(self, name: str) -> Visibility:
        """The visibility of criterion `name`: its own, else the assignment's. Raises KeyError."""
        own = {g.name: g.visibility for g in self.graders} | {r.name: r.visibility for r in self.rubric}
        return own[name] or self.visibility  # type: ignore[return-value]

    def _check_visibility(self) -> None:
        """A criterion with `requires` scores 0 when what it requires fails, so its score tells
        that; it may not be shown before the criteria it requires."""
        rank = {v: i for i, v in enumerate(VISIBILITIES)}
        for g in self.graders:
            own = self.criterion_visibility(g.name)
            later = [r for r in g.requires if rank[self.criterion_visibility(r)] > rank[own]]
            if later:
                shown = self.criterion_visibility(later[0])
                raise ValueError(f"grader {g.name!r} is {own} but requires {later} ({shown}): its score "
                                 f"tells whether {later[0]} did the task, so give it visibility: "
                                 f"{shown} (or a later one)")

    def _check_rubric(self) -> None:
        """Rubric items are criteria of group "manual": their names are new, the group is theirs,
        and the file an item judges is one the reviewer gets (review_files)."""
        names = [r.name for r in self.rubric]
        taken = {g.name for g in self.graders} | {g.group for g in self.graders if g.group}
        if len(set(names)) != len(names):
            raise ValueError(f"rubric item names repeat: {names}")
        clash = sorted(set(names) & taken | ({MANUAL_GROUP} & taken if names else set()))
        if clash:
            raise ValueError(f"rubric: {clash} name graders or groups already; rubric items are "
                             f"criteria of the group {MANUAL_GROUP!r}: rename them")
        for item in self.rubric:
            if item.file is not None and item.file not in self.review_files:
                raise ValueError(f"rubric item {item.name!r}: file {item.file!r} is not one of "
                                 f"review_files {sorted(self.review_files)}")
            if item.visibility is not None and item.visibility not in VISIBILITIES:
                raise ValueError(f"rubric item {item.name!r}: visibility {item.visibility!r} is not one "
                                 f"of {list(VISIBILITIES)}")

    def _check_suite(self, stage: str, suite: PurePosixPath) -> None:
        """A hidden suite is mounted in the sandbox: it must not hold secrets or reach candidates."""
        shared = {"the secrets folder": PurePosixPath(SECRETS_DIR)}
        if self.starter:
            shared["the starter kit"] = PurePosixPath(self.starter)
        folders = {**self.data.visible, **self.data.hidden}
        shared |= {f"data {n!r}": PurePosixPath(p) for n, p in folders.items()}
        for what, path in shared.items():
            if suite == path or path in suite.parents or suite in path.parents:
                raise ValueError(f"stage {stage!r}: the test suite {str(suite)!r} overlaps {what} "
                                 f"({path}); keep hidden tests in a folder of their own, e.g. hidden_tests")

    def image_packages(self) -> tuple[str, ...]:
        """The assignment's packages, plus pytest and coverage when a stage runs tests."""
        tests = TEST_PACKAGES if any(s.pytest for s in self.stages) else ()
        named = {re.split(r"[<>=!~\[; ]", p, maxsplit=1)[0].lower() for p in self.image.python_packages}
        return self.image.python_packages + tuple(p for p in tests if p.split("==")[0] not in named)

    def stage_limits(self, stage: StageSpec) -> Limits:
        lim = self.limits
        return Limits(cpus=lim.cpus, memory_bytes=lim.memory, pids=lim.pids, timeout_s=stage.timeout,
                      output_bytes=lim.output, tmpfs_bytes=lim.tmpfs, disk_bytes=lim.disk)


class Assignment:
    """A loaded spec plus the folder it lives in."""

    def __init__(self, spec: AssignmentSpec, directory: Path) -> None:
        self.spec = spec
        self.dir = directory

    @property
    def key(self) -> str:
        return f"{self.spec.id}@{self.spec.version}"

    def path(self, relative: str) -> Path:
        return self.dir / relative


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of keeping the last one."""


def _no_duplicates(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *anchor`: merged keys may be overridden
            continue
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicates)


def _model_at(loc: tuple) -> type[BaseModel] | None:
    """The spec model that holds the key at `loc` (stage indexes skipped), if the path leads to one."""
    model: type[BaseModel] = AssignmentSpec
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        candidates = [field.annotation, *get_args(field.annotation)]
        found = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
        if not found:
            return None
        model = found[0]
    return model


def _message(e: Any) -> str:
    if e["type"] == "extra_forbidden":
        model = _model_at(tuple(e["loc"][:-1]))
        if model is not None:
            known = sorted(model.model_fields)
            close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            return f"unknown key; {hint}allowed here: {', '.join(known)}"
        return "unknown key; remove it"
    return str(e["msg"]).removeprefix("Value error, ")


def _format_error(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid assignment spec"]
    errors = err.errors()
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "too_short" and any(tuple(o["loc"])[:len(loc)] == loc != tuple(o["loc"])
                                            for o in errors):
            continue  # pydantic counts only the items that validated: the item's own error says it all
        field = ".".join(str(p) for p in loc) or "(top level)"
        lines.append(f"  {field}: {_message(e)}")
    return "\n".join(lines)


def load_spec(path: Path) -> AssignmentSpec:
    """Parse and validate one assignment.yaml. Raises SpecError naming the file and field."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"{path}: cannot read spec ({exc.strerror})") from None
    return parse_spec(text, path)


def parse_spec(text: str, path: Path) -> AssignmentSpec:
    """Parse and validate an assignment.yaml's text; SpecError names `path` and the field."""
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: the spec must be a YAML mapping")
    try:
        return AssignmentSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(_format_error(path, exc)) from None


def _check_files(spec: AssignmentSpec, directory: Path, path: Path) -> None:
    root = directory.resolve()
    refs = {"brief": spec.brief, "starter": spec.starter, "data.generator": spec.data.generator}
    refs |= {f"stages.{s.name}.pytest.suite": s.pytest.suite
             for s in spec.stages if s.pytest and s.pytest.hidden}
    for field_name, rel in refs.items():
        if rel is None:
            continue
        target = (directory / rel).resolve()
        if root not in target.parents or not target.exists():
            raise SpecError(f"{path}: {field_name}: {rel!r} does not exist inside {directory}")
        secrets = (directory / SECRETS_DIR).resolve()
        if field_name.endswith(".suite") and (target == secrets or secrets in target.parents
                                              or target in secrets.parents):
            raise SpecError(f"{path}: {field_name}: {rel!r} leads into {SECRETS_DIR}/ (links followed), "
                            "which is never mounted; keep hidden tests in a folder of their own")


def load_assignment(directory: Path) -> Assignment:
    """Load `<directory>/assignment.yaml` and check the files it names exist."""
    path = directory / SPEC_FILE
    spec = load_spec(path)
    if spec.id != directory.name:
        raise SpecError(f"{path}: id: {spec.id!r} must match its folder name {directory.name!r}")
    _check_files(spec, directory, path)
    return Assignment(spec, directory)
