"""What else used the CPU while a service was measured: samples of the host's counters.

A sample is, at one moment, the CPU time the watched cores have been busy in processes (steal
included: time a hypervisor gave to another guest), and the CPU time "ours" used: the measured
containers' cgroups, the harness threads running the measurement (reading the server's output,
watching its limits), and Docker's own daemons (dockerd, containerd and the container shims, which
carry the containers' output). Other threads of the harness (grading another submission) are others.
Between two samples, busy minus ours is what other processes took from the measurement's cores;
`others_cores` turns that into cores in use over a window. Counters are cumulative, so a 0.25 s
sampling period bounds the error at a window's edges, not over it. Also kept: how long the server
was throttled by its CPU quota (its own doing: a quota throttles a server that uses more than it,
whatever else runs).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PERIOD_S = 0.25
_DAEMONS = ("dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "docker-proxy")
# (usage file, its unit in seconds; throttling file) per cgroup layout: v1, then the usual v2 ones
_USAGE = (("/sys/fs/cgroup/cpuacct/docker/{id}/cpuacct.usage", 1e-9),
          ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", 1e-6),
          ("/sys/fs/cgroup/docker/{id}/cpu.stat", 1e-6))
_THROTTLED = (("/sys/fs/cgroup/cpu/docker/{id}/cpu.stat", "throttled_time", 1e-9),
              ("/sys/fs/cgroup/system.slice/docker-{id}.scope/cpu.stat", "throttled_usec", 1e-6),
              ("/sys/fs/cgroup/docker/{id}/cpu.stat", "throttled_usec", 1e-6))


@dataclass(frozen=True)
class CpuSample:
    at: float  # time.monotonic()
    busy_s: float  # CPU seconds the watched cores were busy since boot (steal included)
    steal_s: float  # of which stolen by the hypervisor
    ours_s: float  # CPU seconds used by the measured containers, this process and Docker's daemons
    throttled_s: float  # seconds the server spent throttled by its quota


def read_proc_stat(text: str, cores: Sequence[int]) -> tuple[float, float]:
    """(busy, steal) CPU seconds of `cores` (all of them for ()) from /proc/stat's text: user,
    nice, system and steal time."""
    busy = steal = 0.0
    wanted = {f"cpu{core}" for core in cores}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or name == "cpu" or (wanted and name not in wanted):
            continue
        fields = [int(v) for v in rest.split()]
        # irq and softirq time is left out: loopback traffic between the measured containers is
        # processed there, charged to no cgroup, and is the measurement's own
        user, nice, system, _idle, _iowait, _irq, _softirq, stolen = (fields + [0] * 8)[:8]
        busy += (user + nice + system + stolen) / TICKS_PER_S
        steal += stolen / TICKS_PER_S
    return busy, steal


def _around(samples: Sequence[CpuSample], start: float, end: float) -> tuple[CpuSample, CpuSample] | None:
    """The last sample at or before `start` and the first at or after `end`; None when the samples
    do not cover the window."""
    before = [s for s in samples if s.at <= start]
    after = [s for s in samples if s.at >= end]
    if not before or not after or end <= start or after[0].at <= before[-1].at:
        return None
    return before[-1], after[0]


def others_cores(samples: Sequence[CpuSample], start: float, end: float) -> tuple[float, float] | None:
    """(cores other processes used, cores stolen) on average over [start, end], from the samples
    just outside it; None when the samples do not cover the window."""
    around = _around(samples, start, end)
    if around is None:
        return None
    a, b = around
    span = b.at - a.at
    others = (b.busy_s - a.busy_s) - (b.ours_s - a.ours_s)
    return max(others, 0.0) / span, max(b.steal_s - a.steal_s, 0.0) / span


def throttled_share(samples: Sequence[CpuSample], start: float, end: float) -> float | None:
    """The share of [start, end] the server spent throttled by its CPU quota (None: not covered)."""
    around = _around(samples, start, end)
    if around is None:
        return None
    a, b = around
    return (b.throttled_s - a.throttled_s) / (b.at - a.at)


def _daemon_pids() -> list[int]:
    pids = []
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                comm = Path(entry.path, "comm").read_text().strip()
            except OSError:
                continue
            if comm in _DAEMONS or comm.startswith("containerd-shim"):
                pids.append(int(entry.name))
    return pids


def _process_cpu_s(pid: int | str) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S  # utime, stime


class CpuWatch(threading.Thread):
    """Samples every PERIOD_S from start() to stop(); containers are added as they are created
    (the first one added is the server, whose throttling is kept)."""

    def __init__(self, cores: Sequence[int]) -> None:
        super().__init__(daemon=True, name="cpuwatch")
        self.cores = tuple(cores)
        self.samples: list[CpuSample] = []
        self._ids: list[str] = []
        self._threads: list[int] = []
        self._last: dict[str, float] = {}  # a removed container's cgroup is gone: its last reading stays
        self._throttled = 0.0
        self._finished = threading.Event()
        self._lock = threading.Lock()

    def add(self, container_id: str) -> None:
        with self._lock:
            self._ids.append(container_id)

    def add_thread(self, native_id: int | None = None) -> None:
        """Count a harness thread (the caller's by default) as the measurement's own."""
        with self._lock:
            self._threads.append(threading.get_native_id() if native_id is None else native_id)

    def run(self) -> None:
        while True:
            self.sample()
            if self._finished.wait(PERIOD_S):
                self.sample()
                return

    def _keep(self, key: str, value: float) -> None:
        self._last[key] = max(value, self._last.get(key, 0.0))

    def stop(self) -> tuple[CpuSample, ...]:
        """The samples; none when a watched container's CPU could never be read (a cgroup layout
        this module does not know): its work would pass for other processes'."""
        self._finished.set()
        if self.is_alive():
            self.join()
        with self._lock:
            unread = [cid for cid in self._ids if cid not in self._last]
        return () if unread else tuple(self.samples)

    def sample(self) -> None:
        try:
            busy, steal = read_proc_stat(Path("/proc/stat").read_text(), self.cores)
        except OSError:
            return
        with self._lock:
            ids, threads = list(self._ids), list(self._threads)
        for cid in ids:
            usage = _cgroup_usage(cid)
            if usage is not None:
                self._keep(cid, usage)
        if ids:
            throttled = _cgroup_throttled(ids[0])
            self._throttled = max(self._throttled, throttled or 0.0)
        for tid in threads:  # counters only grow: a thread or process gone keeps its last reading
            self._keep(f"thread {tid}", _process_cpu_s(f"self/task/{tid}"))
        for pid in _daemon_pids():  # read again each time: each container's shim starts with it
            self._keep(f"daemon {pid}", _process_cpu_s(pid))
        ours = sum(self._last.values())
        self.samples.append(CpuSample(time.monotonic(), busy, steal, ours, self._throttled))


def _cgroup_usage(cid: str) -> float | None:
    for pattern, unit in _USAGE:
        try:
            text = Path(pattern.format(id=cid)).read_text()
        except OSError:
            continue
        if text.strip().isdigit():
            return int(text) * unit
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key == "usage_usec" and value.strip().isdigit():
                return int(value) * unit
    return None


def _cgroup_throttled(cid: str) -> float | None:
    for pattern, key, unit in _THROTTLED:
        try:
            text = Path(pattern.format(id=cid)).read_text()
        except OSError:
            continue
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value) * unit
    return None
