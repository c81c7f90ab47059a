"""The Docker backend: one fresh, locked-down container per stage, removed in every path."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions
from docker.types import LogConfig, Ulimit
from docker.types import Mount as DockerMount

from sandbox._base import CappedLog, RunRequest, RunResult, SandboxBackend, StageStatus
from sandbox._cpus import run_on_plan
from sandbox._cpuwatch import CpuWatch
from sandbox._fs import open_deleted_bytes, pid_alive, tree_size
from sandbox._service import SERVICE_EXITED_SIGNAL, ProbeThread, service_verdict
from sandbox.errors import BackendError

_DOCKER_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException, ConnectionError)
_POLL_S = 0.2
_DISK_POLL_S = 1.0
_MAX_ENTRIES = 100_000  # files a stage may create in its writable mounts
_BACKSTOP_S = 30  # the in-container kill, should the harness itself die mid-stage
_SIGXFSZ_EXIT = 128 + 25
_SIGKILL_EXIT = 128 + 9  # docker kill: a service that exited on its own just before keeps its code
_CGROUP_LAYOUTS = (  # (container's cgroup folder, peak-memory file): v1, then the two usual v2 layouts
    ("/sys/fs/cgroup/memory/docker/{id}", "memory.max_usage_in_bytes"),
    ("/sys/fs/cgroup/system.slice/docker-{id}.scope", "memory.peak"),
    ("/sys/fs/cgroup/docker/{id}", "memory.peak"),
)


_OWNER = f"{socket.gethostname()}:{os.getpid()}"


def reap_orphans(client: docker.DockerClient) -> int:
    """Remove stage containers left by a harness process on this host that no longer exists (SIGKILL)."""
    removed = 0
    for container in client.containers.list(all=True, filters={"label": "mlgrade=stage"}):
        host, _, pid = container.labels.get("mlgrade.owner", "").rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or pid_alive(int(pid)):
            continue
        try:
            container.remove(force=True, v=True)
            removed += 1
        except docker.errors.NotFound:
            pass
    return removed


def connect(timeout: int = 60) -> docker.DockerClient:
    """A client for the local daemon; BackendError (with the fix) if none answers."""
    try:
        client = docker.from_env(timeout=timeout)
        client.ping()
    except _DOCKER_FAILURES as exc:
        raise BackendError(f"no Docker daemon answers ({exc.__class__.__name__}); start one "
                         "(see README: scripts/setup.sh) or use --backend local") from None
    return client


class _Watchdog(threading.Thread):
    """Kills the container at the deadline or when its writable mounts outgrow the disk cap."""

    def __init__(self, container, request: RunRequest, watch: CpuWatch | None = None) -> None:
        super().__init__(daemon=True, name=f"watchdog-{request.name}")
        self.container, self.watch = container, watch
        self.request = request
        self.deadline = time.monotonic() + request.limits.timeout_s
        self.reason: StageStatus | None = None
        self.detail = ""
        self.peak_memory: int | None = None
        self.done = threading.Event()
        self.stopped = False  # set when the harness stops a running service after its probe
        self._writable = [m.source for m in request.mounts if not m.read_only]
        self._devices = {os.stat(path).st_dev for path in self._writable}
        self._cgroup: tuple[Path, str] | None = None  # found on the first read, then kept

    def kill(self, reason: StageStatus, detail: str) -> None:
        if self.reason is None and not self.stopped:
            self.reason, self.detail = reason, detail
        try:
            self.container.kill()
        except _DOCKER_FAILURES:
            pass  # already gone

    def stop_service(self) -> None:
        """Stop a service whose probe has ended. One still running then has done its job (OK);
        one that had exited or been killed keeps that verdict."""
        try:
            self.container.reload()
            self.stopped = self.reason is None and bool(self.container.attrs["State"].get("Running"))
            self.container.kill()
        except _DOCKER_FAILURES:
            pass  # already gone (it exited on its own, or by a limit)

    def run(self) -> None:
        if self.watch is not None:
            self.watch.add_thread()
        next_disk = 0.0
        self._sample_memory()
        while not self.done.wait(min(_POLL_S, max(0.0, self.deadline - time.monotonic()))):
            now = time.monotonic()
            self._sample_memory()
            if now >= self.deadline:
                self.kill(StageStatus.TIMEOUT, f"killed after the {self.request.limits.timeout_s:g} s limit")
                return
            if now >= next_disk:
                next_disk = now + _DISK_POLL_S
                if self.check_disk():
                    return

    def check_disk(self, *, kill: bool = True) -> bool:
        if not self._writable:
            return False
        cap = self.request.limits.disk_bytes
        used, entries = tree_size(self._writable, max_entries=_MAX_ENTRIES)
        used += open_deleted_bytes(self._pids(), self._devices)  # deleted but still open: still on disk
        problem = ""
        if entries >= _MAX_ENTRIES:  # past this many the byte count is no longer complete
            problem = f"created more than {_MAX_ENTRIES} files"
        elif used > cap:
            problem = f"wrote {used} bytes, over the {cap} byte disk limit"
        if problem and kill:
            self.kill(StageStatus.DISK_LIMIT, problem)
        elif problem and self.reason is None:  # it hit the file-size limit and died of it
            self.reason, self.detail = StageStatus.DISK_LIMIT, problem
        return bool(problem)

    def _read_cgroup(self, peak: bool) -> str | None:
        """The container's cgroup.procs (or its peak-memory file); None once the cgroup is gone."""
        if self._cgroup is None:
            for pattern, peak_file in _CGROUP_LAYOUTS:
                path = Path(pattern.format(id=self.container.id))
                if path.is_dir():
                    self._cgroup = (path, peak_file)
                    break
            else:
                return None
        folder, peak_file = self._cgroup
        try:
            return (folder / (peak_file if peak else "cgroup.procs")).read_text()
        except OSError:
            return None

    def _pids(self) -> list[int]:
        text = self._read_cgroup(peak=False)
        return [int(pid) for pid in text.split() if pid.isdigit()] if text else []

    def _sample_memory(self) -> None:
        text = self._read_cgroup(peak=True)
        if text and text.strip().isdigit():
            self.peak_memory = max(self.peak_memory or 0, int(text))


class DockerBackend(SandboxBackend):
    """Deny by default: no network, capped memory (= memory+swap), CPU, pids, output, disk, time."""

    name = "docker"

    def __init__(self, client: docker.DockerClient | None = None, *,
                 run_as: tuple[int, int] = (10001, 10001)) -> None:
        self.client = client or connect()
        self.run_as = run_as
        try:
            reap_orphans(self.client)
        except _DOCKER_FAILURES as exc:
            raise BackendError(f"docker could not list containers: {exc}") from None
        self._live: dict[str, object] = {}
        self._closed = False
        self._lock = threading.Lock()

    def _create(self, request: RunRequest, network_mode: str):
        lim = request.limits
        return self.client.containers.create(
            # The harness's watchdog enforces the time limit; `timeout` inside is a backstop
            # so that a container outliving a killed harness still ends.
            image=request.image,
            command=["timeout", "-s", "KILL", str(math.ceil(lim.timeout_s) + _BACKSTOP_S), *request.command],
            name=f"mlgrade-{request.name}-{uuid.uuid4().hex[:10]}",
            user=f"{self.run_as[0]}:{self.run_as[1]}", working_dir=request.workdir,
            environment=dict(request.env),
            labels={"mlgrade": "stage", "mlgrade.owner": _OWNER, **dict(request.labels)},
            network_mode=network_mode, mem_limit=lim.memory_bytes, memswap_limit=lim.memory_bytes,
            nano_cpus=int(lim.cpus * 1e9), cpuset_cpus=",".join(map(str, lim.cpuset)) or None,
            pids_limit=lim.pids, read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={lim.tmpfs_bytes},mode=1777"},  # noqa: S108 - in the container
            cap_drop=["ALL"], security_opt=["no-new-privileges"], ipc_mode="private",
            ulimits=[Ulimit(name="core", soft=0, hard=0), Ulimit(name="nofile", soft=4096, hard=4096),
                     Ulimit(name="fsize", soft=lim.disk_bytes + 1, hard=lim.disk_bytes + 1)],
            mounts=[DockerMount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
                    for m in request.mounts],
            log_config=LogConfig(type="none"), stdin_open=False, tty=False, detach=True,
        )

    def run(self, request: RunRequest) -> RunResult:
        return run_on_plan(request, lambda req, watch: self._run(req, "none", watch=watch),
                           cancelled=self._cancelled, watch_cpu=True)

    def _cancelled(self) -> bool:
        return self._closed

    def _run(self, request: RunRequest, network_mode: str, created: Callable[[object], None] | None = None,
             watch: CpuWatch | None = None) -> RunResult:
        """Run one container; "none" is its own empty network namespace, "container:<id>" another's.
        `created` is handed the container before it starts (a probe's, to be told of its service's end)."""
        started = time.monotonic()
        if self._closed:
            raise BackendError(f"stage {request.name} not started: the batch was cancelled")
        try:
            container = self._create(request, network_mode)
        except docker.errors.ImageNotFound:
            raise BackendError(f"image {request.image!r} is not present; build it first") from None
        except _DOCKER_FAILURES as exc:
            raise BackendError(f"docker could not create the {request.name} container: {exc}") from None
        if created is not None:
            created(container)
        if watch is not None:
            watch.add(container.id)
        with self._lock:
            self._live[container.id] = container
            cancelled = self._closed  # re-checked under the lock: cancel_all may have run meanwhile
        try:
            if cancelled:
                raise BackendError(f"stage {request.name} not started: the batch was cancelled")
            return self._supervise(container, request, started, watch)
        except _DOCKER_FAILURES as exc:
            raise BackendError(f"docker failed while running stage {request.name}: {exc}") from None
        finally:
            self._remove(container)

    def _supervise(self, container, request: RunRequest, started: float, watch: CpuWatch | None) -> RunResult:
        # Attach before start so no early output is lost; the log driver is "none", so the
        # daemon keeps nothing on the host's disk and a flood blocks on us, not on the disk.
        stream = self.client.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=False)
        if watch is not None and not watch.is_alive():  # the server's run: sample from its start
            watch.add_thread()
            watch.start()
        container.start()
        service_started = time.time()
        watchdog = _Watchdog(container, request, watch)
        watchdog.start()
        probe = None
        if request.probe is not None:
            probe = _Probe(self, request.probe.as_probe_of_service_started_at(service_started), container,
                           watchdog, watch)
        try:
            log, truncated = self._read_capped(stream, request.limits.output_bytes, watchdog,
                                               kill=request.probe is None)
            state = self._wait(container, watchdog)
            if probe is not None:  # gone before its probe was done: tell the probe now, not at its timeout
                probe.service_ended()
        finally:
            watchdog.done.set()
            watchdog.join()
            if probe is not None:
                probe.join()
        if self._closed:  # killed by Ctrl-C, not by its own doing: no verdict
            raise BackendError(f"stage {request.name} was cancelled")
        if watchdog.reason is None:  # an overrun between two checks counts too
            watchdog.check_disk(kill=False)
        seconds = time.monotonic() - started
        status, detail = _classify(state, watchdog)
        text = log.decode("utf-8", errors="replace")
        if request.probe is not None:
            status, detail = service_verdict(status, detail, ended_by_itself=not watchdog.stopped,
                                             exit_code=state.get("ExitCode"), log=text)
        return RunResult(status=status, exit_code=state.get("ExitCode"), seconds=seconds,
                         log=text, log_truncated=truncated,
                         peak_memory_bytes=watchdog.peak_memory, detail=detail,
                         probe=probe.outcome() if probe is not None else None)

    @staticmethod
    def _read_capped(stream, cap: int, watchdog: _Watchdog, *, kill: bool = True) -> tuple[bytes, bool]:
        """The output, at most `cap` bytes of it. Over the cap a stage is killed (OUTPUT_LIMIT); a
        service (`kill` False: a server logging each request is no fault) keeps running, and its
        log keeps the start and the end (see CappedLog)."""
        log = CappedLog(cap)
        for chunk in stream:  # after a kill, keep draining: the daemon holds the exit until we do
            if log.add(chunk) and kill:
                # Kill from another thread: the daemon completes a kill only once this
                # stream is drained, so killing here, without reading on, would deadlock.
                threading.Thread(target=watchdog.kill, daemon=True, args=(
                    StageStatus.OUTPUT_LIMIT, f"wrote more than the {cap} byte output limit")).start()
        return log.value(), log.truncated

    @staticmethod
    def _wait(container, watchdog: _Watchdog) -> dict:
        """Wait for the exit. The log stream may end early (a stage can close its stdout), so
        wait in slices: the watchdog kills at the deadline, and a read timeout means "still running"."""
        while True:
            try:
                container.wait(timeout=max(1.0, watchdog.deadline - time.monotonic()) + 5)
                break
            except (requests.exceptions.ReadTimeout, requests.exceptions.ConnectionError):
                if time.monotonic() > watchdog.deadline + _BACKSTOP_S:
                    raise BackendError(f"container {container.short_id} did not stop after its kill") \
                        from None
        container.reload()
        return container.attrs["State"]

    def _remove(self, container) -> None:
        with self._lock:
            self._live.pop(container.id, None)
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass
        except _DOCKER_FAILURES:
            pass  # best effort: the next DockerBackend (or `harness clean`) reaps leftovers

    def cancel_all(self) -> None:
        with self._lock:
            self._closed = True
            live = list(self._live.values())
        for container in live:
            self._remove(container)

    def close(self) -> None:
        self.cancel_all()
        self.client.close()


class _Probe(ProbeThread[Any]):
    """Runs a probe container in the service's network namespace, then stops the service."""

    def __init__(self, backend: DockerBackend, request: RunRequest, service, watchdog: _Watchdog,
                 watch: CpuWatch | None = None) -> None:
        super().__init__(request.name)
        self.backend, self.request, self.service, self.watchdog = backend, request, service, watchdog
        self.watch = watch
        self.start()

    def run(self) -> None:
        try:
            if self.watch is not None:
                self.watch.add_thread()
            self.finished(self.backend._run(self.request, f"container:{self.service.id}",
                                            created=self.probe_exists, watch=self.watch))
        except BackendError as exc:
            if self._service_running():
                self.error = exc
            # else the service died before the probe could join it: no probe, the service's verdict
        except BaseException as exc:  # noqa: BLE001 - handed to the stage's thread in outcome()
            self.error = exc
        finally:
            self.watchdog.stop_service()

    def tell(self, handle) -> None:
        _tell(handle)

    def _service_running(self) -> bool:
        try:
            self.service.reload()
            return bool(self.service.attrs["State"].get("Running"))
        except _DOCKER_FAILURES:
            return False


def _tell(container) -> None:
    try:
        container.kill(signal=SERVICE_EXITED_SIGNAL.name)
    except _DOCKER_FAILURES:
        pass  # not running (yet, or any more)


def _classify(state: dict, watchdog: _Watchdog) -> tuple[StageStatus, str]:
    code = state.get("ExitCode")
    if watchdog.stopped and watchdog.reason is None and code == _SIGKILL_EXIT:
        return StageStatus.OK, ""  # a service still up when its probe ended, then stopped by us
    if watchdog.reason is not None:
        return watchdog.reason, watchdog.detail
    if code == _SIGXFSZ_EXIT:
        return StageStatus.DISK_LIMIT, "a file grew past the disk limit"
    if state.get("OOMKilled") and code != 0:
        return StageStatus.OOM, "a process was killed by the OOM killer: over the memory limit"
    if code == 0:
        return StageStatus.OK, ""
    return StageStatus.ERROR, f"exited with code {code}"
