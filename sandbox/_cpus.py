"""Which cores a measurement runs on, and the host-wide locks that keep measurements apart.

A measurement (a service stage: a candidate's server and the probe timing it) must not share the
CPU with anything else of the harness, in this process or another one on the same host. The plan
(`plan_cpus`) splits the host's cores:

- enough cores (a measurement's server and probe cores, plus one): measurement slots, each with
  the server and the probe on disjoint cores of their own, as many as fit leaving at least one
  core; every other stage is pinned to the cores left ("general"). Measurements in different
  slots run at once.
- fewer (a 2-core machine): one slot, server and probe still on disjoint cores, but no core is
  left, so every other stage of any harness process waits while a measurement runs, and a
  measurement waits for the stages running to end (a host-wide shared/exclusive lock).
- one core: server and probe share it under CPU quotas, and the same lock.

The locks are flock(2) files in a host-wide folder (MLGRADE_LOCK_DIR, default the system's
temporary folder): they are released by the kernel when a holder dies, SIGKILL included. Waiting
polls, so a cancelled batch stops waiting. A measurement waiting for the machine holds a
turnstile that new stages queue behind, so a stream of short stages cannot starve it.
"""

from __future__ import annotations

import fcntl
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox._base import MachineRecord, RunRequest, RunResult
from sandbox._cpuwatch import CpuWatch
from sandbox.errors import BackendError

LOCK_DIR_ENV = "MLGRADE_LOCK_DIR"
_POLL_S = 0.1


@dataclass(frozen=True)
class Slot:
    """Where one measurement runs: its server's and its probe's cores (() = anywhere, quotas only)."""

    index: int
    server: tuple[int, ...]
    probe: tuple[int, ...]

    def place(self, request: RunRequest) -> RunRequest:
        """A service request (and its probe) pinned to this slot's cores. A side that asks for
        more CPUs than the slot has cores keeps its quota and is not pinned."""
        assert request.probe is not None  # noqa: S101 - services only
        return replace(pinned(request, self.server), probe=pinned(request.probe, self.probe))


def pinned(request: RunRequest, cores: tuple[int, ...]) -> RunRequest:
    """`request` limited to `cores` (unchanged for () or when it needs more CPUs than that)."""
    if not cores or request.limits.cpus > len(cores):
        return request
    return replace(request, limits=replace(request.limits, cpuset=cores))


@dataclass(frozen=True)
class CpuPlan:
    slots: tuple[Slot, ...]
    general: tuple[int, ...]  # the cores of every other stage; () = any core, kept apart by the lock
    note: str  # what the plan means, in one sentence for reports

    @property
    def gated(self) -> bool:
        """Other stages share the measurement's cores, so they take turns with it."""
        return not self.general


def plan_cpus(cores: Sequence[int], *, server: float, probe: float) -> CpuPlan:
    """The plan for `cores` (the host's usable cores) and measurements needing `server` and
    `probe` CPUs (rounded up to whole cores)."""
    cores = tuple(sorted(set(cores)))
    need_server, need_probe = max(1, math.ceil(server)), max(1, math.ceil(probe))
    need = need_server + need_probe
    if len(cores) >= need + 1:
        count = (len(cores) - 1) // need
        slots = []
        for k in range(count):  # slots from the top, the general cores from 0 up
            own = cores[len(cores) - (k + 1) * need:len(cores) - k * need]
            slots.append(Slot(k, server=own[:need_server], probe=own[need_server:]))
        general = cores[:len(cores) - count * need]
        note = (f"{len(cores)} cores: up to {count} measurement(s) at once, each with its server and its "
                f"probe on cores of their own; other stages run on cores {_cores(general)}")
        return CpuPlan(tuple(slots), general, note)
    if len(cores) >= need:
        slot = Slot(0, server=cores[-need_server:], probe=cores[:need_probe])
        note = (f"{len(cores)} cores: one measurement at a time (server on core {_cores(slot.server)}, probe "
                f"on core {_cores(slot.probe)}), and no core to spare, so other stages wait while it runs")
        return CpuPlan((slot,), (), note)
    note = (f"{len(cores)} core: server and probe share it under CPU quotas (no isolation possible); one "
            "measurement at a time, and other stages wait while it runs")
    return CpuPlan((Slot(0, (), ()),), (), note)


def _cores(cores: Sequence[int]) -> str:
    return ",".join(map(str, cores))


def host_cores() -> tuple[int, ...]:
    """The host's cores, as containers see them (not this process's affinity: every harness
    process on the host must make the same plan for the same lock files)."""
    return tuple(range(os.cpu_count() or 1))


def lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / "mlgrade-locks")


class HostLocks:
    """The plan's locks. `measurement()` holds a slot (and, gated, the machine) for a service
    stage; `other_stage()` is held by every other stage (a shared hold of the machine when gated)."""

    def __init__(self, plan: CpuPlan, folder: Path | None = None) -> None:
        self.plan = plan
        self.folder = folder or lock_dir()
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self.folder.stat().st_uid == os.getuid():
                self.folder.chmod(0o1777)  # for other users' harnesses (the umask would not allow it)
        except OSError as exc:
            raise BackendError(f"cannot use the lock folder {self.folder} ({exc.strerror}); "
                             f"set {LOCK_DIR_ENV}") from None

    @contextmanager
    def measurement(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[Slot]:
        """Hold a free slot (waiting for one), and the machine exclusively when gated."""
        with ExitStack() as stack:
            slot = None
            while slot is None:
                for candidate in self.plan.slots:
                    handle = _try_lock(self._path(f"slot-{candidate.index}"), fcntl.LOCK_EX)
                    if handle is not None:
                        stack.callback(handle.close)
                        slot = candidate
                        break
                else:
                    _pause(cancelled)
            if self.plan.gated:
                turnstile = _wait_lock(self._path("turnstile"), fcntl.LOCK_EX, cancelled)
                try:
                    stack.callback(_wait_lock(self._path("machine"), fcntl.LOCK_EX, cancelled).close)
                finally:
                    turnstile.close()
            yield slot

    @contextmanager
    def other_stage(self, cancelled: Callable[[], bool] = lambda: False) -> Iterator[tuple[int, ...]]:
        """The cores another stage may use (() = any), held for the stage's run."""
        if not self.plan.gated:
            yield self.plan.general
            return
        # queue behind a measurement that waits for the machine
        _wait_lock(self._path("turnstile"), fcntl.LOCK_EX, cancelled).close()
        with _wait_lock(self._path("machine"), fcntl.LOCK_SH, cancelled):
            yield ()

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.lock"


class Cancelled(Exception):
    """Waiting for a lock was given up: the batch was cancelled."""


def _open(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        os.fchmod(fd, 0o666)  # another user's harness on the host takes the same locks
    except OSError:
        pass  # created by someone else: already so
    return os.fdopen(fd, "r+b")


def _try_lock(path: Path, kind: int):
    handle = _open(path)
    try:
        fcntl.flock(handle.fileno(), kind | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def _wait_lock(path: Path, kind: int, cancelled: Callable[[], bool]):
    while True:
        handle = _try_lock(path, kind)
        if handle is not None:
            return handle
        _pause(cancelled)


def _pause(cancelled: Callable[[], bool]) -> None:
    if cancelled():
        raise Cancelled("cancelled while waiting for the machine")
    time.sleep(_POLL_S)


# Every measurement gets one core for its server and one for its probe (the endpoint assignment's
# limits): one plan for the host, whatever the assignment, so that all harness processes agree.
SLOT_SERVER_CORES = SLOT_PROBE_CORES = 1
_SHARED: dict[tuple[tuple[int, ...], Path], HostLocks] = {}
_SHARED_LOCK = threading.Lock()


def host_locks() -> HostLocks:
    """This process's HostLocks for this host's cores and lock folder."""
    key = (host_cores(), lock_dir())
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = HostLocks(plan_cpus(key[0], server=SLOT_SERVER_CORES, probe=SLOT_PROBE_CORES),
                                     key[1])
        return _SHARED[key]


def run_on_plan(request: RunRequest, run: Callable[[RunRequest, CpuWatch | None], RunResult], *,
                cancelled: Callable[[], bool], watch_cpu: bool) -> RunResult:
    """Run `request` with `run` (a backend's own runner) on the host's CPU plan: a service (with
    a probe) in a measurement slot, its calibration first, its CPU watched when `watch_cpu`; any
    other stage on the general cores, or taking turns with measurements when gated. Raises
    BackendError when the batch is cancelled while it waits."""
    try:
        return _run_on_plan(request, run, cancelled=cancelled, watch_cpu=watch_cpu)
    except Cancelled:
        raise BackendError(f"stage {request.name} not started: the batch was cancelled") from None


def _run_on_plan(request: RunRequest, run: Callable[[RunRequest, CpuWatch | None], RunResult], *,
                 cancelled: Callable[[], bool], watch_cpu: bool) -> RunResult:
    locks = host_locks()
    if request.probe is None:
        with locks.other_stage(cancelled) as cores:
            return run(pinned(request, cores), None)
    asked = time.monotonic()
    with locks.measurement(cancelled) as slot:
        waited = time.monotonic() - asked
        calibration = run(slot.place(request.calibration), None) if request.calibration is not None else None
        watch = CpuWatch(slot.server + slot.probe) if watch_cpu else None
        try:
            result = run(slot.place(request), watch)
        finally:
            samples = watch.stop() if watch is not None else ()
    record = MachineRecord(server_cores=slot.server, probe_cores=slot.probe, plan=locks.plan.note,
                           waited_s=round(waited, 3), samples=samples)
    return replace(result, calibration=calibration, machine=record)
