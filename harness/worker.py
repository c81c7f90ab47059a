"""A Dask worker that runs submissions' sandboxed stages for a coordinator (`harness worker`).

What reaches a worker is a `StageJob` and content-addressed bytes: the submission, the visible
data sets its stages mount and the kit (the test suites they mount), each cached on the worker's
disk under its digest. Hidden data, reference answers and secret seeds stay with the coordinator,
which runs the graders (harness.cluster). The worker runs `harness._stages.run_sandboxed`, the
same function a local grade runs, and returns what it left (`StageOutcome`): the run's records and
the logs and outputs as bytes, bounded by the coordinator's `return_cap`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import __version__
from harness._stages import RunState, run_sandboxed
from harness._trees import pack_tree, unpack_tree
from harness._workdirs import owned_name, remove_tree, sweep_leftovers
from harness.core.text import one_line
from harness.data import DataSets
from harness.errors import InfraError
from harness.intake import StagedSubmission
from harness.runtime import Runtime
from harness.spec import SPEC_FILE, Assignment, parse_spec

#: Dask worker resources a `harness worker` advertises: its sandbox slots, named after its code
#: (slots_resource), so a job goes only to a worker that grades as the coordinator does, a worker
#: that joined later included; and one "machine" that a submission with a service and its probe
#: holds throughout, so no two measurements share a worker
SLOTS = "mlgrade-slots"
MACHINE = "mlgrade-machine"


def slots_resource(code: str) -> str:
    return f"{SLOTS}-{code}"
STEP_TOPIC = "mlgrade-step"  # the worker's progress events (a step started), for the coordinator
_REJOIN_S = 2.0
_BLOB_MAX = 4 << 30  # a visible data set or kit: the coordinator's own files


@dataclass(frozen=True)
class StageJob:
    """One submission's sandboxed part, as the coordinator describes it."""

    code: str  # the coordinator's code_fingerprint(): a worker with other code refuses the job
    spec_text: str  # the assignment.yaml the coordinator loaded
    backend: str
    kit: str  # digest of the kit's bytes
    data: tuple[tuple[str, str], ...]  # visible data set -> digest of its bytes
    source: str
    kind: str
    candidate: str
    content_hash: str
    commit: str | None
    token: str  # names this job's progress events
    return_cap: int  # bytes of logs and outputs the coordinator takes back
    retries: int = 2
    backoff_s: float = 2.0
    allow_weaker_isolation: bool = False  # the coordinator's --allow-weaker-isolation (local backend)


@dataclass
class StageOutcome:
    """What `run_sandboxed` left on the worker; `error` set instead when the worker failed."""

    worker: str
    status: str = "ok"
    message: str = ""
    reason: str = ""
    image: str = ""
    image_id: str | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    #: output key -> (its path in `files`, or None; why it is missing)
    outputs: dict[str, tuple[str | None, str]] = field(default_factory=dict)
    machine: dict[str, Any] | None = None
    timed_criteria: tuple[str, ...] = ()
    files: bytes = b""  # pack_tree of the result folder: logs/, outputs/
    error: str = ""  # an InfraError's message
    transient: bool = True


_FINGERPRINT: list[str] = []


def code_fingerprint() -> str:
    """The harness's version and a digest of the code that runs and grades (harness, sandbox and
    graders, runners and recipes included): two installs grade alike only when these are equal."""
    if not _FINGERPRINT:
        import graders
        import harness
        import sandbox

        digest = hashlib.sha256(__version__.encode())
        for package in (harness, sandbox, graders):
            root = Path(package.__file__ or "").parent
            for path in sorted(root.rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                    digest.update(f"{package.__name__}/{path.relative_to(root).as_posix()}\0".encode())
                    digest.update(path.read_bytes())
        _FINGERPRINT.append(f"{__version__}+{digest.hexdigest()[:12]}")
    return _FINGERPRINT[0]


@dataclass
class _WorkerState:
    cache: Path = Path("results/.cache")
    runtimes: dict[tuple[str, ...], tuple[Assignment, Runtime]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


_STATE = _WorkerState()


def run_job(job: StageJob, blobs: dict[str, bytes], submission: bytes) -> StageOutcome:
    """The task a coordinator submits: run the job's stages here and return what they left."""
    from distributed import get_worker

    worker = get_worker()
    name = str(worker.name)
    if job.code != code_fingerprint():
        return StageOutcome(worker=name, transient=False, error=(
            f"worker {name} runs harness {code_fingerprint()}, the coordinator {job.code}: "
            "install the coordinator's version on every worker"))
    work = _STATE.cache / "worker" / "jobs" / owned_name("j")
    try:
        assignment, runtime = _runtime(job, blobs)
        unpack_tree(submission, work / "submission", max_bytes=_BLOB_MAX, what="the submission")
        staged = StagedSubmission(source=job.source, kind=job.kind, candidate=job.candidate,
                                  path=work / "submission", content_hash=job.content_hash, commit=job.commit)
        run = RunState(image=runtime.image, image_id=runtime.image_id)
        run.on_step = lambda step: worker.log_event(STEP_TOPIC, {"token": job.token, "step": step,
                                                                 "by": name})  # Dask sets "worker"
        result_dir = work / "result"
        (result_dir / "logs").mkdir(parents=True)
        run_sandboxed(assignment, staged, runtime, run, result_dir, work / "scratch")
        files = pack_tree(result_dir)
        if len(files) > job.return_cap:
            raise InfraError(f"the stages left {len(files)} bytes of logs and outputs, over the "
                             f"{job.return_cap} the coordinator takes back")
        return StageOutcome(
            worker=name, status=run.status.value, message=run.message, reason=run.reason, image=run.image,
            image_id=run.image_id, stages=[r.model_dump(mode="json") for r in run.stages],
            outputs={k: (o.path.relative_to(result_dir).as_posix() if o.path else None, o.problem)
                     for k, o in run.outputs.items()},
            machine=run.machine.model_dump(mode="json") if run.machine else None,
            timed_criteria=run.timed_criteria, files=files)
    except InfraError as exc:
        return StageOutcome(worker=name, error=str(exc), transient=exc.transient)
    except OSError as exc:  # this worker's disk or Docker socket: another attempt may do better
        return StageOutcome(worker=name, error=f"{exc.__class__.__name__}: {exc}")
    except Exception as exc:  # noqa: BLE001 - a harness bug, said as one (the coordinator's result)
        return StageOutcome(worker=name, transient=False,
                            error=f"internal error: {exc.__class__.__name__}: {one_line(str(exc), 300)}")
    finally:
        remove_tree(work)


def _blob_dir(digest: str, data: bytes, what: str) -> Path:
    """The folder of a content-addressed blob on this worker's disk, unpacked once."""
    folder = _STATE.cache / "worker" / "blobs" / digest
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = folder.with_name(owned_name(f".{digest}"))
        unpack_tree(data, tmp, max_bytes=_BLOB_MAX, what=what)
        try:
            tmp.rename(folder)
        except OSError:  # another job unpacked it first
            remove_tree(tmp)
    return folder


def _runtime(job: StageJob, blobs: dict[str, bytes]) -> tuple[Assignment, Runtime]:
    """The assignment (its spec over the kit) and a runtime for it on this worker's backend,
    built once per worker (images are built here on first use and cached by hash, as locally)."""
    from harness.backends import BACKENDS

    spec = hashlib.sha256(job.spec_text.encode()).hexdigest()
    key = (spec, job.backend, job.kit, *(digest for _, digest in job.data))
    with _STATE.lock:
        if key not in _STATE.runtimes:
            kit = _blob_dir(job.kit, blobs[job.kit], "the assignment kit")
            visible = {name: _blob_dir(digest, blobs[digest], f"data set {name}")
                       for name, digest in job.data}
            assignment = Assignment(parse_spec(job.spec_text, kit / SPEC_FILE), kit)
            data = DataSets(visible=visible, hidden={}, fingerprint=key[0][:16])
            runtime = BACKENDS.get(job.backend)(assignment, cache=_STATE.cache, retries=job.retries,
                                                backoff_s=job.backoff_s, data=data,
                                                acknowledge_weaker_isolation=job.allow_weaker_isolation)
            _STATE.runtimes[key] = (assignment, runtime)
        return _STATE.runtimes[key]


def serve(*, cluster: str, slots: int, cache: Path, host: str | None = None, name: str | None = None,
          backend: str = "docker") -> None:
    """Run a Dask worker for `cluster` until it is stopped: `slots` submissions at once, one timed
    measurement at a time. Removes the stage containers a killed worker left here first."""
    from distributed import Worker

    _STATE.cache = cache.resolve()
    if backend == "docker":
        from harness.api import clean

        clean()
    # what a killed worker left: candidates' files of the jobs it ran, half-unpacked blobs
    sweep_leftovers(_STATE.cache / "worker" / "jobs", _STATE.cache / "worker" / "blobs")
    code = code_fingerprint()  # read now: a later change to the files on disk is not this worker's code

    async def _run() -> None:
        while True:  # a scheduler that went away is waited for: the worker joins it again when back
            try:
                resources: dict[str, float] = {SLOTS: slots, slots_resource(code): slots, MACHINE: 1}
                async with Worker(cluster, nthreads=slots, resources=resources, host=host,
                                  name=name or f"{os.uname().nodename}-{os.getpid()}",
                                  local_directory=str(_STATE.cache / "worker" / "dask"),
                                  dashboard=False) as worker:
                    await worker.finished()
            except (OSError, TimeoutError) as exc:
                print(f"harness worker: {cluster}: {exc.__class__.__name__}: {exc}; trying again", flush=True)
            await asyncio.sleep(_REJOIN_S)

    asyncio.run(_run())
