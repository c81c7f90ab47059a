"""Hostile A/B-test notebooks through the whole pipeline, on both backends: the notebook runner, the
kernel it starts and the stage's limits together."""

from __future__ import annotations

import re
import shutil
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from harness import api
from harness.results import Status
from tests.conftest import REPO

pytestmark = pytest.mark.slow
ABTEST = REPO / "assignments" / "abtest"
TIMEOUT_S = 60  # the stage's limit in the copy (300 s in the real spec): a hang costs 4 runs of this
HOG = "hog = bytearray(6 << 30)  # three times the 2 GiB limit, every page touched"
# What the host's OOM killer does to the local backend's kernel (it has no cgroup of its own).
SELF_KILL = "import os, signal, time\nos.kill(os.getpid(), signal.SIGKILL)\ntime.sleep(600)"


@pytest.fixture(scope="module")
def short_abtest(tmp_path_factory):
    """The abtest assignment with a shorter stage limit; same id and packages, so the same image."""
    copy = tmp_path_factory.mktemp("assignment") / "abtest"
    shutil.copytree(ABTEST, copy, ignore=shutil.ignore_patterns("hidden", "examples", "__pycache__"))
    spec = copy / "assignment.yaml"
    text, count = re.subn(r"(?m)^    timeout: 300$", f"    timeout: {TIMEOUT_S}", spec.read_text(), count=1)
    assert count == 1
    spec.write_text(text)
    return copy


def _grade(assignment, tmp_path, second_cell: str, **options):
    sub = tmp_path / "hog"
    sub.mkdir()
    cells = [new_code_cell("data_dir, output_dir = '.', '.'", metadata={"tags": ["parameters"]}),
             new_code_cell(second_cell), new_code_cell("print('never')")]
    nbformat.write(new_notebook(cells=cells), sub / "analysis.ipynb")
    started = time.monotonic()
    report = api.grade(assignment, [str(sub)], results_dir=tmp_path / "results", log_to_mlflow=False,
                       retries=0, **options)
    return report.items[0], time.monotonic() - started


def _assert_oom_at_once(result, elapsed: float) -> None:
    assert result.status is Status.OOM, result.message
    runs = [s for s in result.stages if s.name.startswith("analyze/")]
    assert len(runs) == 4 and {s.status for s in runs} == {"oom"}, [(s.name, s.status) for s in runs]
    assert all(s.seconds < TIMEOUT_S for s in runs), [s.seconds for s in runs]
    assert elapsed < 4 * TIMEOUT_S  # a hang waits out the limit on each of the four runs


@pytest.mark.docker
def test_a_kernel_killed_for_memory_is_oom_at_once_and_names_the_cell(short_abtest, tmp_path):
    item, elapsed = _grade(short_abtest, tmp_path, HOG)
    _assert_oom_at_once(item.result, elapsed)
    assert "kernel died in cell 2" in item.result.message, item.result.message
    log = (item.folder / "logs" / "analyze" / "public.log").read_text()
    assert "kernel died in cell 2 (killed by SIGKILL, most likely out of memory)" in log, log
    assert "DeadKernelError" in (item.folder / "outputs" / "public" / "executed.html").read_text()


@pytest.mark.parametrize("second_cell", [HOG, SELF_KILL], ids=["memory_error", "kernel_killed"])
def test_the_local_backend_gives_oom_too(short_abtest, tmp_path, second_cell):
    # RLIMIT_AS makes the allocation raise MemoryError in the cell; a kernel killed outright is
    # judged OOM by the local heuristic (a SIGKILL the harness did not send)
    with pytest.warns(UserWarning, match="weaker"):
        item, elapsed = _grade(short_abtest, tmp_path, second_cell, backend="local",
                               allow_weaker_isolation=True)
    _assert_oom_at_once(item.result, elapsed)
    if second_cell == SELF_KILL:
        assert "kernel died in cell 2" in item.result.message, item.result.message
