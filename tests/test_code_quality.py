"""The `code_quality` grader on hand-made submissions with hand-counted expectations, and on a ladder.

References for the hand counts: cyclomatic complexity is McCabe's V(G) = number of binary
decisions + 1 (T. McCabe, "A Complexity Measure", IEEE TSE 2(4), 1976), a short-circuit `and`
being a decision of its own; logical lines are those of the Python Language Reference, 2.1.1
(one per NEWLINE token, however many physical lines it spans; comments and blank lines are none).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from radon.metrics import mi_visit

import graders.quality.grader  # noqa: F401 - registers the grader
from graders.quality._hygiene import words_added
from graders.quality._tools import Unit, ruff_binary, run_worker
from harness.core.grading import GRADERS, CriterionResult, GradingContext
from harness.errors import SpecError
from harness.runtime import build_graders
from harness.spec import Assignment, AssignmentSpec

LADDER = Path(__file__).parent / "fixtures" / "quality"


def spec(starter: str | None = "starter", **args) -> AssignmentSpec:
    return AssignmentSpec.model_validate({
        "schema_version": 1, "id": "churn", "version": "1.0", "title": "Churn", "brief": "BRIEF.md",
        "starter": starter, "stages": [{"name": "train", "command": ["python", "train.py"], "timeout": 60}],
        "graders": [{"name": "quality", "grader": "code_quality", "weight": 1, "args": args}]})


def grade(submission: Path, *, assignment_dir: Path | None = None, starter: str | None = None,
          **args) -> CriterionResult:
    """Grade `submission` through the pipeline's own grader construction (which calls check_spec)."""
    assignment_dir = assignment_dir or submission.parent
    [grader] = build_graders(Assignment(spec(starter, **args), assignment_dir))
    artifacts = submission.parent / f"artifacts-{submission.name}"
    ctx = GradingContext(submission_dir=submission, outputs={}, hidden={}, visible={},
                         assignment_dir=assignment_dir, artifacts_dir=artifacts)
    return grader.grade(ctx)


def write(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def notebook(*cells: tuple[str, str]) -> str:
    def cell(kind: str, source: str) -> dict:
        extra = {"outputs": [], "execution_count": None} if kind == "code" else {}
        return {"cell_type": kind, "metadata": {}, "source": source.splitlines(True), **extra}

    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [cell(kind, source) for kind, source in cells]})


def rules_at(result: CriterionResult) -> list[tuple[str, str]]:
    """(location, rule) of each listed finding, from its line "train.py:12 F401: message"."""
    pairs = []
    for line in result.details["top_findings"]:
        location, rule = line.split(": ", 1)[0].rsplit(" ", 1)
        pairs.append((location, rule))
    return pairs


def ruff_findings(result: CriterionResult) -> list[tuple[str, str]]:
    return sorted((loc, rule) for loc, rule in rules_at(result) if re.fullmatch(r"[A-Z]+[0-9]+", rule))


# --- measures on hand-made code --------------------------------------------------------------------

LINT = '''"""Three unused imports, nothing else for ruff to find."""

import json
import os
import sys

# a comment is not a logical line
TOTAL = sum(
    [1, 2, 3],
)
'''


def test_lint_rate_is_findings_per_100_logical_lines(tmp_path):
    sub = write(tmp_path / "sub", {"lint.py": LINT})
    result = grade(sub)
    # 5 logical lines (docstring, three imports, the three-line TOTAL); 3 x F401 -> 60 per 100
    assert result.metrics["logical_lines"] == 5
    assert result.metrics["lint"] == pytest.approx(60.0)
    assert ruff_findings(result) == [("lint.py:3", "F401"), ("lint.py:4", "F401"), ("lint.py:5", "F401")]


def test_the_candidates_ruff_config_and_noqa_comments_change_nothing(tmp_path):
    hidden = re.sub(r"^(import \w+)$", r"\1  # noqa: F401", LINT, flags=re.MULTILINE)
    sub = write(tmp_path / "sub", {
        "lint.py": hidden,
        "pyproject.toml": '[tool.ruff.lint]\nselect = ["E"]\nignore = ["F401"]\n',
        "ruff.toml": 'lint.select = ["E"]\nlint.ignore = ["F"]\n',
    })
    # Plain ruff honours all of that and reports nothing: the grader must not.
    plain = subprocess.run([ruff_binary(), "check", "--no-cache", "lint.py"], cwd=sub, capture_output=True,
                           text=True, check=False)
    assert plain.returncode == 0, plain.stdout
    result = grade(sub)
    assert result.metrics["lint"] == pytest.approx(60.0)
    assert ruff_findings(result) == [("lint.py:3", "F401"), ("lint.py:4", "F401"), ("lint.py:5", "F401")]


COMPLEX = '''def classify(x, items):
    if x > 0:
        for item in items:
            if item and x:
                return item
    elif x < 0:
        while x < 0:
            x += 1
    return x
'''


def test_cyclomatic_complexity_matches_mccabes_count(tmp_path):
    # decisions: if, for, if, `and`, elif, while = 6, so V(G) = 7; the file's only block
    result = grade(write(tmp_path / "sub", {"mod.py": COMPLEX}), complexity_limit=6)
    assert result.metrics["complexity"] == pytest.approx(7.0)
    assert ("mod.py:1", "complexity") in rules_at(result)
    relaxed = grade(write(tmp_path / "sub2", {"mod.py": COMPLEX}), complexity_limit=7)
    assert result.details["measures"]["complexity"]["findings"] == 1
    assert relaxed.details["measures"]["complexity"]["findings"] == 0


COVERAGE = '''"""Annotation and docstring coverage, counted by hand in the test."""


class Model:
    """A model."""

    def __init__(self, depth):
        self.depth = depth

    def fit(self, X: list, y) -> "Model":
        """Fit."""
        return self

    @staticmethod
    def load(path: str):
        return Model(1)

    def _private(self, a):
        return a


def score(a: int, *args: int, b=1, **kw) -> float:
    """Score."""

    def inner(z):
        return z

    return float(inner(a))


def _helper(x):
    return x
'''


def test_docstring_and_annotation_coverage_of_public_functions(tmp_path):
    sub = write(tmp_path / "sub", {"model.py": COVERAGE,
                                   "tests/test_model.py": "def test_fit(tmp_path):\n    assert tmp_path\n"})
    result = grade(sub)
    # public: Model.fit (X, y, return: 2 of 3), Model.load (path, return: 1 of 2),
    # score (a, *args, b, **kw, return: 3 of 5); __init__, _private, inner, _helper and tests are not
    assert result.metrics["annotations"] == pytest.approx(6 / 10)
    assert result.metrics["docstrings"] == pytest.approx(2 / 3)  # load has none
    assert ("model.py:15", "missing-docstring") in rules_at(result)
    assert result.metrics["tests"] == 1


def test_function_size_is_the_share_of_statements_in_long_functions(tmp_path):
    long_body = "".join(f"    a{i} = {i}\n" for i in range(41))
    short_body = "".join(f"    b{i} = x\n" for i in range(8)) + "    return b0\n"
    code = f"def long_one():\n{long_body}\n\ndef short_one(x):\n{short_body}"
    sub = write(tmp_path / "sub", {"steps.py": code, "small.py": "X = 1\n"})
    result = grade(sub, max_function_statements=40, max_file_lines=50)
    assert result.metrics["function_size"] == pytest.approx(41 / 51)  # 41 of 41 + 9 + small.py's 1
    assert ("steps.py:1", "long-function") in rules_at(result)
    # steps.py has 54 lines (over 50) and 52 logical lines (two defs and 50 statements); small.py 1
    assert code.count("\n") == 54
    assert result.metrics["file_size"] == pytest.approx(52 / 53)


def test_maintainability_is_radons_index_weighted_by_logical_lines(tmp_path):
    files = {"a.py": COMPLEX, "b.py": LINT}
    result = grade(write(tmp_path / "sub", files))
    # radon itself is the reference for the index; a.py has 9 logical lines, b.py 5 (see above)
    expected = (mi_visit(COMPLEX, True) * 9 + mi_visit(LINT, True) * 5) / 14
    assert result.metrics["logical_lines"] == 14
    assert result.metrics["maintainability"] == pytest.approx(expected)


def test_notebook_findings_name_the_cell_and_the_line_in_it(tmp_path):
    nb = notebook(("markdown", "# Title"), ("code", "import os\n\nx = 1\n"), ("markdown", "Next"),
                  ("code", "%matplotlib inline\ny = 2\nif x == None:\n    print(y)\n"))
    result = grade(write(tmp_path / "sub", {"nb.ipynb": nb}))
    assert ruff_findings(result) == [("nb.ipynb:cell 2:1", "F401"), ("nb.ipynb:cell 4:3", "E711")]
    assert result.metrics["logical_lines"] == 5  # the magic is not code
    assert result.metrics["lint"] == pytest.approx(40.0)


def test_readme_dependencies_and_tests_are_counted_from_the_tree(tmp_path):
    assert words_added("Train a model on churn data. Run it twice.", "Train a model. Run it.") == 4
    requirements = ("# pinned and not\nnumpy==1.26.4\npandas\nscikit-learn>=1.3\ntorch==2.*\n"
                    "requests[socks]==2.31.0 ; python_version > '3'\n-r other.txt\n")
    code = "import numpy\n\nprint(numpy)\n"
    sub = write(tmp_path / "sub", {"main.py": code, "requirements.txt": requirements})
    result = grade(sub)
    assert result.metrics["dependencies"] == pytest.approx(2 / 5)
    assert {loc for loc, rule in rules_at(result) if rule == "unpinned-dependency"} == {
        "requirements.txt:3", "requirements.txt:4", "requirements.txt:5"}
    assert result.metrics["tests"] == 0 and result.metrics["readme"] == 0
    none_declared = write(tmp_path / "other", {"main.py": code})
    assert grade(none_declared).metrics["dependencies"] == 0
    relaxed = grade(none_declared, require_dependencies=False)
    assert "dependencies_score" not in relaxed.metrics
    assert relaxed.details["measures"]["dependencies"]["counted"] is False


# --- starter kit ---------------------------------------------------------------------------------

STARTER = '''import os


def fit(data):
    if data:
        for row in data:
            if row and data:
                print(row)
    return data
'''


def test_an_unmodified_starter_kit_is_not_judged(tmp_path):
    write(tmp_path / "starter", {"train.py": STARTER, "README.md": "Starter kit.\n"})
    crlf = STARTER.replace("\n", "\r\n").encode()  # the same file after a Windows checkout
    for name, content in (("copy", STARTER), ("crlf", crlf)):
        sub = write(tmp_path / name, {"train.py": content, "README.md": "Starter kit.\n"})
        result = grade(sub, assignment_dir=tmp_path, starter="starter")
        assert result.details["files"]["same_as_starter"] == ["train.py"]
        assert result.score == 0 and "No Python code" in result.explanation
        assert not [loc for loc, _ in rules_at(result) if loc.startswith("train.py")]
    judged = grade(tmp_path / "copy", assignment_dir=tmp_path, starter=None)  # without the exclusion
    assert ("train.py:1", "F401") in rules_at(judged)


def test_a_modified_starter_file_is_judged_on_its_changed_lines_only(tmp_path):
    write(tmp_path / "starter", {"train.py": STARTER})
    added = "\n\ndef new_step(values):\n    import sys\n    return values\n"
    sub = write(tmp_path / "sub", {"train.py": STARTER + added})
    result = grade(sub, assignment_dir=tmp_path, starter="starter", complexity_limit=1)
    # the starter's unused `os` and its complex `fit` are not the candidate's; new_step is
    lines = [int(loc.split(":")[1]) for loc, _ in rules_at(result) if loc.startswith("train.py:")]
    assert lines and min(lines) >= 12
    assert ("train.py:1", "F401") not in rules_at(result)
    assert ("train.py:13", "F401") in rules_at(result)
    assert result.metrics["logical_lines"] == 3
    assert result.metrics["lint"] == pytest.approx(100 / 3)
    assert result.metrics["complexity"] == pytest.approx(1.0)
    assert result.metrics["docstrings"] == 0.0  # new_step, public and undocumented; fit not counted


def test_a_modified_starter_notebook_is_judged_on_its_new_cells_only(tmp_path):
    kit = [("markdown", "# Explore"), ("code", "import os\n\ndata = [1, 2]\n"), ("code", "data == None\n")]
    write(tmp_path / "starter", {"explore.ipynb": notebook(*kit)})
    mine = [*kit, ("markdown", "Mine"), ("code", "import sys\n\ntotal = sum(data)\nprint(total == None)\n")]
    result = grade(write(tmp_path / "sub", {"explore.ipynb": notebook(*mine)}), assignment_dir=tmp_path,
                   starter="starter")
    # the kit's unused `os` (cell 2) and `== None` (cell 3) are not the candidate's
    assert ruff_findings(result) == [("explore.ipynb:cell 5:1", "F401"), ("explore.ipynb:cell 5:4", "E711")]
    assert result.metrics["logical_lines"] == 3


# --- hostile input --------------------------------------------------------------------------------

def test_hostile_files_give_a_result_not_an_exception(tmp_path):
    outside = write(tmp_path / "outside", {"evil.py": "import os\nSECRET_TOKEN = 'Zq8vR2mK9pL4xW7n'\n"})
    sub = write(tmp_path / "sub", {
        "ok.py": "print('hello')\n",
        "binary.py": b"\x00\x01\x02\xff\xfe binary",
        "broken.ipynb": '{"cells": [',
        "odd.ipynb": json.dumps({"cells": {"not": "a list"}}),
        "nested.py": "x = " + "(" * 200 + "1" + ")" * 200 + "\n",
        "unary.py": "x = " + "-" * 100_000 + "1\n",  # overflows ruff's stack and the parser's recursion
        "huge.py": "x = 1\n" * 120_000,  # over the per-file cap
    })
    (sub / "link.py").symlink_to(outside / "evil.py")
    (sub / "linked_dir").symlink_to(outside)
    result = grade(sub, max_file_bytes=512 << 10)
    assert 0.0 <= result.score <= 1.0
    not_analysed = " ".join(result.details["files"]["not_analysed"])
    for name in ("binary.py", "broken.ipynb", "odd.ipynb", "huge.py", "unary.py"):
        assert name in not_analysed
    assert any("link.py" in note and "not followed" in note for note in result.details["files"]["walk"])
    everything = result.model_dump_json()
    assert "evil.py" not in everything and "Zq8vR2mK9pL4xW7n" not in everything
    assert result.metrics["files_analysed"] >= 1  # ok.py at least


def test_a_unit_that_kills_the_analyser_costs_only_itself(tmp_path):
    good = write(tmp_path, {"a.py": "x = 1\n", "c.py": "def f():\n    return 1\n"})
    units = [Unit(0, good / "a.py"), Unit(1, tmp_path / "missing.py"), Unit(2, good / "c.py")]
    results = run_worker(units, tmp_path, timeout=60)
    assert results[0].ok and results[2].ok and [b.name for b in results[2].blocks] == ["f"]
    assert not results[1].ok and "could not be analysed" in results[1].error


def test_secrets_are_found_and_never_shown(tmp_path):
    aws, github = "AKIA" + "QWERTYUIOPASDFGH", "ghp_" + "aB3" * 12
    openai, password = "sk-" + "x9Y8" * 6, "S3cr3t-P4ss-2024!"
    sub = write(tmp_path / "sub", {
        "config.py": (f'AWS_KEY = "{aws}"\nGH = "{github}"\ndb_password = "{password}"\n'
                      'api_key = "<your api key here>"\nimport os\ntoken = os.environ["TOKEN"]\n'
                      'tokenizer_name = "distilbert-base-uncased"\n'),
        "deploy/key.pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow\n-----END RSA PRIVATE KEY-----\n",
        ".env": f"OPENAI_API_KEY={openai}\n",
    })
    result = grade(sub)
    found = {(loc, rule) for loc, rule in rules_at(result) if rule.startswith("secret:")}
    assert found == {("config.py:1", "secret:aws-access-key-id"), ("config.py:2", "secret:github-token"),
                     ("config.py:3", "secret:hard-coded-credential"),
                     ("deploy/key.pem:1", "secret:private-key"), (".env:1", "secret:openai-style-key")}
    assert result.metrics["secrets"] == 5 and result.metrics["secrets_score"] == 0
    feedback = (tmp_path / "artifacts-sub" / "feedback.md").read_text()
    for shown in (result.model_dump_json(), feedback):
        for secret in (aws, github, openai, password, aws[4:], github[4:]):
            assert secret not in shown


def test_no_python_code_scores_zero_with_a_reason(tmp_path):
    result = grade(write(tmp_path / "sub", {"README.md": "I ran out of time.\n", "notes.txt": "todo\n"}))
    assert result.score == 0 and "No Python code" in result.explanation
    assert (tmp_path / "artifacts-sub" / "feedback.md").exists()


def test_partial_measure_arguments_keep_their_defaults_and_ruff_checks_the_rules(tmp_path):
    cls = GRADERS.get("code_quality")
    args = cls.Args.model_validate({"lint": {"good": 3}, "tests": {"weight": 0}})
    assert (args.lint.good, args.lint.bad, args.lint.weight) == (3, 15, 3)
    assert args.tests.weight == 0 and args.tests.good == 3
    with pytest.raises(SpecError, match="ZZZ9"):
        build_graders(Assignment(spec(rules=["F", "ZZZ9"]), tmp_path))


# --- the ladder -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ladder(tmp_path_factory) -> dict[str, tuple[CriterionResult, str]]:
    """The three fixture submissions graded against the fixture starter kit (copied, plus a data file)."""
    root = tmp_path_factory.mktemp("ladder")
    for name in ("starter", "clean", "average", "messy"):
        shutil.copytree(LADDER / name, root / name)
    rows = [f"{i},{i % 37},{(i * 7919) % 100 / 3:.4f},{i % 5},monthly,card,{i % 2}" for i in range(64_000)]
    data = ("customer_id,tenure_months,monthly_charge,support_tickets_90d,contract_type,payment_method,"
            "churned\n")
    write(root / "messy", {"data/churn_full.csv": data + "\n".join(rows) + "\n"})  # about 2 MB, committed
    assert (root / "messy/data/churn_full.csv").stat().st_size > 2_000_000
    out = {}
    for name in ("clean", "average", "messy"):
        result = grade(root / name, assignment_dir=root, starter="starter")
        out[name] = (result, (root / f"artifacts-{name}" / "feedback.md").read_text())
    return out


def test_the_ladder_orders_as_a_reviewer_would(ladder):
    clean, average, messy = (ladder[name][0].score for name in ("clean", "average", "messy"))
    assert clean - average >= 0.15 and average - messy >= 0.15, (clean, average, messy)


def test_the_ladder_reports_say_why(ladder):
    messy, feedback = ladder["messy"]
    found = rules_at(messy)
    assert ("data/churn_full.csv", "large-file") in found
    assert ("train.py:14", "secret:aws-access-key-id") in found
    assert ("train.py:15", "secret:hard-coded-credential") in found
    assert any(rule == "complexity" and loc.startswith("train.py") for loc, rule in found)
    assert "## Secrets" in feedback and "AKIAIOSFODNN7EXAMPLE" not in feedback + messy.model_dump_json()
    assert messy.details["files"]["same_as_starter"] == ["explore.ipynb"]
    clean = ladder["clean"][0]
    assert clean.details["files"]["same_as_starter"] == ["explore.ipynb"]
    average = ladder["average"][0]
    notebook_cells = [int(loc.split(":")[1].split()[1]) for loc, _ in rules_at(average)
                      if loc.startswith("explore.ipynb")]
    assert notebook_cells and min(notebook_cells) > 4  # cells 2-4 are the starter's, unchanged


# --- files that do not parse: counted by their own size ----------------------------------------------
# Rule (graders.quality._measures): each code line (non-blank, not only a comment) of a file that
# does not parse counts at the measure's `bad` value; lint's is 15 findings per 100 lines. So
# lint = (100 * findings + 15 * U) / (L + U), L the parsed files' logical lines, U the unparsed code lines.

FEATURES = '''"""Feature helpers for the churn model."""

from __future__ import annotations

import math


def log_tenure(months: int) -> float:
    """Log of tenure in months, 0 for new customers."""
    return math.log1p(max(months, 0))


def charge_band(charge: float) -> str:
    """Three bands of monthly charge."""
    if charge < 30:
        return "low"
    if charge < 70:
        return "mid"
    return "high"


def ratio(part: float, whole: float) -> float:
    """part / whole, 0 when whole is 0."""
    return part / whole if whole else 0.0
'''  # 16 logical lines, counted one by one: docstring, 2 imports, 3 x (def, docstring), 7 bodies lines


def py2_report(metrics: int) -> str:
    """A Python 2 evaluation script: `print` statements, one function per metric (8 lines each)."""
    head = "import sys\n\n\n"  # 1 code line
    block = ('def report_{i}(scores):\n'
             '    # python 2 era, never ported\n'
             '    total = 0\n'
             '    for s in scores:\n'
             '        total += s\n'
             '\n'
             '    print "metric {i}:", total / len(scores)\n'
             '\n')  # 5 code lines: def, total = 0, for, total += s, print
    return head + "".join(block.format(i=i) for i in range(metrics))


def test_a_large_file_that_does_not_parse_beside_a_small_one_gives_a_bounded_density(tmp_path):
    sub = write(tmp_path / "sub", {"features.py": FEATURES, "legacy_eval.py": py2_report(250)})
    assert py2_report(250).count("\n") == 2003  # a 2,000-line module
    result = grade(sub)
    # U = 1 + 5 * 250 = 1251 code lines; L = 16; features.py has no finding. The first print is line 3 + 7.
    # lint = 15 * 1251 / (16 + 1251) = 14.8066... (before: ruff's ~250 syntax errors / 16 lines, > 1,000)
    assert result.metrics["lint"] == pytest.approx(15 * 1251 / 1267)
    assert result.metrics["logical_lines"] == 16 and result.metrics["unparsed_lines"] == 1251
    # complexity: features.py's blocks (McCabe) log_tenure 1 x 2 statements, charge_band 3 x 6,
    # ratio 2 x 2 (the conditional expression is a decision); mixed with 1251 lines at 15:
    assert result.metrics["complexity"] == pytest.approx((1 * 2 + 3 * 6 + 2 * 2 + 15 * 1251) / (10 + 1251))
    assert result.metrics["lint_score"] == pytest.approx(0.0, abs=0.02)
    assert "legacy_eval.py:10 did not parse (syntax error: Missing parentheses in call to 'print'" \
        in result.explanation
    assert '`print "metric 0:", total / len(scores)`' in result.explanation
    assert rules_at(result)[0] == ("legacy_eval.py:10", "not-parsed")


def clean_project(functions: int) -> str:
    """A clean module: a docstring and `functions` documented one-line functions (3 logical lines each)."""
    one = '\n\ndef scale_{i}(value: float) -> float:\n    """Scale by {i}."""\n    return value * {i}\n'
    body = "".join(one.format(i=i) for i in range(functions))
    return '"""Scaling helpers."""\n' + body


EXPORTED = '''#!/usr/bin/env python
# coding: utf-8

# In[1]:


%matplotlib inline
!pip install lightgbm==4.7.0
import pandas as pd


# In[2]:


df = pd.read_csv("train.csv")
df.head()
'''  # code lines: %matplotlib, !pip, import, df =, df.head() = 5; the parser stops at line 7


def test_a_small_file_that_does_not_parse_in_a_large_clean_project_costs_little(tmp_path):
    sub = write(tmp_path / "sub", {"scaling.py": clean_project(100), "notebook_export.py": EXPORTED})
    result = grade(sub)
    # L = 1 + 3 * 100 = 301, no finding; U = 5. lint = 15 * 5 / 306 = 0.245 (full marks under 2)
    assert result.metrics["lint"] == pytest.approx(15 * 5 / 306)
    assert result.metrics["logical_lines"] == 301 and result.metrics["unparsed_lines"] == 5
    assert result.metrics["lint_score"] == 1.0
    # complexity: 100 blocks of complexity 1 with 2 statements (docstring, return), and 5 lines at 15
    assert result.metrics["complexity"] == pytest.approx((200 + 15 * 5) / 205)
    assert "notebook_export.py:7 did not parse (syntax error: invalid syntax) at `%matplotlib inline`" \
        in result.explanation


MERGE_CONFLICT = '''import pandas as pd


def load(path):
<<<<<<< HEAD
    df = pd.read_csv(path)
=======
    df = pd.read_csv(path, parse_dates=["signup_date"])
>>>>>>> feature/dates
    return df.dropna()
'''  # 8 code lines (everything but the two blank lines)


def test_a_merge_conflict_file_is_named_with_the_parsers_line(tmp_path):
    sub = write(tmp_path / "sub", {"features.py": FEATURES, "data.py": MERGE_CONFLICT})
    result = grade(sub)
    # lint = 15 * 8 / (16 + 8) = 5.0 findings per 100 lines
    assert result.metrics["lint"] == pytest.approx(5.0)
    assert "data.py:5 did not parse (syntax error: expected an indented block after function definition " \
           "on line 4) at `<<<<<<< HEAD`" in result.explanation
    assert any(note.startswith("data.py:5: syntax error") for note in result.details["files"]["not_analysed"])
