"""serve.py, the service stage's entry point: validate serve.json, then exec the declared command.

Runs the real runner as a subprocess (as the sandbox does); the "server" here is a Python
one-liner that reports its environment, pid and argv, so the test sees what the exec produced.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.runner_stubs import RUNNERS_DIR

REPORT_ENV = "import json, os, sys; print(json.dumps({'pid': os.getpid(), 'argv': sys.argv[1:], " \
             "'model_dir': os.environ.get('MODEL_DIR'), 'marker': os.environ.get('MARKER')}))"


def _serve(tmp_path: Path, manifest: object | None, *, raw: str | bytes | None = None,
           env: dict | None = None) -> tuple[subprocess.Popen, str, str]:
    path = tmp_path / "serve.json"
    if raw is not None:
        path.write_bytes(raw.encode() if isinstance(raw, str) else raw)
    elif manifest is not None:
        path.write_text(json.dumps(manifest))
    full_env = {k: v for k, v in os.environ.items() if k != "MODEL_DIR"} | (env or {})
    proc = subprocess.Popen([sys.executable, str(RUNNERS_DIR / "serve.py"), "--manifest", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full_env,
                            cwd=tmp_path)
    out, err = proc.communicate(timeout=30)
    return proc, out, err


def test_a_valid_manifest_execs_the_command_with_model_dir(tmp_path):
    manifest = {"command": [sys.executable, "-c", REPORT_ENV, "a b", "--x"], "port": 8000}
    proc, out, err = _serve(tmp_path, manifest, env={"MARKER": "kept"})
    assert proc.returncode == 0, err
    seen = json.loads(out)
    assert seen["pid"] == proc.pid  # replaced the runner's process, no child and no shell
    assert seen["argv"] == ["a b", "--x"]  # arguments passed through unsplit
    assert seen["model_dir"] == "/data/model" and seen["marker"] == "kept"
    assert "serve.py: starting" in err


def test_a_model_dir_already_set_is_kept(tmp_path):
    proc, out, _ = _serve(tmp_path, {"command": [sys.executable, "-c", REPORT_ENV], "port": 1024},
                          env={"MODEL_DIR": "/elsewhere"})
    assert proc.returncode == 0 and json.loads(out)["model_dir"] == "/elsewhere"


def test_the_exit_code_is_the_commands(tmp_path):
    proc, _, _ = _serve(tmp_path, {"command": [sys.executable, "-c", "raise SystemExit(7)"], "port": 65535})
    assert proc.returncode == 7


GOOD = {"command": ["python", "server.py"], "port": 8000}


@pytest.mark.parametrize(("manifest", "raw", "message"), [
    (None, None, "serve.json not found"),
    (None, '{"command": ["python"], "port": 8000', "not valid JSON"),
    (None, '{"command": ["python"], "port": NaN}', "not valid JSON"),
    (None, b"\xff\xfe{}", "not valid JSON"),
    ([GOOD], None, "expected a JSON object"),
    ({"command": ["python"]}, None, "missing 'port'"),
    ({"port": 8000}, None, "missing 'command'"),
    ({**GOOD, "env": {}}, None, "unknown key(s) 'env'"),
    ({**GOOD, "port": 80}, None, '"port" must be an integer from 1024 to 65535, not 80'),
    ({**GOOD, "port": 70000}, None, "not 70000"),
    ({**GOOD, "port": "8000"}, None, 'not "8000"'),
    ({**GOOD, "port": True}, None, "not true"),
    ({**GOOD, "port": 8000.0}, None, "not 8000.0"),
    ({**GOOD, "command": "python server.py"}, None, '"command" must be a non-empty list of strings'),
    ({**GOOD, "command": []}, None, '"command" must be a non-empty list of strings'),
    ({**GOOD, "command": ["python"] * 33}, None, "has 33 items; at most 32"),
    ({**GOOD, "command": ["python", "x" * 257]}, None, '"command"[1] is 257 characters long'),
    ({**GOOD, "command": ["python", 3]}, None, '"command"[1] is int, not a string'),
    ({**GOOD, "command": ["", "server.py"]}, None, "the program, is empty"),
    ({**GOOD, "command": ["python", "a\u0000b"]}, None, "NUL character"),
])
def test_a_bad_manifest_exits_2_with_the_reason(tmp_path, manifest, raw, message):
    proc, out, err = _serve(tmp_path, manifest, raw=raw)
    assert proc.returncode == 2
    assert message in err, err
    assert out == ""


def test_a_manifest_over_the_size_bound_is_refused(tmp_path):
    proc, _, err = _serve(tmp_path, None, raw=json.dumps(GOOD) + " " * (20 << 10))
    assert proc.returncode == 2 and "larger than" in err


def test_a_missing_program_exits_127(tmp_path):
    proc, _, err = _serve(tmp_path, {"command": ["no-such-program-xyz", "server.py"], "port": 8000})
    assert proc.returncode == 127 and "'no-such-program-xyz' not found" in err


# --- what a server that ended early said (sandbox._service), from real interpreters' output --------

def _ended(tmp_path: Path, code: str) -> tuple[int, str]:
    """Run `code` as the server through serve.py; its exit code and output, merged as a sandbox keeps it."""
    (tmp_path / "server.py").write_text(code)
    manifest = {"command": [sys.executable, "server.py"], "port": 8000}
    (tmp_path / "serve.json").write_text(json.dumps(manifest))
    command = [sys.executable, str(RUNNERS_DIR / "serve.py"), "--manifest", str(tmp_path / "serve.json")]
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                          timeout=60)
    return done.returncode, done.stdout


@pytest.mark.parametrize(("code", "said"), [
    # a dependency left out of requirements.txt: the traceback's last line, after a line of its own
    ("import json\nprint('loading settings', flush=True)\nimport pydantic_settings_not_here\n",
     "ModuleNotFoundError: No module named 'pydantic_settings_not_here'"),
    ('raise SystemExit("bad config: PORT is not set")\n', "bad config: PORT is not set"),
    ("import sys\nsys.exit(0)\n", ""),  # exit 0 at start is still a failure of a service
    # the exception line is kept when the server prints more after it (gunicorn's master does)
    ("import traceback\ntry:\n    {}['x']\nexcept KeyError:\n    traceback.print_exc()\n"
     "print('\\x1b[31m[ERROR] Reason: Worker failed to boot.\\x1b[0m')\nraise SystemExit(3)\n",
     "KeyError: 'x' (last line: [ERROR] Reason: Worker failed to boot.)"),
])
def test_a_service_that_ended_by_itself_is_an_error_that_quotes_its_last_words(tmp_path, code, said):
    from sandbox import StageStatus
    from sandbox._service import service_verdict

    exit_code, log = _ended(tmp_path, code)
    status, detail = service_verdict(StageStatus.OK if exit_code == 0 else StageStatus.ERROR,
                                     f"exited with code {exit_code}", ended_by_itself=True,
                                     exit_code=exit_code, log=log)
    assert status is StageStatus.ERROR
    assert detail.startswith(f"exited by itself with code {exit_code} before its probe was done")
    assert detail.endswith(f"; its last output: {said}" if said else "; it printed nothing")
    assert "\x1b" not in detail and "\n" not in detail
    # a service its probe was done with (stopped by the harness), or one a limit ended, keeps its verdict
    assert service_verdict(StageStatus.OK, "", ended_by_itself=False, exit_code=137, log=log) == \
        (StageStatus.OK, "")
    assert service_verdict(StageStatus.TIMEOUT, "killed", ended_by_itself=True, exit_code=137, log=log) == \
        (StageStatus.TIMEOUT, "killed")
