"""The in-sandbox entry-point runner (sandbox/runners/run.py), run here with the host's Python and a
real Jupyter kernel; the Docker path is exercised by tests/test_abtest_docker.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from sandbox import RUNNERS_DIR

RUNNER = RUNNERS_DIR / "run.py"


def run(cwd: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "HOME": str(cwd)}
    return subprocess.run([sys.executable, str(RUNNER), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


def notebook(path: Path, *cells) -> None:
    nbformat.write(new_notebook(cells=list(cells)), path)


@pytest.mark.slow
def test_parameters_are_injected_after_the_tagged_cell_and_the_executed_notebook_is_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    notebook(tmp_path / "analysis.ipynb",
             new_markdown_cell("# Analysis"),
             new_code_cell("data_dir = 'default'\noutput_dir = '.'", metadata={"tags": ["parameters"]}),
             new_code_cell("import pathlib\npathlib.Path(output_dir, 'seen.txt').write_text(data_dir)"))
    done = run(tmp_path, "--param", "data_dir=/data/input", "--param", f"output_dir={out}",
               "--executed", str(out / "executed.ipynb"), "analysis.ipynb", "analyze.py")
    assert done.returncode == 0, done.stderr
    assert (out / "seen.txt").read_text() == "/data/input"  # the injected value won over the default
    executed = nbformat.read(out / "executed.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in executed.cells]
    assert tags[2] == ["injected-parameters"]  # right after the `parameters` cell
    assert executed.cells[3].execution_count is not None


@pytest.mark.slow
def test_a_failing_cell_fails_the_stage_and_the_notebook_shows_the_error(tmp_path):
    notebook(tmp_path / "analysis.ipynb", new_code_cell("x = 1"), new_code_cell("raise KeyError('convertd')"),
             new_code_cell("never = True"))
    done = run(tmp_path, "--executed", str(tmp_path / "executed.ipynb"), "analysis.ipynb")
    assert done.returncode == 1 and "KeyError" in done.stderr
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    error = executed.cells[2].outputs[0]  # cell 0 is the injected (empty) parameters cell
    assert error.output_type == "error" and error.ename == "KeyError"
    assert executed.cells[3].execution_count is None  # stopped at the error


@pytest.mark.slow
def test_a_kernel_killed_mid_cell_is_noticed_at_once_and_the_cell_named(tmp_path):
    # as the OOM killer would: SIGKILL to the kernel alone, while the runner lives on
    notebook(tmp_path / "analysis.ipynb", new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
             new_code_cell("import os, signal, time\nos.kill(os.getpid(), signal.SIGKILL)\ntime.sleep(600)"),
             new_code_cell("never = True"))
    done = run(tmp_path, "--param", "a=b", "--executed", str(tmp_path / "executed.ipynb"), "analysis.ipynb",
               timeout=60)  # a runner blind to the death waits for a reply that never comes
    assert done.returncode == 128 + 9, done.stderr  # as the shell reports a process killed by SIGKILL
    assert "kernel died in cell 2 (killed by SIGKILL, most likely out of memory)" in done.stderr
    executed = nbformat.read(tmp_path / "executed.ipynb", as_version=4)
    died = executed.cells[2]  # the candidate's second cell, after the injected one
    assert died.outputs[-1].output_type == "error" and died.outputs[-1].ename == "DeadKernelError"
    assert executed.cells[3].execution_count is None


def test_a_script_gets_the_parameters_as_options(tmp_path):
    (tmp_path / "analyze.py").write_text("import json, sys\nprint(json.dumps(sys.argv[1:]))\n")
    done = run(tmp_path, "--param", "data_dir=/data/input", "--param", "output_dir=/output",
               "analysis.ipynb", "analyze.py")
    assert done.returncode == 0
    assert json.loads(done.stdout) == ["--data-dir", "/data/input", "--output-dir", "/output"]


def test_no_entry_point_and_a_broken_notebook_are_clear_failures(tmp_path):
    done = run(tmp_path, "analysis.ipynb", "analyze.py")
    assert done.returncode == 2 and "none of analysis.ipynb, analyze.py" in done.stderr
    (tmp_path / "analysis.ipynb").write_text("{not json")
    done = run(tmp_path, "analysis.ipynb")
    assert done.returncode == 1 and "not a readable notebook" in done.stderr
    assert run(tmp_path, "--param", "bad name=1", "analysis.ipynb").returncode == 2


# --- failure reasons (issue 11): the failing cell named, a missing `parameters` tag warned about ------

REASONS = Path(__file__).parent / "fixtures" / "reasons"


def _ab_data(folder: Path) -> Path:
    """A few rows in the A/B assignment's format (its columns; values irrelevant here)."""
    folder.mkdir()
    (folder / "experiment.csv").write_text("user_id,variant,exposure_date,pre_metric,converted,revenue\n"
                                           "u1,control,2026-03-01,1.50,0,0.00\nu2,treatment,2026-03-01,2.10,1,35.20\n")
    (folder / "design.json").write_text("{}")
    return folder


@pytest.mark.slow
def test_a_cell_that_raises_is_named_with_its_first_line_and_error(tmp_path):
    from harness._reasons import read_failure

    (tmp_path / "analysis.ipynb").write_bytes((REASONS / "ab_cell7_keyerror.ipynb").read_bytes())
    data = _ab_data(tmp_path / "data")
    done = run(tmp_path, "--param", f"data_dir={data}", "--param", f"output_dir={tmp_path}", "--executed",
               str(tmp_path / "executed.ipynb"), "analysis.ipynb")
    assert done.returncode == 1
    # the candidate's notebook: markdown, parameters, imports, load, markdown, users, then cell 7
    source = nbformat.read(REASONS / "ab_cell7_keyerror.ipynb", as_version=4).cells[6].source
    assert source.startswith('converted = log["converted_flag"]')
    said = done.stderr.splitlines()
    first_line = 'converted = log["converted_flag"] # renamed in the v2 export'
    assert f"run.py: analysis.ipynb: cell 7 begins: {first_line}" in said
    assert "run.py: analysis.ipynb: cell 7 raised KeyError: 'converted_flag'" in said
    found = read_failure(done.stderr, failed=True)
    assert (found.reason, found.cell) == ("KeyError: 'converted_flag'", 7)
    assert found.cell_line == 'converted = log["converted_flag"] # renamed in the v2 export'
    assert not found.warnings  # the notebook has its `parameters` cell


@pytest.mark.slow
def test_a_notebook_without_a_parameters_cell_is_warned_about_and_the_overriding_cell_named(tmp_path):
    from harness._reasons import read_failure

    (tmp_path / "analysis.ipynb").write_bytes((REASONS / "ab_untagged.ipynb").read_bytes())
    data = _ab_data(tmp_path / "data")
    done = run(tmp_path, "--param", f"data_dir={data}", "--param", f"output_dir={tmp_path}", "analysis.ipynb")
    assert done.returncode == 1  # its own data_dir = "data/public" won over the injected value
    found = read_failure(done.stderr, failed=True)
    assert found.reason.startswith("FileNotFoundError: ") and "data/public/experiment.csv" in found.reason
    assert found.cell == 4
    (warning,) = found.warnings
    assert 'has no cell tagged "parameters"' in warning
    assert "cell 2 sets data_dir, output_dir, overriding the harness's values" in warning
