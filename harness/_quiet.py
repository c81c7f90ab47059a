"""Was the machine quiet enough while a service was timed? The check behind spec `probe.quiet`.

Two kinds of evidence, both independent of the candidate's server:
- the reference server (sandbox/runners/reference_server.py), measured just before it in the
  same image, under the same limits and on the same cores, against its idle-machine p99;
- the host's CPU counters (sandbox/_cpuwatch.py) over each timed window the probe reports
  (`window` of probe.json's latency section and of each capacity step): the cores other
  processes used beside the measurement, hypervisor steal included.
Either beyond its bound makes the measurement disturbed, with the reason a reviewer reads.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

from harness.results import MachineCheck
from harness.spec import QuietSpec
from sandbox import RUNNERS_MOUNT, Limits, Mount, OutputRefused, RunRequest, RunResult, read_bounded
from sandbox._cpuwatch import others_cores, throttled_share

CALIBRATION_FILE = "calibration.json"
_CALIBRATION_BYTES = 64 << 10
_PROBE_BYTES = 32 << 20
REFERENCE_PORT = 8000


def calibration_request(quiet: QuietSpec, *, image: str, limits: Limits, probe_limits: Limits,
                        runners: Path, output: Path) -> RunRequest:
    """The reference server (python -I -S: nothing installed in the image runs in it) with its
    probe, calibrate.py, writing CALIBRATION_FILE to `output`."""
    probe = RunRequest(
        name="calibrate-probe", image=image, workdir="/tmp",  # noqa: S108 - in the sandbox
        command=("python3", "-s", "-E", f"{RUNNERS_MOUNT}/calibrate.py", "--out",
                 f"/output/{CALIBRATION_FILE}", "--port", str(REFERENCE_PORT), "--rate", f"{quiet.rate:g}",
                 "--duration", f"{quiet.duration:g}", "--warmup", f"{quiet.warmup:g}"),
        mounts=(Mount(runners, RUNNERS_MOUNT), Mount(output, "/output", read_only=False)),
        limits=Limits(cpus=probe_limits.cpus, memory_bytes=probe_limits.memory_bytes, pids=64,
                      timeout_s=quiet.warmup + quiet.duration + 30, output_bytes=64 << 10))
    return RunRequest(
        name="calibrate", image=image, workdir="/tmp",  # noqa: S108
        command=("python3", "-I", "-S", f"{RUNNERS_MOUNT}/reference_server.py",
                 "--port", str(REFERENCE_PORT)),
        mounts=(Mount(runners, RUNNERS_MOUNT),),
        limits=Limits(cpus=limits.cpus, memory_bytes=limits.memory_bytes, pids=limits.pids,
                      timeout_s=quiet.warmup + quiet.duration + 60, output_bytes=64 << 10),
        env=(("HOME", "/tmp"),), probe=probe)  # noqa: S108


def warm_request(quiet: QuietSpec, *, image: str, limits: Limits) -> RunRequest | None:
    """Imports the spec's warm_imports in the assignment's image (not the candidate's, whose
    packages could run code at start), under the stage's limits; None when there are none."""
    if not quiet.warm_imports:
        return None
    return RunRequest(name="warm", image=image, workdir="/tmp",  # noqa: S108 - in the sandbox
                      command=("python3", "-c", f"import {', '.join(quiet.warm_imports)}"),
                      limits=Limits(cpus=limits.cpus, memory_bytes=limits.memory_bytes, pids=limits.pids,
                                    timeout_s=120, output_bytes=16 << 10), env=(("HOME", "/tmp"),))  # noqa: S108


def check_machine(quiet: QuietSpec, *, outcome: RunResult, calibration_dir: Path, probe_file: Path | None,
                  attempts: int = 1) -> MachineCheck:
    """The machine check of one measurement: figures, and `busy` (the reason) when disturbed."""
    machine = outcome.machine
    reference, problem = _reference_p99(outcome.calibration, calibration_dir / CALIBRATION_FILE)
    windows = list(_windows(quiet, probe_file))
    samples = machine.samples if machine else ()
    figures = [(phase, others_cores(samples, start, end)) for phase, start, end in windows]
    measured = [(phase, value) for phase, value in figures if value is not None]
    others = max(measured, key=lambda item: item[1][0], default=None)
    throttled = [t for _, s, e in windows if (t := throttled_share(samples, s, e)) is not None]
    busy = ""
    if not windows:
        pass  # nothing was timed (the server never got that far): nothing a busy machine could falsify
    elif reference is None:
        busy = f"machine not checked: the reference server could not be measured ({problem})"
    elif reference > quiet.max_reference_p99_ms:
        busy = (f"machine busy: reference p99 {reference:.1f} ms vs {quiet.reference_p99_ms:.1f} ms expected "
                f"(bound {quiet.max_reference_p99_ms:g} ms)")
    elif others is not None and others[1][0] > quiet.max_other_cores:
        busy = (f"machine busy: other processes used {others[1][0]:.2f} cores beside the measurement during "
                f"its {others[0]} phase (bound {quiet.max_other_cores:g})")
    placed: dict = {"plan": ""}
    if machine is not None:
        placed = {"plan": machine.plan, "server_cores": list(machine.server_cores),
                  "probe_cores": list(machine.probe_cores), "waited_s": machine.waited_s}
    return MachineCheck(
        **placed,
        reference_p99_ms=reference, expected_p99_ms=quiet.reference_p99_ms,
        max_reference_p99_ms=quiet.max_reference_p99_ms,
        other_cores=round(others[1][0], 3) if others else None,
        steal_cores=round(max(v[1] for _, v in measured), 3) if measured else None,
        max_other_cores=quiet.max_other_cores, windows=len(measured),
        throttled_share=round(max(throttled), 3) if throttled else None, busy=busy, attempts=attempts)


def _reference_p99(calibration: RunResult | None, path: Path) -> tuple[float | None, str]:
    if calibration is None:
        return None, "the backend did not run it"
    if calibration.probe is None:
        return None, f"its server ended before it was measured ({calibration.status.value}: " \
                     f"{calibration.detail})"
    try:
        report = json.loads(read_bounded(path, _CALIBRATION_BYTES))
    except OutputRefused as exc:
        return None, f"no {CALIBRATION_FILE}: {exc.reason}"
    except (OSError, ValueError) as exc:
        return None, f"{CALIBRATION_FILE} unreadable: {exc}"
    if not isinstance(report, dict):
        return None, f"{CALIBRATION_FILE} is not a JSON object"
    p99 = report.get("p99_ms")
    if not report.get("healthy") or not isinstance(p99, int | float) or not math.isfinite(p99):
        return None, str(report.get("problem") or "no p99 measured")[:200]
    if not isinstance(report.get("error_rate"), int | float) or report["error_rate"] > 0.01:
        return None, f"{report.get('error_rate')!r} of its requests failed"
    return float(p99), ""


def _windows(quiet: QuietSpec, probe_file: Path | None) -> Iterator[tuple[str, float, float]]:
    """(phase, start, end) of each timed window probe.json reports, for the spec's phases."""
    if probe_file is None:
        return
    try:
        report = json.loads(read_bounded(probe_file, _PROBE_BYTES))
    except (OutputRefused, OSError, ValueError):
        return
    if not isinstance(report, dict):
        return
    for phase in quiet.phases:
        section = report.get(phase)
        parts = section.get("steps") if isinstance(section, dict) and "steps" in section else [section]
        for part in parts if isinstance(parts, list) else []:
            window = part.get("window") if isinstance(part, dict) else None
            if (isinstance(window, list) and all(isinstance(v, int | float) for v in window)
                    and len(window) == 2 and window[0] < window[1]):
                yield phase, float(window[0]), float(window[1])
