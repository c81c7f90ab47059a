"""The Debian base image, made from Debian packages with debootstrap: no registry needed.

debootstrap builds a root filesystem on the host (as root), `tar` packs it and the
Docker engine imports the tarball as a one-layer image. The recipe lives in
`recipes/debian-base.json`; its hash is part of the tag, so a changed recipe builds anew.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker.errors
import requests.exceptions

from sandbox._wheels import run_bounded
from sandbox.errors import ImageBuildError

RECIPE_PATH = Path(__file__).parent / "recipes" / "debian-base.json"
DEBOOTSTRAP_TIMEOUT_S = 1200.0
TAR_TIMEOUT_S = 600.0
_HINT = ("or set HARNESS_BASE_IMAGE to an image already present locally "
         "(e.g. python:3.11-slim on a machine with a registry)")


@dataclass(frozen=True)
class DebianRecipe:
    suite: str
    variant: str
    mirror: str
    include: tuple[str, ...]
    exclude: tuple[str, ...]  # tar patterns left out of the image (package caches)
    changes: tuple[str, ...]  # Dockerfile instructions applied on import
    digest: str  # sha256 of the recipe file

    @property
    def tag(self) -> str:
        return f"mlgrade/base:{self.suite}-{self.digest[:12]}"


def load_recipe(path: Path | None = None) -> DebianRecipe:
    """Read the recipe file (RECIPE_PATH by default). Raises ImageBuildError if it is malformed."""
    path = path or RECIPE_PATH
    try:
        text = path.read_text()
        data: dict[str, Any] = json.loads(text)
        return DebianRecipe(
            suite=data["suite"], variant=data["variant"], mirror=data["mirror"],
            include=tuple(data["include"]), exclude=tuple(data["exclude"]),
            changes=tuple(data["changes"]), digest=hashlib.sha256(text.encode()).hexdigest(),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ImageBuildError(f"cannot read the Debian base recipe {path}: {exc}") from exc


def build_debian_base(client: docker.DockerClient, recipe: DebianRecipe, workdir: Path) -> str:
    """Build the rootfs in `workdir`, import it as `recipe.tag` and return the image id.

    Raises ImageBuildError when not root, when debootstrap is missing, or when
    debootstrap, tar or the import fail (with the last lines of their output).
    """
    _require_tools()
    rootfs, tarball = workdir / "rootfs", workdir / "rootfs.tar"
    try:
        _debootstrap(recipe, rootfs)
        _pack(recipe, rootfs, tarball)
    finally:
        remove_tree(rootfs)
    try:
        return _import(client, recipe, tarball)
    finally:
        tarball.unlink(missing_ok=True)


def _require_tools() -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(f"the Debian base image is built with debootstrap, which needs root; {_HINT}")
    if shutil.which("debootstrap") is None or shutil.which("tar") is None:
        raise ImageBuildError(
            f"building the Debian base image needs debootstrap and tar: "
            f"`apt-get install debootstrap`, {_HINT}")


def _debootstrap(recipe: DebianRecipe, rootfs: Path) -> None:
    command = ["debootstrap", f"--variant={recipe.variant}", f"--include={','.join(recipe.include)}",
               recipe.suite, str(rootfs), recipe.mirror]
    code, output = run_bounded(command, timeout_s=DEBOOTSTRAP_TIMEOUT_S)
    if code != 0:
        raise ImageBuildError(f"debootstrap failed (exit {code}); {_HINT}:\n{output}")


def _pack(recipe: DebianRecipe, rootfs: Path, tarball: Path) -> None:
    excludes = [f"--exclude={pattern}" for pattern in recipe.exclude]
    command = ["tar", "-C", str(rootfs), "--numeric-owner", *excludes, "-cf", str(tarball), "."]
    code, output = run_bounded(command, timeout_s=TAR_TIMEOUT_S)
    if code != 0:
        raise ImageBuildError(f"packing the Debian rootfs failed (exit {code}):\n{output}")


def _import(client: docker.DockerClient, recipe: DebianRecipe, tarball: Path) -> str:
    repository, tag = recipe.tag.rsplit(":", 1)
    changes = [*recipe.changes, f"LABEL mlgrade.recipe-hash={recipe.digest}"]
    try:
        client.api.import_image_from_file(str(tarball), repository=repository, tag=tag, changes=changes)
        return client.images.get(recipe.tag).id  # type: ignore[return-value]  # stubs: optional id
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        raise ImageBuildError(f"docker import of the Debian rootfs failed: {exc}") from exc


def remove_tree(path: Path) -> None:
    """Delete a scratch tree (perhaps a half-built rootfs) without reaching into host files.

    A killed debootstrap can leave /proc, /sys or bind mounts of host devices inside the
    rootfs: they are unmounted first, and if any remain, `rm --one-file-system` skips them.
    """
    if not path.exists():
        return
    for mount_point in sorted(_mounts_under(path), key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], capture_output=True, check=False)
    if _mounts_under(path):
        subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)], capture_output=True, check=False)
    else:
        shutil.rmtree(path, ignore_errors=True)


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root.resolve()) + "/"
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []
    # field 5 is the mount point, with spaces and the like written as octal escapes
    points = [line.split()[4].encode().decode("unicode_escape") for line in lines if len(line.split()) > 4]
    return [point for point in points if point.startswith(prefix)]
