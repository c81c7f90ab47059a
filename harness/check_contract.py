"""The self-check's view of the contract: a checklist line type, and the outputs and files held
against what the brief promises (scores.csv against the public test rows, a JSON file against the
starter kit's `<name>.schema.json`). Candidate files are hostile: bounded reads, and every problem is
a line, never an exception."""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from graders.ranking import read_predictions
from harness.core import OutputFile
from harness.core.text import one_line, printable
from harness.spec import Assignment

SMOKE_OUTPUT = "smoke.json"  # = harness.kit.SMOKE_OUTPUT (the kit imports this module)

_JSON_MAX = 1 << 20
_SCORES = "scores.csv"
_KEY_COLUMNS = ("query_id", "doc_id")


@dataclass(frozen=True)
class Check:
    """One line of the self-check: `level` is ok, warn or fail."""

    level: str
    text: str


def schema_for(assignment: Assignment, name: str) -> Path | None:
    """The starter kit's JSON Schema for file `name` (answers.json: answers.schema.json), if shipped."""
    if not name.endswith(".json") or assignment.spec.starter is None:
        return None
    path = assignment.path(assignment.spec.starter) / f"{name.removesuffix('.json')}.schema.json"
    return path if path.is_file() else None


def json_check(path: Path, shown: str, schema_path: Path) -> Check:
    """`path` (a candidate's file) against the schema; the first problem is the line's text."""
    try:
        with path.open("rb") as fh:
            raw = fh.read(_JSON_MAX + 1)
        if len(raw) > _JSON_MAX:
            return Check("fail", f"{shown} is larger than {_JSON_MAX >> 10} KiB")
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        return Check("fail", f"{shown} is not valid JSON: {one_line(printable(str(exc)), 160)}")
    schema: dict[str, Any] = json.loads(schema_path.read_text(encoding="utf-8"))  # the assignment's file
    error = best_match(Draft202012Validator(schema).iter_errors(data))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        return Check("fail", f"{shown} does not match {schema_path.name}: at {where}: "
                             f"{one_line(printable(error.message), 200)}")
    return Check("ok", f"{shown} matches {schema_path.name}")


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def output_checks(assignment: Assignment, outputs: Mapping[str, OutputFile],
                  visible: Mapping[str, Path]) -> list[Check]:
    """A line per contract output the stages declare: scores.csv (against the rows of the public
    data sets `visible` its stage mounts), and JSON files with a schema.
    Other outputs (an executed notebook kept for reviewers) are nobody's contract."""
    checks = []
    for key, out in sorted(outputs.items()):
        name = key.rpartition("/")[2]
        if name == SMOKE_OUTPUT:
            checks += _smoke_checks(out)
            continue
        schema = schema_for(assignment, name)
        if name != _SCORES and schema is None:
            continue
        if out.path is None:
            checks.append(Check("fail", f"{key} was not written: {out.problem}"))
        elif schema is not None:
            checks.append(json_check(out.path, key, schema))
        else:
            checks.append(_scores_check(assignment, key, out.path, visible))
    return checks


def _smoke_checks(out: OutputFile) -> list[Check]:
    """The smoke probe's report (harness-owned code, but read as bounded JSON all the same)."""
    try:
        report = json.loads(out.path.read_bytes()[:_JSON_MAX]) if out.path else None
    except (OSError, ValueError):
        report = None
    if not isinstance(report, dict):
        return [Check("fail", f"the service was not probed: {out.problem or 'no readable report'}")]
    if report.get("manifest"):
        return [Check("fail", f"serve.json: {one_line(printable(str(report['manifest'])), 200)}")]
    if report.get("healthy_after_s") is None:
        why = one_line(printable(str(report.get("health"))), 200)
        return [Check("fail", f"GET /health never answered 200: {why}")]
    checks = [Check("ok", f"GET /health answered 200 after {report['healthy_after_s']} s")]
    if report.get("predict"):
        checks.append(Check("fail", one_line(printable(str(report["predict"])), 200)))
    else:
        label = (report.get("prediction") or {}).get("label")
        checks.append(Check("ok", f"POST /predict answered a valid prediction (label {label!r})"))
    checks.append(Check("warn", "latency, capacity, robustness and correctness are measured only when graded "
                                "(the probe's inputs are the hiring team's)"))
    return checks


def _scores_check(assignment: Assignment, key: str, path: Path, visible: Mapping[str, Path]) -> Check:
    keys = _test_rows(assignment, key, visible)
    if keys is None:
        return Check("warn", f"{key}: no public data names the rows to score; not checked")
    found = read_predictions(path, keys)
    if found.fatal:
        return Check("fail", f"{key}: {found.fatal}")
    bad = {k: n for k, n in found.diagnostics.counts.items() if n}
    if bad:
        first = next((ex[0] for p, ex in found.diagnostics.examples.items() if bad.get(p) and ex), "")
        problems = ", ".join(f"{n} {kind.replace('_', ' ')}" for kind, n in bad.items())
        return Check("fail", f"{key}: {found.diagnostics.valid} of {len(keys)} test rows scored; "
                             f"{problems} (e.g. {one_line(printable(first), 80)})")
    return Check("ok", f"{key} has the header query_id,doc_id,score and one finite score for each of "
                       f"the {len(keys)} test rows")


def _test_rows(assignment: Assignment, key: str, visible: Mapping[str, Path]) -> set[tuple[str, str]] | None:
    """The (query_id, doc_id) rows of the first CSV with those columns in the data sets of the
    stage that writes `key` (trusted, public data)."""
    stage = next((s for s in assignment.spec.stages if key in s.output_keys()), None)
    for name in stage.data if stage else ():
        for table in sorted(visible[name].glob("*.csv")) if name in visible else ():
            with table.open(newline="", encoding="utf-8") as fh:
                reader = csv.reader(fh)
                header = next(reader, [])
                if all(c in header for c in _KEY_COLUMNS):
                    qi, di = (header.index(c) for c in _KEY_COLUMNS)
                    return {(row[qi], row[di]) for row in reader if len(row) > max(qi, di)}
    return None
