"""System libraries a base image lacks, supplied from the host's copies at image build time.

Popular manylinux wheels load a few libraries from the system instead of bundling them
(WHEEL_SYSTEM_LIBRARIES). The Debian base installs them; another base (python:3.11-slim, or
HARNESS_BASE_IMAGE) may lack some, and the harness cannot fetch Debian packages inside an
offline build. So the assignment image gets the host's copy of each missing library in
/usr/local/lib/mlgrade-syslibs, registered with ldconfig, and the build checks that each one loads.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from sandbox.errors import ImageBuildError

FOLDER = "/usr/local/lib/mlgrade-syslibs"
CONTEXT_DIR = "syslibs"
_LDCONFIG_ENTRY = re.compile(r"^\s*(\S+) \(([^)]*)\) => (\S+)$")
_ARCH_TAG = {"x86_64": "x86-64", "aarch64": "AArch64"}


def recipe_with(recipe: str, missing: Sequence[str]) -> str:
    """The image recipe with a step that installs the libraries `missing` from the context.

    The step goes right after the recipe's first `USER root`, before anything is installed,
    and fails the build unless each library then loads."""
    if not missing:
        return recipe
    names = " ".join(missing)
    step = (f"COPY {CONTEXT_DIR}/ {FOLDER}/\n"
            f"RUN echo {FOLDER} > /etc/ld.so.conf.d/mlgrade-syslibs.conf && ldconfig && \\\n"
            f"    python3 -c 'import ctypes, sys; [ctypes.CDLL(n) for n in sys.argv[1:]]' {names}\n")
    head, marker, tail = recipe.partition("USER root\n")
    if not marker:
        raise ImageBuildError("the image recipe has no 'USER root' line to add system libraries after")
    return head + marker + step + tail


def host_copies(missing: Sequence[str], machine: str) -> dict[str, Path]:
    """The host's file for each library in `missing`, for images of `machine` (e.g. x86_64).

    Raises ImageBuildError naming each library the host has none of, and the fix."""
    found = _host_libraries(machine)
    absent = [name for name in missing if name not in found]
    if absent:
        raise ImageBuildError(
            f"the base image lacks {', '.join(absent)}, which popular wheels (LightGBM, XGBoost, opencv) "
            "load from the system, and this host has no copy to give it: install them on the host "
            "(Debian: apt-get install libgomp1 libstdc++6 zlib1g) or use the Debian base "
            "(HARNESS_BASE_IMAGE unset, base: debian)")
    return {name: found[name] for name in missing}


def fill_context(context: Path, copies: dict[str, Path]) -> None:
    """Put `copies` (library name -> host file, links resolved) into the build context."""
    folder = context / CONTEXT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for name, path in copies.items():
        shutil.copyfile(path.resolve(), folder / name)


def digest_of(copies: dict[str, Path]) -> list[tuple[str, str]]:
    """(name, sha256) of each copy: the image is rebuilt when the host's library changes."""
    return sorted((name, hashlib.sha256(path.resolve().read_bytes()).hexdigest())
                  for name, path in copies.items())


def _host_libraries(machine: str) -> dict[str, Path]:
    tag = _ARCH_TAG.get(machine, machine)
    try:
        listing = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True,  # noqa: S607
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ImageBuildError(f"cannot list the host's libraries with 'ldconfig -p': {exc}") from exc
    found: dict[str, Path] = {}
    for line in listing.splitlines():
        match = _LDCONFIG_ENTRY.match(line)
        if match and tag in match[2] and match[1] not in found and Path(match[3]).is_file():
            found[match[1]] = Path(match[3])
    return found
