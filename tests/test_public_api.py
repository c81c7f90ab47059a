"""The public Python API is pinned: removing or renaming a name is a breaking change."""

import inspect

import harness


def test_public_names_resolve():
    assert set(harness.__all__) == {
        "__version__", "BatchItem", "BatchReport", "HarnessError", "ImageBuildError", "InfraError",
        "IntakeError", "SpecError", "Status", "SubmissionResult", "clean", "export_kit", "find_assignment",
        "grade", "GradeOptions", "list_assignments", "log_results", "prepare", "report", "results",
        "UsageError"}
    for name in harness.__all__:
        assert getattr(harness, name) is not None


def test_grade_takes_keyword_options_only():
    params = inspect.signature(harness.grade).parameters
    positional = [p for p in params.values() if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert [p.name for p in positional] == ["assignment", "submissions"]
    options = [p for p in params.values() if p.name not in ("assignment", "submissions")]
    assert options and all(p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD) for p in options)


def test_grade_options_are_one_typed_value_and_a_bad_one_is_a_usage_error(tmp_path):
    """The CLI, the API and the batch share harness.GradeOptions: a keyword of grade() is one of
    its fields, checked before anything is graded."""
    import dataclasses

    import pytest

    fields = {f.name for f in dataclasses.fields(harness.GradeOptions)}
    assert {"results_dir", "jobs", "backend", "force", "ref", "tracking_uri", "log_to_mlflow", "retries",
            "backoff_s", "allow_weaker_isolation", "cluster"} == fields
    with pytest.raises(harness.UsageError, match="jobs must be at least 1"):
        harness.grade("ranker", [], jobs=0)
    with pytest.raises(harness.UsageError, match="unexpected keyword argument 'retires'"):
        harness.grade("ranker", [], retires=1)
    with pytest.raises(harness.UsageError, match="must not be negative"):
        harness.GradeOptions(retries=-1)
    with pytest.raises(harness.UsageError, match="tcp://HOST:8786"):
        harness.GradeOptions(cluster="scheduler.example:8786")  # no scheme: Dask would guess one


def test_errors_map_to_distinct_exit_codes():
    classes = (harness.HarnessError, harness.UsageError, harness.SpecError, harness.IntakeError,
               harness.InfraError)
    codes = {cls.__name__: cls.exit_code for cls in classes}
    assert codes == {"HarnessError": 1, "UsageError": 2, "SpecError": 3, "IntakeError": 4, "InfraError": 5}
