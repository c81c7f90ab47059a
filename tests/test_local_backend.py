"""What is particular to the local (bubblewrap) backend, and the host-side file helpers.

The behaviour shared with the Docker backend is in test_sandbox_contract.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest

from sandbox import Limits, Mount, RunRequest, StageStatus
from sandbox import local as local_module
from sandbox._fs import OutputRefused, make_writable_dir, read_bounded, tree_size
from sandbox.errors import BackendError, InvalidRequest
from sandbox.local import LocalBackend

REPO = Path(__file__).resolve().parents[1]
HEARTBEAT = ("import time\nwhile True:\n"
             "    with open('/output/heartbeat', 'a') as f: f.write('.')\n"
             "    time.sleep(0.05)\n")
SYSTEM_PYTHON = "/usr/bin/python3"


def _build(**kwargs) -> LocalBackend:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LocalBackend(acknowledge_weaker_isolation=True, **kwargs)


@pytest.fixture(scope="module")
def backend():
    built = _build()
    yield built
    built.close()


@pytest.fixture
def output(tmp_path: Path, backend: LocalBackend) -> Path:
    make_writable_dir(tmp_path / "output", *backend.run_as)
    return tmp_path / "output"


def _request(code: str, output: Path, **limits) -> RunRequest:
    return RunRequest(name="local-test", command=("python3", "-c", code), image="",
                      mounts=(Mount(output, "/output", read_only=False),),
                      limits=Limits(**{"timeout_s": 30.0, **limits}), workdir="/output")


def _wait_for(path: Path, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def _assert_stopped(heartbeat: Path, within: float = 10.0) -> None:
    # A kill takes a moment to reach every process (a last beat may land meanwhile): the stage
    # must stop within `within` seconds, i.e. two samples 0.5 s apart must agree. Liveness only.
    deadline = time.monotonic() + within
    beats = heartbeat.stat().st_size
    while True:
        time.sleep(0.5)
        now = heartbeat.stat().st_size
        if now == beats:
            return
        assert time.monotonic() < deadline, "the stage is still running"
        beats = now


# --- construction --------------------------------------------------------------------------


def test_refuses_without_acknowledgement():
    with pytest.raises(BackendError, match="weaker than Docker") as refused:
        LocalBackend()
    assert "--backend local" in str(refused.value)


def test_warns_that_isolation_is_weaker():
    with pytest.warns(UserWarning, match="weaker than Docker"):
        LocalBackend(acknowledge_weaker_isolation=True).close()


def fake_find_bwrap_missing() -> None:
    return None


def test_missing_bwrap_says_how_to_install_it(monkeypatch):
    monkeypatch.setattr(local_module, "_find_bwrap", fake_find_bwrap_missing)
    with pytest.raises(BackendError, match="apt-get install bubblewrap"):
        LocalBackend(acknowledge_weaker_isolation=True)


@pytest.mark.parametrize("target", ["relative/dir", "/usr/lib/data", "/proc/x", "/etc", "/"])
def test_a_mount_target_the_sandbox_owns_is_refused(backend, tmp_path, target):
    request = RunRequest(name="bad", command=("true",), image="", mounts=(Mount(tmp_path, target),))
    with pytest.raises(InvalidRequest, match="mount target"):
        backend.run(request)


def test_a_missing_mount_source_is_an_infra_error(backend, tmp_path):
    request = RunRequest(name="bad", command=("true",), image="", mounts=(Mount(tmp_path / "nope", "/data"),))
    with pytest.raises(BackendError, match="not a directory"):
        backend.run(request)


# --- running -------------------------------------------------------------------------------


def test_python_names_the_chosen_interpreter(tmp_path):
    if not os.path.exists(SYSTEM_PYTHON):
        pytest.skip(f"no {SYSTEM_PYTHON} on this machine")
    show = "import sys; print(sys.version, sys.prefix)"
    expected = subprocess.run([SYSTEM_PYTHON, "-I", "-c", show], capture_output=True, text=True,
                              check=True).stdout.strip()
    chosen = _build(python=SYSTEM_PYTHON)
    try:
        for name in ("python", "python3"):
            request = RunRequest(name="which", command=(name, "-I", "-c", show), image="", workdir="/tmp")
            result = chosen.run(request)
            assert result.status is StageStatus.OK, result.log
            assert result.log.strip() == expected
    finally:
        chosen.close()


def test_etc_hides_host_credentials_and_tool_configs(backend, output):
    code = "import json, os\nprint(json.dumps(sorted(os.listdir('/etc'))))"
    result = backend.run(_request(code, output))
    assert result.status is StageStatus.OK, result.log
    visible = set(result.log.split('"')[1::2])
    assert "passwd" in visible  # the synthetic one
    assert not visible & {"shadow", "gshadow", "sudoers", "pip.conf", "docker", "environment", "ssh"}


def test_peak_memory_is_reported(backend, output):
    code = "block = bytearray(64 << 20)\nblock[::4096] = b'x' * len(block[::4096])\n"
    result = backend.run(_request(code, output, memory_bytes=512 << 20))
    assert result.status is StageStatus.OK, result.log
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes >= 64 << 20


def test_cancel_all_kills_a_running_stage_and_its_run_raises(backend, output):
    raised: list[BaseException] = []

    def run_in_thread() -> None:
        try:
            backend.run(_request(HEARTBEAT, output))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            raised.append(exc)

    worker = threading.Thread(target=run_in_thread)
    worker.start()
    _wait_for(output / "heartbeat")
    backend.cancel_all()
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert len(raised) == 1 and isinstance(raised[0], BackendError) and "cancelled" in str(raised[0])
    _assert_stopped(output / "heartbeat")


def test_the_stage_dies_with_the_harness(tmp_path):
    output = tmp_path / "output"
    make_writable_dir(output, *_build().run_as)
    harness = textwrap.dedent("""
        import sys, warnings
        warnings.simplefilter("ignore")
        from pathlib import Path
        from sandbox import Limits, Mount, RunRequest
        from sandbox.local import LocalBackend
        backend = LocalBackend(acknowledge_weaker_isolation=True)
        backend.run(RunRequest(name="orphan", command=("python3", "-c", sys.argv[2]), image="",
                               mounts=(Mount(Path(sys.argv[1]), "/output", False),),
                               limits=Limits(timeout_s=60), workdir="/output"))
    """)
    proc = subprocess.Popen([sys.executable, "-c", harness, str(output), HEARTBEAT], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        _wait_for(output / "heartbeat")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    _assert_stopped(output / "heartbeat")


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv") or not os.path.exists(SYSTEM_PYTHON),
                    reason="needs root (to become nobody), setpriv and /usr/bin/python3")
def test_an_unprivileged_harness_runs_stages_in_a_user_namespace():
    nobody = 65534
    script = textwrap.dedent("""
        import json, os, tempfile, warnings
        warnings.simplefilter("ignore")
        from pathlib import Path
        from sandbox import Mount, RunRequest
        from sandbox.local import LocalBackend
        backend = LocalBackend(acknowledge_weaker_isolation=True)
        out = Path(tempfile.mkdtemp())
        code = "import os; print(os.getuid()); open('/output/f', 'w').close()"
        result = backend.run(RunRequest(name="userns", command=("python3", "-c", code), image="",
                                        mounts=(Mount(out, "/output", False),), workdir="/output"))
        print(json.dumps({"status": result.status, "log": result.log, "run_as": backend.run_as,
                          "owner": (out / "f").stat().st_uid}))
        (out / "f").unlink()
        out.rmdir()
    """)
    shown = subprocess.run(
        ["setpriv", f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups", SYSTEM_PYTHON, "-c", script],
        capture_output=True, text=True, timeout=120, cwd="/",
        env={"PYTHONPATH": str(REPO), "PATH": os.defpath},
    )
    assert shown.returncode == 0, shown.stderr
    seen = json.loads(shown.stdout.strip().splitlines()[-1])
    assert seen["status"] == "ok", seen
    assert seen["log"].split() == ["10001"]  # the uid inside the namespace
    assert seen["run_as"] == [nobody, nobody] and seen["owner"] == nobody  # the uid on the host


# --- read_bounded --------------------------------------------------------------------------


def test_read_bounded_reads_a_file_up_to_the_cap(tmp_path):
    (tmp_path / "f").write_bytes(b"12345")
    assert read_bounded(tmp_path / "f", 5) == b"12345"


def _reason(path: Path, max_bytes: int = 1 << 20) -> str:
    with pytest.raises(OutputRefused) as refused:
        read_bounded(path, max_bytes)
    return refused.value.reason


def test_read_bounded_refuses_a_file_over_the_cap(tmp_path):
    (tmp_path / "f").write_bytes(b"123456")
    assert _reason(tmp_path / "f", 5) == "larger than 5 bytes"


def test_read_bounded_refuses_symlinks_even_to_readable_files(tmp_path):
    (tmp_path / "real").write_text("secret labels")
    (tmp_path / "link").symlink_to(tmp_path / "real")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere")
    assert _reason(tmp_path / "link") == "symlink"
    assert _reason(tmp_path / "dangling") == "symlink"


def test_read_bounded_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "fifo")  # no writer: a blocking open would hang the test
    assert _reason(tmp_path / "fifo") == "not a regular file"


def test_read_bounded_refuses_directories_and_missing_files(tmp_path):
    assert _reason(tmp_path) == "not a regular file"
    assert _reason(tmp_path / "absent") == "missing"


# --- tree_size and make_writable_dir -------------------------------------------------------


def test_tree_size_adds_up_nested_files(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 1000)
    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    (tmp_path / "sub" / "deeper" / "b").write_bytes(b"y" * 234)
    assert tree_size([tmp_path]) == (1234, 4)  # a, sub, deeper, b


def test_tree_size_does_not_follow_symlinks(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "big").write_bytes(b"z" * (1 << 20))
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "to-file").symlink_to(outside / "big")
    (tree / "to-dir").symlink_to(outside)
    (tree / "loop").symlink_to(tree)
    size, entries = tree_size([tree])
    assert entries == 3
    assert size < 1000  # only the links themselves


def test_tree_size_stops_past_max_entries(tmp_path):
    for i in range(50):
        (tmp_path / f"f{i}").write_bytes(b"x")
    size, entries = tree_size([tmp_path], max_entries=10)
    assert entries == 11 and size == 10


def test_make_writable_dir_lets_the_sandbox_user_write(tmp_path):
    target = tmp_path / "a" / "b"
    make_writable_dir(target, 10001, 10001)
    info = target.stat()
    if os.geteuid() == 0:
        assert (info.st_uid, info.st_gid) == (10001, 10001) and info.st_mode & stat.S_IWUSR
    else:
        assert stat.S_IMODE(info.st_mode) == 0o777
