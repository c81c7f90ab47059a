"""The local backend: stages in a bubblewrap sandbox with rlimits, for machines without Docker.

Isolation is weaker than the Docker backend's, so it must be asked for explicitly. What a
stage sees is the same (see `sandbox._bwrap`: its mounts, read-only system dirs and the
host interpreter, private /tmp, no network, no host environment, a non-root uid), but the
limits are per-process rlimits rather than cgroups:

- memory: RLIMIT_AS (address space, per process). Threaded libraries reserve address space
  they never touch, so a stage can fail here under a limit Docker would let it pass.
- pids: RLIMIT_NPROC, best effort. Running as root, it counts every process of the sandbox
  uid on the host, including other stages and containers that run as the same uid.
- disk: RLIMIT_FSIZE caps any single file; a watchdog adds up the writable mounts and kills
  the stage once they hold more than `disk_bytes` (or more than `_MAX_ENTRIES` entries).
- cpus: not enforced; there is no seccomp filter either.
- peak memory: the largest RSS of any one sandbox process (Docker reports the cgroup total).
- OOM is a heuristic: an RLIMIT_AS failure is an ordinary error to the process, so a stage
  that exits non-zero with "MemoryError" (or "std::bad_alloc") near the end of its log, or
  dies of SIGKILL or SIGSEGV that the harness did not send, is reported as OOM. The notebook
  runner exits with 128+SIG when its kernel is killed by a signal, so a kernel killed that way
  (by the host's OOM killer: the stage has no memory cgroup here) counts as well.

A service stage with a probe (the endpoint assignment) runs as in Docker: the service in its
sandbox with a network namespace of its own (loopback only), the probe in a second sandbox
started inside that namespace (nsenter, so root only), talking to 127.0.0.1; the service is
stopped when the probe ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from sandbox._base import CappedLog, RunRequest, RunResult, SandboxBackend, StageStatus
from sandbox._bwrap import (
    SANDBOX_GID,
    SANDBOX_UID,
    TMP,
    Layout,
    bwrap_argv,
    check_target,
    etc_data,
    is_system_path,
)
from sandbox._cpus import run_on_plan
from sandbox._fs import tree_size
from sandbox._service import SERVICE_EXITED_SIGNAL, ProbeThread, service_verdict
from sandbox.errors import BackendError, InvalidRequest

WEAKER_ISOLATION = (
    "the local backend isolates stages with bubblewrap and rlimits, which is weaker than Docker "
    "(no cgroup limits on memory, pids or CPU; same kernel and interpreter as the host)"
)
_TICK_S = 0.1
_INFO_TIMEOUT_S = 30.0  # bwrap reports its child's pid right after clone()
_DISK_MIN_INTERVAL_S = 0.25
_DISK_MAX_INTERVAL_S = 2.0  # a tree made slow to walk must not buy a long unwatched window
_KILL_GRACE_S = 10.0  # after a kill, how long to wait for the output pipe to close
_MAX_ENTRIES = 200_000
_READ_CHUNK = 1 << 16
_OOM_MARKERS = (b"MemoryError", b"std::bad_alloc")
_OOM_SIGNALS = (signal.SIGKILL, signal.SIGSEGV)
_LOG_TAIL = 4096
_SHOW_PREFIXES = """\
import sys
for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix):
    print(prefix)
"""


def _find_bwrap() -> str | None:
    return shutil.which("bwrap")


@dataclass(eq=False)
class _Stage:
    """One running sandbox: its process, deadline, and why (if at all) the harness killed it."""

    proc: subprocess.Popen
    request: RunRequest
    started: float
    reason: StageStatus | None = None
    detail: str = ""
    cancelled: bool = False
    killed_at: float | None = None
    reaped: bool = False
    pidfd: int | None = None  # the sandbox's pid 1, as bwrap reported it
    pid: int | None = None  # the same, as a number (for its /proc/<pid>/ns/net)
    started_wall: float = field(default_factory=time.time)  # wall clock, for a probe's cold start
    stopped: bool = False  # a service the harness stopped, still running, when its probe ended
    network: int | None = None  # a service's network namespace, open (for its probe to join)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def deadline(self) -> float:
        return self.started + self.request.limits.timeout_s

    def running(self) -> bool:
        """Whether bwrap (and so the sandbox) is still running; never reaps it."""
        with self.lock:
            if self.reaped:
                return False
            try:
                return os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
            except ChildProcessError:
                return False

    def stop_service(self) -> None:
        """After its probe: stop a service that is still running (its verdict is then OK)."""
        if self.running():
            self.stopped = True
            self.kill(None, "")

    def kill(self, reason: StageStatus | None, detail: str) -> None:
        """SIGKILL the stage's pid 1 (which takes its whole pid namespace) and bwrap itself."""
        with self.lock:
            if self.killed_at is None:
                self.reason, self.detail, self.killed_at = reason, detail, time.monotonic()
            if self.pidfd is not None:  # a pidfd cannot be reused, unlike a pid
                with contextlib.suppress(ProcessLookupError):
                    signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            if not self.reaped:  # until reaped, bwrap's pid cannot have been reused
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)


class LocalBackend(SandboxBackend):
    """Runs each stage with `bwrap` on this machine; opt-in, see the module docstring."""

    name = "local"

    def __init__(self, *, python: str = sys.executable, acknowledge_weaker_isolation: bool = False) -> None:
        """Raises BackendError unless acknowledged, when bwrap is missing, or when it cannot start a
        sandbox."""
        if not acknowledge_weaker_isolation:
            raise BackendError(f"{WEAKER_ISOLATION}; to use it anyway, pass --backend local "
                             "--allow-weaker-isolation (Python: acknowledge_weaker_isolation=True)")
        bwrap = _find_bwrap()
        if bwrap is None:
            raise BackendError("the local backend needs bubblewrap ('bwrap' is not on PATH): "
                             "apt-get install bubblewrap")
        warnings.warn(WEAKER_ISOLATION, UserWarning, stacklevel=2)
        privileged = os.geteuid() == 0
        python = os.path.abspath(python)
        self._layout = Layout(bwrap=bwrap, python=python, prefixes=_interpreter_dirs(python),
                              privileged=privileged, tmpfs_size=_supports_size(bwrap))
        self.run_as = (SANDBOX_UID, SANDBOX_GID) if privileged else (os.getuid(), os.getgid())
        self._nsenter = shutil.which("nsenter") if privileged else None  # for probes (see run)
        self._live: set[_Stage] = set()
        self._lock = threading.Lock()
        self._probe()

    def run(self, request: RunRequest) -> RunResult:
        """Run one stage (and its probe); raises InvalidRequest for an invalid request, BackendError if
        bwrap fails."""
        _check_request(request)
        if request.probe is not None:
            _check_request(request.probe)
            if self._nsenter is None:
                raise InvalidRequest(f"stage {request.name} is a service with a probe: the local backend "
                                   "starts the probe in the service's network namespace with nsenter, "
                                   "which needs root; run as root or use the docker backend")
        # cores are not pinned here (the plan's cpusets are Docker's): the locks still hold
        return run_on_plan(request, lambda req, watch: self._run(req), cancelled=lambda: False,
                           watch_cpu=False)

    def _run(self, request: RunRequest, *, network_of: int | None = None,
             started: Callable[[_Stage], None] | None = None) -> RunResult:
        stage, ready = self._start(request, network_of)
        if started is not None:  # a probe's, to be told of its service's end
            started(stage)
        with self._lock:
            self._live.add(stage)
        prober = None
        try:
            if request.probe is not None:
                told = request.probe.as_probe_of_service_started_at(stage.started_wall)
                prober = _Prober(self, told, stage)
            log, truncated = _pump_output(stage)
            _wait_for_exit(stage)
            if prober is not None:  # gone before its probe was done: tell the probe now, not at its timeout
                prober.service_ended()
        finally:
            exit_code, maxrss = _reap(stage)
            with self._lock:
                self._live.discard(stage)
            setup_done = _was_ready(ready)
            if prober is not None:
                prober.join()  # the service is gone: the probe finishes (its own time limit bounds it)
        probe = prober.outcome() if prober is not None else None
        status, detail = _classify(stage, exit_code, log, setup_done)
        text = log.decode("utf-8", errors="replace")
        if request.probe is not None:
            status, detail = service_verdict(status, detail, ended_by_itself=not stage.stopped,
                                             exit_code=exit_code, log=text)
        return RunResult(status=status, exit_code=exit_code, seconds=time.monotonic() - stage.started,
                         log=text, log_truncated=truncated,
                         peak_memory_bytes=maxrss, detail=detail, probe=probe)

    def cancel_all(self) -> None:
        """Kill every running stage; their `run` calls raise BackendError("cancelled")."""
        with self._lock:
            live = list(self._live)
        for stage in live:
            stage.cancelled = True
            stage.kill(None, "cancelled")

    def close(self) -> None:
        self.cancel_all()

    def _start(self, request: RunRequest, network_of: int | None = None) -> tuple[_Stage, int]:
        """Launch bwrap (inside the network namespace open as fd `network_of`, if given);
        returns the stage and the read end of the launcher's "ready" pipe."""
        ready_r, ready_w = os.pipe()
        info_r, info_w = os.pipe()
        data_fds = {name: _memfd(name, content) for name, content in etc_data().items()}
        argv = bwrap_argv(self._layout, request, ready_fd=ready_w, info_fd=info_w, data_fds=data_fds,
                          own_network=network_of is None)
        extra_fds: tuple[int, ...] = ()
        if network_of is not None:  # nsenter inherits the fd under the same number
            argv = [str(self._nsenter), f"--net=/proc/self/fd/{network_of}", "--", *argv]
            extra_fds = (network_of,)
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT,
                                    pass_fds=(ready_w, info_w, *data_fds.values(), *extra_fds),
                                    start_new_session=True, env={"PATH": os.defpath})
        except OSError as exc:
            os.close(ready_r)
            raise BackendError(f"cannot start bwrap for stage {request.name}: {exc}") from None
        finally:
            for fd in (ready_w, info_w, *data_fds.values()):
                os.close(fd)
        stage = _Stage(proc=proc, request=request, started=time.monotonic())
        stage.pidfd, stage.pid = _sandbox_pidfd(info_r)
        if request.probe is not None:
            stage.network = _network_of(stage)
        return stage, ready_r

    def _probe(self) -> None:
        probe = RunRequest(name="probe", command=(self._layout.python, "-I", "-S", "-c", "pass"),
                           image="", workdir=TMP)
        result = self.run(probe)
        if result.status is not StageStatus.OK:
            raise BackendError(f"bwrap cannot run {self._layout.python} in a sandbox here: "
                             f"{result.detail} {result.log[-500:]}")


class _Prober(ProbeThread["_Stage"]):
    """Runs a probe in its service's network namespace, then stops the service."""

    def __init__(self, backend: LocalBackend, request: RunRequest, service: _Stage) -> None:
        super().__init__(request.name)
        self.backend, self.request, self.service = backend, request, service
        self.start()

    def run(self) -> None:
        with self.service.lock:  # our own copy: the service's is closed when it is reaped
            network = None if self.service.network is None else os.dup(self.service.network)
        try:
            if network is not None:  # None: the service was gone at once; its verdict stands
                self.finished(self.backend._run(self.request, network_of=network, started=self.probe_exists))
        except BaseException as exc:  # noqa: BLE001 - handed to the stage's thread in outcome()
            self.error = exc
        finally:
            if network is not None:
                os.close(network)
            self.service.stop_service()

    def tell(self, handle: _Stage) -> None:
        _tell(handle)


def _tell(stage: _Stage) -> None:
    """Signal the probe's process group: bwrap's --new-session makes the sandbox's pid 1 (the
    launcher) its leader, and the probe is in it. The launcher, a pid 1 without a handler, is not
    affected (the kernel drops the signal there); the probe handles it."""
    with stage.lock:
        if stage.reaped or stage.pid is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(stage.pid, SERVICE_EXITED_SIGNAL)


def _check_request(request: RunRequest) -> None:
    if not request.command:
        raise InvalidRequest(f"stage {request.name}: empty command")
    if not PurePosixPath(request.workdir).is_absolute() or ".." in PurePosixPath(request.workdir).parts:
        raise InvalidRequest(f"stage {request.name}: workdir {request.workdir!r} is not absolute")
    targets = [m.target for m in request.mounts]
    if len(set(targets)) != len(targets):
        raise InvalidRequest(f"stage {request.name}: two mounts share a target: {targets}")
    for mount in request.mounts:
        reason = check_target(mount.target)
        if reason:
            raise InvalidRequest(f"stage {request.name}: mount target {mount.target!r} is {reason}")
        if not Path(mount.source).is_dir():
            raise BackendError(f"stage {request.name}: mount source {mount.source} is not a directory")
    for key, _ in request.env:
        if not key or "=" in key or "\0" in key:
            raise InvalidRequest(f"stage {request.name}: invalid environment variable name {key!r}")


def _pump_output(stage: _Stage) -> tuple[bytes, bool]:
    """Read the merged output until it closes, enforcing the time, output and disk limits."""
    limits = stage.request.limits
    assert stage.proc.stdout is not None  # started with stdout=PIPE
    fd = stage.proc.stdout.fileno()
    log = CappedLog(limits.output_bytes)
    service = stage.request.probe is not None  # a server logging each request is no fault: not killed
    disk = _DiskWatch([m.source for m in stage.request.mounts if not m.read_only], limits.disk_bytes)
    while stage.killed_at is None or time.monotonic() - stage.killed_at < _KILL_GRACE_S:
        _enforce_time_and_disk(stage, disk)
        if not select.select([fd], [], [], _TICK_S)[0]:
            continue
        chunk = os.read(fd, _READ_CHUNK)
        if not chunk:
            break
        if log.add(chunk) and not service:
            stage.kill(StageStatus.OUTPUT_LIMIT, f"printed more than the {limits.output_bytes} byte limit")
    stage.proc.stdout.close()
    return log.value(), log.truncated


def _wait_for_exit(stage: _Stage) -> None:
    """After the output closed: wait (still under the deadline) until bwrap has exited, unreaped."""
    while os.waitid(os.P_PID, stage.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        _enforce_time_and_disk(stage, None)
        time.sleep(_TICK_S)


def _enforce_time_and_disk(stage: _Stage, disk: _DiskWatch | None) -> None:
    if stage.killed_at is not None:
        return
    if time.monotonic() >= stage.deadline:
        stage.kill(StageStatus.TIMEOUT, f"killed after the {stage.request.limits.timeout_s:g} s time limit")
    elif disk is not None and (over := disk.check()):
        stage.kill(StageStatus.DISK_LIMIT, over)


@dataclass
class _DiskWatch:
    """Adds up the writable mounts, at most every _DISK_MIN_INTERVAL_S and at most 5% of the time."""

    paths: list[Path]
    cap: int
    next_at: float = 0.0

    def check(self) -> str:
        """A reason to kill the stage, or "" while its writable mounts are within the cap."""
        now = time.monotonic()
        if not self.paths or now < self.next_at:
            return ""
        used, entries = tree_size(self.paths, max_entries=_MAX_ENTRIES)
        cost = time.monotonic() - now
        self.next_at = now + min(_DISK_MAX_INTERVAL_S, max(_DISK_MIN_INTERVAL_S, 20 * cost))
        if used > self.cap:
            return f"wrote {used} bytes, over the {self.cap} byte disk limit"
        if entries > _MAX_ENTRIES:
            return f"created more than {_MAX_ENTRIES} files"
        return ""


def _reap(stage: _Stage) -> tuple[int, int | None]:
    """Reap bwrap (killing it first if still running); its exit code and peak RSS of the sandbox."""
    if os.waitid(os.P_PID, stage.proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        stage.kill(stage.reason, stage.detail or "interrupted")
    _, status, usage = os.wait4(stage.proc.pid, 0)
    assert stage.proc.stdout is not None  # started with stdout=PIPE
    stage.proc.stdout.close()
    with stage.lock:
        stage.reaped = True
        if stage.pidfd is not None:
            os.close(stage.pidfd)
            stage.pidfd = None
        if stage.network is not None:
            os.close(stage.network)
            stage.network = None
    stage.proc.returncode = code = os.waitstatus_to_exitcode(status)
    if code < 0:  # bwrap itself was signalled (by us); report it as a shell would
        code = 128 - code
    # ru_maxrss covers bwrap and every descendant it reaped: the largest single process.
    return code, usage.ru_maxrss * 1024 or None


def _was_ready(ready_fd: int) -> bool:
    try:
        os.set_blocking(ready_fd, False)
        return os.read(ready_fd, 1) == b"1"
    except BlockingIOError:
        return False
    finally:
        os.close(ready_fd)


def _classify(stage: _Stage, exit_code: int, log: bytes, setup_done: bool) -> tuple[StageStatus, str]:
    name = stage.request.name
    if stage.cancelled:
        raise BackendError(f"stage {name} was cancelled")
    if stage.stopped and stage.reason is None and exit_code == 128 + signal.SIGKILL:
        return StageStatus.OK, ""  # a service still up when its probe ended, then stopped by us
    if stage.reason is not None:
        return stage.reason, stage.detail
    if not setup_done:
        raise BackendError(f"bwrap could not set up the sandbox for stage {name}: "
                         f"{log[-_LOG_TAIL:].decode('utf-8', errors='replace').strip()}")
    writable = [m.source for m in stage.request.mounts if not m.read_only]
    used, _ = tree_size(writable, max_entries=_MAX_ENTRIES)
    cap = stage.request.limits.disk_bytes
    if used > cap or exit_code == 128 + signal.SIGXFSZ:
        return StageStatus.DISK_LIMIT, f"wrote {used} bytes, over the {cap} byte disk limit"
    if exit_code == 0:
        return StageStatus.OK, ""
    if exit_code - 128 in _OOM_SIGNALS or any(m in log[-_LOG_TAIL:] for m in _OOM_MARKERS):
        return StageStatus.OOM, (f"exited with code {exit_code}; judged out of memory (heuristic: a "
                                 "MemoryError in the log or a SIGKILL/SIGSEGV the harness did not send)")
    return StageStatus.ERROR, f"exited with code {exit_code}"


def _network_of(stage: _Stage) -> int | None:
    """The sandbox's network namespace, open, or None when its pid 1 is already gone.

    Checked so a probe can never join another namespace: the pid's parent is this stage's bwrap
    (not yet reaped, so its pid is its own), the pid 1 is still alive after the namespace was
    opened (so the pid was not reused meanwhile), and the namespace is not the harness's own.
    """
    if stage.pid is None or stage.pidfd is None:
        return None
    try:
        with open(f"/proc/{stage.pid}/stat", "rb") as fh:
            parent = int(fh.read().rsplit(b")", 1)[1].split()[1])
        fd = os.open(f"/proc/{stage.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError, IndexError):
        return None
    try:
        signal.pidfd_send_signal(stage.pidfd, 0)
        alive = True
    except ProcessLookupError:
        alive = False
    if not alive or parent != stage.proc.pid or os.fstat(fd).st_ino == os.stat("/proc/self/ns/net").st_ino:
        os.close(fd)
        return None
    return fd


def _sandbox_pidfd(info_fd: int) -> tuple[int | None, int | None]:
    """A pidfd for the sandbox's pid 1 and its pid, from bwrap's --info-fd JSON; (None, None) if
    bwrap failed first."""
    data, deadline = b"", time.monotonic() + _INFO_TIMEOUT_S
    try:
        while time.monotonic() < deadline:
            if not select.select([info_fd], [], [], _TICK_S)[0]:
                continue
            chunk = os.read(info_fd, _READ_CHUNK)
            if not chunk:
                break
            data += chunk
    finally:
        os.close(info_fd)
    try:
        pid = int(json.loads(data)["child-pid"])
        return os.pidfd_open(pid), pid
    except (ValueError, KeyError, TypeError, ProcessLookupError):
        return None, None


def _memfd(name: str, content: bytes) -> int:
    fd = os.memfd_create(f"sandbox-{name}")
    os.write(fd, content)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _supports_size(bwrap: str) -> bool:
    """Whether this bwrap has --size (0.7 and later) to cap its tmpfs mounts."""
    try:
        shown = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--size" in shown.stdout + shown.stderr


def _interpreter_dirs(python: str) -> tuple[str, ...]:
    """The host dirs (outside the system dirs) the interpreter needs, outermost only.

    Raises BackendError if the interpreter cannot be run or lives directly in /.
    """
    if python == os.path.abspath(sys.executable):
        found = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        try:
            shown = subprocess.run([python, "-I", "-c", _SHOW_PREFIXES], capture_output=True, text=True,
                                   timeout=60, check=True)
        except (OSError, subprocess.SubprocessError) as exc:
            raise BackendError(f"cannot run the local backend's interpreter {python}: {exc}") from None
        found = set(shown.stdout.splitlines())
    found |= {os.path.dirname(python), os.path.dirname(os.path.realpath(python))}
    dirs = sorted({os.path.normpath(d) for d in found if os.path.isdir(d) and not is_system_path(d)})
    if "/" in dirs:
        raise BackendError(f"the interpreter {python} has / as its prefix: the sandbox would see all of it")
    return tuple(d for d in dirs if not any(d != o and Path(d).is_relative_to(o) for o in dirs))
