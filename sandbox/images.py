"""Images for the docker sandbox, each built offline and cached by a hash of its inputs.

    ensure_base_image           python:3.11-slim when present locally, else a Debian base
      |                         made with debootstrap (sandbox/recipes/debian-base.json)
      +-- ensure_image          + /opt/venv with the assignment's packages, user 10001,
            |                     /workspace /output /data /submission (recipes/assignment.Dockerfile)
            +-- ensure_candidate_image
                                + the submission's pinned requirements (recipes/candidate.Dockerfile)

An image's tag carries a hash of what it is made from (parent image id, packages, recipe);
when that tag exists nothing is downloaded or built. Wheels are resolved and downloaded on
the host for the image's own interpreter and platform, and `docker build` runs with network
"none". Each build holds a file lock in `cache_dir`, so concurrent callers build once.
Images are never pulled from a registry.

Whose fault a failed candidate image is: requirements that have no wheel, need more than
the download limits, keep pip busy past its timeout, or fail to install in the image are
the candidate's (RequirementsError); an unreachable index, Docker, or the disk are ours
(ImageBuildError, retried).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import requests.exceptions

from sandbox import _debian, _syslibs, _wheels
from sandbox._base import LIBRARY_CHECK, WHEEL_SYSTEM_LIBRARIES
from sandbox._wheels import MAX_DOWNLOAD_BYTES, MAX_WHEEL_FILES, RequirementsError, parse_requirements
from sandbox.errors import ImageBuildError

__all__ = [
    "WHEEL_SYSTEM_LIBRARIES", "ImageRef", "RequirementsError", "ensure_base_image", "ensure_candidate_image",
    "ensure_image", "parse_requirements",
]


BASE_IMAGE_ENV = "HARNESS_BASE_IMAGE"
SLIM_IMAGE = "python:3.11-slim"
INPUTS_LABEL = "mlgrade.inputs-hash"
PACKAGES_LABEL = "mlgrade.packages"
CONSTRAINTS_LABEL = "mlgrade.constraints"
BUILD_TIMEOUT_S = 1800
PROBE_TIMEOUT_S = 120
RECIPES = Path(__file__).parent / "recipes"
TORCH_PIN = "torch==2.13.0"  # the CPU build on this platform; candidate requirements are held to it

_DOCKER_FAILURES = (docker.errors.DockerException, requests.exceptions.RequestException)
_REPOSITORY = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
_NON_ZERO = re.compile(r"returned a non-zero code: (\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")  # the daemon colours a step's stderr
# pip install's errors when the host, not the candidate's wheels, is at fault; each has a
# space or a bracket, so no package name or version in an error line can imitate it
_HOST_TROUBLE = ("due to an OSError", "[Errno", "No space left", "Read-only file system")
_MISSING_LIBRARIES: dict[str, tuple[str, ...]] = {}  # image id -> see _missing_libraries
_PROBE = ("import platform, sys; "
          "print(sys.implementation.name, *sys.version_info[:2], platform.machine(), *platform.libc_ver())")


@dataclass(frozen=True)
class ImageRef:
    tag: str  # e.g. "mlgrade/ranker:3f2a9c1b0d4e"
    id: str  # docker image id (sha256:...)
    built: bool  # False when it came from cache (or was already present)


@dataclass(frozen=True)
class _Plan:
    """Everything one build needs; `digest` hashes all of it that shapes the image."""

    tag: str
    digest: str
    recipe: str  # Dockerfile text
    parent: tuple[str, str]  # (build argument, parent image id)
    fetch: tuple[str, ...]  # what the host downloads: requirements or wheel paths
    install: tuple[str, ...]  # requirements.txt inside the build
    constraints: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    candidate: bool  # resolution and install failures are the candidate's (RequirementsError)
    limits: _wheels.DownloadLimits | None = None
    system_libraries: tuple[tuple[str, Path], ...] = ()  # host copies of what the base lacks


def ensure_base_image(client: docker.DockerClient, *, base: str = "auto", cache_dir: Path) -> ImageRef:
    """Return the base image, building the Debian one if needed.

    `base` is "auto" (python:3.11-slim when present locally, else the Debian base),
    "debian" (a Debian bookworm rootfs made with debootstrap, tagged
    mlgrade/base:bookworm-<recipe hash>), or the name of an image already present locally.
    The environment variable HARNESS_BASE_IMAGE, when set, is used instead of `base`.
    Nothing is ever pulled. Raises ImageBuildError when a named image is missing, or when
    the Debian base cannot be built (it needs root and the debootstrap binary).
    """
    chosen = os.environ.get(BASE_IMAGE_ENV) or base
    if chosen == "auto":
        chosen = "debian" if _local(client, SLIM_IMAGE) is None else SLIM_IMAGE
    if chosen != "debian":
        found = _local(client, chosen)
        if found is None:
            raise ImageBuildError(
                f"base image {chosen!r} is not present locally and images are never pulled; "
                f"load or build it first, or use base 'debian' (needs root and debootstrap)")
        return found
    return _ensure_debian(client, cache_dir)


def ensure_image(client: docker.DockerClient, *, name: str, base: ImageRef, packages: Sequence[str],
                 cache_dir: Path, extra_wheels: Sequence[str] = ()) -> ImageRef:
    """Return the assignment image `mlgrade/<name>:<hash12>`, building it if it does not exist.

    `packages` are pip requirements installed into /opt/venv; `extra_wheels` are paths of
    local wheel files installed alongside them. The hash covers the base image id, the
    sorted packages, the extra wheels' contents and the recipe. Raises ImageBuildError when
    an input is malformed, a wheel cannot be downloaded, or the build fails.
    """
    if not _REPOSITORY.fullmatch(name):
        raise ImageBuildError(f"image name {name!r} must be lowercase letters and digits joined by . _ -")
    requirements = sorted(_check_package(package) for package in packages)
    wheels = [_check_wheel(Path(path)) for path in extra_wheels]
    missing = _missing_libraries(client, base.id)
    copies = _syslibs.host_copies(missing, _probe(client, base.id).machine) if missing else {}
    recipe = _syslibs.recipe_with((RECIPES / "assignment.Dockerfile").read_text(), missing)
    wheel_hashes = sorted((w.name, hashlib.sha256(w.read_bytes()).hexdigest()) for w in wheels)
    # the Debian base lacks nothing, and its images keep the digest they had before libraries were checked
    extra = {"system_libraries": _syslibs.digest_of(copies)} if copies else {}
    digest = _digest(parent=base.id, packages=requirements, wheels=wheel_hashes, recipe=recipe, **extra)
    listed = requirements + [wheel.name for wheel in wheels]
    plan = _Plan(
        tag=f"mlgrade/{name}:{digest[:12]}", digest=digest, recipe=recipe, parent=("BASE", base.id),
        fetch=(*requirements, *(str(wheel) for wheel in wheels)),
        install=(*requirements, *(f"/tmp/wheels/{wheel.name}" for wheel in wheels)),  # noqa: S108
        constraints=(), labels=((INPUTS_LABEL, digest), (PACKAGES_LABEL, json.dumps(listed))),
        candidate=False, system_libraries=tuple(copies.items()))
    return _realise(client, plan, cache_dir)


def ensure_candidate_image(client: docker.DockerClient, *, parent: ImageRef, requirements: list[str],
                           cache_dir: Path, constraints: Sequence[str] = (TORCH_PIN,),
                           max_download_bytes: int = MAX_DOWNLOAD_BYTES,
                           max_wheel_files: int = MAX_WHEEL_FILES) -> ImageRef:
    """Return the image `mlgrade/<parent name>-req:<hash12>` with a candidate's requirements.

    `requirements` come from parse_requirements (they are checked again here); `constraints`
    are pip constraints applied to them (the default keeps torch on its CPU build). The
    wheels they need, dependencies included, may take at most `max_download_bytes` and
    `max_wheel_files` files; pip is stopped as soon as it goes over. They are downloaded
    into a scratch build context, never into the shared wheelhouse. With no requirements
    the parent itself is returned. Raises RequirementsError (the candidate's fault) when a
    requirement pins a constrained package to another version, pulls a CUDA-only wheel
    (sandbox/_cuda.py), no wheel satisfies the requirements, the limits or pip's timeout are
    exceeded, or pip fails to install the wheels in the image; ImageBuildError when the index,
    Docker or the disk fail; ValueError when a limit is not positive.
    """
    limits = _wheels.DownloadLimits(max_bytes=max_download_bytes, max_files=max_wheel_files)
    pinned = sorted({_wheels.check_requirement(r, where=f"requirement {r!r}") for r in requirements})
    if not pinned:
        return ImageRef(parent.tag, parent.id, built=False)
    _wheels.check_harness_pins(pinned, constraints)
    recipe = (RECIPES / "candidate.Dockerfile").read_text()
    digest = _digest(parent=parent.id, packages=pinned, constraints=sorted(constraints), recipe=recipe)
    plan = _Plan(
        tag=f"mlgrade/{_repository_name(parent.tag)}-req:{digest[:12]}", digest=digest, recipe=recipe,
        parent=("PARENT", parent.id), fetch=tuple(pinned), install=tuple(pinned),
        constraints=tuple(constraints), candidate=True, limits=limits,
        labels=((INPUTS_LABEL, digest), (PACKAGES_LABEL, json.dumps(pinned)),
                (CONSTRAINTS_LABEL, json.dumps(list(constraints)))))
    return _realise(client, plan, cache_dir)


def _ensure_debian(client: docker.DockerClient, cache_dir: Path) -> ImageRef:
    recipe = _debian.load_recipe()
    found = _local(client, recipe.tag)
    if found is not None:
        return found
    with _locked(cache_dir, recipe.tag):
        found = _local(client, recipe.tag)  # built by whoever held the lock before us
        if found is not None:
            return found
        with _workdir(cache_dir) as work:
            image_id = _debian.build_debian_base(client, recipe, work)
    return ImageRef(recipe.tag, image_id, built=True)


def _realise(client: docker.DockerClient, plan: _Plan, cache_dir: Path) -> ImageRef:
    """Return the planned image, building it under a lock unless it already exists."""
    found = _cached(client, plan)
    if found is not None:
        return found
    with _locked(cache_dir, plan.tag):
        found = _cached(client, plan)
        if found is not None:
            return found
        with _workdir(cache_dir) as context:
            _fill_context(client, plan, context, cache_dir / "wheelhouse")
            image_id = _docker_build(client, context, plan)
    return ImageRef(plan.tag, image_id, built=True)


def _fill_context(client: docker.DockerClient, plan: _Plan, context: Path, wheelhouse: Path) -> None:
    """Write the Dockerfile and exactly the wheels this image needs into `context`."""
    target = _probe(client, plan.parent[1])
    wheels = context / "wheels"
    _wheels.download(plan.fetch, dest=wheels, wheelhouse=wheelhouse, target=target,
                     constraints=plan.constraints, candidate=plan.candidate, limits=plan.limits)
    (wheels / "requirements.txt").write_text("".join(f"{line}\n" for line in plan.install))
    (wheels / "constraints.txt").write_text("".join(f"{line}\n" for line in plan.constraints))
    (context / "Dockerfile").write_text(plan.recipe)
    _syslibs.fill_context(context, dict(plan.system_libraries))


def _probe(client: docker.DockerClient, image_id: str) -> _wheels.Target:
    """Ask the parent image which interpreter and platform its wheels must fit."""
    status, output = _run_python(client, image_id, _PROBE)
    fields = output.split()
    if status != 0 or len(fields) != 6 or fields[0] != "cpython" or fields[4] != "glibc":
        raise ImageBuildError(f"image {image_id} needs a glibc CPython as python3; got {output[-500:]!r}")
    glibc = fields[5].split(".")
    return _wheels.Target(python=(int(fields[1]), int(fields[2])), machine=fields[3],
                          glibc=(int(glibc[0]), int(glibc[1])))


def _missing_libraries(client: docker.DockerClient, image_id: str) -> tuple[str, ...]:
    """Which of WHEEL_SYSTEM_LIBRARIES python3 in the image cannot load (an image id names
    immutable content, so the answer is kept for the process)."""
    if image_id not in _MISSING_LIBRARIES:
        status, output = _run_python(client, image_id, LIBRARY_CHECK, *WHEEL_SYSTEM_LIBRARIES)
        missing = tuple(output.split())
        if status != 0 or not set(missing) <= set(WHEEL_SYSTEM_LIBRARIES):
            raise ImageBuildError(f"cannot check the system libraries of image {image_id}: {output[-500:]!r}")
        _MISSING_LIBRARIES[image_id] = missing
    return _MISSING_LIBRARIES[image_id]


def _run_python(client: docker.DockerClient, image_id: str, code: str, *args: str) -> tuple[int | None, str]:
    """Run `python3 -c code args` in the image, offline; (exit status, output)."""
    container = None
    try:
        container = client.containers.create(image_id, entrypoint=["python3", "-c", code, *args],
                                             network_mode="none", labels={"mlgrade.role": "probe"})
        container.start()
        status = container.wait(timeout=PROBE_TIMEOUT_S).get("StatusCode")
        output = container.logs(stdout=True, stderr=True).decode("utf-8", "replace").strip()
    except _DOCKER_FAILURES as exc:
        raise ImageBuildError(f"cannot run python3 in image {image_id}: {exc}") from exc
    finally:
        if container is not None:
            try:
                container.remove(force=True)
            except _DOCKER_FAILURES:
                pass  # already gone; nothing to clean up
    return status, output


def _docker_build(client: docker.DockerClient, context: Path, plan: _Plan) -> str:
    """Build `context` offline as `plan.tag`; return the image id.

    Raises RequirementsError when a candidate image's pip install rejects the candidate's
    wheels (see _install_failure), ImageBuildError for any other failure.
    """
    try:
        image, _ = client.images.build(
            path=str(context), tag=plan.tag, buildargs=dict([plan.parent]), labels=dict(plan.labels),
            network_mode="none", rm=True, forcerm=True, pull=False, timeout=BUILD_TIMEOUT_S,
            use_config_proxy=False)
    except docker.errors.BuildError as exc:
        log = _log_lines(exc.build_log)  # an iterator: read it once
        reason = _install_failure(exc.msg, log) if plan.candidate else None
        if reason is not None:
            raise RequirementsError(f"installing requirements.txt in the image failed: {reason}") from None
        tail = "\n".join(log[-30:])
        raise ImageBuildError(f"building {plan.tag} failed: {exc.msg}\n{tail}") from exc
    except _DOCKER_FAILURES as exc:
        raise ImageBuildError(f"building {plan.tag} failed: {exc}") from exc
    return image.id  # type: ignore[return-value]  # stubs: optional id


def _log_lines(build_log: Iterable[object] | None) -> list[str]:
    chunks = [entry.get("stream") or entry.get("error") or "" for entry in build_log or ()
              if isinstance(entry, dict)]
    return _ANSI.sub("", "".join(chunks)).splitlines()


def _install_failure(message: str, log: Sequence[str]) -> str | None:
    """pip's last meaningful error when the install step failed on the wheels themselves.

    That is: the step exited 1 (pip's code for an error it reported, not a kill or a usage
    error), pip printed an ERROR line, and nothing points at the host (disk, memory).
    """
    code = _NON_ZERO.search(message or "")
    errors = [line.removeprefix("ERROR: ").strip() for line in log if line.startswith("ERROR:")]
    if code is None or code[1] != "1" or not errors or any(m in e for e in errors for m in _HOST_TROUBLE):
        return None
    meaningful = [e for e in errors if not e.startswith("ResolutionImpossible: for help")] or errors
    reason = meaningful[-1]
    return reason if len(reason) <= 300 else reason[:297] + "..."


def _local(client: docker.DockerClient, name: str) -> ImageRef | None:
    """The local image called `name`, or None; never pulls."""
    try:
        image = client.images.get(name)
        return ImageRef(name, image.id, built=False)  # type: ignore[arg-type]  # stubs: optional id
    except docker.errors.ImageNotFound:
        return None
    except _DOCKER_FAILURES as exc:
        raise ImageBuildError(f"cannot inspect image {name!r}: {exc}") from exc


def _cached(client: docker.DockerClient, plan: _Plan) -> ImageRef | None:
    """The image already built from exactly these inputs (its label holds the full hash)."""
    try:
        image = client.images.get(plan.tag)
    except docker.errors.ImageNotFound:
        return None
    except _DOCKER_FAILURES as exc:
        raise ImageBuildError(f"cannot inspect image {plan.tag!r}: {exc}") from exc
    if (image.labels or {}).get(INPUTS_LABEL) != plan.digest:
        return None  # a stray image under our tag: rebuild over it
    return ImageRef(plan.tag, image.id, built=False)  # type: ignore[arg-type]  # stubs: optional id


def _digest(**inputs: object) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def _check_package(package: str) -> str:
    text = package.strip()
    # each package becomes one line of a requirements file, where a leading "-" is a pip option
    if not text or text.startswith("-") or "\n" in text or "\r" in text:
        raise ImageBuildError(f"{package!r} is not a package requirement")
    return text


def _check_wheel(path: Path) -> Path:
    if path.suffix != ".whl" or not path.is_file():
        raise ImageBuildError(f"extra wheel {str(path)!r} is not a .whl file")
    return path.resolve()


def _repository_name(tag: str) -> str:
    """'mlgrade/ranker:3f2a' -> 'ranker'."""
    repository = tag.split("@", 1)[0]
    if ":" in repository.rsplit("/", 1)[-1]:
        repository = repository.rsplit(":", 1)[0]
    return repository.rsplit("/", 1)[-1]


@contextmanager
def _locked(cache_dir: Path, key: str) -> Iterator[None]:
    """Hold an exclusive lock named after `key` (across threads and processes)."""
    locks = cache_dir / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / (re.sub(r"[^A-Za-z0-9_.-]", "_", key) + ".lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _workdir(cache_dir: Path) -> Iterator[Path]:
    """A scratch folder in `cache_dir` (same disk as the wheelhouse), always removed."""
    scratch = cache_dir / "tmp"
    scratch.mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="build-", dir=scratch))
    try:
        yield path
    finally:
        _debian.remove_tree(path)
