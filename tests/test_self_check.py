"""`harness check ASSIGNMENT SUBMISSION`, the candidate's self-check: the contract's files, and a
notebook without the cell tagged `parameters` warned about as papermill warns (issue 11), naming
the cell whose own assignment would override the injected values. Runs nothing of the submission."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from harness.cli import app
from tests.conftest import REPO

REASONS = Path(__file__).parent / "fixtures" / "reasons"


def check(*args: str):
    return CliRunner().invoke(app, ["check", *args])


def test_a_notebook_without_a_parameters_cell_is_warned_about(tmp_path: Path) -> None:
    shutil.copyfile(REASONS / "ab_untagged.ipynb", tmp_path / "analysis.ipynb")
    done = check("abtest", str(tmp_path))
    assert done.exit_code == 0, done.output  # a warning: it may still run
    (warning,) = [line for line in done.output.splitlines() if line.startswith("warn ")]
    assert 'analysis.ipynb has no cell tagged "parameters"' in warning
    assert "cell 2 sets data_dir, output_dir, which would override them" in warning


def test_a_good_notebook_passes_and_missing_files_fail(tmp_path: Path) -> None:
    good = check("abtest", str(REPO / "assignments" / "abtest" / "examples" / "good_notebook"))
    assert good.exit_code == 0 and "warn" not in good.output and "fail" not in good.output
    assert 'ok   analysis.ipynb has a cell tagged "parameters"' in good.output
    empty = check("ranker", str(tmp_path))
    assert empty.exit_code == 4
    assert "fail required file train.py" in empty.output and "fail required file predict.py" in empty.output


def test_a_notebook_that_is_not_json_fails_the_check(tmp_path: Path) -> None:
    (tmp_path / "analysis.ipynb").write_bytes(b"\xff\xfe{not json" * 1000)
    done = check("abtest", str(tmp_path))
    assert done.exit_code == 4 and "analysis.ipynb is not a readable notebook" in done.output


def test_odd_tags_are_no_parameters_cell_and_no_crash(tmp_path: Path) -> None:
    # the notebook is the candidate's JSON: tags that are a number, or a string containing the word
    import json

    cells = [{"cell_type": "code", "metadata": {"tags": 5}, "source": "x = 1"},
             {"cell_type": "code", "metadata": {"tags": "myparameters"}, "source": "data_dir = 'here'"}]
    (tmp_path / "analysis.ipynb").write_text(json.dumps({"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                                                         "metadata": {}}))
    done = check("abtest", str(tmp_path))
    assert done.exit_code == 0 and done.exception is None, done.output
    assert "cell 2 sets data_dir, which would override them" in done.output
