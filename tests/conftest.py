"""Shared fixtures. Docker tests need a daemon: `bash scripts/setup.sh` starts one."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_results(tmp_path_factory) -> Path:
    """A results root shared by the docker tests, so images and data are built once per session."""
    return tmp_path_factory.mktemp("results")


def run_cli(*args: str, cwd: Path = REPO, env: dict | None = None,
            timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real `harness` command line in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=cwd, env=full_env, text=True,
                          capture_output=True, timeout=timeout)
