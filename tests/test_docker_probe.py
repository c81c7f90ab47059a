"""Service stages: a probe sandbox in the service's network namespace, on both backends.

A real server and a real client in two sandboxes (two hardened containers; or two bubblewrap
sandboxes, the probe's started with nsenter in the service's namespace): the probe reaches the
server on 127.0.0.1 and nothing else; the server is stopped when the probe ends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from sandbox import Limits, Mount, RunRequest, StageStatus
from sandbox._fs import make_writable_dir

pytestmark = [pytest.mark.docker]
LIMITS = Limits(cpus=1.0, memory_bytes=256 << 20, pids=64, timeout_s=30.0, output_bytes=64 << 10,
                tmpfs_bytes=16 << 20, disk_bytes=8 << 20)
SERVER = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = b'{"ok": true}'
        self.send_response(200); self.send_header("Content-Length", str(len(body))); self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", 8000), H).serve_forever()
"""
PROBE = """
import json, os, pathlib, socket, time, urllib.request
seen = {"interfaces": sorted(n for _, n in socket.if_nameindex()),
        "service_started": os.environ.get("MLGRADE_SERVICE_STARTED_AT")}
for _ in range(100):
    try:
        seen["body"] = urllib.request.urlopen("http://127.0.0.1:8000/", timeout=2).read().decode()
        break
    except OSError:
        time.sleep(0.1)
seen["outputs_of_server"] = sorted(p.name for p in pathlib.Path("/output").iterdir())
pathlib.Path("/output/seen.json").write_text(json.dumps(seen))
"""


@pytest.fixture(params=["docker", "local"])
def backend(request):
    if request.param == "local" and (os.geteuid() != 0 or shutil.which("nsenter") is None):
        pytest.skip("the local backend joins a service's network namespace with nsenter, as root only")
    if request.param == "docker":
        from sandbox.docker import DockerBackend

        backend = DockerBackend()
    else:
        backend = _local()
    yield backend
    backend.close()


def _local():
    import warnings

    from sandbox.local import LocalBackend

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return LocalBackend(acknowledge_weaker_isolation=True)


def _request(sandbox_image: str, tmp_path: Path, server: str, probe: str, *, probe_timeout: float = 20):
    folders = {}
    for name in ("code", "server-out", "probe-out"):
        folders[name] = tmp_path / name
        make_writable_dir(folders[name], 10001, 10001)
    (folders["code"] / "server.py").write_text(server)
    (folders["code"] / "probe.py").write_text(probe)
    (folders["server-out"] / "secret-of-server.txt").write_text("x")
    probe_request = RunRequest(
        name="probe", command=("python", "/code/probe.py"), image=sandbox_image,
        mounts=(Mount(folders["code"], "/code"), Mount(folders["probe-out"], "/output", read_only=False)),
        limits=Limits(**{**LIMITS.__dict__, "timeout_s": probe_timeout}))
    request = RunRequest(
        name="server", command=("python", "/code/server.py"), image=sandbox_image,
        mounts=(Mount(folders["code"], "/code"), Mount(folders["server-out"], "/output", read_only=False)),
        limits=LIMITS, probe=probe_request)
    return request, folders["probe-out"]


def test_the_probe_reaches_the_service_on_loopback_only_and_then_stops_it(backend, sandbox_image, tmp_path):
    request, probe_out = _request(sandbox_image, tmp_path, SERVER, PROBE)
    before = time.time()
    result = backend.run(request)
    assert result.status is StageStatus.OK, (result.detail, result.log)  # stopped by us after the probe
    assert result.seconds < LIMITS.timeout_s  # stopped when the probe ended, not at its deadline
    assert "serving" in result.log
    assert result.probe is not None and result.probe.status is StageStatus.OK, result.probe.log
    seen = json.loads((probe_out / "seen.json").read_text())
    assert seen["body"] == '{"ok": true}'
    assert seen["interfaces"] == ["lo"]  # the shared namespace has loopback and nothing else
    assert seen["outputs_of_server"] == []  # only the network is shared, not the file system
    # told when the service started (its cold start counts from there), on the shared wall clock
    assert before <= float(seen["service_started"]) <= before + result.seconds
    assert result.peak_memory_bytes is not None and result.peak_memory_bytes > 0


def test_a_service_over_its_output_limit_keeps_serving_and_its_log_keeps_both_ends(backend, sandbox_image,
                                                                                  tmp_path):
    # A server that logs every request (uvicorn's and werkzeug's default) passes the output cap
    # under load: that is no fault of a server, so it is not killed (a run stage is).
    flooding = SERVER.replace('print("serving", flush=True)',
                              'print("START"); print("x" * 200_000); print("serving", flush=True)')
    request, probe_out = _request(sandbox_image, tmp_path, flooding, PROBE)
    result = backend.run(request)
    assert result.status is StageStatus.OK, (result.detail, result.log[-300:])
    assert json.loads((probe_out / "seen.json").read_text())["body"] == '{"ok": true}'
    assert result.log_truncated and len(result.log.encode()) <= LIMITS.output_bytes
    assert result.log.startswith("START") and "bytes of output not kept ...]" in result.log
    assert result.log.rstrip().endswith("serving")  # the end of the log is kept, not only the start


TOLD_PROBE = """
import json, pathlib, signal, time
told = []
signal.signal(signal.SIGHUP, lambda signum, frame: told.append(signum))  # as the probe: note it, go on
for _ in range(250):  # a probe that is not told waits this out
    if told:
        break
    time.sleep(0.1)
pathlib.Path("/output/seen.json").write_text(json.dumps({"told": told[:1]}))
"""


def test_a_service_that_dies_keeps_its_failure(backend, sandbox_image, tmp_path):
    # dies at once: the probe may find no namespace to join (then there is no probe result)
    request, probe_out = _request(sandbox_image, tmp_path, "import sys; sys.exit(3)\n", PROBE)
    result = backend.run(request)
    assert result.status is StageStatus.ERROR and result.exit_code == 3
    assert result.detail == "exited by itself with code 3 before its probe was done; it printed nothing"
    assert result.probe is None or "body" not in json.loads((probe_out / "seen.json").read_text())
    # exit code 0 is no success for a service its probe has not finished with
    request, _ = _request(sandbox_image, tmp_path / "zero", "print('done')\n", PROBE)
    result = backend.run(request)
    assert result.status is StageStatus.ERROR and result.exit_code == 0
    assert result.detail.endswith("; its last output: done")


def test_a_probe_is_told_at_once_when_its_service_exits(backend, sandbox_image, tmp_path):
    # A server that fails at start after its imports (here 3 s, time for the probe to be up): the
    # probe is sent SIGHUP when the server exits, instead of polling it until its own timeout.
    from sandbox._service import SERVICE_EXITED_SIGNAL, TOLD_DETAIL

    server = ("import sys, time; time.sleep(3); print('loading', file=sys.stderr, flush=True); "
              "raise SystemExit('bad config')\n")
    request, probe_out = _request(sandbox_image, tmp_path, server, TOLD_PROBE, probe_timeout=28)
    result = backend.run(request)
    assert result.status is StageStatus.ERROR and result.exit_code == 1
    assert result.detail == ("exited by itself with code 1 before its probe was done; "
                             "its last output: bad config")
    assert result.probe is not None and result.probe.status is StageStatus.OK, result.probe
    assert result.probe.detail == TOLD_DETAIL  # what the probe's stage record shows
    assert json.loads((probe_out / "seen.json").read_text()) == {"told": [SERVICE_EXITED_SIGNAL]}


def test_a_probe_over_its_time_limit_is_reported_and_the_service_stops(backend, sandbox_image, tmp_path):
    request, _ = _request(sandbox_image, tmp_path, SERVER, "import time; time.sleep(60)\n", probe_timeout=2)
    result = backend.run(request)
    assert result.probe is not None and result.probe.status is StageStatus.TIMEOUT
    assert result.status is StageStatus.OK and result.seconds < LIMITS.timeout_s


def test_the_local_backend_without_nsenter_refuses_a_probe_clearly():
    # logic only: a non-root harness has no nsenter to join the service's namespace with
    from sandbox.errors import InvalidRequest

    local = _local()
    local._nsenter = None
    probe = RunRequest(name="p", command=("true",), image="")
    with pytest.raises(InvalidRequest, match="needs root"):
        local.run(RunRequest(name="s", command=("true",), image="", probe=probe))


def test_a_probe_never_joins_a_namespace_that_is_not_the_services():
    # logic of sandbox.local._network_of with real processes: a pid that is not the stage's
    # sandbox child, or a child in the harness's own network namespace, gives no namespace
    from sandbox.local import _network_of, _Stage

    shell = subprocess.Popen(["sh", "-c", "sleep 30 & wait"])
    try:
        child = None
        for _ in range(100):
            found = Path(f"/proc/{shell.pid}/task/{shell.pid}/children").read_text().split()
            if found:
                child = int(found[0])
                break
            time.sleep(0.05)
        assert child is not None
        request = RunRequest(name="s", command=("true",), image="")
        stage = _Stage(proc=shell, request=request, started=time.monotonic(), pid=child,
                       pidfd=os.pidfd_open(child))
        assert _network_of(stage) is None  # its child, alive, but in our own network namespace
        stage.pid = os.getpid()  # not a child of the stage's process at all
        assert _network_of(stage) is None
        os.close(stage.pidfd)
    finally:
        subprocess.run(["pkill", "-P", str(shell.pid)], check=False)  # the sleep, then its shell
        shell.kill()
        shell.wait()
