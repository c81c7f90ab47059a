"""Project hygiene of a submission: README, declared and pinned dependencies, tests, large files, secrets.

Everything is read from the file tree (bounded); nothing is run. Files byte-identical to a
starter-kit file are the kit's, so they are neither large-file nor secret findings.
"""

from __future__ import annotations

import difflib
import re
import sys
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graders.quality._args import CodeQualityArgs
from graders.quality._collect import Starter, Tree, normalise, read_capped, readme_text, same_as_starter
from graders.quality._measures import FileView, Finding, Measure
from graders.quality._secrets import Secret, looks_binary, scan_text

DATA_EXTENSIONS = (".csv", ".tsv", ".json", ".jsonl", ".parquet", ".feather", ".arrow", ".avro", ".orc",
                   ".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".safetensors", ".onnx", ".h5",
                   ".hdf5", ".npy", ".npz", ".mat", ".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z",
                   ".rar", ".bin", ".db", ".sqlite", ".xlsx", ".xls", ".model", ".tflite", ".whl", ".so")
_WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")
_MAX_WORDS = 5_000
_REQUIREMENT = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)\s*(\[[^\]]*\])?\s*(.*)$")
_EXACT_PIN = re.compile(r"^===?\s*[A-Za-z0-9][A-Za-z0-9.+!_-]*$")  # `==1.2.3`, not `==1.*`
_POETRY_PIN = re.compile(r"^=?=?\s*\d[A-Za-z0-9.+!_-]*$")
_TEST_FILE = re.compile(r"(^|/)(test_[^/]*|[^/]*_test)\.py$")
_TEST_DIRS = ("tests", "test")
_DEPENDENCY_BYTES = 256 << 10
_SECRET_FILE_BYTES = 1 << 20
_SECRET_TOTAL_BYTES = 32 << 20


@dataclass
class Dependencies:
    """What the submission declares, and which declarations are not exact pins."""

    files: list[str] = field(default_factory=list)
    declared: list[str] = field(default_factory=list)  # requirement names
    unpinned: list[tuple[str, str]] = field(default_factory=list)  # ("requirements.txt:3", "pandas>=2")

    @property
    def pinned_share(self) -> float:
        return 1.0 - len(self.unpinned) / len(self.declared) if self.declared else 0.0


def words_added(text: str, starter: str) -> int:
    """Words of `text` that difflib does not align with words of `starter` (case-insensitive)."""
    new = [w.lower() for w in _WORD.findall(text)[:_MAX_WORDS]]
    old = [w.lower() for w in _WORD.findall(starter)[:_MAX_WORDS]]
    if not old:
        return len(new)
    matched = sum(size for _a, _b, size in difflib.SequenceMatcher(None, old, new, autojunk=False)
                  .get_matching_blocks())
    return len(new) - matched


def _requirement_lines(rel: str, text: str, deps: Dependencies) -> None:
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.split(" #")[0].split(";")[0].strip()
        if not line or line.startswith(("#", "-", "--")):
            continue  # comments, and options such as -r other.txt, -e ., --index-url
        match = _REQUIREMENT.match(line)
        if not match:
            deps.unpinned.append((f"{rel}:{number}", line[:80]))
            deps.declared.append(line[:80])
            continue
        deps.declared.append(match[1])
        spec = match[3].split("--hash")[0].strip()
        if not _EXACT_PIN.match(spec):
            deps.unpinned.append((f"{rel}:{number}", line[:80]))


def _table(value: object) -> dict[Any, Any]:
    """A TOML table, or an empty one for anything else (the candidate's file may put any type there)."""
    return value if isinstance(value, dict) else {}


def _pyproject(text: str, deps: Dependencies) -> None:
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError):  # TOMLDecodeError, or an integer over Python's digit limit
        return
    project = _table(data.get("project"))
    listed = project.get("dependencies")
    listed = listed if isinstance(listed, list) else []
    _requirement_lines("pyproject.toml", "\n".join(d for d in listed if isinstance(d, str)), deps)
    poetry = _table(_table(data.get("tool")).get("poetry"))
    table = _table(poetry.get("dependencies"))
    for name, value in table.items():
        if str(name).lower() == "python":
            continue
        version = value.get("version", "") if isinstance(value, dict) else value
        deps.declared.append(str(name)[:80])
        if not (isinstance(version, str) and _POETRY_PIN.match(version.strip())):
            deps.unpinned.append(("pyproject.toml", f"{str(name)[:60]} = {str(version)[:40]}"))


def dependencies(root: Path, tree: Tree) -> Dependencies:
    """Requirements declared at the top level: requirements*.txt (also requirements/*.txt), pyproject.toml."""
    deps = Dependencies()
    for entry in tree.files:
        name, top = entry.rel.lower(), "/" not in entry.rel
        wanted = ((top and name.startswith("requirements") and name.endswith(".txt"))
                  or (name.startswith("requirements/") and name.count("/") == 1 and name.endswith(".txt"))
                  or (top and name == "pyproject.toml"))
        data = read_capped(root / entry.rel, _DEPENDENCY_BYTES) if wanted else None
        if data is None:
            continue
        deps.files.append(entry.rel)
        text = normalise(data).decode("utf-8", "replace")
        if name == "pyproject.toml":
            _pyproject(text, deps)
        else:
            _requirement_lines(entry.rel, text, deps)
    return deps


def third_party(imports: set[str], tree: Tree) -> list[str]:
    """Imported top-level names that are neither the standard library nor the submission's own modules."""
    local: set[str] = set()
    for entry in tree.files:
        parts = entry.rel.split("/")
        local.update(part for part in parts[:-1])
        if parts[-1].endswith(".py"):
            local.add(parts[-1][:-3])
    return sorted(n for n in imports if n not in sys.stdlib_module_names and n not in local
                  and n != "__future__")


def is_test_file(rel: str) -> bool:
    """pytest's default discovery: test_*.py or *_test.py, or any .py file in a tests/ or test/ folder."""
    parts = rel.split("/")
    return rel.endswith(".py") and (bool(_TEST_FILE.search(rel)) or any(p in _TEST_DIRS for p in parts[:-1]))


def large_files(root: Path, tree: Tree, starter: Starter, *, data_bytes: int, any_bytes: int,
                extensions: tuple[str, ...]) -> list[tuple[str, int]]:
    """Data or binary files over `data_bytes`, and any file over `any_bytes`, not from the starter kit."""
    found = []
    for entry in tree.files:
        data_like = entry.rel.lower().endswith(extensions)
        if (data_like and entry.size > data_bytes) or entry.size > any_bytes:
            if not same_as_starter(root / entry.rel, entry.size, starter):
                found.append((entry.rel, entry.size))
    return found


def secrets(root: Path, tree: Tree, starter: Starter, limit: int = 50) -> list[Secret]:
    """Secret-looking values in the text files of the tree (each read up to 1 MiB, 32 MiB in all)."""
    found: list[Secret] = []
    budget = _SECRET_TOTAL_BYTES
    for entry in tree.files:
        if entry.size > _SECRET_FILE_BYTES or entry.size > budget or len(found) >= limit:
            continue
        data = read_capped(root / entry.rel, _SECRET_FILE_BYTES)
        if data is None or looks_binary(data) or same_as_starter(root / entry.rel, entry.size, starter):
            continue
        budget -= len(data)
        found += scan_text(entry.rel, normalise(data).decode("utf-8", "replace"), limit - len(found))
    return found


def _readme(root: Path, tree: Tree, starter: Starter) -> Measure:
    text = readme_text(root, tree, _DEPENDENCY_BYTES)
    if not text:
        missing = Finding("README", "no-readme", "no README at the top level", 1)
        return Measure("readme", 0.0, findings=[missing])
    added = words_added(text, starter.readme)
    note = f"{added} words beyond the starter kit's README" if starter.readme else f"{added} words"
    return Measure("readme", float(added), note=note)


def _dependencies(root: Path, tree: Tree, imports: set[str], required: bool) -> Measure:
    deps = dependencies(root, tree)
    outside = third_party(imports, tree)
    if not deps.declared:
        if required and outside:
            shown = ", ".join(outside[:8])
            return Measure("dependencies", 0.0, note=f"none declared; the code imports {shown}",
                           findings=[Finding("requirements.txt", "no-dependencies", "no requirements.txt "
                                             f"or pyproject.toml dependencies; imports {shown}", 1)])
        return Measure("dependencies", None, applicable=False, note="none declared, none required")
    findings = [Finding(where, "unpinned-dependency", f"{what} is not pinned with ==", 1)
                for where, what in deps.unpinned]
    return Measure("dependencies", deps.pinned_share, findings=findings,
                   note=f"{len(deps.declared) - len(deps.unpinned)} of {len(deps.declared)} pinned "
                        f"in {', '.join(deps.files)}")


def _tests(views: list[FileView]) -> Measure:
    tests = [(view, block) for view in views if view.test and view.result.ok for block in view.result.blocks
             if block.kind != "script" and block.name.rsplit(".", 1)[-1].startswith("test")]
    files = sorted({view.source.rel for view in views if view.test})
    missing = Finding("tests/", "no-tests", "no test functions (test_*.py with def test_...)", 1)
    findings = [] if tests else [missing]
    return Measure("tests", float(len(tests)), findings=findings,
                   note=f"{len(tests)} test functions in {len(files)} files")


def hygiene_measures(root: Path, tree: Tree, starter: Starter, views: list[FileView],
                     args: CodeQualityArgs) -> list[Measure]:
    """README, dependencies, tests, large files and secrets, as measures."""
    imports = {name for view in views if view.result.ok for name in view.result.imports}
    big = large_files(root, tree, starter, data_bytes=args.data_file_bytes, any_bytes=args.any_file_bytes,
                      extensions=args.data_extensions or DATA_EXTENSIONS)
    found = secrets(root, tree, starter)
    return [
        _readme(root, tree, starter),
        _dependencies(root, tree, imports, args.require_dependencies),
        _tests(views),
        Measure("large_files", float(len(big)), findings=[
            Finding(rel, "large-file", f"{size / (1 << 20):.1f} MiB committed", size) for rel, size in big]),
        Measure("secrets", float(len(found)), findings=[
            Finding(s.location, f"secret:{s.rule}", f"looks like {s.label}: {s.masked}", 1)
            for s in found]),
    ]
