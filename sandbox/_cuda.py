"""CUDA-only wheels in a candidate's requirements: which lines pull them, and what to pin instead.

The sandbox has no GPU, so NVIDIA's CUDA wheels (`nvidia-*`: NCCL, cuBLAS, cuDNN ...) can only
cost disk and build time: plain `xgboost` pulls `nvidia-nccl-cu12` (350 MB), a torch build from
PyPI pulls several GB of them. The check reads the wheels pip resolved (their own METADATA,
never code) and follows each requirement's `Requires-Dist` through them, so that a refusal
names every requirement line that pulls a CUDA wheel, with the CPU build to pin instead.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Sequence
from email.parser import HeaderParser
from pathlib import Path

MAX_METADATA_BYTES = 1 << 20
_NAME = re.compile(r"\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
# The CPU-only builds of packages whose default wheels need CUDA; {version} is the version asked for.
CPU_BUILDS = {"xgboost": "xgboost-cpu=={version}, the CPU-only build of the same package"}
_CUDA_WHEEL = re.compile(r"nvidia-[a-z0-9-]+-cu\d+")


def canonical(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_cuda(project: str) -> bool:
    """Whether a project is one of NVIDIA's CUDA runtime wheels (nvidia-nccl-cu12, ...); their
    names end in the CUDA major version, unlike pure-Python ones such as nvidia-ml-py."""
    return _CUDA_WHEEL.fullmatch(canonical(project)) is not None


def _requirement(text: str) -> tuple[str, frozenset[str]]:
    """(canonical name, extras) of a requirement such as `foo[bar]==1.0` or `foo>=1; extra == "x"`."""
    match = _NAME.match(text)
    if match is None:
        return "", frozenset()
    extras = frozenset(canonical(e) for e in (match[2] or "").split(",") if e.strip())
    return canonical(match[1]), extras


def _dependencies(wheel: Path) -> list[tuple[str, frozenset[str], frozenset[str]]]:
    """(name, extras it asks for, extras of the wheel it depends on) of each Requires-Dist."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if re.fullmatch(r"[^/]+\.dist-info/METADATA", n)]
            if not names:
                return []
            with archive.open(names[0]) as fh:
                text = fh.read(MAX_METADATA_BYTES).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return []  # pip read it; if we cannot, it is no evidence of CUDA either way
    deps = []
    for line in HeaderParser().parsestr(text).get_all("Requires-Dist") or []:
        spec, _, marker = line.partition(";")
        name, extras = _requirement(spec)
        when = frozenset(canonical(e) for e in _EXTRA.findall(marker))
        deps.append((name, extras, when))
    return deps


def _project(wheel: Path) -> str:
    return canonical(wheel.name.split("-", 1)[0])


def _pulled(requirement: str, graph: dict[str, list[tuple[str, frozenset[str], frozenset[str]]]]) -> set[str]:
    """The projects among the resolved wheels that `requirement` needs, itself included."""
    start = _requirement(requirement)
    seen: set[str] = set()
    todo = [start]
    while todo:
        name, extras = todo.pop()
        if name in seen or name not in graph:
            continue
        seen.add(name)
        for dep, dep_extras, when in graph[name]:
            if not when or when & extras:  # an extra's dependency only when that extra is asked for
                todo.append((dep, dep_extras))
    return seen


def _advice(requirement: str, constraints: Sequence[str]) -> str:
    name, _ = _requirement(requirement)
    version = requirement.partition("==")[2].lstrip("=")
    if name in CPU_BUILDS:
        return "pin " + CPU_BUILDS[name].format(version=version)
    if name == "torch":
        pins = [c for c in constraints if _requirement(c)[0] == "torch"]
        return f"pin {pins[0]} (the CPU build the harness provides)" if pins else "pin torch's CPU build"
    if is_cuda(name):
        return "remove it (CUDA libraries cannot run here)"
    return "pin its CPU-only build, or leave it out"


def cuda_problem(wheel_dir: Path, requirements: Sequence[str], constraints: Sequence[str] = ()) -> str:
    """Why the resolved wheels in `wheel_dir` are refused, or "" when none is a CUDA wheel.

    The message names every requirement that pulls a CUDA wheel, the CUDA wheels it pulls, and
    the CPU build to pin instead. Never raises for unreadable wheels (they are skipped).
    """
    wheels = sorted(wheel_dir.glob("*.whl"))
    cuda = sorted({_project(w) for w in wheels if is_cuda(_project(w))})
    if not cuda:
        return ""
    graph = {_project(w): _dependencies(w) for w in wheels}
    culprits = []
    blamed: set[str] = set()
    for requirement in requirements:
        pulled = sorted(p for p in _pulled(requirement, graph) if is_cuda(p))
        if pulled:
            blamed.update(pulled)
            culprits.append(f"{requirement!r} pulls {', '.join(pulled)}: {_advice(requirement, constraints)}")
    unexplained = [p for p in cuda if p not in blamed]
    if unexplained:
        culprits.append(f"{', '.join(unexplained)} (pulled by a dependency): remove what needs it")
    return ("requirements.txt pulls NVIDIA CUDA wheels, which the CPU-only sandbox cannot use "
            f"(nothing was installed): {'; '.join(culprits)}")
