"""The `ranking` grader: NDCG@k, MAP and MRR of a candidate's scores against hidden graded labels.

The candidate writes `query_id,doc_id,score` for every test row. Measures follow trec_eval
(graders/ranking/_metrics.py: raw-label gain, log2 discount, ties by doc id descending, relevant
= label >= 1); rows without a valid score are ranked last in the worst order
(graders/ranking/_eval.py); queries without a relevant document are left out of the means.
The reference ranking by `baseline_feature` is computed here, from the visible test rows, and
compared with a paired bootstrap over queries. With a `calibration` file (written by the data
generator next to the qrels: graders/ranking/_scale.py) every result also reports its *gain
share*, the share of the oracle's gain over the reference ranking that it achieves. The score
maps the primary measure (`scale: metric`) or the gain share (`scale: gain_share`) linearly
from `baseline` (0) to `target` (1). A missing or unusable file scores 0.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from graders.ranking._eval import Comparison, QueryTable, compare, evaluate_run, write_per_query
from graders.ranking._io import PROBLEMS, Predictions, Reference, load_reference, read_predictions
from graders.ranking._scale import Calibration, check_reference, load_calibration
from harness.core import HarnessError, SpecError
from harness.core.grading import CriterionResult, Grader, GradingContext, grader, linear_score
from harness.core.names import plain_file_name

if TYPE_CHECKING:
    from harness.spec import AssignmentSpec

_METRIC = re.compile(r"^(?:ndcg(?:@(\d+))?|map|mrr)$")
_MEASURE = {"ndcg": "ndcg", "map": "ap", "mrr": "rr"}
_SHORT = {measure: name for name, measure in _MEASURE.items()}
PENALTY = ("rows without a valid score are ranked below all scored rows of their query, "
           "lowest label first; for duplicated rows the first line counts")
TIES = "equal scores are ordered by doc_id descending, as trec_eval does"


class RankingArgs(BaseModel):
    """Arguments of the `ranking` grader, as written under `args:` in assignment.yaml."""

    model_config = ConfigDict(extra="forbid")

    predictions: str = "scores.csv"  # an output file of a stage
    labels: str  # hidden data set holding the qrels
    labels_file: str = "qrels.csv"  # query_id,doc_id,label
    queries: str  # visible data set holding the test rows
    queries_file: str = "test.csv"  # query_id,doc_id,<features>
    metric: str = "ndcg@10"  # ndcg@K (or ndcg, cut at k), map or mrr
    k: int = Field(10, ge=1, le=10_000)
    baseline_feature: str = "bm25"
    calibration: str | None = None  # file in the labels data set: the reference and oracle figures
    scale: Literal["metric", "gain_share"] = "metric"  # what baseline and target are values of
    baseline: float = Field(ge=-1.0, le=1.0)  # value that scores 0
    target: float = Field(ge=0.0, le=1.0)  # value that scores 1
    bootstrap: int = Field(1000, ge=100, le=100_000)
    seed: int = 0

    @field_validator("predictions", "labels_file", "queries_file", "calibration")
    @classmethod
    def _plain_name(cls, v: str | None) -> str | None:
        return v if v is None else plain_file_name(v)

    @model_validator(mode="after")
    def _consistent(self) -> RankingArgs:
        match = _METRIC.match(self.metric)
        if not match:
            raise ValueError(f"metric {self.metric!r} is not one of ndcg@K, ndcg, map, mrr")
        if match[1] is not None:
            cutoff = int(match[1])
            if "k" in self.model_fields_set and self.k != cutoff:
                raise ValueError(f"metric {self.metric!r} disagrees with k={self.k}; drop k or match them")
            if cutoff < 1:
                raise ValueError(f"metric {self.metric!r}: the cutoff must be at least 1")
            self.k = cutoff
        if self.target <= self.baseline:
            raise ValueError(f"target ({self.target}) must be above baseline ({self.baseline})")
        if self.scale == "gain_share" and self.calibration is None:
            raise ValueError("scale 'gain_share' needs a calibration file (the oracle's figures)")
        if self.scale == "metric" and self.baseline < 0:
            raise ValueError(f"baseline ({self.baseline}) is a {self.metric} value: it cannot be negative")
        return self

    @property
    def measure(self) -> str:
        """The per-query measure behind `metric`: ndcg, ap or rr."""
        return _MEASURE[self.metric.split("@")[0]]

    @property
    def ndcg_key(self) -> str:
        return f"ndcg_at_{self.k}"

    @property
    def metric_key(self) -> str:
        """The MLflow-safe name of the primary measure."""
        return {"ndcg": self.ndcg_key, "ap": "map", "rr": "mrr"}[self.measure]

    @property
    def label(self) -> str:
        return {"ndcg": f"NDCG@{self.k}", "ap": "MAP", "rr": "MRR"}[self.measure]


@grader("ranking")
class RankingGrader(Grader):
    """Scores a `query_id,doc_id,score` file by a trec_eval measure against hidden qrels."""

    version = "2"  # 2: the gain share over the reference, and the gain_share scale
    Args = RankingArgs
    args: RankingArgs

    def check_spec(self, spec: AssignmentSpec) -> None:
        """Raise SpecError unless `predictions` is a stage output, `labels` hidden and `queries` visible."""
        a = self.args
        outputs = sorted({name for stage in spec.stages for name in stage.outputs})
        if a.predictions not in outputs:
            raise SpecError(f"grader {self.name!r}: args.predictions: no stage declares the output "
                            f"{a.predictions!r} (declared: {outputs}); add it to a stage's outputs or "
                            "fix the name")
        sets = {"hidden": spec.data.hidden, "visible": spec.data.visible}
        for arg, name, kind, other in (("labels", a.labels, "hidden", "visible"),
                                       ("queries", a.queries, "visible", "hidden")):
            if name not in sets[kind]:
                why = f"is {other}, not {kind}" if name in sets[other] else "does not exist"
                raise SpecError(f"grader {self.name!r}: args.{arg}: data set {name!r} {why}; it must be "
                                f"one of the {kind} data sets: {sorted(sets[kind])}")

    def grade(self, ctx: GradingContext) -> CriterionResult:
        """Grade one submission. Raises SpecError/HarnessError only for spec or reference-data faults."""
        a = self.args
        ref = self._reference(ctx)
        if a.predictions not in ctx.outputs:  # a spec typo must not look like a candidate's zero
            raise SpecError(f"grader {self.name!r}: no stage declares the output {a.predictions!r}; "
                            f"declared: {sorted(ctx.outputs)}")
        output = ctx.outputs[a.predictions]
        preds = read_predictions(output.path, ref.baseline.keys(), problem=output.problem)
        run, base = evaluate_run(ref, preds.scores, a.k), evaluate_run(ref, ref.baseline, a.k)
        if not run.evaluated.any():
            raise HarnessError(f"no query in {a.labels}/{a.labels_file} has a relevant document")
        comp = compare(run, base, a.measure, resamples=a.bootstrap, seed=a.seed)
        cal = self._calibration(ctx, comp.baseline)
        per_query = f"{self.name}_per_query.csv"
        write_per_query(ctx.artifacts_dir / per_query, run, base, a.ndcg_key)
        value = cal.gain_share(comp.value) if cal is not None and a.scale == "gain_share" else comp.value
        score = 0.0 if preds.fatal else linear_score(value, baseline=a.baseline, target=a.target)
        return self.criterion(score=score, metrics=self._metrics(run, base, comp, preds, cal),
                              explanation=self._explain(comp, preds, score, cal),
                              details=self._details(run, base, preds, per_query))

    @classmethod
    def score_bounds(cls, result: CriterionResult) -> tuple[float, float] | None:
        """The score at the ends of the bootstrap interval, mapped as `grade` maps the measure. On the
        gain-share scale the paired interval of the difference from the reference is used: the
        reference is measured on the same queries, so the measure's own interval would credit the
        reference ranking itself with a share of the gain."""
        try:
            a = RankingArgs.model_validate(result.spec)
        except ValueError:
            return None
        m, key = result.metrics, a.metric_key
        if a.scale == "gain_share":
            names, oracle = ("delta_vs_baseline", "delta_ci_low", "delta_ci_high"), None
            if f"oracle_{key}" in m and f"baseline_{key}" in m:
                oracle = m[f"oracle_{key}"] - m[f"baseline_{key}"]  # the oracle's gain over the reference
        else:
            names, oracle = (key, f"{key}_ci_low", f"{key}_ci_high"), 1.0
        if not set(names) <= m.keys() or oracle is None or oracle <= 0:
            return None
        value, low, high = (m[n] if a.scale == "metric" else m[n] / oracle for n in names)
        if abs(linear_score(value, baseline=a.baseline, target=a.target) - result.score) > 1e-6:
            return None  # scored otherwise (no usable scores: 0)
        return (linear_score(low, baseline=a.baseline, target=a.target),
                linear_score(high, baseline=a.baseline, target=a.target))

    def _calibration(self, ctx: GradingContext, reference: float) -> Calibration | None:
        """The oracle's figures, checked against the reference ranking measured here."""
        a = self.args
        if a.calibration is None:
            return None
        cal = load_calibration(ctx.hidden[a.labels] / a.calibration, a.metric_key, a.baseline_feature)
        check_reference(cal, reference, a.baseline_feature)
        return replace(cal, reference=reference)  # the exact figure: the file's is rounded

    def _reference(self, ctx: GradingContext) -> Reference:
        a = self.args
        for kind, name, sets in (("hidden", a.labels, ctx.hidden), ("visible", a.queries, ctx.visible)):
            if name not in sets:
                raise SpecError(f"grader {self.name!r}: no {kind} data set {name!r}; have {sorted(sets)}")
        return load_reference(ctx.visible[a.queries] / a.queries_file, ctx.hidden[a.labels] / a.labels_file,
                              a.baseline_feature)

    def _metrics(self, run: QueryTable, base: QueryTable, comp: Comparison, preds: Predictions,
                 cal: Calibration | None) -> dict[str, float]:
        a, diag = self.args, preds.diagnostics
        key = a.metric_key
        scale = {} if cal is None else {f"oracle_{key}": cal.oracle,
                                        f"{_SHORT[a.measure]}_gain_share": cal.gain_share(comp.value)}
        return {**scale,
            a.ndcg_key: run.mean("ndcg"), "map": run.mean("ap"), "mrr": run.mean("rr"),
            f"{key}_ci_low": comp.interval.low, f"{key}_ci_high": comp.interval.high,
            f"baseline_{a.ndcg_key}": base.mean("ndcg"), "baseline_map": base.mean("ap"),
            "baseline_mrr": base.mean("rr"),
            "delta_vs_baseline": comp.delta, "delta_ci_low": comp.delta_interval.low,
            "delta_ci_high": comp.delta_interval.high,
            "rows_total": float(run.n_docs.sum()), "rows_valid": float(diag.valid),
            "rows_invalid": float(diag.invalid_lines), "rows_penalised": float(run.n_penalised.sum()),
            **{f"rows_{p}": float(diag.counts[p]) for p in PROBLEMS},
            "queries_evaluated": float(run.evaluated.sum()),
            "queries_without_relevant": float((~run.evaluated).sum()),
        }

    def _explain(self, comp: Comparison, preds: Predictions, score: float, cal: Calibration | None) -> str:
        a, diag = self.args, preds.diagnostics
        if preds.fatal:
            return (f"No usable scores ({preds.fatal}), so the score is 0; ranking by {a.baseline_feature} "
                    f"reaches {a.label} {comp.baseline:.3f}.")
        text = (f"{a.label} {comp.value:.3f} (95% CI {comp.interval.low:.3f}-{comp.interval.high:.3f}) "
                f"against {comp.baseline:.3f} for ranking by {a.baseline_feature} (difference "
                f"{comp.delta:+.3f}, CI {comp.delta_interval.low:+.3f} to {comp.delta_interval.high:+.3f}); ")
        if cal is not None:
            text += (f"that is {cal.gain_share(comp.value):.0%} of the gain over {a.baseline_feature} of the "
                     f"oracle, which ranks by expected relevance under the data's model ({a.label} "
                     f"{cal.oracle:.3f}); ")
        unit = "of the oracle's gain" if a.scale == "gain_share" else a.label
        text += f"score {score:.2f} on a scale from {a.baseline:.3f} (0) to {a.target:.3f} (1) {unit}."
        penalised = diag.counts["missing"] + diag.counts["bad_score"] + diag.counts["non_finite"]
        if penalised or diag.invalid_lines:
            text += (f" {diag.invalid_lines} lines were invalid and {penalised} test rows had no valid "
                     "score; those rows were ranked last (see details).")
        return text

    def _details(self, run: QueryTable, base: QueryTable, preds: Predictions,
                 per_query: str) -> dict[str, Any]:
        a, diag = self.args, preds.diagnostics
        values, baseline = run.values[a.measure], base.values[a.measure]
        mask = run.evaluated
        order = np.argsort(values - baseline, kind="stable")
        worst = [{"query_id": run.query_ids[i], a.metric_key: round(float(values[i]), 4),
                  "baseline": round(float(baseline[i]), 4)}
                 for i in order if mask[i] and values[i] < baseline[i]][:5]
        quantiles = np.quantile(values[mask], [0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0])
        return {
            "rows": {"test_rows": int(run.n_docs.sum()), "lines_read": diag.lines, "valid": diag.valid,
                     "fatal": preds.fatal,
                     "problems": {p: {"count": diag.counts[p], "examples": diag.examples[p]}
                                  for p in PROBLEMS if diag.counts[p]}},
            "queries": {"total": len(run.query_ids), "evaluated": int(mask.sum()),
                        "without_relevant": int((~mask).sum()),
                        "with_penalised_rows": int((run.n_penalised > 0).sum()),
                        "better_than_baseline": int((values > baseline)[mask].sum()),
                        "worse_than_baseline": int((values < baseline)[mask].sum()),
                        f"{a.metric_key}_quantiles": dict(zip(("min", "p10", "p25", "median", "p75", "p90",
                                                               "max"), map(float, quantiles), strict=True)),
                        "furthest_below_baseline": worst},
            "rules": {"penalty": PENALTY, "ties": TIES, "queries_without_relevant": "left out of the means",
                      "confidence": f"95% percentile bootstrap over queries, {a.bootstrap} resamples, "
                                    f"seed {a.seed}; the difference is paired by query"},
            "artifacts": [per_query],
        }
