"""The contract every sandbox backend keeps: what a stage can see, and how each limit ends it.

Each check runs a small Python program in a real sandbox of `backend` and checks what it observed
from inside, or what it left on the host. Network isolation is checked by what the stage can see
(interfaces, routes), never by trying to connect out. A backend written outside this project runs
the same checks:

    from sandbox.contract import self_check
    failures = self_check(MyBackend(), image="my-image")  # [(check, what was wrong), ...]; [] keeps it

tests/test_sandbox_contract.py runs every check on the docker and the local backend.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from sandbox._base import Limits, Mount, RunRequest, RunResult, SandboxBackend, StageStatus
from sandbox._fs import OutputRefused, make_writable_dir, read_bounded

LIMITS = Limits(cpus=1.0, memory_bytes=128 << 20, pids=64, timeout_s=3.0, output_bytes=64 << 10,
                tmpfs_bytes=16 << 20, disk_bytes=8 << 20)
_HOST_SECRET = ("SECRET_TOKEN", "hunter2-host-secret")  # set in the host's environment during a check


class ContractViolation(AssertionError):
    """What a backend did that the contract forbids (or failed to do), in one sentence."""


@dataclass(frozen=True)
class Workspace:
    """A read-only /submission and a writable /output, both host folders a check can inspect, and
    a host folder that is never mounted."""

    submission: Path
    output: Path
    hidden: Path
    image: str = ""  # the image for backends that use one (docker)

    @classmethod
    def make(cls, root: Path, backend: SandboxBackend, image: str = "") -> Workspace:
        submission, output, hidden = root / "submission", root / "output", root / "hidden"
        submission.mkdir(parents=True)
        (submission / "train.py").write_text("print('candidate code')\n")
        submission.chmod(0o755)
        make_writable_dir(output, *backend.run_as)
        hidden.mkdir()
        (hidden / "labels").write_text("id,label\n1,cat\n")
        return cls(submission, output, hidden, image)


Check = Callable[[SandboxBackend, Workspace], None]
CHECKS: dict[str, Check] = {}


def check(function: Check) -> Check:
    CHECKS[function.__name__] = function
    return function


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def run(backend: SandboxBackend, ws: Workspace, code: str, *, limits: Limits = LIMITS,
        env: tuple[tuple[str, str], ...] = ()) -> RunResult:
    request = RunRequest(
        name="contract", command=("python3", "-c", code), image=ws.image,
        mounts=(Mount(ws.submission, "/submission", read_only=True),
                Mount(ws.output, "/output", read_only=False)),
        limits=limits, env=env, workdir="/submission",
    )
    return backend.run(request)


def observed(result: RunResult) -> object:
    """The JSON value a stage printed as its last line."""
    expect(result.status is StageStatus.OK,
           f"the stage ended {result.status}: {result.detail} {result.log[-300:]}")
    try:
        return json.loads(result.log.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise ContractViolation(f"the stage's last line is not JSON: {result.log[-200:]!r}") from None


def last_number(result: RunResult) -> int:
    """The integer a stage printed last."""
    try:
        return int(result.log.split()[-1])
    except (ValueError, IndexError):
        raise ContractViolation(f"the stage's last word is not a number: {result.log[-200:]!r}") from None


def _status(result: RunResult, *wanted: StageStatus) -> None:
    expect(result.status in wanted, f"ended {result.status} ({result.detail}), expected "
                                    f"{' or '.join(str(w) for w in wanted)}; log: {result.log[-300:]!r}")


@check
def exit_zero_is_ok_and_the_log_holds_stdout_and_stderr(backend: SandboxBackend, ws: Workspace) -> None:
    result = run(backend, ws, "import sys; print('to stdout'); print('to stderr', file=sys.stderr)")
    _status(result, StageStatus.OK)
    expect(result.exit_code == 0, f"exit code {result.exit_code}")
    expect("to stdout" in result.log and "to stderr" in result.log, f"log {result.log!r}")
    expect(not result.log_truncated, "a short log marked truncated")


@check
def nonzero_exit_is_an_error_with_its_code(backend: SandboxBackend, ws: Workspace) -> None:
    result = run(backend, ws, "import sys; print('failing'); sys.exit(3)")
    _status(result, StageStatus.ERROR)
    expect(result.exit_code == 3 and "failing" in result.log,
           f"exit code {result.exit_code}, log {result.log!r}")


@check
def timeout_kills_the_stage(backend: SandboxBackend, ws: Workspace) -> None:
    # The stage appends to a heartbeat forever; once run() returns it must have stopped.
    code = ("import time\nwhile True:\n"
            "    with open('/output/heartbeat', 'a') as f: f.write('.')\n"
            "    time.sleep(0.05)\n")
    _status(run(backend, ws, code, limits=replace(LIMITS, timeout_s=2.0)), StageStatus.TIMEOUT)
    beats = (ws.output / "heartbeat").stat().st_size
    expect(beats > 0, "the stage never ran before its deadline")
    time.sleep(0.5)
    expect((ws.output / "heartbeat").stat().st_size == beats, "the stage still runs after its timeout")


@check
def a_stage_that_closes_its_output_is_still_timed(backend: SandboxBackend, ws: Workspace) -> None:
    # Closing stdout/stderr ends the log stream early; the stage must still be waited for and
    # killed at its deadline, and the verdict is the candidate's (timeout), not the backend's.
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    _status(run(backend, ws, code, limits=replace(LIMITS, timeout_s=2.0)), StageStatus.TIMEOUT)


@check
def a_stage_that_closes_its_output_and_exits_is_ok(backend: SandboxBackend, ws: Workspace) -> None:
    _status(run(backend, ws, "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(0.5)\n"), StageStatus.OK)


@check
def memory_hog_is_oom(backend: SandboxBackend, ws: Workspace) -> None:
    code = "chunks = []\nfor _ in range(64):\n    chunks.append(bytearray(16 << 20))\nprint('survived')\n"
    result = run(backend, ws, code)
    _status(result, StageStatus.OOM)
    expect("survived" not in result.log, "it allocated 1 GiB under a 128 MiB limit")


@check
def process_count_is_capped_at_the_pids_limit(backend: SandboxBackend, ws: Workspace) -> None:
    code = ("import os, time\nn = 0\ntry:\n    while n < 1000:\n        if os.fork() == 0:\n"
            "            time.sleep(30)\n            os._exit(0)\n        n += 1\nexcept OSError:\n"
            "    pass\nprint(n)\n")
    result = run(backend, ws, code, limits=replace(LIMITS, pids=32))
    _status(result, StageStatus.OK)
    forked = last_number(result)
    expect(0 < forked < 32, f"{forked} processes forked under a limit of 32")


@check
def fork_bomb_ends_and_the_backend_still_works(backend: SandboxBackend, ws: Workspace) -> None:
    result = run(backend, ws, "import os\nwhile True:\n    os.fork()\n", limits=replace(LIMITS, pids=32))
    _status(result, StageStatus.ERROR, StageStatus.OOM, StageStatus.TIMEOUT)
    _status(run(backend, ws, "print('after the bomb')"), StageStatus.OK)


@check
def output_flood_is_capped_and_keeps_the_first_bytes(backend: SandboxBackend, ws: Workspace) -> None:
    code = "import sys\nsys.stdout.write('BEGIN\\n')\nwhile True:\n    sys.stdout.write('x' * 4096)\n"
    result = run(backend, ws, code)
    _status(result, StageStatus.OUTPUT_LIMIT)
    expect(result.log_truncated and result.log.startswith("BEGIN\n"), "the log lost its start or its mark")
    expect(len(result.log.encode()) <= LIMITS.output_bytes, f"{len(result.log.encode())} bytes of log kept")


def _fill_output(files: int) -> Check:
    def filling_the_writable_mount_is_disk_limit(backend: SandboxBackend, ws: Workspace) -> None:
        # 32 MiB in total, four times the cap; then wait, so only a kill can end the stage.
        code = (f"import time\nfiles = {files}\ntry:\n    for i in range(files):\n"
                "        with open(f'/output/fill{i}', 'wb') as f:\n"
                "            for _ in range(32 // files):\n                f.write(b'x' * (1 << 20))\n"
                "except OSError as exc:\n    print('write failed:', exc, flush=True)\ntime.sleep(30)\n")
        _status(run(backend, ws, code, limits=replace(LIMITS, timeout_s=10.0)), StageStatus.DISK_LIMIT)
    return filling_the_writable_mount_is_disk_limit


CHECKS["filling_the_writable_mount_with_one_file_is_disk_limit"] = _fill_output(1)
CHECKS["filling_the_writable_mount_with_many_files_is_disk_limit"] = _fill_output(32)


@check
def only_tmp_and_writable_mounts_accept_writes(backend: SandboxBackend, ws: Workspace) -> None:
    # paths inside the sandbox, not the host's
    paths = ["/submission/new.txt", "/new.txt", "/usr/new.txt", "/etc/new.txt", "/tmp/new.txt",  # noqa: S108
             "/output/new.txt"]
    code = ("import json\nresult = {}\n"
            f"for path in {paths!r}:\n"
            "    try:\n        with open(path, 'w') as f: f.write('x')\n        result[path] = True\n"
            "    except OSError:\n        result[path] = False\nprint(json.dumps(result))\n")
    writable = observed(run(backend, ws, code))
    expected = {path: path.startswith(("/tmp/", "/output/")) for path in paths}  # noqa: S108
    expect(writable == expected, f"writable: {writable}")
    expect(not (ws.submission / "new.txt").exists(), "a write reached the read-only submission")


@check
def files_written_to_the_writable_mount_reach_the_host(backend: SandboxBackend, ws: Workspace) -> None:
    _status(run(backend, ws, "open('/output/result.txt', 'w').write('42\\n')"), StageStatus.OK)
    expect(read_bounded(ws.output / "result.txt", 100) == b"42\n", "the host did not get what was written")


@check
def the_submission_is_readable_at_its_target_and_is_the_workdir(backend: SandboxBackend,
                                                                 ws: Workspace) -> None:
    code = "import json, os\nprint(json.dumps({'cwd': os.getcwd(), 'code': open('train.py').read()}))"
    seen = observed(run(backend, ws, code))
    expect(seen == {"cwd": "/submission", "code": "print('candidate code')\n"}, f"saw {seen}")


@check
def stage_runs_as_non_root(backend: SandboxBackend, ws: Workspace) -> None:
    code = "import json, os\nprint(json.dumps([os.getuid(), os.geteuid(), os.getgid()]))"
    seen = observed(run(backend, ws, code))
    expect(isinstance(seen, list) and 0 not in seen, f"uid, euid, gid: {seen}")


@check
def no_network_but_loopback(backend: SandboxBackend, ws: Workspace) -> None:
    code = ("import json\nlines = open('/proc/net/dev').read().splitlines()[2:]\n"
            "interfaces = sorted(line.split(':')[0].strip() for line in lines)\n"
            "routes = open('/proc/net/route').read().splitlines()[1:]\n"
            "print(json.dumps({'interfaces': interfaces, 'routes': routes}))\n")
    seen = observed(run(backend, ws, code))
    expect(seen == {"interfaces": ["lo"], "routes": []}, f"network: {seen}")


@check
def tmp_is_a_size_capped_tmpfs(backend: SandboxBackend, ws: Workspace) -> None:
    # 4 MiB files up to 32 MiB, twice the /tmp cap: the writes must stop short of it.
    code = ("written = 0\ntry:\n    for i in range(8):\n        with open(f'/tmp/fill{i}', 'wb') as f:\n"
            "            for _ in range(4):\n                f.write(b'x' * (1 << 20))\n"
            "                f.flush()\n                written += 1 << 20\nexcept OSError:\n    pass\n"
            "print(written)\n")
    result = run(backend, ws, code, limits=replace(LIMITS, tmpfs_bytes=16 << 20))
    _status(result, StageStatus.OK)
    written = last_number(result)
    expect(0 < written <= 16 << 20, f"{written} bytes written to a 16 MiB /tmp")


@check
def host_processes_are_invisible(backend: SandboxBackend, ws: Workspace) -> None:
    code = "import json, os\nprint(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))"
    visible = observed(run(backend, ws, code))
    expect(isinstance(visible, list) and os.getpid() not in visible and len(visible) <= 2,
           f"processes visible: {visible}")  # the stage, and an init if the backend has one


@contextmanager
def _host_secret() -> Iterator[None]:
    name, value = _HOST_SECRET
    before = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


@check
def only_the_requested_environment_is_visible(backend: SandboxBackend, ws: Workspace) -> None:
    with _host_secret():
        seen = observed(run(backend, ws, "import json, os\nprint(json.dumps(dict(os.environ)))",
                            env=(("GREETING", "hello"), ("SEED", "7"))))
    if not (isinstance(seen, dict) and seen.get("GREETING") == "hello" and seen.get("SEED") == "7"):
        raise ContractViolation(f"the requested variables are missing: {seen}")
    leaked = [k for k, v in seen.items() if k == _HOST_SECRET[0] or _HOST_SECRET[1] in v]
    expect(not leaked, f"the host's environment leaked in: {leaked}")


@check
def host_paths_outside_the_mounts_are_invisible(backend: SandboxBackend, ws: Workspace) -> None:
    here = Path(__file__).resolve()  # this package's own files are on the host, never mounted
    probes = [str(ws.hidden / "labels"), str(ws.hidden), str(here), str(here.parent)]
    code = f"import json, os\nprint(json.dumps([os.path.exists(p) for p in {probes!r}]))"
    seen = observed(run(backend, ws, code))
    expect(seen == [False] * len(probes), f"host paths {probes} visible: {seen}")


@check
def a_symlink_to_a_host_file_is_refused_when_read_back(backend: SandboxBackend, ws: Workspace) -> None:
    code = f"import os\nos.symlink({str(ws.hidden / 'labels')!r}, '/output/predictions.csv')\n"
    _status(run(backend, ws, code), StageStatus.OK)
    expect((ws.output / "predictions.csv").is_symlink(), "the stage could not make a symlink")
    try:
        read_bounded(ws.output / "predictions.csv", 1 << 20)
    except OutputRefused as refused:
        expect(refused.reason == "symlink", f"refused as {refused.reason}")
    else:
        raise ContractViolation("a symlink to a host file was read back")


def self_check(backend: SandboxBackend, *, image: str = "", only: list[str] | None = None,
               root: Path | None = None) -> list[tuple[str, str]]:
    """Run the checks (all, or `only` these names) on `backend`, each in a fresh workspace under
    `root` (a temporary folder if None); the checks that failed, with what was wrong."""
    failures = []
    with tempfile.TemporaryDirectory(prefix="sandbox-contract-", dir=root) as tmp:
        for name in only or list(CHECKS):
            ws = Workspace.make(Path(tmp) / name, backend, image)
            try:
                CHECKS[name](backend, ws)
            except ContractViolation as exc:
                failures.append((name, str(exc)))
    return failures
