"""One contract for every sandbox backend: what a stage can see, and how each limit ends it.

Each case runs a small Python program in a real sandbox (Docker container or bubblewrap)
and checks what it observed from inside, or what it left on the host. Network isolation
is checked by what the stage can see (interfaces, routes), never by trying to connect out.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from sandbox import Limits, Mount, RunRequest, RunResult, SandboxBackend, StageStatus
from sandbox._fs import OutputRefused, make_writable_dir, read_bounded

REPO = Path(__file__).resolve().parents[1]
LIMITS = Limits(cpus=1.0, memory_bytes=128 << 20, pids=64, timeout_s=3.0, output_bytes=64 << 10,
                tmpfs_bytes=16 << 20, disk_bytes=8 << 20)


def _make_backend(name: str) -> SandboxBackend:
    if name == "docker":
        try:
            from sandbox.docker import DockerBackend
        except ImportError as exc:  # fail, never skip: the docker backend is required
            pytest.fail(f"sandbox.docker is not importable: {exc}")
        return DockerBackend()
    from sandbox.local import LocalBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the weaker-isolation warning, tested elsewhere
        return LocalBackend(acknowledge_weaker_isolation=True)


@pytest.fixture(scope="module", params=[pytest.param("docker", marks=pytest.mark.docker), "local"])
def backend(request):
    built = _make_backend(request.param)
    yield built
    built.close()


@dataclass
class Workspace:
    """A read-only /submission and a writable /output, both host dirs the test can inspect."""

    submission: Path
    output: Path
    hidden: Path  # a host dir that is never mounted
    image: str = ""  # the docker image (unused by the local backend)


@pytest.fixture
def ws(tmp_path: Path, backend: SandboxBackend, request) -> Workspace:
    submission, output, hidden = tmp_path / "submission", tmp_path / "output", tmp_path / "hidden"
    submission.mkdir()
    (submission / "train.py").write_text("print('candidate code')\n")
    submission.chmod(0o755)
    make_writable_dir(output, *backend.run_as)
    hidden.mkdir()
    (hidden / "labels").write_text("id,label\n1,cat\n")
    image = request.getfixturevalue("sandbox_image") if backend.name == "docker" else ""
    return Workspace(submission, output, hidden, image)


def run(backend: SandboxBackend, ws: Workspace, code: str, *, limits: Limits = LIMITS,
        env: tuple[tuple[str, str], ...] = ()) -> RunResult:
    request = RunRequest(
        name="contract", command=("python3", "-c", code), image=ws.image,
        mounts=(Mount(ws.submission, "/submission", read_only=True),
                Mount(ws.output, "/output", read_only=False)),
        limits=limits, env=env, workdir="/submission",
    )
    return backend.run(request)


def observed(result: RunResult) -> dict:
    """The JSON object a stage printed as its last line."""
    assert result.status is StageStatus.OK, (result.status, result.detail, result.log)
    return json.loads(result.log.strip().splitlines()[-1])


def test_exit_zero_is_ok_and_the_log_holds_stdout_and_stderr(backend, ws):
    result = run(backend, ws, "import sys; print('to stdout'); print('to stderr', file=sys.stderr)")
    assert result.status is StageStatus.OK
    assert result.exit_code == 0
    assert "to stdout" in result.log and "to stderr" in result.log
    assert not result.log_truncated


def test_nonzero_exit_is_an_error_with_its_code(backend, ws):
    result = run(backend, ws, "import sys; print('failing'); sys.exit(3)")
    assert result.status is StageStatus.ERROR
    assert result.exit_code == 3
    assert "failing" in result.log


def test_timeout_kills_the_stage(backend, ws):
    # The stage appends to a heartbeat forever; once run() returns it must have stopped.
    code = ("import time\nwhile True:\n"
            "    with open('/output/heartbeat', 'a') as f: f.write('.')\n"
            "    time.sleep(0.05)\n")
    result = run(backend, ws, code, limits=replace(LIMITS, timeout_s=2.0))
    assert result.status is StageStatus.TIMEOUT
    beats = (ws.output / "heartbeat").stat().st_size
    assert beats > 0  # it did run before the deadline
    time.sleep(0.5)
    assert (ws.output / "heartbeat").stat().st_size == beats


def test_a_stage_that_closes_its_output_is_still_timed_not_blamed_on_the_harness(backend, ws):
    # Closing stdout/stderr ends the log stream early; the stage must still be waited for
    # and killed at its deadline, and the verdict is the candidate's (timeout), not infra.
    code = "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(60)\n"
    result = run(backend, ws, code, limits=replace(LIMITS, timeout_s=2.0))
    assert result.status is StageStatus.TIMEOUT


def test_a_stage_that_closes_its_output_and_exits_is_ok(backend, ws):
    result = run(backend, ws, "import os, time\nos.close(1)\nos.close(2)\ntime.sleep(0.5)\n")
    assert result.status is StageStatus.OK


def test_memory_hog_is_oom(backend, ws):
    code = "chunks = []\nfor _ in range(64):\n    chunks.append(bytearray(16 << 20))\nprint('survived')\n"
    result = run(backend, ws, code)
    assert result.status is StageStatus.OOM, (result.status, result.detail, result.log)
    assert "survived" not in result.log


def test_process_count_is_capped_at_the_pids_limit(backend, ws):
    code = (
        "import os, time\nn = 0\n"
        "try:\n"
        "    while n < 1000:\n"
        "        if os.fork() == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        n += 1\n"
        "except OSError:\n"
        "    pass\n"
        "print(n)\n"
    )
    result = run(backend, ws, code, limits=replace(LIMITS, pids=32))
    assert result.status is StageStatus.OK, (result.status, result.detail, result.log)
    forked = int(result.log.split()[-1])
    assert 0 < forked < 32


def test_fork_bomb_ends_and_the_backend_still_works(backend, ws):
    result = run(backend, ws, "import os\nwhile True:\n    os.fork()\n", limits=replace(LIMITS, pids=32))
    assert result.status in {StageStatus.ERROR, StageStatus.OOM, StageStatus.TIMEOUT}
    assert run(backend, ws, "print('after the bomb')").status is StageStatus.OK


def test_output_flood_is_capped_and_keeps_the_first_bytes(backend, ws):
    code = "import sys\nsys.stdout.write('BEGIN\\n')\nwhile True:\n    sys.stdout.write('x' * 4096)\n"
    result = run(backend, ws, code)
    assert result.status is StageStatus.OUTPUT_LIMIT
    assert result.log_truncated
    assert result.log.startswith("BEGIN\n")
    assert len(result.log.encode()) <= LIMITS.output_bytes


def test_a_capped_log_keeps_the_start_the_end_and_how_much_was_left_out():
    # logic only (both backends keep output through CappedLog); hand-computed for a 400-byte cap:
    # head 400 - 100 - 64 = 236 bytes, tail 100 bytes
    from sandbox._base import CappedLog

    log = CappedLog(400)
    assert not log.add(b"a" * 200) and log.value() == b"a" * 200 and not log.truncated
    assert log.add(b"b" * 300)  # over the cap: said once
    assert not log.add(b"c" * 50)
    value = log.value()
    assert value.startswith(b"a" * 200 + b"b" * 36 + b"\n[... 214 bytes of output not kept ...]\n")
    assert value.endswith(b"b" * 50 + b"c" * 50) and len(value) <= 400 and log.truncated


@pytest.mark.parametrize("files", [1, 32], ids=["one-file", "many-files"])
def test_filling_the_writable_mount_is_disk_limit(backend, ws, files):
    # 32 MiB in total, four times the cap; then wait, so only a kill can end the stage.
    code = (
        f"import time\nfiles = {files}\n"
        "try:\n"
        "    for i in range(files):\n"
        "        with open(f'/output/fill{i}', 'wb') as f:\n"
        "            for _ in range(32 // files):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "except OSError as exc:\n"
        "    print('write failed:', exc, flush=True)\n"
        "time.sleep(30)\n"
    )
    result = run(backend, ws, code, limits=replace(LIMITS, timeout_s=10.0))
    assert result.status is StageStatus.DISK_LIMIT, (result.status, result.detail, result.log)


def test_only_tmp_and_writable_mounts_accept_writes(backend, ws):
    code = (
        "import json\nresult = {}\n"
        "for path in ['/submission/new.txt', '/new.txt', '/usr/new.txt', '/etc/new.txt', "
        "'/tmp/new.txt', '/output/new.txt']:\n"
        "    try:\n"
        "        with open(path, 'w') as f: f.write('x')\n"
        "        result[path] = True\n"
        "    except OSError:\n"
        "        result[path] = False\n"
        "print(json.dumps(result))\n"
    )
    writable = observed(run(backend, ws, code))
    assert writable == {"/submission/new.txt": False, "/new.txt": False, "/usr/new.txt": False,
                        "/etc/new.txt": False, "/tmp/new.txt": True, "/output/new.txt": True}
    assert not (ws.submission / "new.txt").exists()


def test_files_written_to_the_writable_mount_reach_the_host(backend, ws):
    result = run(backend, ws, "open('/output/result.txt', 'w').write('42\\n')")
    assert result.status is StageStatus.OK
    assert read_bounded(ws.output / "result.txt", 100) == b"42\n"


def test_the_submission_is_readable_at_its_target_and_is_the_workdir(backend, ws):
    code = "import json, os\nprint(json.dumps({'cwd': os.getcwd(), 'code': open('train.py').read()}))"
    seen = observed(run(backend, ws, code))
    assert seen == {"cwd": "/submission", "code": "print('candidate code')\n"}


def test_stage_runs_as_non_root(backend, ws):
    code = "import json, os\nprint(json.dumps([os.getuid(), os.geteuid(), os.getgid()]))"
    seen = observed(run(backend, ws, code))
    assert 0 not in seen


def test_no_network_but_loopback(backend, ws):
    code = (
        "import json\n"
        "lines = open('/proc/net/dev').read().splitlines()[2:]\n"
        "interfaces = sorted(line.split(':')[0].strip() for line in lines)\n"
        "routes = open('/proc/net/route').read().splitlines()[1:]\n"
        "print(json.dumps({'interfaces': interfaces, 'routes': routes}))\n"
    )
    seen = observed(run(backend, ws, code))
    assert seen == {"interfaces": ["lo"], "routes": []}


def test_tmp_is_a_size_capped_tmpfs(backend, ws):
    # 4 MiB files up to 32 MiB, twice the /tmp cap: the writes must stop short of it.
    code = (
        "written = 0\n"
        "try:\n"
        "    for i in range(8):\n"
        "        with open(f'/tmp/fill{i}', 'wb') as f:\n"
        "            for _ in range(4):\n"
        "                f.write(b'x' * (1 << 20))\n"
        "                f.flush()\n"
        "                written += 1 << 20\n"
        "except OSError:\n"
        "    pass\n"
        "print(written)\n"
    )
    result = run(backend, ws, code, limits=replace(LIMITS, tmpfs_bytes=16 << 20))
    assert result.status is StageStatus.OK, (result.status, result.detail, result.log)
    assert 0 < int(result.log.split()[-1]) <= 16 << 20


def test_host_processes_are_invisible(backend, ws):
    code = "import json, os\nprint(json.dumps(sorted(int(p) for p in os.listdir('/proc') if p.isdigit())))"
    visible = observed(run(backend, ws, code))
    assert os.getpid() not in visible
    assert len(visible) <= 2  # the stage, and an init if the backend has one


def test_only_the_requested_environment_is_visible(backend, ws, monkeypatch):
    monkeypatch.setenv("SECRET_TOKEN", "hunter2-host-secret")
    code = "import json, os\nprint(json.dumps(dict(os.environ)))"
    seen = observed(run(backend, ws, code, env=(("GREETING", "hello"), ("SEED", "7"))))
    assert seen["GREETING"] == "hello" and seen["SEED"] == "7"
    assert "SECRET_TOKEN" not in seen
    assert not any("hunter2" in value for value in seen.values())


def test_host_paths_outside_the_mounts_are_invisible(backend, ws):
    probes = [str(ws.hidden / "labels"), str(ws.hidden), str(REPO / "pyproject.toml"), str(REPO)]
    code = f"import json, os\nprint(json.dumps([os.path.exists(p) for p in {probes!r}]))"
    assert observed(run(backend, ws, code)) == [False, False, False, False]


def test_a_symlink_to_a_host_file_is_refused_when_read_back(backend, ws):
    target = ws.hidden / "labels"
    code = f"import os\nos.symlink({str(target)!r}, '/output/predictions.csv')\n"
    result = run(backend, ws, code)
    assert result.status is StageStatus.OK
    assert (ws.output / "predictions.csv").is_symlink()
    with pytest.raises(OutputRefused) as refused:
        read_bounded(ws.output / "predictions.csv", 1 << 20)
    assert refused.value.reason == "symlink"
