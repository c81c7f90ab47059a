"""Read what a test stage wrote (JUnit XML, coverage.py JSON), as hostile input: bounded, validated.

The files come out of the sandbox, so their content is the candidate's to choose: sizes are
capped when they are copied out, XML with a DOCTYPE or entity declaration is refused (pytest
never writes one; it is how entity expansion attacks start), and every field is checked before use.
"""

from __future__ import annotations

import ast
import json
import math
import xml.etree.ElementTree as ET  # noqa: S405 - DTDs are refused before parsing, sizes are capped
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TypeGuard

from harness.core.text import one_line

MESSAGE_CHARS = 300
MAX_CASES = 20_000
MAX_REPORT_BYTES = 16 << 20  # harness.spec.TEST_OUTPUTS caps the copies lower; this guards direct use


class ReportError(Exception):
    """A report file is missing, malformed or refused; the message says which and why."""


@dataclass(frozen=True)
class TestCase:
    """One reported test. `outcome` is passed, failed, error or skipped."""

    __test__ = False  # not a pytest test class

    module: str  # dotted, e.g. "tests.test_model" (junit classname without the class)
    cls: str  # the test class, or ""
    name: str  # function name with any parameter id, e.g. "test_fit[small]"
    outcome: str
    message: str = ""
    collection: bool = False  # a file pytest could not collect (`module` names it, `name` is "")

    @property
    def node(self) -> str:
        """pytest's node id, as far as JUnit tells it: path/to/test_x.py::Class::test_fn[id]."""
        return node_id(self.module, self.cls, self.name)

    @property
    def function_node(self) -> str:
        """The node id of its test function: parametrised cases share it."""
        return node_id(self.module, self.cls, self.name.split("[", 1)[0])


def node_id(module: str, cls: str, name: str) -> str:
    return "::".join(p for p in (module.replace(".", "/") + ".py", cls, name) if p)


def read_junit(path: Path | None) -> list[TestCase]:
    """The test cases of a JUnit XML file written by pytest. Raises ReportError."""
    if path is None:
        raise ReportError("no JUnit report was written")
    try:  # pytest writes UTF-8; decoding first means no other encoding can hide a declaration
        text = _read_capped(path, "JUnit report").decode("utf-8")
    except UnicodeDecodeError:
        raise ReportError("the JUnit report is not UTF-8 (pytest writes UTF-8)") from None
    if "<!DOCTYPE" in text.upper() or "<!ENTITY" in text.upper():
        raise ReportError("the JUnit report declares a DOCTYPE or entities; pytest never does")
    parser = ET.XMLParser(encoding="utf-8")  # noqa: S314 - overrides the declared encoding; see above
    try:
        parser.feed(text.encode("utf-8"))
        root = parser.close()
    except (ET.ParseError, ValueError, LookupError, RecursionError) as exc:
        raise ReportError(f"the JUnit report is not XML: {one_line(str(exc), 200)}") from None
    cases: list[TestCase] = []
    for element in root.iter("testcase"):
        if len(cases) == MAX_CASES:
            raise ReportError(f"the JUnit report has more than {MAX_CASES} test cases")
        cases.append(_case(element))
    return cases


def _read_capped(path: Path, what: str) -> bytes:
    """The bytes of a harness-owned copy of a report. Raises ReportError past MAX_REPORT_BYTES."""
    with path.open("rb") as handle:
        data = handle.read(MAX_REPORT_BYTES + 1)
    if len(data) > MAX_REPORT_BYTES:
        raise ReportError(f"the {what} is larger than {MAX_REPORT_BYTES:,} bytes")
    return data


_COLLECTION_FAILURE = "collection failure"  # pytest's message for a file it could not import
_EXCEPTION_LINE = "E   "  # how pytest marks the exception lines of a traceback


def _case(element: ET.Element) -> TestCase:
    classname, name = element.get("classname", ""), element.get("name", "")
    module, cls = classname, ""
    last = classname.rsplit(".", 1)
    if len(last) == 2 and last[1][:1].isupper():  # pytest's classname: module path, then the class
        module, cls = last
    outcome, message, collection = "passed", "", False
    for child in element:
        if child.tag in ("failure", "error", "skipped"):
            outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[child.tag]
            message = one_line(child.get("message") or (child.text or ""), MESSAGE_CHARS)
            if child.tag == "error" and not classname and child.get("message") == _COLLECTION_FAILURE:
                # pytest names the file in `name` (dotted, no .py): the node is the file itself
                module, name, collection = name, "", True
                message = _collection_error(child.text or "") or message
            if outcome != "skipped":
                break
    return TestCase(module=one_line(module, 200), cls=one_line(cls, 200), name=one_line(name, 300),
                    outcome=outcome, message=message, collection=collection)


def _collection_error(text: str) -> str:
    """The exception pytest's collection report ends with (its last `E   ` line), as one line."""
    lines = [line[len(_EXCEPTION_LINE):] for line in text[-(64 << 10):].splitlines()
             if line.startswith(_EXCEPTION_LINE) and line[len(_EXCEPTION_LINE):].strip()]
    return one_line(lines[-1][:2000], MESSAGE_CHARS) if lines else ""


def read_run_problem(path: Path | None) -> str:
    """What the test runner (sandbox/runners/pytest_run.py) wrote in STAGE.run.json about why
    pytest stopped early (`problem`), as one line; "" when it said nothing or the file is unusable."""
    if path is None:
        return ""
    try:
        payload = json.loads(_read_capped(path, "run report"))
    except (OSError, ReportError, ValueError, RecursionError):
        return ""
    problem = payload.get("problem") if isinstance(payload, dict) else None
    return one_line(problem[:2000], MESSAGE_CHARS) if isinstance(problem, str) and _utf8(problem) else ""


@dataclass(frozen=True)
class FileCoverage:
    path: str  # relative to the submission
    statements: int
    covered: int


def read_coverage(path: Path | None, submission: Path, *, mount: str = "/submission") -> list[FileCoverage]:
    """Per-file line coverage from coverage.py's JSON report, for files that exist in the submission.

    Paths may be relative to the submission or absolute under `mount`; anything else (a file the
    report invents, a path leaving the submission) is dropped. Raises ReportError.
    """
    if path is None:
        raise ReportError("no coverage report was written")
    try:
        files = json.loads(_read_capped(path, "coverage report")).get("files")
    except (ValueError, AttributeError, RecursionError) as exc:
        raise ReportError(f"the coverage report is not coverage.py JSON: {one_line(str(exc), 200)}") from None
    if not isinstance(files, dict):
        raise ReportError("the coverage report has no 'files' mapping")
    root = submission.resolve()
    found: dict[Path, FileCoverage] = {}
    for name, entry in list(files.items())[:MAX_CASES]:
        rel = _relative(str(name), mount)
        summary = entry.get("summary") if isinstance(entry, dict) else None
        if rel is None or not isinstance(summary, dict):
            continue
        target = _inside(root, rel)
        statements, covered = summary.get("num_statements"), summary.get("covered_lines")
        if target is None or not _count(statements) or not _count(covered) or covered > statements:
            continue
        found.setdefault(target, FileCoverage(target.relative_to(root).as_posix(), statements, covered))
    return list(found.values())  # one entry per file, however the report spells its name


def _inside(root: Path, rel: str) -> Path | None:
    """The regular file `rel` names inside `root` (links resolved), or None."""
    if "\0" in rel or len(rel) > 1000 or not _utf8(rel):
        return None
    try:
        target = (root / rel).resolve()
        return target if root in target.parents and target.is_file() else None
    except (OSError, ValueError):
        return None


def _utf8(text: str) -> bool:
    """False for a lone surrogate (a JSON escape, or a file name that is not UTF-8): no result can hold it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _relative(name: str, mount: str) -> str | None:
    path = PurePosixPath(name)
    if path.is_absolute():
        if not path.is_relative_to(mount):
            return None
        path = path.relative_to(mount)
    if ".." in path.parts or not path.parts or path.suffix != ".py":
        return None
    return path.as_posix()


def _count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**7


@dataclass(frozen=True)
class SuiteTest:
    """A test function found in a suite's source, before anything runs."""

    module: str  # dotted, relative to the suite folder
    cls: str
    function: str

    @property
    def node(self) -> str:
        return node_id(self.module, self.cls, self.function)


def collect_suite(folder: Path) -> list[SuiteTest]:
    """The test functions of a (trusted, assignment-owned) suite, by reading its source with ast:
    test_*.py / *_test.py files, top-level `test*` functions and `test*` methods of `Test*` classes.
    Raises SyntaxError or OSError for a broken suite (the assignment author's to fix)."""
    found = []
    for file in sorted(folder.rglob("*.py")):
        if not (file.name.startswith("test_") or file.stem.endswith("_test")):
            continue
        module = ".".join(file.relative_to(folder).with_suffix("").parts)
        tree = ast.parse(file.read_text(encoding="utf-8"), filename=str(file))
        for node in tree.body:
            if _is_test(node):
                found.append(SuiteTest(module, "", node.name))
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                found += [SuiteTest(module, node.name, f.name) for f in node.body if _is_test(f)]
    return found


def _is_test(node: ast.stmt) -> TypeGuard[ast.FunctionDef | ast.AsyncFunctionDef]:
    return isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")


def share(part: float, whole: float) -> float:
    """part / whole, 0 when whole is 0 (or not finite)."""
    return part / whole if whole and math.isfinite(whole) else 0.0
