"""How a batch is graded, as one typed value: the command line builds it from its flags, the API
from its keywords, and the batch reads it; each default is written once, here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.defaults import DEFAULT_RESULTS
from harness.errors import UsageError


@dataclass(frozen=True, kw_only=True)
class GradeOptions:
    results_dir: Path = DEFAULT_RESULTS  # JSON results, the MLflow store, caches
    jobs: int = 1  # submissions graded at once (timed measurements still take turns: README "Fair latency")
    backend: str | None = None  # a sandbox backend's name; None: docker if a daemon answers
    force: bool = False  # re-grade what is already graded under the same key
    ref: str | None = None  # the git ref to grade for git submissions
    tracking_uri: str | None = None  # None: $MLFLOW_TRACKING_URI, else sqlite under results_dir
    log_to_mlflow: bool = True
    retries: int = 2  # of infrastructure failures, per submission
    backoff_s: float = 2.0  # before the first retry, doubling
    allow_weaker_isolation: bool = False  # required for the local backend
    #: a Dask scheduler's address (tcp://HOST:8786): the stages run on its `harness worker`s, the
    #: graders here (harness.cluster); None: all on this machine
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.jobs < 1:
            raise UsageError(f"jobs must be at least 1, not {self.jobs}")
        if self.retries < 0 or self.backoff_s < 0:
            raise UsageError("retries and backoff_s must not be negative")
        if self.cluster is not None and not self.cluster.startswith(("tcp://", "tls://")):
            raise UsageError(f"a cluster is a Dask scheduler's address, like tcp://HOST:8786, not "
                             f"{self.cluster!r}")
