"""Assignment specs: strict YAML, safe paths, and grader references checked when the spec loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from graders.ranking.grader import RankingGrader
from harness.core.grading import GRADERS
from harness.errors import SpecError
from harness.spec import AssignmentSpec, load_assignment, load_spec

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [REPO / "assignments" / "ranker",
           *sorted(p.parent for p in (REPO / "tests" / "fixtures" / "assignments").glob("*/assignment.yaml"))]

BASE: dict[str, Any] = {
    "schema_version": 1, "id": "demo", "version": "1.0", "title": "Demo", "brief": "BRIEF.md",
    "data": {"visible": {"test": "test"}, "hidden": {"labels": "labels"}},
    "required_files": ["predict.py"],
    "stages": [{"name": "predict", "command": ["python", "predict.py"], "timeout": 10, "data": ["test"],
                "outputs": {"scores.csv": "1m"}}],
    "graders": [{"name": "ndcg", "grader": "ranking", "weight": 1,
                 "args": {"predictions": "scores.csv", "labels": "labels", "queries": "test",
                          "baseline": 0.5, "target": 0.8}}],
}


def spec_with(tmp_path: Path, *changes: tuple[tuple[Any, ...], Any]) -> Path:
    """Write BASE with each (path of keys, value) change applied; return the file."""
    raw = copy.deepcopy(BASE)
    for keys, value in changes:
        node = raw
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    path = tmp_path / "assignment.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def refused(path: Path) -> str:
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert message.startswith(f"{path}:")
    return message


def test_the_base_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(spec_with(tmp_path))
    assert spec.data.visible == {"test": "test"} and spec.stages[0].outputs == {"scores.csv": 1 << 20}


@pytest.mark.parametrize("shipped", SHIPPED, ids=lambda p: p.name)
def test_shipped_assignments_and_fixtures_load(shipped: Path) -> None:
    assignment = load_assignment(shipped)
    assert assignment.spec.id == shipped.name and assignment.spec.stages


def test_shipped_ranker_graders_accept_their_spec() -> None:
    assignment = load_assignment(SHIPPED[0])
    for gspec in assignment.spec.graders:
        cls = GRADERS.get(gspec.grader)
        cls(name=gspec.name, weight=gspec.weight, args=cls.Args(**gspec.args)).check_spec(assignment.spec)


BAD_DATA_PATHS = [
    ("test/..", "'..'"),  # would normalise to the data root, which holds the hidden labels
    ("../test", "'..'"),
    ("/", "absolute"),
    ("/etc", "absolute"),
    ("", "names no file"),
    (".", "names no file"),
    ("./", "names no file"),
    ("test\\..\\labels", "forward slashes"),
    ("C:/data", "forward slashes"),
    ("te st", "letters, digits"),
    ("hidden/test", "secrets folder"),
]


@pytest.mark.parametrize("value, why", BAD_DATA_PATHS)
def test_bad_visible_data_paths_are_refused(tmp_path: Path, value: str, why: str) -> None:
    message = refused(spec_with(tmp_path, (("data", "visible", "test"), value)))
    assert "data.visible" in message and why in message


@pytest.mark.parametrize("value, why", [("../labels", "'..'"), ("/srv/labels", "absolute"), ("", "names no")])
def test_bad_hidden_data_paths_are_refused(tmp_path: Path, value: str, why: str) -> None:
    message = refused(spec_with(tmp_path, (("data", "hidden", "labels"), value)))
    assert "data.hidden.labels" in message and why in message


def test_data_paths_are_normalised(tmp_path: Path) -> None:
    spec = load_spec(spec_with(tmp_path, (("data", "visible", "test"), "./sets//test/"),
                               (("required_files",), ["src/./predict.py"])))
    assert spec.data.visible["test"] == "sets/test" and spec.required_files == ("src/predict.py",)


@pytest.mark.parametrize("visible, hidden", [("test/", "test"), ("sets", "sets/labels"), ("sets/a", "sets")])
def test_hidden_data_may_not_overlap_visible_data(tmp_path: Path, visible: str, hidden: str) -> None:
    message = refused(spec_with(tmp_path, (("data", "visible", "test"), visible),
                                (("data", "hidden", "labels"), hidden)))
    assert "data: " in message and "overlaps visible data 'test'" in message


@pytest.mark.parametrize("kind", ["visible", "hidden"])
@pytest.mark.parametrize("name", ["Test", "1st", "a/b", "../x", ""])
def test_data_set_names_follow_the_name_pattern(tmp_path: Path, kind: str, name: str) -> None:
    message = refused(spec_with(tmp_path, (("data", kind), {name: "elsewhere"})))
    assert f"data.{kind}.{name}.[key]" in message and "lower-case letters" in message


@pytest.mark.parametrize("field, value", [
    (("brief",), "../BRIEF.md"), (("brief",), "/etc/passwd"), (("starter",), "/tmp"),
    (("data", "generator"), "../../generate.py"), (("required_files",), ["../outside.py"]),
    (("required_files",), ["/abs/predict.py"]), (("required_files",), [""]),
])
def test_file_references_must_be_relative_and_inside(tmp_path: Path, field: tuple[str, ...],
                                                     value: Any) -> None:
    message = refused(spec_with(tmp_path, (field, value)))
    assert ".".join(field) in message
    assert any(why in message for why in ("is absolute", "has a '..' part", "names no file"))


@pytest.mark.parametrize("name", ["../x.csv", "a/b.csv", ".", "..", "", ".hidden", "x" * 129, "sp ace.csv"])
def test_output_names_must_be_plain_file_names(tmp_path: Path, name: str) -> None:
    message = refused(spec_with(tmp_path, (("stages", 0, "outputs"), {name: "1k"})))
    assert f"stages.0.outputs.{name}.[key]" in message and "plain file name" in message
    assert "at least 1 item" not in message  # pydantic's echo of the failed stage is dropped


def test_an_output_belongs_to_one_stage(tmp_path: Path) -> None:
    second = {**BASE["stages"][0], "name": "again"}
    message = refused(spec_with(tmp_path, (("stages",), [BASE["stages"][0], second])))
    assert "'scores.csv' is declared by stages 'predict' and 'again'" in message


def test_unquoted_version_is_refused(tmp_path: Path) -> None:
    path = spec_with(tmp_path)
    path.write_text(path.read_text().replace("version: '1.0'", "version: 1.10"))
    message = refused(path)
    assert "version:" in message and 'version: "1.10"' in message


def test_duplicate_yaml_keys_are_refused(tmp_path: Path) -> None:
    path = spec_with(tmp_path)
    path.write_text(path.read_text() + "title: Another title\n")
    message = refused(path)
    assert "duplicate key 'title'" in message


def test_a_stage_may_not_mount_hidden_data(tmp_path: Path) -> None:
    message = refused(spec_with(tmp_path, (("stages", 0, "data"), ["test", "labels"])))
    assert "stage 'predict' mounts unknown data ['labels']" in message and "hidden data can never" in message


def test_unknown_keys_are_refused_by_name(tmp_path: Path) -> None:
    message = refused(spec_with(tmp_path, (("titel",), "typo")))
    assert "titel: unknown key; did you mean 'title'?" in message
    nested = refused(spec_with(tmp_path, (("stages", 0, "timout"), 5)))
    assert "stages.0.timout: unknown key; did you mean 'timeout'?" in nested


def ranking_grader(**changes: Any) -> RankingGrader:
    args = {**BASE["graders"][0]["args"], **changes}
    return RankingGrader(name="ndcg", weight=1.0, args=RankingGrader.Args(**args))


@pytest.fixture()
def spec(tmp_path: Path) -> AssignmentSpec:
    return load_spec(spec_with(tmp_path))


def test_ranking_check_spec_accepts_a_consistent_spec(spec: AssignmentSpec) -> None:
    ranking_grader().check_spec(spec)


@pytest.mark.parametrize("changes, expected", [
    ({"predictions": "other.csv"}, "args.predictions: no stage declares the output 'other.csv'"),
    ({"labels": "test"}, "args.labels: data set 'test' is visible, not hidden"),
    ({"labels": "nope"}, "args.labels: data set 'nope' does not exist"),
    ({"queries": "labels"}, "args.queries: data set 'labels' is hidden, not visible"),
])
def test_ranking_check_spec_refuses_bad_references(spec: AssignmentSpec, changes: dict[str, str],
                                                   expected: str) -> None:
    with pytest.raises(SpecError, match=expected.replace(".", r"\.")):
        ranking_grader(**changes).check_spec(spec)
