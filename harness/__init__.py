"""mlgrade: grade machine-learning take-home assignments in hardened sandboxes.

The public Python API; the `harness` command line is a thin layer over it. Names are loaded
on first use, so that `import harness.core` (what grader plugins import) stays light.
"""

from importlib import import_module

__version__ = "0.1.0"

_PUBLIC = {
    "clean": "harness.api", "export_kit": "harness.api", "find_assignment": "harness.api",
    "grade": "harness.api", "list_assignments": "harness.api", "log_results": "harness.api",
    "prepare": "harness.api", "report": "harness.api",
    "results": "harness.api",
    "BatchItem": "harness.batch", "BatchReport": "harness.batch", "GradeOptions": "harness.options",
    "HarnessError": "harness.errors", "ImageBuildError": "harness.errors", "InfraError": "harness.errors",
    "IntakeError": "harness.errors", "SpecError": "harness.errors", "UsageError": "harness.errors",
    "Status": "harness.results", "SubmissionResult": "harness.results",
}
__all__ = ["__version__", *sorted(_PUBLIC)]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
