"""Candidate requirements and the host-side wheelhouse that feeds offline image builds.

Containers cannot reach a package index, so the host resolves and downloads binary
wheels for the *image's* interpreter and platform (not the host's), and the build
installs them with `pip install --no-index`. The assignment's wheels are kept in a
shared wheelhouse so that later builds copy rather than fetch them. A candidate's
wheels are downloaded under a size and file-count budget, watched while pip runs, into
a scratch folder that is deleted after the build: they never enter the wheelhouse, so
candidates cannot make it grow.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.version import InvalidVersion, Version

from sandbox import _cuda
from sandbox.errors import ImageBuildError

MAX_REQUIREMENT_LINES = 200
MAX_REQUIREMENT_BYTES = 64 << 10
PIP_TIMEOUT_S = 900.0
MAX_DOWNLOAD_BYTES = 2 << 30  # what one candidate's requirements may download
MAX_WHEEL_FILES = 200
WATCH_INTERVAL_S = 0.2

_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_EXTRAS = rf"\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\]"
# PEP 440 public version with an optional local part (e.g. 2.13.0+cpu); no wildcards.
_PEP440 = (
    r"(?:\d+!)?\d+(?:\.\d+)*(?:[-_.]?(?:a|b|c|rc|alpha|beta|pre|preview)[-_.]?\d*)?"
    r"(?:-\d+|[-_.]?(?:post|rev|r)[-_.]?\d*)?(?:[-_.]?dev[-_.]?\d*)?(?:\+[a-z0-9]+(?:[-_.][a-z0-9]+)*)?"
)
_PINNED = re.compile(
    rf"(?P<name>{_NAME})\s*(?P<extras>{_EXTRAS})?\s*"
    rf"(?:(?P<eq>==)\s*(?P<version>{_PEP440})|(?P<arb>===)\s*(?P<arbitrary>[A-Za-z0-9._+!-]+))",
    re.IGNORECASE,
)
_INLINE_COMMENT = re.compile(r"\s+#.*$")
# pip's messages for "no distribution satisfies what was asked": the candidate's fault ...
_UNSATISFIABLE = ("No matching distribution found", "Could not find a version", "ResolutionImpossible",
                  "conflicting dependencies")
# ... unless the index itself was unreachable, which produces the same messages. Each marker
# has a space or a bracket, so a requested package name (echoed by pip) cannot imitate it.
_UNREACHABLE = ("Retrying (", "NewConnectionError(", "ConnectTimeoutError(", "ProxyError(", "SSLError(",
                "Max retries exceeded", "Could not fetch URL", "Temporary failure in name resolution")
# The host's PIP_* settings that say where and how to fetch; all others (--target, --user,
# --no-deps, --pre, platform overrides ...) would change what is resolved, so they are dropped.
_PIP_ENV_KEPT = frozenset({
    "PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX", "PIP_FIND_LINKS", "PIP_TRUSTED_HOST",
    "PIP_CERT", "PIP_CLIENT_CERT", "PIP_PROXY", "PIP_DEFAULT_TIMEOUT", "PIP_TIMEOUT", "PIP_RETRIES",
    "PIP_CONFIG_FILE", "PIP_CACHE_DIR", "PIP_NO_CACHE_DIR", "PIP_CONSTRAINT",
})


class RequirementsError(ValueError):
    """A candidate's requirements are not acceptable (a result, not a harness failure)."""


@dataclass(frozen=True)
class DownloadLimits:
    """How much one download may put on disk: bytes of files and distinct wheel files."""

    max_bytes: int = MAX_DOWNLOAD_BYTES
    max_files: int = MAX_WHEEL_FILES

    def __post_init__(self) -> None:
        if self.max_bytes <= 0 or self.max_files <= 0:
            raise ValueError(f"download limits must be positive: {self}")

    def check(self, root: Path) -> None:
        """Raise RequirementsError if the files under `root` exceed the limits."""
        size, wheels = disk_usage(root)
        if size > self.max_bytes:
            raise RequirementsError(
                f"requirements.txt needs more than {self.max_bytes} bytes of wheels "
                f"({_human(self.max_bytes)} allowed, dependencies included); drop its largest packages")
        if wheels > self.max_files:
            raise RequirementsError(
                f"requirements.txt needs more than {self.max_files} wheel files (dependencies included)")


def disk_usage(root: Path) -> tuple[int, int]:
    """(bytes, distinct wheel files) under `root`, tolerating files that vanish meanwhile.

    pip downloads a wheel into its temporary folder and copies it to --dest at the end;
    a wheel file name seen in both places counts once.
    """
    wheels: dict[str, int] = {}
    other = 0
    for folder, _, names in os.walk(root):
        for name in names:
            try:
                size = os.lstat(os.path.join(folder, name)).st_size
            except OSError:  # pip removed it between the listing and the stat
                continue
            if name.endswith(".whl"):
                wheels[name] = max(size, wheels.get(name, 0))
            else:
                other += size
    return sum(wheels.values()) + other, len(wheels)


def _human(size: int) -> str:
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if size >= 1 << shift:
            return f"{size / (1 << shift):.1f} {unit}"
    return f"{size} bytes"


@dataclass(frozen=True)
class Target:
    """The interpreter and platform wheels are chosen for: the image's, probed from it."""

    python: tuple[int, int]  # (3, 11)
    machine: str  # x86_64, aarch64
    glibc: tuple[int, int]  # (2, 36)

    def pip_args(self) -> list[str]:
        """pip's --python-version/--abi/--platform flags selecting wheels that install here."""
        major, minor = self.python
        args = ["--implementation", "cp", "--python-version", f"{major}.{minor}",
                "--abi", f"cp{major}{minor}"]
        for platform in self.platforms():
            args += ["--platform", platform]
        return args

    def platforms(self) -> list[str]:
        """manylinux tags this glibc runs, most specific first (pip 23 does not expand them)."""
        legacy = {17: "manylinux2014"}
        if self.machine in ("x86_64", "i686"):
            legacy |= {12: "manylinux2010", 5: "manylinux1"}
        tags = []
        for minor in range(self.glibc[1], 4, -1):
            tags.append(f"manylinux_2_{minor}_{self.machine}")
            if minor in legacy:
                tags.append(f"{legacy[minor]}_{self.machine}")
        return tags


def parse_requirements(text: str) -> list[str]:
    """Parse a candidate's requirements.txt strictly: only `name[extras]==version` (or `===`).

    Blank lines and comments are allowed. Returns the requirements with whitespace removed,
    in file order. Raises RequirementsError naming the offending line for anything else
    (pip options, URLs, paths, VCS links, markers, unpinned or ranged specs, duplicates),
    or when the text exceeds MAX_REQUIREMENT_LINES lines or MAX_REQUIREMENT_BYTES bytes.
    """
    if len(text.encode("utf-8", "replace")) > MAX_REQUIREMENT_BYTES:
        raise RequirementsError(f"requirements.txt is larger than {MAX_REQUIREMENT_BYTES} bytes")
    lines = text.splitlines()
    if len(lines) > MAX_REQUIREMENT_LINES:
        raise RequirementsError(f"requirements.txt has more than {MAX_REQUIREMENT_LINES} lines")
    found: dict[str, int] = {}
    result, problems = [], []
    for number, raw in enumerate(lines, start=1):
        line = _INLINE_COMMENT.sub("", raw).strip()
        if not line or line.startswith("#"):
            continue
        try:
            requirement = check_requirement(line, where=f"line {number}")
        except RequirementsError as exc:
            problems.append(str(exc))  # every bad line, so one resubmission fixes them all
            continue
        key = canonical_name(requirement)
        if key in found:
            problems.append(f"line {number}: {key!r} is already required on line {found[key]}")
            continue
        found[key] = number
        result.append(requirement)
    if problems:
        raise RequirementsError("; ".join(problems))
    return result


def check_harness_pins(requirements: Sequence[str], constraints: Sequence[str]) -> None:
    """Refuse requirements that pin a package the harness pins (`constraints`) to another version.

    pip would only say "conflicting dependencies"; this names each line, the version the
    harness provides and what the candidate may write instead. Raises RequirementsError.
    """
    held = {canonical_name(c): c for c in constraints}
    clashes = [f"{r!r}: the harness provides {held[canonical_name(r)]}" for r in requirements
               if canonical_name(r) in held and _version(r) != _version(held[canonical_name(r)])]
    if clashes:
        raise RequirementsError("; ".join(clashes) + f" ({harness_pins_note(constraints)})")


def harness_pins_note(constraints: Sequence[str]) -> str:
    """One sentence on what the harness pins, for messages about conflicts."""
    return (f"the harness pins {', '.join(sorted(constraints))}: list these only at exactly these "
            "versions, or leave them out")


def _version(requirement: str) -> Version | str:
    """The pinned version, compared as a PEP 440 version (7.10 == 7.10.0); `===` pins as text."""
    text = re.split(r"===?", requirement, maxsplit=1)[-1].strip().lower()
    try:
        return Version(text) if "===" not in requirement else text
    except InvalidVersion:
        return text


def check_requirement(line: str, *, where: str) -> str:
    """Return `line` normalised if it is an exact pin; raise RequirementsError saying why not."""
    match = _PINNED.fullmatch(line)
    if match:
        return re.sub(r"\s+", "", line)
    shown = repr(line[:80])
    if line.startswith("-") or re.search(r"\s-", line):
        reason = "pip options are not allowed"
    elif line.endswith("\\"):
        reason = "line continuations are not allowed"
    elif "://" in line or any(c in line for c in "@/\\") or line.startswith((".", "~")):
        reason = "URLs, paths and VCS links are not allowed"
    elif ";" in line:
        reason = "environment markers are not allowed"
    elif re.match(rf"{_NAME}\s*({_EXTRAS})?\s*([<>=!~]|$)", line):
        reason = "pin an exact version as name==version (no ranges, wildcards or bare names)"
    else:
        reason = "not a requirement of the form name==version"
    raise RequirementsError(f"{where}: {shown}: {reason}")


def canonical_name(requirement: str) -> str:
    """The PEP 503 normalised project name of a pinned requirement."""
    name = re.match(_NAME, requirement)
    return re.sub(r"[-_.]+", "-", name[0] if name else requirement).lower()


def download(requirements: Sequence[str], *, dest: Path, wheelhouse: Path, target: Target,
             constraints: Sequence[str] = (), candidate: bool = False,
             limits: DownloadLimits | None = None) -> list[Path]:
    """Fetch binary wheels for `requirements` and their dependencies into `dest` (only those).

    pip runs in a scratch folder next to `dest` (its temporary files too), searching the
    shared `wheelhouse` first; wheels are moved to `dest` only when the download succeeded
    within `limits`. The wheelhouse receives the new wheels unless `candidate` is true.
    Candidate downloads use no pip cache, so `limits` bounds everything they write. Returns
    the wheel files in `dest`. Raises RequirementsError when `candidate` is true and pip
    finds no wheel that satisfies the requirements, runs out of time, or resolves NVIDIA CUDA
    wheels (sandbox/_cuda.py: the message names every requirement that pulls one), or when
    the limits are exceeded (pip is then stopped at once); ImageBuildError for any other failure.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    if not requirements:  # newer pip refuses an empty requirements file
        return []
    with tempfile.TemporaryDirectory(prefix="pip-", dir=dest.parent, ignore_cleanup_errors=True) as name:
        work = Path(name)
        staging, scratch = work / "wheels", work / "tmp"
        scratch.mkdir()
        code, output = _run_pip(requirements, constraints, work=work, staging=staging,
                                wheelhouse=wheelhouse, target=target, limits=limits)
        if code != 0:
            raise _pip_failure(output, code, candidate=candidate, constraints=constraints)
        if limits is not None:
            limits.check(staging)  # pip may have finished between two looks
        cuda = _cuda.cuda_problem(staging, requirements, constraints) if candidate else ""
        if cuda:  # resolved but not installed: the image would carry GBs it cannot use
            raise RequirementsError(cuda)
        wheels = []
        for wheel in sorted(staging.glob("*.whl")):
            wheels.append(dest / wheel.name)
            os.replace(wheel, wheels[-1])
    if not candidate:
        _share(wheels, wheelhouse)
    return wheels


def _run_pip(requirements: Sequence[str], constraints: Sequence[str], *, work: Path, staging: Path,
             wheelhouse: Path, target: Target, limits: DownloadLimits | None) -> tuple[int, str]:
    wanted, pinned = work / "requirements.txt", work / "constraints.txt"
    wanted.write_text("".join(f"{r}\n" for r in requirements))
    pinned.write_text("".join(f"{c}\n" for c in constraints))
    command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", *target.pip_args(),
               "--find-links", str(wheelhouse), "--dest", str(staging), "--progress-bar", "off",
               "--no-input", "--disable-pip-version-check", "-r", str(wanted), "-c", str(pinned)]
    if limits is not None:
        command.append("--no-cache-dir")  # the host's pip cache is outside the watched folder
    # pip downloads into its temporary folder and copies to --dest only at the end: keep
    # both inside `work`, so that the watch sees every byte and the cleanup removes them.
    env = pip_environment() | {"TMPDIR": str(work / "tmp")}
    watch = None if limits is None else (lambda: limits.check(work))
    return run_bounded(command, timeout_s=PIP_TIMEOUT_S, env=env, watch=watch)


def pip_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The host environment without PIP_* settings that would change what pip resolves."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if not k.startswith("PIP_") or k in _PIP_ENV_KEPT}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_bounded(command: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None,
                tail_lines: int = 40, watch: Callable[[], None] | None = None,
                watch_interval_s: float = WATCH_INTERVAL_S) -> tuple[int, str]:
    """Run `command` with a wall-clock limit; return (exit code, last lines of its output).

    The command runs in its own process group, which is terminated (then killed) on
    timeout, so helpers it started die with it. A timeout returns exit code -1. `watch`,
    when given, is called every `watch_interval_s` while the command runs; whatever it
    raises stops the process group and propagates.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            left = deadline - time.monotonic()
            step = min(left, watch_interval_s) if watch is not None else left
            try:
                output, _ = process.communicate(timeout=max(0.0, step))
                code = process.returncode
                break
            except subprocess.TimeoutExpired:  # retrying communicate() loses no output
                if time.monotonic() >= deadline:
                    _stop_group(process)
                    output, _ = process.communicate()
                    code, output = -1, output + f"\n(timed out after {timeout_s:.0f} s)".encode()
                    break
                if watch is not None:
                    watch()
    finally:
        if process.poll() is None:  # interrupted (watch, Ctrl-C): leave no helper behind
            _stop_group(process)
        if process.stdout is not None:
            process.stdout.close()
    lines = output.decode("utf-8", "replace").splitlines()
    return code, "\n".join(lines[-tail_lines:])


def _stop_group(process: subprocess.Popen) -> None:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _conflict_causes(output: str, limit: int = 6) -> list[str]:
    """The indented lines pip prints under "The conflict is caused by:" (at most `limit`, bounded)."""
    lines = output.splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip() == "The conflict is caused by:"]
    if not starts:
        return []
    causes = []
    for line in lines[starts[0] + 1:]:
        if not line.startswith(" ") or not line.strip():
            break
        causes.append(line.strip()[:200])
    return causes[:limit]


def _pip_failure(output: str, code: int, *, candidate: bool, constraints: Sequence[str] = ()) -> Exception:
    """Whose fault a failed `pip download` is: the candidate's (RequirementsError) or ours."""
    errors = [line.removeprefix("ERROR: ") for line in output.splitlines() if line.startswith("ERROR:")]
    # an unreachable index also ends in "no matching distribution" or in a timeout
    if candidate and not any(marker in output for marker in _UNREACHABLE):
        if code == -1:
            return RequirementsError(f"downloading the wheels took more than {PIP_TIMEOUT_S:.0f} s: "
                                     "requirements.txt asks for too much")
        if any(m in output for m in _UNSATISFIABLE):
            preferred = [e for e in errors if e.startswith(("No matching", "Cannot install"))]
            reason = (preferred or errors or ["pip could not resolve the requirements"])[0]
            causes = _conflict_causes(output)
            if causes:
                reason += f" The conflict is caused by: {'; '.join(causes)}."
            if causes and constraints:
                reason += f" Note that {harness_pins_note(constraints)}."
            return RequirementsError(f"no installable wheel: {reason}")
    return ImageBuildError(f"pip download failed (exit {code}):\n{output}")


def _share(wheels: Iterable[Path], wheelhouse: Path) -> None:
    """Add new wheels to the shared wheelhouse, atomically, tolerating concurrent writers."""
    for wheel in wheels:
        target = wheelhouse / wheel.name
        if target.exists():
            continue
        partial = wheelhouse / f".{wheel.name}.{uuid.uuid4().hex}.partial"
        try:
            os.link(wheel, partial)
        except OSError:  # another filesystem: copy instead
            shutil.copyfile(wheel, partial)
        os.replace(partial, target)
