"""The candidate kit: what a hiring team sends a candidate (brief, starter kit, public data)."""

from __future__ import annotations

import shutil
from pathlib import Path

from harness.data import materialize
from harness.errors import HarnessError
from harness.spec import Assignment


def export_kit(assignment: Assignment, dest: Path, *, cache_root: Path) -> list[Path]:
    """Write the brief, the starter kit and the data sets listed in `data.public` into `dest`.

    Hidden data and the assignment's secrets never go in. Returns the paths written (top level).
    Raises HarnessError if `dest` exists and is not empty, SpecError/InfraError from the data.
    """
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise HarnessError(f"{dest} exists and is not empty: choose a new folder for the kit")
    spec = assignment.spec
    dest.mkdir(parents=True, exist_ok=True)
    written = [dest / Path(spec.brief).name]
    shutil.copyfile(assignment.path(spec.brief), written[0])
    if spec.starter:
        written.append(dest / "starter")
        shutil.copytree(assignment.path(spec.starter), written[-1], symlinks=True)
    if spec.data.public:
        sets = materialize(assignment, cache_root=cache_root)
        for name in spec.data.public:
            written.append(dest / "data" / name)
            shutil.copytree(sets.visible[name], written[-1])
    return written
