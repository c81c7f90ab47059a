"""Candidate requirements and the host-side wheelhouse that feeds offline image builds.

Containers cannot reach a package index, so the host resolves and downloads binary
wheels for the *image's* interpreter and platform (not the host's), and the build
installs them with `pip install --no-index`. Wheels are kept in a shared wheelhouse
so that later builds copy rather than fetch them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.errors import ImageBuildError

MAX_REQUIREMENT_LINES = 200
MAX_REQUIREMENT_BYTES = 64 << 10
PIP_TIMEOUT_S = 900.0

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
# ... unless the index itself was unreachable, which produces the same messages.
_UNREACHABLE = ("Retrying (", "NewConnectionError", "ConnectTimeout", "ProxyError", "SSLError",
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
    result = []
    for number, raw in enumerate(lines, start=1):
        line = _INLINE_COMMENT.sub("", raw).strip()
        if not line or line.startswith("#"):
            continue
        requirement = check_requirement(line, where=f"line {number}")
        key = canonical_name(requirement)
        if key in found:
            raise RequirementsError(f"line {number}: {key!r} is already required on line {found[key]}")
        found[key] = number
        result.append(requirement)
    return result


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
             constraints: Sequence[str] = (), candidate: bool = False) -> list[Path]:
    """Fetch binary wheels for `requirements` and their dependencies into `dest` (only those).

    The shared `wheelhouse` is searched first and receives every new wheel. Returns the
    wheel files in `dest`. Raises RequirementsError when `candidate` is true and pip finds
    no wheel that satisfies the requirements; ImageBuildError for any other failure.
    """
    dest.mkdir(parents=True, exist_ok=True)
    wheelhouse.mkdir(parents=True, exist_ok=True)
    if not requirements:  # newer pip refuses an empty requirements file
        return []
    with tempfile.TemporaryDirectory(prefix="pip-inputs-", dir=dest.parent) as inputs:
        wanted, pinned = Path(inputs, "requirements.txt"), Path(inputs, "constraints.txt")
        wanted.write_text("".join(f"{r}\n" for r in requirements))
        pinned.write_text("".join(f"{c}\n" for c in constraints))
        command = [sys.executable, "-m", "pip", "download", "--only-binary=:all:", *target.pip_args(),
                   "--find-links", str(wheelhouse), "--dest", str(dest), "--progress-bar", "off",
                   "--no-input", "--disable-pip-version-check", "-r", str(wanted), "-c", str(pinned)]
        code, output = run_bounded(command, timeout_s=PIP_TIMEOUT_S, env=pip_environment())
    if code != 0:
        raise _pip_failure(output, code, candidate=candidate)
    wheels = sorted(dest.glob("*.whl"))
    _share(wheels, wheelhouse)
    return wheels


def pip_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The host environment without PIP_* settings that would change what pip resolves."""
    source = os.environ if environ is None else environ
    env = {k: v for k, v in source.items() if not k.startswith("PIP_") or k in _PIP_ENV_KEPT}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONDONTWRITEBYTECODE="1")
    return env


def run_bounded(command: Sequence[str], *, timeout_s: float, env: dict[str, str] | None = None,
                tail_lines: int = 40) -> tuple[int, str]:
    """Run `command` with a wall-clock limit; return (exit code, last lines of its output).

    The command runs in its own process group, which is terminated (then killed) on
    timeout, so helpers it started die with it. A timeout returns exit code -1.
    """
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=timeout_s)
        code = process.returncode
    except subprocess.TimeoutExpired:
        _stop_group(process)
        output, _ = process.communicate()
        code, output = -1, output + f"\n(timed out after {timeout_s:.0f} s)".encode()
    finally:
        if process.poll() is None:  # interrupted (e.g. Ctrl-C): leave no helper behind
            _stop_group(process)
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


def _pip_failure(output: str, code: int, *, candidate: bool) -> Exception:
    errors = [line.removeprefix("ERROR: ") for line in output.splitlines() if line.startswith("ERROR:")]
    unreachable = any(marker in output for marker in _UNREACHABLE)
    if candidate and code != -1 and not unreachable and any(m in output for m in _UNSATISFIABLE):
        preferred = [e for e in errors if e.startswith(("No matching", "Cannot install"))]
        reason = (preferred or errors or ["pip could not resolve the requirements"])[0]
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
