"""Fair latency, on real containers: a service and its probe are pinned to the plan's cores, and
the CPU counters tell the service's own work from another process's (a busy loop the test runs
on the host, bounded to the test). The whole check on a graded example, under load, is in
test_endpoint_docker.py.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from sandbox import Limits, Mount, RunRequest, StageStatus
from sandbox._cpus import host_locks
from sandbox._cpuwatch import others_cores
from sandbox._fs import make_writable_dir
from tests.conftest import REPO

TIMED = REPO / "tests" / "fixtures" / "assignments" / "timed"

pytestmark = [pytest.mark.docker]
LIMITS = Limits(cpus=1.0, memory_bytes=256 << 20, pids=64, timeout_s=30.0, output_bytes=64 << 10,
                tmpfs_bytes=16 << 20, disk_bytes=8 << 20)
# The server burns 1 s of CPU (however long that takes on a busy machine), says how much it used,
# then listens; the probe, in the server's network namespace, waits until it can connect (at most
# 25 s) so the run covers the whole burn.
SERVER = """
import os, socket, time
print("cores", sorted(os.sched_getaffinity(0)), flush=True)
while time.process_time() < 1.0:
    pass
print("burnt", time.process_time(), flush=True)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8000))
s.listen()
time.sleep(60)
"""
PROBE = """
import os, socket, time
print("cores", sorted(os.sched_getaffinity(0)), flush=True)
end = time.monotonic() + 25
while time.monotonic() < end:
    try:
        socket.create_connection(("127.0.0.1", 8000), timeout=1).close()
        print("connected", flush=True)
        break
    except OSError:
        time.sleep(0.1)
time.sleep(0.5)
"""


def _spin(cores: list[int]) -> None:
    os.sched_setaffinity(0, cores)
    while True:
        pass


def _service(sandbox_image: str, tmp_path) -> RunRequest:
    code = tmp_path / "code"
    make_writable_dir(code, 10001, 10001)
    (code / "server.py").write_text(SERVER)
    (code / "probe.py").write_text(PROBE)
    probe = RunRequest(name="probe", command=("python", "/code/probe.py"), image=sandbox_image,
                       mounts=(Mount(code, "/code"),), limits=LIMITS)
    return RunRequest(name="server", command=("python", "/code/server.py"), image=sandbox_image,
                      mounts=(Mount(code, "/code"),), limits=LIMITS, probe=probe)


@pytest.fixture(scope="module")
def docker_backend():
    from sandbox.docker import DockerBackend

    backend = DockerBackend()
    yield backend
    backend.close()


def test_a_service_is_pinned_and_its_own_cpu_is_not_counted_as_other_processes(docker_backend, sandbox_image,
                                                                            tmp_path):
    slot = host_locks().plan.slots[0]
    result = docker_backend.run(_service(sandbox_image, tmp_path))
    assert result.status is StageStatus.OK, result.detail
    assert result.machine is not None and result.machine.server_cores == slot.server
    if slot.server:  # pinned where the host has cores to pin to
        assert f"cores {list(slot.server)}" in result.log
        assert f"cores {list(slot.probe)}" in result.probe.log
    assert "connected" in result.probe.log, result.probe.log
    burnt = float(result.log.split("burnt", 1)[1].split()[0])
    # the server's second of CPU is counted as ours (its cgroup), whatever else ran meanwhile, so
    # it is not counted as other processes' (others are busy minus ours: sandbox._cpuwatch)
    samples = result.machine.samples
    ours = samples[-1].ours_s - samples[0].ours_s
    assert burnt >= 1.0 and ours >= 0.9 * burnt, (burnt, ours)


def test_a_busy_loop_on_the_measured_cores_shows_as_other_processes(docker_backend, sandbox_image, tmp_path):
    slot = host_locks().plan.slots[0]
    cores = list(slot.server + slot.probe) or sorted(os.sched_getaffinity(0))
    hog = multiprocessing.Process(target=_spin, args=(cores,), daemon=True)
    hog.start()
    try:
        result = docker_backend.run(_service(sandbox_image, tmp_path))
    finally:
        hog.kill()
        hog.join()
    assert result.status is StageStatus.OK, result.detail
    samples = result.machine.samples
    figures = others_cores(samples, samples[0].at, samples[-1].at)
    assert figures is not None
    others = figures[0]
    # one spinning process on the measured cores, all through the run: nearly a core (it shares
    # them with the server); anything else running on the machine only adds to it
    assert others > 0.5, others


def test_two_harness_processes_never_measure_at_once(tmp_path):
    """Two `harness grade` processes, started together, each with a timed service whose probe
    holds the measurement 2 s and notes when: the two probes' intervals do not overlap."""
    procs = []
    for name in ("alice", "bob"):
        submission = tmp_path / name
        submission.mkdir()
        (submission / "README.md").write_text(name)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "harness", "grade", str(TIMED), str(submission), "--no-mlflow", "--json",
             "--results", str(tmp_path / f"results-{name}")], cwd=REPO, stdout=subprocess.PIPE, text=True))
    lines = [json.loads(p.communicate(timeout=300)[0].splitlines()[-1]) for p in procs]
    assert [line["status"] for line in lines] == ["ok", "ok"], lines
    windows = sorted(json.loads(path.read_text()) for name in ("alice", "bob")
                     for path in (tmp_path / f"results-{name}").glob("timed/1.0/*/outputs/window.json"))
    assert len(windows) == 2
    (_, first_end), (second_start, _) = windows
    assert first_end <= second_start, windows
