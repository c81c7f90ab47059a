"""Turn a backend name into a ready Runtime: the sandbox, the images, the data, the graders."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.core.registry import Registry
from harness.data import DataSets, materialize
from harness.errors import InfraError, sandbox_errors
from harness.runtime import InvalidSubmission, Runtime, build_graders
from harness.spec import TEST_PACKAGES, Assignment
from sandbox import RunRequest, RunResult, SandboxBackend

T = TypeVar("T")
#: backends by name, from the `harness.backends` entry points (pyproject.toml: docker, local, and
#: any plugin's); loaded when a batch names one
BACKENDS: Registry[Callable[..., Runtime]] = Registry("sandbox backend", entry_point_group="harness.backends")


class ErrorMappingBackend(SandboxBackend):
    """A backend whose own errors reach the harness as its errors (harness.errors.from_sandbox)."""

    def __init__(self, inner: SandboxBackend) -> None:
        self.inner = inner
        self.name = inner.name
        self.run_as = inner.run_as

    def run(self, request: RunRequest) -> RunResult:
        with sandbox_errors():
            return self.inner.run(request)

    def cancel_all(self) -> None:
        with sandbox_errors():
            self.inner.cancel_all()

    def close(self) -> None:
        with sandbox_errors():
            self.inner.close()


def with_retries(fn: Callable[[], T], *, retries: int, backoff_s: float) -> T:
    """Call `fn`, retrying a transient InfraError (the sandbox's errors mapped) with exponential
    backoff; re-raise the last one."""
    for attempt in range(retries + 1):
        try:
            with sandbox_errors():
                return fn()
        except InfraError as exc:
            if attempt == retries or not exc.transient:
                raise
            time.sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")


def _run_as() -> tuple[int, int]:
    # As root, stages run as the image's unprivileged user; otherwise as the caller, so the
    # caller can clean up what the stage wrote.
    return (10001, 10001) if os.getuid() == 0 else (os.getuid(), os.getgid())


def docker_runtime(assignment: Assignment, *, cache: Path, retries: int, backoff_s: float,
                   data: DataSets | None = None, **_: object) -> Runtime:
    """The Docker sandbox. With `data`, a cluster worker's runtime (harness.worker): those data
    sets, handed to it, and no graders (they run on the coordinator)."""
    from sandbox.docker import DockerBackend, connect
    from sandbox.images import (
        TORCH_PIN,
        RequirementsError,
        ensure_base_image,
        ensure_candidate_image,
        ensure_image,
    )

    client = with_retries(connect, retries=retries, backoff_s=backoff_s)
    spec = assignment.spec

    def build():
        base = ensure_base_image(client, base=spec.image.base, cache_dir=cache / "images")
        return ensure_image(client, name=spec.id, base=base, packages=spec.image_packages(),
                            cache_dir=cache / "images")

    image = with_retries(build, retries=retries, backoff_s=backoff_s)

    # a submission cannot swap out the pytest or coverage its test stages run with
    tests = TEST_PACKAGES if any(stage.pytest for stage in spec.stages) else ()

    def requirements_image(text: str) -> tuple[str, str]:
        from sandbox.images import parse_requirements

        try:
            lines = parse_requirements(text)
            if not lines:
                return image.tag, image.id
            with sandbox_errors():  # every caller (a grade, `harness check --run`) gets the harness's
                built = ensure_candidate_image(client, parent=image, requirements=lines,
                                               cache_dir=cache / "images", constraints=(TORCH_PIN, *tests))
            return built.tag, built.id
        except RequirementsError as exc:
            raise InvalidSubmission(str(exc)) from None

    return Runtime(backend=ErrorMappingBackend(DockerBackend(client, run_as=_run_as())),
                   data=data or materialize(assignment, cache_root=cache), image=image.tag, image_id=image.id,
                   requirements_image=requirements_image, graders=[] if data else build_graders(assignment))


def local_runtime(assignment: Assignment, *, cache: Path, acknowledge_weaker_isolation: bool = False,
                  data: DataSets | None = None, **_: object) -> Runtime:
    """The local (bubblewrap) sandbox; `data` as for docker_runtime."""
    from sandbox.local import LocalBackend

    with sandbox_errors():
        backend = ErrorMappingBackend(LocalBackend(acknowledge_weaker_isolation=acknowledge_weaker_isolation))
    return Runtime(backend=backend, data=data or materialize(assignment, cache_root=cache),
                   graders=[] if data else build_graders(assignment))


def docker_available() -> bool:
    """Whether a Docker daemon answers (the default backend then is docker)."""
    try:
        from sandbox.docker import connect

        with sandbox_errors():
            connect(timeout=5).close()
        return True
    except InfraError:
        return False
