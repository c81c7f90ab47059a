"""Every package the host side imports is declared in pyproject.toml (issue: a fresh machine).

The import graph is read from the source (every `import`, lazy ones inside functions included), so a
module imported only on one code path (torch, by the endpoint's data generator) is checked as well
as the rest. Each imported top-level name is mapped to the distribution that provides it in this
environment; that distribution must be a direct dependency (a package that only arrives through
another one's dependencies can disappear with that package's next release). CI runs this in a
virtual environment made anew from pyproject.toml, so a name no installed distribution provides
fails here too.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Code that runs on the host (or, for sandbox/runners, in the local backend with the host's Python).
HOST_CODE = ["harness", "graders", "sandbox", "bench", "assignments/*/data", "assignments/*/model"]
# Names that are the project's own modules: packages, runner siblings, the endpoint's model module.
LOCAL = {"harness", "graders", "sandbox", "bench", "model"} | {
    p.stem for p in (ROOT / "sandbox" / "runners").glob("*.py")}


def _requirement_names(requirements: list[str]) -> set[str]:
    return {_normalise(re.split(r"[\s<>=!~;\[(]", item, maxsplit=1)[0]) for item in requirements}


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> tuple[set[str], set[str]]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return (_requirement_names(project["dependencies"]),
            _requirement_names(project["optional-dependencies"]["dev"]))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _third_party(paths: list[Path]) -> dict[str, list[str]]:
    """Top-level third-party import names and the files that import them."""
    found: dict[str, list[str]] = {}
    for path in paths:
        for name in _imports(path) - LOCAL - set(sys.stdlib_module_names) - {"__future__"}:
            found.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return found


def _files(patterns: list[str]) -> list[Path]:
    return sorted({p for pattern in patterns for folder in ROOT.glob(pattern) for p in folder.rglob("*.py")})


def _undeclared(imports: dict[str, list[str]], declared: set[str]) -> list[str]:
    providers = importlib.metadata.packages_distributions()
    problems = []
    for name, where in sorted(imports.items()):
        dists = {_normalise(d) for d in providers.get(name, [])}
        if not dists:
            problems.append(f"{name} (imported by {where[0]}): no installed distribution provides it")
        elif not dists & declared:
            problems.append(f"{name} (imported by {where[0]}): from {sorted(dists)}, not declared")
    return problems


def test_host_imports_are_declared_dependencies():
    runtime, _ = _declared()
    files = _files(HOST_CODE)
    assert len(files) > 50  # the globs found the code
    imports = _third_party(files)
    assert {"torch", "numpy", "docker", "mlflow"} <= set(imports)  # the graph is read, lazy imports too
    assert _undeclared(imports, runtime) == []


def test_test_imports_are_declared_in_dev():
    runtime, dev = _declared()
    imports = _third_party(_files(["tests"]))
    imports.pop("tests", None)  # the suite's own helpers
    imports = {k: v for k, v in imports.items() if not any("/fixtures/" in w for w in v)}
    assert _undeclared(imports, runtime | dev) == []


def test_torch_is_pinned_to_the_cpu_build():
    """An unpinned torch, or a range, pulls a CUDA build of several GB (see ENVIRONMENT.md)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert [d for d in project["dependencies"] if d.startswith("torch")] == ["torch==2.13.0"]


@pytest.mark.parametrize("source, expected", [
    ("import a.b, c\nfrom d.e import f\nfrom . import g\nfrom .h import i\n", {"a", "c", "d"}),
    ("def f():\n    import lazy\n", {"lazy"}),
])
def test_import_reader_sees_absolute_and_lazy_imports(tmp_path, source, expected):
    path = tmp_path / "m.py"
    path.write_text(source)
    assert _imports(path) == expected


def test_an_undeclared_import_is_reported():
    assert _undeclared({"yaml": ["x.py"]}, declared={"numpy"}) == [
        "yaml (imported by x.py): from ['pyyaml'], not declared"]
    assert _undeclared({"no_such_module_here": ["x.py"]}, declared=set())[0].endswith(
        "no installed distribution provides it")
