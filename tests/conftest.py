"""Shared fixtures. Docker tests need a daemon: `bash scripts/setup.sh` starts one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _own_machine_locks(tmp_path_factory):
    """The suite's measurements and stages take turns with each other (sandbox/_cpus.py), not with
    a harness someone runs beside it on the same host; the CLI's subprocesses inherit the folder."""
    from sandbox._cpus import LOCK_DIR_ENV

    before = os.environ.get(LOCK_DIR_ENV)
    os.environ[LOCK_DIR_ENV] = str(tmp_path_factory.mktemp("machine-locks"))
    yield
    if before is None:
        os.environ.pop(LOCK_DIR_ENV, None)
    else:
        os.environ[LOCK_DIR_ENV] = before


@pytest.fixture(scope="session")
def sandbox_image(tmp_path_factory) -> str:
    """A real grading image (the harness's own base + recipe, no extra packages), built or cached."""
    import docker

    from sandbox.images import ensure_base_image, ensure_image

    client = docker.from_env()
    cache = tmp_path_factory.mktemp("image-cache")
    base = ensure_base_image(client, base="auto", cache_dir=cache)
    return ensure_image(client, name="contract-test", base=base, packages=[], cache_dir=cache).tag


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real `harness` command line in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)


def earned(line: dict, *, groups: set[str] | None = None, skip: frozenset[str] = frozenset()) -> float:
    """Weight earned by a `--json` line's criteria in `groups` (all if None), minus those in `skip`."""
    return sum(c["score"] * c["weight"] for c in line["criteria"].values()
               if (groups is None or c["group"] in groups) and c["group"] not in skip)
