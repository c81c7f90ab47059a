"""Materialise an assignment's data sets once, cached by the hash of what produces them."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from harness._workdirs import remove_tree
from harness.errors import InfraError, SpecError
from harness.spec import SECRETS_DIR, Assignment


@dataclass(frozen=True)
class DataSets:
    visible: dict[str, Path]  # may be mounted read-only into stages
    hidden: dict[str, Path]  # graders only
    fingerprint: str


def _fingerprint(assignment: Assignment) -> str:
    digest = hashlib.sha256()
    generator = assignment.spec.data.generator
    roots = [assignment.path(generator)] if generator else []
    roots.append(assignment.dir / SECRETS_DIR)
    # code the generator may import from the assignment folder (e.g. model/train.py); not what
    # candidates see or submit
    roots += sorted(p for p in assignment.dir.rglob("*.py")
                    if p.parts[len(assignment.dir.parts)] not in ("examples", "starter", SECRETS_DIR)
                    and p != (assignment.path(generator) if generator else None))
    for root in roots:
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        for path in files:
            if path.exists():
                digest.update(str(path.relative_to(assignment.dir)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _load_generator(assignment: Assignment):
    """Import the assignment's generator (trusted code, shipped by the hiring team)."""
    path = assignment.path(assignment.spec.data.generator or "")
    module_spec = importlib.util.spec_from_file_location(f"_mlgrade_data_{assignment.spec.id}", path)
    if module_spec is None or module_spec.loader is None:
        raise SpecError(f"{path}: cannot load the data generator")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[module_spec.name] = module  # dataclasses in the generator look their module up here
    module_spec.loader.exec_module(module)
    if not callable(getattr(module, "materialize", None)):
        raise SpecError(f"{path}: data generator must define materialize(root, hidden_dir)")
    return module


def _publish(tmp: Path, hidden: list[str]) -> None:
    """Visible data readable by the sandbox user (another uid); hidden data by the harness only."""
    for dirpath, _dirs, files in os.walk(tmp):
        os.chmod(dirpath, 0o755)  # noqa: S103 - read-only data for the sandbox user
        for name in files:
            os.chmod(os.path.join(dirpath, name), 0o644)
    for rel in hidden:
        for dirpath, _dirs, files in os.walk(tmp / rel):
            os.chmod(dirpath, 0o700)
            for name in files:
                os.chmod(os.path.join(dirpath, name), 0o600)


def materialize(assignment: Assignment, *, cache_root: Path) -> DataSets:
    """Generate (or reuse) the data sets; safe to call from several processes at once."""
    spec = assignment.spec.data
    generator = _load_generator(assignment) if spec.generator else None
    if generator is not None and callable(getattr(generator, "prepare", None)):
        try:
            generator.prepare(assignment.dir / SECRETS_DIR)  # e.g. draws this install's secret seed
        except ValueError as exc:  # e.g. a weak or malformed seed: the assignment's set-up, not ours
            raise SpecError(f"{assignment.dir}: {exc}") from None
    fingerprint = _fingerprint(assignment)
    root = cache_root / "data" / assignment.spec.id / fingerprint
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not root.is_dir():
            if generator is not None:
                tmp = Path(tempfile.mkdtemp(dir=root.parent, prefix=".tmp-"))
                try:
                    generator.materialize(tmp, assignment.dir / SECRETS_DIR)
                    _publish(tmp, list(spec.hidden.values()))
                    tmp.rename(root)
                except OSError as exc:
                    remove_tree(tmp)
                    raise InfraError(f"could not generate data for {assignment.key}: {exc}") from exc
                except BaseException:
                    remove_tree(tmp)
                    raise
            else:
                root = assignment.dir
    sets = DataSets(visible={n: root / rel for n, rel in spec.visible.items()},
                    hidden={n: root / rel for n, rel in spec.hidden.items()}, fingerprint=fingerprint)
    for name, path in {**sets.visible, **sets.hidden}.items():
        if not path.is_dir():
            raise SpecError(f"{assignment.dir / 'assignment.yaml'}: data set {name!r} ({path}) "
                            "was not produced by the generator")
    return sets
