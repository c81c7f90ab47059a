"""A Dask scheduler and `harness worker`s on 127.0.0.1, each a process of its own (the cluster
tests and bench/cluster.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Cluster:
    """A scheduler and its workers, as processes of their own."""

    address: str
    tmp: Path
    scheduler: subprocess.Popen
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start_worker(self, name: str, *, env: dict | None = None, cwd: Path = REPO,
                     slots: int = 1) -> subprocess.Popen:
        log = (self.tmp / f"{name}.log").open("ab")
        proc = subprocess.Popen([sys.executable, "-m", "harness", "worker", "--cluster", self.address,
                                 "--host", "127.0.0.1", "--name", name, "--results", str(self.tmp / name),
                                 "--slots", str(slots)],
                                cwd=cwd, env={**os.environ, **(env or {})}, stdout=log, stderr=log,
                                start_new_session=True)
        self.workers[name] = proc
        return proc

    def wait_for_workers(self, count: int, timeout: float = 60) -> None:
        from distributed import Client

        with Client(self.address, timeout=10, set_as_default=False) as client:
            client.wait_for_workers(count, timeout=timeout)

    def stop(self) -> None:
        for proc in [*self.workers.values(), self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def start_cluster(tmp: Path, workers: tuple[str, ...] = ()) -> Cluster:
    """A scheduler on a free loopback port and the named workers (one slot each), joined."""
    port = free_port()
    log = (tmp / "scheduler.log").open("ab")
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                                  "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=log, stderr=log, start_new_session=True)
    cluster = Cluster(f"tcp://127.0.0.1:{port}", tmp, scheduler)
    for name in workers:
        cluster.start_worker(name)
    if workers:
        cluster.wait_for_workers(len(workers))
    return cluster
