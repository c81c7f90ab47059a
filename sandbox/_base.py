"""The sandbox interface: run one stage command under limits, with explicit mounts.

A backend runs each stage in a fresh, isolated process tree. What a stage may see is
exactly its mounts; what comes back is a `RunResult` (status, exit code, capped logs,
timing, peak memory). Files the stage wrote are read afterwards on the host with
`sandbox.read_bounded`, never by following anything the candidate created.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace
from pathlib import Path

from sandbox._cpuwatch import CpuSample

#: Harness-side helper scripts (e.g. the notebook runner), mounted read-only into every stage.
RUNNERS_DIR = Path(__file__).parent / "runners"
RUNNERS_MOUNT = "/opt/mlgrade"


class StageStatus(enum.StrEnum):
    OK = "ok"
    ERROR = "error"  # non-zero exit
    TIMEOUT = "timeout"  # wall-clock limit hit; killed
    OOM = "oom"  # memory limit hit; killed
    OUTPUT_LIMIT = "output_limit"  # stdout+stderr over the cap; killed
    DISK_LIMIT = "disk_limit"  # wrote more than the disk cap to its writable mounts; killed


@dataclass(frozen=True)
class Limits:
    cpus: float = 1.0
    memory_bytes: int = 1 << 30
    pids: int = 256
    timeout_s: float = 600.0
    output_bytes: int = 1 << 20  # stdout + stderr kept and allowed
    tmpfs_bytes: int = 256 << 20  # /tmp
    disk_bytes: int = 1 << 30  # all writable mounts together
    cpuset: tuple[int, ...] = ()  # the cores it may run on (() = any); set by the backend's CPU plan


@dataclass(frozen=True)
class Mount:
    source: Path  # host path (a directory)
    target: str  # absolute path inside the sandbox
    read_only: bool = True


# System libraries that popular manylinux wheels load from the system instead of bundling them
# (read from their ELF NEEDED entries, 2026-12-01: lightgbm needs libgomp.so.1, xgboost-cpu and
# pyarrow libstdc++ and libgcc_s, opencv-python-headless also libz). The Debian base carries them
# (sandbox/recipes/debian-base.json); a stage that cannot load one found the image broken, not its own code.
WHEEL_SYSTEM_LIBRARIES = ("libgomp.so.1", "libstdc++.so.6", "libgcc_s.so.1", "libz.so.1")
# `python3 -c LIBRARY_CHECK NAME...` prints, space-separated, the libraries it cannot load.
LIBRARY_CHECK = ("import ctypes, sys\n"
                 "missing = []\n"
                 "for name in sys.argv[1:]:\n"
                 "    try:\n"
                 "        ctypes.CDLL(name)\n"
                 "    except OSError:\n"
                 "        missing.append(name)\n"
                 "print(*missing)\n")

SERVICE_STARTED_ENV = "MLGRADE_SERVICE_STARTED_AT"  # given to a probe: when its service started


@dataclass(frozen=True)
class RunRequest:
    name: str  # stage name, for logs and container names
    command: tuple[str, ...]
    image: str  # image reference (docker) or ignored (local)
    mounts: tuple[Mount, ...] = ()
    limits: Limits = field(default_factory=Limits)
    env: tuple[tuple[str, str], ...] = ()  # the only environment the stage gets
    workdir: str = "/submission"
    labels: tuple[tuple[str, str], ...] = ()
    #: A second sandbox that shares this one's network namespace (and nothing else): it starts
    #: right after this one, reaches it on 127.0.0.1, and when it exits this one is stopped.
    #: For a server (this request) measured by a harness-owned client (the probe).
    probe: RunRequest | None = None
    #: For a service: a reference service (with its own probe) run just before it, on the same
    #: cores under the same lock, whose figures show whether the machine is quiet enough to measure.
    calibration: RunRequest | None = None

    def as_probe_of_service_started_at(self, epoch_s: float) -> RunRequest:
        """This probe request, told when its service started (SERVICE_STARTED_ENV, wall-clock
        seconds: host and sandboxes share the kernel's clock), so it can time the service's
        start-up from there rather than from its own later start."""
        env = tuple((k, v) for k, v in self.env if k != SERVICE_STARTED_ENV)
        return replace(self, env=(*env, (SERVICE_STARTED_ENV, f"{epoch_s:.6f}")))


@dataclass(frozen=True)
class RunResult:
    status: StageStatus
    exit_code: int | None
    seconds: float
    log: str  # stdout and stderr interleaved, capped at limits.output_bytes
    log_truncated: bool = False
    peak_memory_bytes: int | None = None
    detail: str = ""  # a short human explanation of a non-ok status
    probe: RunResult | None = None  # the probe's own result, when the request had one
    calibration: RunResult | None = None  # the reference service's result, when the request had one
    machine: MachineRecord | None = None  # a service's: where it ran and what else used the CPU


@dataclass(frozen=True)
class MachineRecord:
    """Where a service and its probe ran, and samples of the CPU while they did (sandbox._cpuwatch)."""

    server_cores: tuple[int, ...]  # () = not pinned (CPU quotas only)
    probe_cores: tuple[int, ...]
    plan: str  # the host's CPU plan in one sentence (sandbox._cpus.plan_cpus)
    waited_s: float  # waiting for the machine before it started
    samples: tuple[CpuSample, ...] = ()  # empty when the backend cannot tell ours from others'


class SandboxBackend(ABC):
    """A way to run stages. Implementations: `docker` (default), `local` (bubblewrap, opt-in)."""

    name: str = ""
    #: uid:gid the stage runs as; writable host mounts must be writable by it
    run_as: tuple[int, int] = (10001, 10001)

    @abstractmethod
    def run(self, request: RunRequest) -> RunResult:
        """Run one stage to completion. Candidate failures are statuses, not exceptions.

        With `request.probe`, the stage is a service: it counts as OK when it is still running
        at the probe's end (it is then stopped), and the probe's result is `RunResult.probe`.
        Raises BackendError when the backend itself fails (daemon gone, image missing), and
        InvalidRequest when it cannot run a probe.
        """

    def cancel_all(self) -> None:  # noqa: B027 - optional hook
        """Kill and remove everything still running (Ctrl-C, shutdown)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources."""


class CappedLog:
    """A stage's output kept within `cap` bytes: everything while it fits; past that, the first
    three quarters of the cap, a line saying how much was left out, and the last quarter (where
    a late traceback is)."""

    _MARKER_ROOM = 64  # for the "[... N bytes of output not kept ...]" line

    def __init__(self, cap: int) -> None:
        self.cap, self.size, self.truncated = cap, 0, False
        self._tail_cap = cap // 4
        self._head_cap = max(cap - self._tail_cap - self._MARKER_ROOM, 0)
        self._head = bytearray()
        self._tail = bytearray()

    def add(self, chunk: bytes) -> bool:
        """Keep what fits of `chunk`; True the first time the output goes over the cap."""
        first = not self.truncated and self.size + len(chunk) > self.cap
        self.size += len(chunk)
        if self.truncated and not first:
            self._tail += chunk
        else:
            self._head += chunk
        if first:  # what is over the head's share starts the tail
            self.truncated = True
            self._tail = self._head[self._head_cap:]
            del self._head[self._head_cap:]
        del self._tail[:max(len(self._tail) - self._tail_cap, 0)]
        return first

    def value(self) -> bytes:
        """At most `cap` bytes (for a cap of a few hundred bytes or more)."""
        if not self.truncated:
            return bytes(self._head)
        left_out = self.size - len(self._head) - len(self._tail)
        marker = f"\n[... {left_out} bytes of output not kept ...]\n".encode()
        return bytes(self._head) + marker + bytes(self._tail)
