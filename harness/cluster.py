"""Grade on a Dask cluster: the coordinator's side of `harness grade --cluster tcp://HOST:8786`.

The coordinator does all it does locally but run the sandbox: intake, the graders (with the hidden
data, reference answers and secret seeds, which never leave it), results and MLflow. Each
submission's sandboxed part goes to a `harness worker` (harness.worker) as a StageJob with
content-addressed bytes: the submission, the visible data sets its stages mount and the kit (the
test suites they mount). What comes back is checked and bounded before it lands in the result
folder. A worker with other code is refused, naming both versions; a worker that dies mid-job has
its job run elsewhere by the scheduler (graded once: only the coordinator writes); a scheduler that
goes away stops the batch (ClusterLost), with what was graded kept.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness._trees import pack_tree, tree_digest, unpack_tree
from harness._workdirs import owned_name, remove_tree
from harness.core import OutputFile
from harness.core.text import one_line
from harness.data import DataSets, materialize
from harness.errors import ClusterLost, DeterministicInfraError, InfraError, SpecError
from harness.results import MachineCheck, StageRecord, Status
from harness.runtime import Runtime, build_graders
from harness.spec import SPEC_FILE, Assignment, parse_spec
from harness.worker import (
    MACHINE,
    SLOTS,
    STEP_TOPIC,
    StageJob,
    StageOutcome,
    code_fingerprint,
    run_job,
    slots_resource,
)
from sandbox import RunRequest, RunResult, SandboxBackend

if TYPE_CHECKING:
    from distributed import Client

    from harness._stages import RunState
    from harness.intake import StagedSubmission

_CONNECT_S = 10
_WORKERS_WAIT_S = 30
_NO_WORKER_S = 120  # a job no worker can take for this long is left ungraded (infra_error)
_POLL_S = 10
_RETURN_SLACK = 64 << 20  # logs of probes and checks, rendered notebooks: beyond the declared outputs


def cluster_runtime(assignment: Assignment, *, cache: Path, cluster: str, backend: str, retries: int,
                    backoff_s: float, allow_weaker_isolation: bool = False) -> Runtime:
    """A runtime whose stages run on the workers of the scheduler at `cluster`: the data and the
    graders here. InfraError when no scheduler answers or no worker runs this harness's code."""
    client = _connect(cluster)
    try:
        accepted, refused = _harness_workers(client, cluster)
        data = materialize(assignment, cache_root=cache)
        stages = ClusterStages(client, assignment, data, address=cluster, workers=accepted, refused=refused,
                               backend=backend, retries=retries, backoff_s=backoff_s,
                               allow_weaker_isolation=allow_weaker_isolation)
        return Runtime(backend=_ClusterBackend(stages, backend), data=data, graders=build_graders(assignment),
                       stages=stages)
    except BaseException:
        client.close()
        raise


def _connect(address: str) -> Client:
    from distributed import Client

    # Dask logs its reconnection attempts with tracebacks: the batch says what happened in one line
    logging.getLogger("distributed").setLevel(logging.CRITICAL)
    try:
        return Client(address, timeout=_CONNECT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InfraError(f"no Dask scheduler answers at {address} ({exc.__class__.__name__}); start one "
                         "with `dask scheduler` (README: Grading on several machines)") from None


def _harness_workers(client: Client, address: str) -> tuple[dict[str, tuple[str, int]], list[str]]:
    """The scheduler's `harness worker`s that run this code ({address: (name, slots)}), and one line
    for each worker refused."""
    try:
        client.wait_for_workers(1, timeout=_WORKERS_WAIT_S)
    except TimeoutError:
        raise InfraError(f"no worker joined the scheduler at {address} within {_WORKERS_WAIT_S} s: start "
                         f"one with `harness worker --cluster {address}`") from None
    mine = code_fingerprint()
    accepted: dict[str, tuple[str, int]] = {}
    refused = []
    for addr, info in client.scheduler_info(n_workers=-1)["workers"].items():
        resources = info.get("resources", {})
        name, slots = str(info.get("name", addr)), int(resources.get(SLOTS, 0))
        # a harness worker names its code in its slots' resource (harness.worker.slots_resource)
        theirs = next((key.removeprefix(f"{SLOTS}-") for key in resources if key.startswith(f"{SLOTS}-")), "")
        if not slots:
            refused.append(f"worker {name} is not a harness worker (start it with `harness worker`)")
        elif theirs != mine:
            refused.append(f"worker {name} runs harness {theirs}, the coordinator {mine}: install the "
                           "coordinator's version on every worker")
        else:
            accepted[addr] = (name, slots)
    if not accepted:
        raise DeterministicInfraError(f"no worker at {address} can grade: {'; '.join(refused)}")
    return accepted, refused


class ClusterStages:
    """harness.runtime.RemoteStages on a Dask cluster: one task per submission, on a worker slot
    (and the worker's one MACHINE when the assignment times a service)."""

    def __init__(self, client: Client, assignment: Assignment, data: DataSets, *, address: str,
                 workers: dict[str, tuple[str, int]], refused: list[str], backend: str, retries: int,
                 backoff_s: float, allow_weaker_isolation: bool) -> None:
        self.client, self.address, self.workers, self.backend = client, address, workers, backend
        self.warnings = refused
        spec = assignment.spec
        self._timed = any(stage.probe for stage in spec.stages)  # a probe times what it probes
        self._spec_text = _spec_text(assignment)
        self._retries, self._backoff_s, self._weaker = retries, backoff_s, allow_weaker_isolation
        self.return_cap = _return_cap(assignment)
        blobs = {"kit": _kit(assignment)}
        blobs |= {f"data:{name}": pack_tree(path) for name, path in sorted(data.visible.items())}
        self._digests = {name: tree_digest(b) for name, b in blobs.items()}
        self._bytes = {self._digests[n]: b for n, b in blobs.items()}
        self._resource = slots_resource(code_fingerprint())
        self._scatter()
        self._steps: dict[str, Callable[[str], None]] = {}
        self._futures: set[Any] = set()
        self._lock = threading.Lock()
        self._cancelled = False
        client.subscribe_topic(STEP_TOPIC, self._on_step)

    def _scatter(self) -> None:
        """The blobs on every worker now, so a worker that dies takes no only copy with it; again
        when Dask lost them all the same (every worker that held them gone)."""
        self._blobs = self.client.scatter(dict(self._bytes), broadcast=True, hash=False)

    def _workers_alive(self) -> bool:
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return any(w.get("resources", {}).get(self._resource) for w in info.values())

    def _wait(self, future: Any) -> StageOutcome:
        """The job's outcome; InfraError when no worker that can take it has been there for
        _NO_WORKER_S (Dask would wait for one for ever)."""
        alone_since: float | None = None
        while True:
            try:
                return future.result(timeout=_POLL_S)
            except TimeoutError:
                if self.client.status != "running":
                    raise
                if self._workers_alive():
                    alone_since = None
                    continue
                alone_since = alone_since or time.monotonic()
                if time.monotonic() - alone_since > _NO_WORKER_S:
                    self.client.cancel([future], force=True)
                    raise InfraError(f"no harness worker of this version at {self.address} for "
                                     f"{_NO_WORKER_S} s: start one (`harness worker --cluster "
                                     f"{self.address}`) and re-run") from None

    @property
    def slots(self) -> int:
        return sum(slots for _, slots in self.workers.values())

    @property
    def plan(self) -> str:
        names = ", ".join(name for name, _ in self.workers.values())
        timed = "; each worker times one service at a time" if self._timed else ""
        return f"on {len(self.workers)} worker(s) of {self.address} ({names}: {self.slots} slots){timed}"

    def _on_step(self, event: tuple[float, dict[str, str]]) -> None:
        message = event[1]
        with self._lock:
            on_step = self._steps.get(message.get("token", ""))
        if on_step is not None:
            on_step(f"{message.get('step', '')} @ {message.get('by', '')}")

    def run(self, *, assignment: Assignment, staged: StagedSubmission, run: RunState,
            result_dir: Path) -> None:
        from distributed import KilledWorker

        token = secrets.token_hex(8)
        job = StageJob(code=code_fingerprint(), spec_text=self._spec_text,
                       backend=self.backend, kit=self._digests["kit"],
                       data=tuple((n.removeprefix("data:"), d) for n, d in self._digests.items()
                                  if n != "kit"),
                       source=staged.source, kind=staged.kind, candidate=staged.candidate,
                       content_hash=staged.content_hash, commit=staged.commit, token=token,
                       return_cap=self.return_cap, retries=self._retries, backoff_s=self._backoff_s,
                       allow_weaker_isolation=self._weaker)
        resources = {self._resource: 1, **({MACHINE: 1} if self._timed else {})}
        submission = pack_tree(staged.path)
        with self._lock:
            if self._cancelled:
                raise InfraError("cancelled")
            self._steps[token] = run.on_step
            blobs = self._blobs
        future = self.client.submit(run_job, job, blobs, submission, resources=resources, pure=False,
                                    key=f"mlgrade-{staged.candidate}-{token}")
        with self._lock:
            self._futures.add(future)
        try:
            outcome = self._wait(future)
        except KilledWorker as exc:
            raise InfraError(f"the workers that ran it died ({exc}); re-run to grade it") from None
        except (CancelledError, OSError, TimeoutError) as exc:
            if self._cancelled:
                raise InfraError("cancelled") from None
            why = one_line(str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__, 160)
            if self.client.status == "running":  # the scheduler is there: Dask lost the blobs
                with self._lock:
                    if self._blobs is blobs:
                        self._scatter()
                raise InfraError(f"Dask lost the job's data ({why}); sent again, retried") from None
            raise ClusterLost(f"the Dask scheduler at {self.address} went away ({why}); what was graded "
                              "is kept: re-run the same command to grade the rest") from None
        finally:
            with self._lock:
                self._steps.pop(token, None)
                self._futures.discard(future)
        if outcome.error:
            error = InfraError(f"on worker {outcome.worker}: {outcome.error}")
            error.transient = outcome.transient
            raise error
        _apply(outcome, run, result_dir, cap=self.return_cap)

    def cancel_all(self) -> None:
        with self._lock:
            self._cancelled = True
            futures = list(self._futures)
        if futures:
            self.client.cancel(futures, force=True)

    def close(self) -> None:
        self.client.close()


_RETURNED = ("logs", "outputs")


def _apply(outcome: StageOutcome, run: RunState, result_dir: Path, *, cap: int) -> None:
    """What a worker returned, into the result folder and `run`; InfraError if it is not what a
    worker writes (too big, a path outside the folder, a record that does not parse)."""
    from pydantic import ValidationError

    what = f"what worker {one_line(str(outcome.worker), 80)} returned"
    if len(outcome.files) > cap:
        raise InfraError(f"{what} refused: {len(outcome.files)} bytes, over {cap}")
    landed = result_dir.with_name(owned_name(f".{result_dir.name}-remote"))
    try:
        unpack_tree(outcome.files, landed, max_bytes=cap, what=what)
        stray = [p.name for p in landed.iterdir() if p.name not in _RETURNED]
        if stray:  # what a worker writes is logs and outputs: the rest of the folder is the coordinator's
            raise InfraError(f"{what} refused: {stray[0]!r} is not one of {', '.join(_RETURNED)}")
        for path in sorted(landed.rglob("*")):
            target = result_dir / path.relative_to(landed)
            if path.is_dir() and not path.is_symlink():
                target.mkdir(parents=True, exist_ok=True)
            elif path.is_file() and not path.is_symlink():
                shutil.move(path, target)
        outputs = {}
        for key, (rel, problem) in outcome.outputs.items():
            out = None if rel is None else result_dir / rel
            inside = rel is not None and rel.startswith("outputs/") and ".." not in Path(rel).parts
            if out is not None and not (inside and out.is_file()):
                raise InfraError(f"{what} refused: output {key!r} at {rel!r}")
            outputs[key] = OutputFile(key, out, problem)
        run.stages = [StageRecord.model_validate(r) for r in outcome.stages]
        run.machine = MachineCheck.model_validate(outcome.machine) if outcome.machine else None
        run.status = Status(outcome.status)
        timed = tuple(str(name) for name in outcome.timed_criteria)
    except (ValidationError, ValueError, TypeError) as exc:
        raise InfraError(f"{what} refused: {exc.__class__.__name__}: {one_line(str(exc), 300)}") from None
    finally:
        remove_tree(landed)
    run.outputs, run.timed_criteria = outputs, timed
    run.message, run.reason = one_line(str(outcome.message), 2000), one_line(str(outcome.reason), 2000)
    run.image, run.image_id = str(outcome.image), outcome.image_id


def _spec_text(assignment: Assignment) -> str:
    """The spec as its file says it, which a worker parses as this coordinator did (the parsed
    spec holds what the harness filled in, which a spec may not say); InfraError if the file
    changed since the batch read it."""
    path = assignment.dir / SPEC_FILE
    try:
        text = path.read_text(encoding="utf-8")
        same = parse_spec(text, path) == assignment.spec
    except (OSError, SpecError) as exc:
        raise InfraError(f"{path}: cannot be read again for the workers ({exc})") from None
    if not same:
        raise InfraError(f"{path} changed while the batch ran: grade again")
    return text


def _kit(assignment: Assignment) -> bytes:
    """The assignment's files the stages mount (hidden test suites), at their paths in its folder:
    never its data, generator, secrets or graders' files."""
    with tempfile.TemporaryDirectory(prefix="mlgrade-kit-") as tmp:
        for stage in assignment.spec.stages:
            if stage.pytest is not None and stage.pytest.hidden:
                suite = assignment.path(stage.pytest.suite)
                links = [p for p in suite.rglob("*") if p.is_symlink()]
                if links:  # copied, a link would bring what it points at (a secret seed, say) along
                    raise SpecError(f"{assignment.dir / SPEC_FILE}: stages.{stage.name}.pytest.suite: "
                                    f"{links[0]} is a link; a suite sent to workers holds files only")
                shutil.copytree(suite, Path(tmp) / stage.pytest.suite, symlinks=True,
                                ignore=shutil.ignore_patterns("__pycache__", "*.pyc"), dirs_exist_ok=True)
        return pack_tree(Path(tmp))


def _return_cap(assignment: Assignment) -> int:
    """The bytes a worker may send back for one submission: its declared outputs (and their
    renderings) and logs, for every run, and a margin."""
    total = _RETURN_SLACK
    for stage in assignment.spec.stages:
        outputs = sum(stage.outputs.values()) + (sum(stage.probe.outputs.values()) if stage.probe else 0)
        logs = assignment.spec.stage_limits(stage).output_bytes
        total += max(1, len(stage.runs)) * (3 * outputs + 2 * logs)
    return total


class _ClusterBackend(SandboxBackend):
    """The runtime's backend on a coordinator: its name (the workers' backend on a cluster), and
    cancelling and closing the cluster's jobs. Stages never run here."""

    def __init__(self, stages: ClusterStages, backend: str) -> None:
        self.stages, self.name = stages, f"{backend}@dask"

    def run(self, request: RunRequest) -> RunResult:
        raise InfraError(f"stage {request.name}: a cluster's stages run on its workers (a harness bug)")

    def cancel_all(self) -> None:
        self.stages.cancel_all()

    def close(self) -> None:
        self.stages.close()
