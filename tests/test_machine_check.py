"""Fair latency, the logic: the CPU plan, the host-wide locks (with real processes), the
interference figures from CPU counters, the machine check, and the ungraded path (a fake backend
plays the measurements; a fake clock takes the pauses). The real Docker check is in
test_machine_docker.py.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from harness import api
from harness._quiet import check_machine
from harness.results import Status, load_result
from harness.spec import QuietSpec
from sandbox import RunResult, StageStatus
from sandbox._base import MachineRecord
from sandbox._cpus import HostLocks, plan_cpus
from sandbox._cpuwatch import TICKS_PER_S, CpuSample, others_cores, read_proc_stat
from tests.fakes import FIXTURES, FakeBackend, install_fake_backend, make_submission, ok

QUIET = QuietSpec(criteria=("answer",), phases=("latency",), reference_p99_ms=0.9, max_reference_p99_ms=3.0,
                  max_other_cores=0.25, retries=2, backoff=10)


# --- the plan ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cores", "slots", "general"), [
    (1, [((), ())], ()),  # nothing to pin: quotas, and everything takes turns
    (2, [((1,), (0,))], ()),  # server and probe apart, nothing left: other stages take turns
    (3, [((1,), (2,))], (0,)),
    (4, [((2,), (3,))], (0, 1)),  # (4 - 1) // 2 = 1 slot: at least one core stays general
    (8, [((6,), (7,)), ((4,), (5,)), ((2,), (3,))], (0, 1)),
])
def test_the_plan_gives_each_measurement_cores_of_its_own_and_keeps_one_for_the_rest(cores, slots, general):
    plan = plan_cpus(range(cores), server=1, probe=1)
    assert [(s.server, s.probe) for s in plan.slots] == slots
    assert plan.general == general and plan.gated == (not general)
    used = [c for s in plan.slots for c in s.server + s.probe] + list(plan.general)
    assert len(used) == len(set(used))  # disjoint: no core is given twice
    assert f"{cores} core" in plan.note


# --- the locks, across processes ----------------------------------------------------------------------

_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from sandbox._cpus import HostLocks, plan_cpus
    kind, cores, folder, log, hold = sys.argv[1:6]
    locks = HostLocks(plan_cpus(range(int(cores)), server=1, probe=1), Path(folder))
    held = locks.measurement() if kind == "measure" else locks.other_stage()
    with held:
        with open(log, "a") as f:
            f.write(f"{kind}-in\\n")
        time.sleep(float(hold))
        with open(log, "a") as f:
            f.write(f"{kind}-out\\n")
""")


def _holder(tmp_path, kind: str, cores: int, hold: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", _HOLDER, kind, str(cores), str(tmp_path / "locks"),
                             str(tmp_path / "log"), str(hold)])


def _wait_for(path, line: str) -> None:
    for _ in range(200):
        if path.exists() and line in path.read_text().split():
            return
        subprocess.run(["sleep", "0.05"], check=True)
    raise AssertionError(f"{line} never logged")


@pytest.mark.parametrize(("first", "second"), [("measure", "other"), ("other", "measure"),
                                               ("measure", "measure")])
def test_on_two_cores_a_measurement_and_anything_else_never_overlap_across_processes(tmp_path, first, second):
    a = _holder(tmp_path, first, 2, 1.0)
    _wait_for(tmp_path / "log", f"{first}-in")
    b = _holder(tmp_path, second, 2, 0.0)
    assert a.wait(30) == 0 and b.wait(30) == 0
    events = (tmp_path / "log").read_text().split()
    assert events == [f"{first}-in", f"{first}-out", f"{second}-in", f"{second}-out"]


def test_two_stages_that_are_not_measurements_share_the_machine(tmp_path):
    a = _holder(tmp_path, "other", 2, 1.5)
    _wait_for(tmp_path / "log", "other-in")
    b = _holder(tmp_path, "other", 2, 0.0)
    assert b.wait(30) == 0  # in and out while the first still holds its shared lock
    assert a.poll() is None, "the first holder ended before the second got in: the test proves nothing"
    assert a.wait(30) == 0
    assert (tmp_path / "log").read_text().split() == ["other-in", "other-in", "other-out", "other-out"]


def test_with_cores_to_spare_other_stages_do_not_wait_for_a_measurement(tmp_path):
    a = _holder(tmp_path, "measure", 4, 1.5)
    _wait_for(tmp_path / "log", "measure-in")
    b = _holder(tmp_path, "other", 4, 0.0)
    assert b.wait(30) == 0
    assert a.poll() is None, "the measurement ended first: the test proves nothing"
    assert a.wait(30) == 0
    assert (tmp_path / "log").read_text().split() == ["measure-in", "other-in", "other-out", "measure-out"]


def test_a_waiting_measurement_is_not_starved_by_later_stages(tmp_path):
    locks = HostLocks(plan_cpus(range(2), server=1, probe=1), tmp_path / "locks")
    a = _holder(tmp_path, "other", 2, 1.0)
    _wait_for(tmp_path / "log", "other-in")
    m = _holder(tmp_path, "measure", 2, 0.5)
    subprocess.run(["sleep", "0.5"], check=True)  # the measurement now waits, holding the turnstile
    late = _holder(tmp_path, "other", 2, 0.0)
    assert all(p.wait(30) == 0 for p in (a, m, late))
    events = (tmp_path / "log").read_text().split()
    assert events.index("measure-out") < len(events) - 2, events  # the late stage came after it
    assert locks.plan.gated


# --- CPU counters -------------------------------------------------------------------------------------

def test_proc_stat_counts_busy_and_steal_of_the_watched_cores_only():
    # /proc/stat fields: user nice system idle iowait irq softirq steal; ticks of 1/TICKS_PER_S s
    text = ("cpu  300 0 100 1000 0 0 0 20 0 0\n"
            "cpu0 100 0 50 500 0 0 0 0 0 0\n"
            "cpu1 200 0 50 500 7 0 10 20 0 0\n"
            "intr 1 2 3\n")
    # busy = user + nice + system + steal (irq and softirq: the measured loopback traffic's own)
    assert read_proc_stat(text, (1,)) == pytest.approx(((200 + 50 + 20) / TICKS_PER_S, 20 / TICKS_PER_S))
    assert read_proc_stat(text, ()) == pytest.approx(((150 + 270) / TICKS_PER_S, 20 / TICKS_PER_S))


def test_others_cores_is_busy_minus_ours_over_the_samples_around_the_window():
    # hand computed: from t=1.0 to t=3.0 the cores were busy 3.0 s, ours 1.4 s: 1.6 s in 2 s = 0.8 cores
    samples = [CpuSample(0.0, 10.0, 0.0, 5.0, 0.0), CpuSample(1.0, 11.0, 0.1, 5.5, 0.0),
               CpuSample(2.0, 12.5, 0.2, 6.2, 0.0), CpuSample(3.0, 14.0, 0.5, 6.9, 0.0)]
    assert others_cores(samples, 1.2, 2.9) == pytest.approx((0.8, 0.2))
    assert others_cores(samples, 1.0, 2.0) == pytest.approx((0.8, 0.1))  # (1.5 - 0.7) / 1
    assert others_cores(samples, 2.5, 3.5) is None  # not covered: no verdict from it


# --- the check ------------------------------------------------------------------------------------------

def _measurement(tmp_path, *, reference_ms: float | None, others: float, window=(10.0, 12.0)) -> dict:
    """What a measured service leaves: the calibration file, probe.json, the outcome with samples."""
    calibration = tmp_path / "calibration"
    calibration.mkdir(exist_ok=True)
    if reference_ms is not None:
        (calibration / "calibration.json").write_text(json.dumps(
            {"healthy": True, "p99_ms": reference_ms, "error_rate": 0.0}))
    probe_file = tmp_path / "probe.json"
    probe_file.write_text(json.dumps({"latency": {"window": list(window) if window else None}}))
    # others cores over [9, 13]: busy grows 2 per second; ours 2 - others per second
    samples = tuple(CpuSample(t, 2.0 * t, 0.0, (2.0 - others) * t, 0.0) for t in (8.0, 9.0, 13.0, 14.0))
    machine = MachineRecord(server_cores=(1,), probe_cores=(0,), plan="2 cores: ...", waited_s=0.0,
                            samples=samples)
    calibration_result = RunResult(status=StageStatus.OK, exit_code=0, seconds=3.0, log="",
                                   probe=RunResult(status=StageStatus.OK, exit_code=0, seconds=2.5, log=""))
    outcome = RunResult(status=StageStatus.OK, exit_code=0, seconds=30.0, log="", machine=machine,
                        calibration=calibration_result)
    return {"outcome": outcome, "calibration_dir": calibration, "probe_file": probe_file}


def test_a_quiet_machine_passes_with_its_figures(tmp_path):
    check = check_machine(QUIET, **_measurement(tmp_path, reference_ms=1.1, others=0.05))
    assert check.busy == ""
    assert check.reference_p99_ms == 1.1 and check.other_cores == pytest.approx(0.05)
    assert check.windows == 1 and check.server_cores == [1] and check.probe_cores == [0]
    assert check.summary().startswith("machine quiet (reference p99 1.1 ms")


def test_a_slow_reference_says_the_machine_is_busy_with_both_figures(tmp_path):
    check = check_machine(QUIET, **_measurement(tmp_path, reference_ms=4.1, others=0.0))
    assert check.busy == "machine busy: reference p99 4.1 ms vs 0.9 ms expected (bound 3 ms)"


def test_other_processes_on_the_cores_say_the_machine_is_busy(tmp_path):
    check = check_machine(QUIET, **_measurement(tmp_path, reference_ms=1.0, others=0.9))
    assert check.busy.startswith("machine busy: other processes used 0.90 cores beside the measurement "
                                 "during its latency phase")


def test_without_a_timed_window_nothing_is_at_stake(tmp_path):
    # a server that never became healthy: its zero for latency is its own, busy or not
    check = check_machine(QUIET, **_measurement(tmp_path, reference_ms=9.0, others=1.5, window=None))
    assert check.busy == "" and check.windows == 0


def test_a_reference_that_could_not_be_measured_is_not_a_quiet_machine(tmp_path):
    check = check_machine(QUIET, **_measurement(tmp_path, reference_ms=None, others=0.0))
    assert check.busy.startswith("machine not checked: the reference server could not be measured (no "
                                 "calibration.json")


# --- the ungraded path, end to end on the fake backend ---------------------------------------------------

@pytest.fixture
def timed_toy(tmp_path):
    """The toy assignment with its answer stage a timed service (probe.quiet on criterion answer)."""
    assignment = tmp_path / "toy"
    shutil.copytree(FIXTURES / "assignments" / "toy", assignment)
    spec = assignment / "assignment.yaml"
    spec.write_text(spec.read_text().replace(
        "    outputs: {answer.txt: 1k}\n",
        "    outputs: {answer.txt: 1k}\n"
        "    probe:\n      command: [python, probe.py]\n      timeout: 2\n      outputs: {probe.json: 64k}\n"
        "      quiet: {criteria: [answer], phases: [latency], reference_p99_ms: 0.9,\n"
        "              max_reference_p99_ms: 3, retries: 2, backoff: 10}\n"))
    return assignment


def _service(references: list[float], answer: str = "41"):
    """A scripted service: each call measures the reference at the next of `references` (ms), and
    answers `answer` (41 scores 0 on the timed criterion, 42 full marks)."""
    calls = []

    def play(request, output):
        reference = references[min(len(calls), len(references) - 1)]
        calls.append(reference)
        mount = {m.target: m.source for m in request.calibration.probe.mounts}
        (mount["/output"] / "calibration.json").write_text(json.dumps(
            {"healthy": True, "p99_ms": reference, "error_rate": 0.0}))
        probe_out = {m.target: m.source for m in request.probe.mounts}["/output"]
        (probe_out / "probe.json").write_text(json.dumps({"latency": {"window": [1.0, 2.0]}}))
        calibration = RunResult(status=StageStatus.OK, exit_code=0, seconds=3.0, log="",
                                probe=RunResult(status=StageStatus.OK, exit_code=0, seconds=2.5, log=""))
        probe = RunResult(status=StageStatus.OK, exit_code=0, seconds=2.0, log="probe ran\n")
        machine = MachineRecord(server_cores=(1,), probe_cores=(0,), plan="2 cores", waited_s=0.0)
        return dataclasses.replace(ok(answer)(request, output), probe=probe, calibration=calibration,
                                   machine=machine)

    return play, calls


def _grade(tmp_path, assignment, backend, monkeypatch, **kwargs):
    pauses = []
    monkeypatch.setattr("harness._stages.pause", pauses.append)  # a fake clock: no real waiting
    install_fake_backend(backend)
    submission = tmp_path / "subs" / "alice"
    if not submission.exists():
        make_submission(tmp_path / "subs", "alice")
    report = api.grade(assignment, [str(submission)], backend="fake",
                       results_dir=tmp_path / "results", backoff_s=0.0, log_to_mlflow=False, **kwargs)
    return report, pauses


def test_a_machine_that_stays_busy_leaves_the_timing_criteria_ungraded_never_low(tmp_path, timed_toy,
                                                                                monkeypatch):
    play, calls = _service([4.1])
    report, pauses = _grade(tmp_path, timed_toy, FakeBackend({("alice", "answer"): play}), monkeypatch)
    result = report.items[0].result
    assert calls == [4.1, 4.1, 4.1] and pauses == [10, 20]  # measured 3 times, pausing 10 s then 20 s
    assert result.status is Status.MACHINE_BUSY and result.total_score is None
    reason = "machine busy: reference p99 4.1 ms vs 0.9 ms expected (bound 3 ms)"
    assert result.reason == reason and result.message == f"{reason}; re-measured on the next run"
    by_name = {c.name: c for c in result.criteria}
    assert by_name["answer"].ungraded == reason and by_name["completion"].ungraded == ""
    assert by_name["answer"].metrics["machine_reference_p99_ms"] == 4.1  # for MLflow, beside what it measured
    assert "machine_reference_p99_ms" not in by_name["completion"].metrics
    assert result.stages[[s.name for s in result.stages].index("answer")].machine.attempts == 3
    assert report.exit_code != 0  # the batch is not done
    folder = report.items[0].folder
    report_md = (folder / "report.md").read_text()
    assert "| ungraded |" in report_md and reason in report_md
    assert load_result(folder).status is Status.MACHINE_BUSY

    calls.clear()  # the next run measures it again (and the machine is now quiet)
    play2, calls2 = _service([1.0])
    again, _ = _grade(tmp_path, timed_toy, FakeBackend({("alice", "answer"): play2}), monkeypatch)
    assert calls2 == [1.0] and again.items[0].result.status is Status.OK
    assert again.items[0].result.total_score == 25.0  # completion (1) of 4, the answer wrong, quietly


def test_full_marks_measured_on_a_busy_machine_stand(tmp_path, timed_toy, monkeypatch):
    play, calls = _service([4.1], answer="42")
    report, _ = _grade(tmp_path, timed_toy, FakeBackend({("alice", "answer"): play}), monkeypatch)
    result = report.items[0].result
    assert len(calls) == 3  # re-measured all the same: the check runs before the grading
    assert result.status is Status.OK and result.total_score == 100.0
    answer = next(c for c in result.criteria if c.name == "answer")
    assert answer.ungraded == "" and "with full marks all the same" in answer.explanation


def test_a_busy_moment_is_measured_again_and_then_graded(tmp_path, timed_toy, monkeypatch):
    play, calls = _service([5.0, 1.2], answer="42")
    report, pauses = _grade(tmp_path, timed_toy, FakeBackend({("alice", "answer"): play}), monkeypatch)
    result = report.items[0].result
    assert calls == [5.0, 1.2] and pauses == [10]
    assert result.status is Status.OK and result.total_score == 100.0
    answer = [s for s in result.stages if s.name == "answer"]
    assert len(answer) == 1 and answer[0].machine.attempts == 2 and answer[0].machine.busy == ""
    assert "measured 2 times" in (report.items[0].folder / "report.md").read_text()


# --- the reference server and its calibration, as processes on loopback -------------------------------

def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_the_reference_server_answers_in_the_candidates_schema_and_calibrates(tmp_path):
    import urllib.request

    from sandbox import RUNNERS_DIR

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-I", "-S", str(RUNNERS_DIR / "reference_server.py"),
                               "--port", str(port)])
    try:
        out = tmp_path / "calibration.json"
        done = subprocess.run([sys.executable, str(RUNNERS_DIR / "calibrate.py"), "--out", str(out), "--port",
                               str(port), "--duration", "1", "--warmup", "0.2"], timeout=60)
        assert done.returncode == 0
        report = json.loads(out.read_text())
        assert report["healthy"] and report["error_rate"] == 0 and report["scheduled"] == 100
        assert 0 < report["p99_ms"] < 1000
        body = json.dumps({"instances": [[0.5] * 20, [-1.0] * 20]}).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/predict", data=body,
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=5).read())
        assert [len(p["probabilities"]) for p in answer["predictions"]] == [3, 3]
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-9 for p in answer["predictions"])
    finally:
        server.kill()
        server.wait()


def test_a_reference_server_that_never_answers_is_reported_not_crashed_on(tmp_path):
    from sandbox import RUNNERS_DIR

    out = tmp_path / "calibration.json"
    done = subprocess.run([sys.executable, str(RUNNERS_DIR / "calibrate.py"), "--out", str(out), "--port",
                           str(_free_port()), "--duration", "0.5", "--health-timeout", "1"], timeout=60)
    assert done.returncode == 0
    report = json.loads(out.read_text())
    assert report["healthy"] is False and report["problem"].startswith("the reference server did not start")


# --- the sampler, on fake counters ---------------------------------------------------------------------

def test_the_sampler_keeps_a_removed_containers_last_reading_and_refuses_an_unreadable_one(monkeypatch):
    from sandbox import _cpuwatch

    readings = {"server": [1.0, 2.0, None], "probe": [0.5, None, None]}  # cgroups gone after their end
    stat = iter(f"cpu0 {100 * k} 0 0 0 0 0 0 0\n" for k in range(1, 10))
    monkeypatch.setattr(_cpuwatch, "_cgroup_usage", lambda cid: readings[cid].pop(0))
    monkeypatch.setattr(_cpuwatch, "_cgroup_throttled", lambda cid: 0.0)
    monkeypatch.setattr(_cpuwatch, "_daemon_pids", list)
    monkeypatch.setattr(_cpuwatch.Path, "read_text", lambda self: next(stat))
    watch = _cpuwatch.CpuWatch((0,))
    watch.add("server")
    watch.add("probe")
    for _ in range(3):
        watch.sample()
    ours = [s.ours_s for s in watch.stop()]
    assert ours == [1.5, 2.5, 2.5]  # 1 + 0.5; 2 + 0.5 (probe's last); both last readings kept

    never = _cpuwatch.CpuWatch((0,))
    monkeypatch.setattr(_cpuwatch, "_cgroup_usage", lambda cid: None)  # a layout the module does not know
    monkeypatch.setattr(_cpuwatch.Path, "read_text", lambda self: "cpu0 1 0 0 0 0 0 0 0\n")
    never.add("server")
    never.sample()
    assert never.stop() == ()  # no samples: "not measured", never its own CPU taken for others'


def test_a_busy_machine_leaves_no_total_even_when_the_service_also_failed(tmp_path, timed_toy, monkeypatch):
    play, _ = _service([4.1])

    def failing(request, output):
        return dataclasses.replace(play(request, output), status=StageStatus.ERROR, exit_code=1,
                                   detail="exited with code 1")

    report, _ = _grade(tmp_path, timed_toy, FakeBackend({("alice", "answer"): failing}), monkeypatch)
    result = report.items[0].result
    assert result.status is Status.MACHINE_BUSY and result.total_score is None
    assert "(and error: stage answer" in result.message
