"""One contract for every sandbox backend (sandbox/contract.py), run on the docker and the local
backend: each check runs a small Python program in a real sandbox (a Docker container, or
bubblewrap) and checks what it observed from inside, or what it left on the host. The same
checks are what `sandbox.contract.self_check` runs on a backend written elsewhere.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import pytest

from sandbox import RunRequest, RunResult, SandboxBackend
from sandbox.contract import CHECKS, Workspace, self_check


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


@pytest.fixture
def ws(tmp_path, backend: SandboxBackend, request) -> Workspace:
    image = request.getfixturevalue("sandbox_image") if backend.name == "docker" else ""
    return Workspace.make(tmp_path, backend, image)


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_backend_keeps_the_contract(backend, ws, name):
    CHECKS[name](backend, ws)  # raises ContractViolation with what was wrong


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


class LeakyBackend(SandboxBackend):
    """A fake: the local backend, but it passes a host variable in and lifts the pids limit, as a
    careless backend might. The self-check must name both breaches."""

    def __init__(self, inner: SandboxBackend) -> None:
        self.inner, self.name, self.run_as = inner, "leaky", inner.run_as

    def run(self, request: RunRequest) -> RunResult:
        leaked = replace(request, env=(*request.env, ("SECRET_TOKEN", "hunter2-host-secret")),
                         limits=replace(request.limits, pids=4096))
        return self.inner.run(leaked)

    def cancel_all(self) -> None:
        self.inner.cancel_all()

    def close(self) -> None:
        self.inner.close()


def test_the_self_check_names_what_a_backend_breaks():
    leaky = LeakyBackend(_make_backend("local"))
    try:
        checks = ["only_the_requested_environment_is_visible", "process_count_is_capped_at_the_pids_limit",
                  "exit_zero_is_ok_and_the_log_holds_stdout_and_stderr"]
        failures = dict(self_check(leaky, only=checks))
    finally:
        leaky.close()
    assert set(failures) == set(checks[:2]), failures
    assert "SECRET_TOKEN" in failures["only_the_requested_environment_is_visible"]
    assert "processes forked under a limit of 32" in failures["process_count_is_capped_at_the_pids_limit"]
