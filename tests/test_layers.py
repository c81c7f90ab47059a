"""The layering rule (README, "Architecture"), read from the source's imports with ast: the sandbox
imports nothing of the harness or the graders (its runners included), and a grader imports of the
harness only its public core (harness.core and the error tree it re-exports), apart from the
assignment spec's type under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

CORE = ("harness.core", "harness.errors")


def _imports(path: Path) -> list[tuple[str, int, bool]]:
    """(module, line, under TYPE_CHECKING) for every import of `path`, lazy ones included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    typing_only = {id(node) for block in ast.walk(tree)
                   if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
                   for stmt in block.body for node in ast.walk(stmt)}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno, id(node) in typing_only) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno, id(node) in typing_only))
    return found


def _under(module: str, *packages: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("path", sorted((REPO / "sandbox").rglob("*.py")), ids=lambda p: p.name)
def test_the_sandbox_imports_nothing_of_the_harness_or_the_graders(path):
    wrong = [f"{path.name}:{line} {module}" for module, line, _ in _imports(path)
             if _under(module, "harness", "graders")]
    assert not wrong, wrong


@pytest.mark.parametrize("path", sorted((REPO / "graders").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(REPO)))
def test_a_grader_imports_only_the_harness_core(path):
    wrong = [f"{path.name}:{line} {module}" for module, line, typing_only in _imports(path)
             if _under(module, "harness") and not _under(module, *CORE)
             and not (typing_only and module == "harness.spec")]
    assert not wrong, wrong


def test_the_check_would_catch_a_wrong_import(tmp_path):
    # the walk sees a lazy import inside a function and tells TYPE_CHECKING blocks apart
    source = tmp_path / "m.py"
    source.write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.spec import A\n"
                      "def f():\n    from harness.pipeline import Runtime\n")
    assert _imports(source)[1:] == [("harness.spec", 3, True), ("harness.pipeline", 5, False)]


def test_the_command_line_starts_without_the_api_or_the_grading_stack():
    """`harness --help` (and a mistyped option) must answer at once: importing the CLI module
    loads neither the API nor what it pulls in (the pipeline, pydantic, numpy, scipy). It took
    2.2-5.5 s when it did; the time itself is measured in the README, not here."""
    import subprocess
    import sys

    heavy = ("harness.api", "harness.pipeline", "harness.core.grading", "pydantic", "numpy", "scipy",
             "mlflow")
    code = f"import sys, harness.cli; print([m for m in {heavy!r} if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[]", out.stdout
    # and the lazy core still gives a grader what it imports
    code = ("from harness.core import Grader, one_line, SpecError; import harness.core as c; "
            "print(sorted(c.__all__))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    from harness.core import _PUBLIC

    assert out.stdout.strip() == str(sorted(_PUBLIC))
