"""The public Python API is pinned: removing or renaming a name is a breaking change."""

import inspect

import harness


def test_public_names_resolve():
    assert set(harness.__all__) == {
        "__version__", "BatchItem", "BatchReport", "HarnessError", "ImageBuildError", "InfraError",
        "IntakeError", "SpecError", "Status", "SubmissionResult", "clean", "export_kit", "find_assignment",
        "grade", "list_assignments", "log_results", "prepare", "report", "results", "UsageError"}
    for name in harness.__all__:
        assert getattr(harness, name) is not None


def test_grade_takes_keyword_options_only():
    params = inspect.signature(harness.grade).parameters
    positional = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == ["assignment", "submissions"]
    options = [p for p in params.values() if p.name not in ("assignment", "submissions")]
    assert options and all(p.kind is p.KEYWORD_ONLY for p in options)


def test_errors_map_to_distinct_exit_codes():
    classes = (harness.HarnessError, harness.UsageError, harness.SpecError, harness.IntakeError,
               harness.InfraError)
    codes = {cls.__name__: cls.exit_code for cls in classes}
    assert codes == {"HarnessError": 1, "UsageError": 2, "SpecError": 3, "IntakeError": 4, "InfraError": 5}
