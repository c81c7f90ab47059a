"""Criterion visibility in the spec (graders[].visibility and the assignment's default), in
Gradescope's vocabulary (https://gradescope-autograders.readthedocs.io/en/latest/specs/,
"Controlling Test Case Visibility": hidden, after_due_date, after_published, visible), validated
strictly; and which criteria the candidate view treats as scored on hidden material."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.batch import _spec_hash
from harness.candidate_view import reads_hidden
from harness.errors import SpecError
from harness.spec import Assignment, load_assignment, load_spec

REPO = Path(__file__).resolve().parents[1]

BASE = """\
schema_version: 1
id: vis
version: "1.0"
title: Visibility
brief: BRIEF.md
stages:
  - {name: run, command: [python, run.py], timeout: 5}
"""


def spec_file(tmp_path: Path, graders: str, top: str = "") -> Path:
    path = tmp_path / "assignment.yaml"
    path.write_text(BASE + top + "graders:\n" + graders)
    return path


def test_without_visibility_every_criterion_is_visible(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, "  - {name: a, grader: completion, weight: 1}\n"))
    assert spec.criterion_visibility("a") == "visible"  # Gradescope's default too


def test_a_criterion_overrides_the_assignment_default(tmp_path: Path) -> None:
    graders = ("  - {name: a, grader: completion, weight: 1}\n"
               "  - {name: b, grader: completion, weight: 1, visibility: visible}\n")
    spec = load_spec(spec_file(tmp_path, graders, top="visibility: after_due_date\n"))
    assert [spec.criterion_visibility(n) for n in ("a", "b")] == ["after_due_date", "visible"]


@pytest.mark.parametrize("value", ["after_release", "Visible", "no", "1"])
def test_an_unknown_visibility_is_a_spec_error_naming_the_field_and_the_values(tmp_path: Path,
                                                                              value: str) -> None:
    # `after_release` is the issue's word, not Gradescope's; `no` is YAML 1.1's False
    path = spec_file(tmp_path, f"  - {{name: a, grader: completion, weight: 1, visibility: {value}}}\n")
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert "graders.0.visibility" in str(err.value)
    assert "after_published" in str(err.value)  # the allowed values are listed


def test_an_unknown_assignment_visibility_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"visibility"):
        load_spec(spec_file(tmp_path, "  - {name: a, grader: completion, weight: 1}\n",
                            top="visibility: sometimes\n"))


def test_a_gated_criterion_may_not_be_shown_before_what_it_requires(tmp_path: Path) -> None:
    # its 0 would tell the candidate that the required criterion failed before that one is shown
    path = spec_file(tmp_path, "  - {name: a, grader: completion, weight: 1, visibility: after_published}\n"
                               "  - {name: b, grader: completion, weight: 1, requires: [a]}\n")
    with pytest.raises(SpecError, match=r"give it visibility: after_published"):
        load_spec(path)
    path.write_text(path.read_text().replace("requires: [a]", "requires: [a], visibility: hidden"))
    assert load_spec(path).criterion_visibility("b") == "hidden"


def test_visibility_changes_no_result_key(tmp_path: Path) -> None:
    (tmp_path / "BRIEF.md").write_text("brief")
    graders = "  - {name: a, grader: completion, weight: 1}\n"
    spec_file(tmp_path, graders)
    plain = _spec_hash(load_assignment_in(tmp_path), "fp")
    spec_file(tmp_path, graders.replace("weight: 1}", "weight: 1, visibility: hidden}"),
              top="visibility: after_published\n")
    assert _spec_hash(load_assignment_in(tmp_path), "fp") == plain  # nothing is re-graded
    spec_file(tmp_path, graders.replace("weight: 1", "weight: 2"))
    assert _spec_hash(load_assignment_in(tmp_path), "fp") != plain  # while a weight still counts


def load_assignment_in(folder: Path) -> Assignment:
    return Assignment(load_spec(folder / "assignment.yaml"), folder)


# Which shipped criteria read material candidates do not get, judged from BRIEF.md and each
# assignment's data section, not from the code: the ranker's test labels and hidden suite, the A/B
# test's three hidden re-runs, the endpoint's hidden inputs (mounted into the probe only, so its
# probe.json) and reference predictions. Own tests and code quality read the submission only.
SHIPPED = {
    "ranker": {"ndcg": True, "hidden_tests": True, "own_tests": False, "coverage": False,
               "code_quality": False},
    "abtest": {"design_conversion_n": True, "decision": True, "srm_detected": True, "own_tests": True,
               "code_quality": True},  # the A/B gate reads the hidden runs' answers too
    "endpoint": {"cold_start": True, "correctness": True, "robustness": True, "latency": True,
                 "capacity": True, "own_tests": False, "coverage": False, "code_quality": False},
}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_criteria_on_hidden_material_are_told_apart(name: str) -> None:
    spec = load_assignment(REPO / "assignments" / name).spec
    graders = {g.name: g for g in spec.graders}
    assert {c: reads_hidden(spec, graders[c]) for c in SHIPPED[name]} == SHIPPED[name]
