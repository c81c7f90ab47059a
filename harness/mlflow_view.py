"""The reviewer's view of an experiment in the MLflow UI: the leaderboard.

MLflow's UI (3.x) restores a saved view from an experiment tag `mlflow.sharedViewState.<key>` when
its runs page is opened with `?viewStateShareKey=<key>`, and lists saved views in its "Views" menu.
The tag holds the UI's own state: the sort, the columns shown, and the charts with their sections.
The harness writes one such view per experiment, so the URL `harness ui` prints opens on the ranking:
total score first (best first), the status and the failure reason beside it, every group's score;
in the chart view the total, then the groups, then the criteria, each a bar per candidate.

The state's field names are the UI's (checked against MLflow 3.17's UI, and by screenshots: README,
"Opening the results in MLflow"); a UI that does not know them falls back to its default view, so a wrong
guess costs the layout, never the runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from harness import mlflow_fields as fields
from harness.formats import board, to_markdown
from harness.results import SubmissionResult, group_scores

VIEW_KEY = "leaderboard"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
VIEW_NAME = "Leaderboard"
COHORT_RUN_NAME = "cohort (leaderboard)"
_RUNS_SHOWN = 1000  # charts and the list show every run, not the UI's default first 10


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the UI's canonical column key, as in its own sort keys


def leaderboard_state(*, groups: Sequence[str], criteria: Sequence[str]) -> dict[str, Any]:
    """The UI state: runs sorted by total score, the figures that rank them as columns, and charts."""
    metric_columns = [_column("metrics", fields.TOTAL),
                      *(_column("metrics", fields.group_metric(g)) for g in groups)]
    tag_columns = [_column("tags", t) for t in (fields.STATUS_TAG, fields.REASON_TAG, "similarity.flagged")]
    sections = [("mlgrade-total", "Total score", [fields.TOTAL]),
                ("mlgrade-groups", "Groups (0-100)", [fields.group_metric(g) for g in groups]),
                ("mlgrade-criteria", "Criteria (0-1)", [fields.criterion_metric(c) for c in criteria])]
    charts = [_bar(f"{uuid}-{i}", uuid, metric)
              for uuid, _, metrics in sections for i, metric in enumerate(metrics)]
    return {
        "orderByKey": _column("metrics", fields.TOTAL), "orderByAsc": False,
        "selectedColumns": [*metric_columns, *tag_columns], "columnOrder": [*metric_columns, *tag_columns],
        "runsHiddenMode": "SHOW_ALL",
        "compareRunSections": [{"uuid": uuid, "name": name, "display": True, "isReordered": False,
                                "deleted": False, "isGenerated": False}
                               for uuid, name, metrics in sections if metrics],
        "compareRunCharts": charts, "isAccordionReordered": True, "hideEmptyCharts": True,
    }


def _bar(uuid: str, section: str, metric: str) -> dict[str, Any]:
    return {"uuid": uuid, "type": "BAR", "runsCountToCompare": _RUNS_SHOWN, "metricSectionId": section,
            "deleted": False, "isGenerated": False, "displayName": metric, "metricKey": metric}


def view_tag(state: dict[str, Any], *, now_ms: int) -> str:
    """The tag value: the UI's saved-view envelope (a name for its Views menu, the state as JSON)."""
    return json.dumps({"name": VIEW_NAME, "createdAt": now_ms, "updatedAt": now_ms,
                       "state": json.dumps(state, sort_keys=True)}, sort_keys=True)


def view_url(base: str, experiment_id: str) -> str:
    """The runs page of `experiment_id` opened on the leaderboard view, under the UI at `base`."""
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"


def columns(results: Sequence[SubmissionResult]) -> tuple[list[str], list[str]]:
    """The groups (in the spec's order; a lone criterion is its own group, as in the summary
    table) and the criteria the results were graded on (a criterion nobody has a score for yet,
    such as a manual review still pending everywhere, has no chart)."""
    criteria = list(dict.fromkeys(c.name for r in results for c in r.criteria if not c.ungraded))
    return list(dict.fromkeys(g for r in results for g in group_scores(r.criteria))), criteria


def leaderboard_markdown(results: Sequence[SubmissionResult]) -> str:
    """The ranking as a markdown table (the parent run's description and `leaderboard.md`)."""
    return f"# Leaderboard: {len(results)} candidate(s)\n\n" + to_markdown(board(list(results)))
