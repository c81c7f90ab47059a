"""Taking in a submission: a private, hashed copy that the sandbox can mount read-only.

A source is a directory (a git working tree without `ref` is just a directory), a local git
repository at a commit (a path with `ref`, a bare repository at `ref` or HEAD, or a `file://`
URL with an optional `#REF`), a .zip, a .tar/.tar.gz/.tgz (also .tar.bz2/.tar.xz), or one .ipynb
notebook. Network URLs are refused. Git sources are read object by object (ls-tree, cat-file),
never checked out or archived, so nothing in the candidate's repository config (filters, hooks,
fsmonitor) can run. Everything is staged through `harness._archives.StagingTree`, which
enforces the limits on bytes actually written and on nesting depth. An archive file larger than
the limits allow is refused before it is opened. An archive holding one top-level directory is
unwrapped.

Errors about the submission raise `IntakeError` (one line without control characters, naming the
source) and leave `dest` empty; a full disk raises `InfraError`; a `dest` that is not empty
raises `HarnessError`.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import re
import secrets
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from harness._archives import (
    ARCHIVE_SKIPPED_NAMES,
    MAX_LINK_HOPS,
    IntakeLimits,
    StagingTree,
    copy_directory,
    extract_tar,
    open_archive,
    open_regular,
    real_path,
)
from harness._git import is_bare_repo, stage_git
from harness._workdirs import remove_tree
from harness._zip import extract_zip
from harness.core.text import one_line
from harness.errors import HarnessError, InfraError, IntakeError

__all__ = ["IntakeLimits", "StagedSubmission", "stage_submission", "tree_hash"]

_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_SCP_LIKE = re.compile(r"^[^/]*:")  # git reads 'host:path' (no '/' before the ':') as ssh
_HASH_TAG = b"harness-tree-v1\0"
_MESSAGE_LIMIT = 1000  # characters: member names and paths can be kilobytes long
_DEFAULT_LIMITS = IntakeLimits()


@dataclass(frozen=True)
class StagedSubmission:
    """A staged submission, ready to mount read-only at `path`."""

    source: str  # as given
    kind: str  # "directory" | "git" | "zip" | "tar" | "notebook"
    candidate: str  # slug from the source: [a-z0-9._-]
    path: Path  # the staged copy, owned by the harness
    content_hash: str  # tree_hash(path)
    commit: str | None  # git commit sha for git sources


def stage_submission(source: str, *, dest: Path, ref: str | None = None,
                     limits: IntakeLimits = _DEFAULT_LIMITS) -> StagedSubmission:
    """Copy `source` into the empty or missing directory `dest` and hash it.

    Raises IntakeError (unsafe, corrupt, too big, missing, unknown kind; `dest` left clean),
    InfraError (disk full, git missing), HarnessError (`dest` not empty).
    """
    dest = Path(dest).absolute()
    created = _prepare(dest)
    try:
        return _stage(source, dest, ref, limits)
    except IntakeError as err:
        _clean(dest, created)
        raise IntakeError(_refusal(source, str(err))) from err
    except OSError as err:
        _clean(dest, created)
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InfraError(f"no space left while staging {source!r} into {dest}") from err
        # The file name may be built from an archive member's name: one_line strips its controls.
        what = f" ({err.filename})" if err.filename else ""
        raise IntakeError(_refusal(source, f"{err.strerror or err}{what}")) from err
    except BaseException:
        _clean(dest, created)
        raise


def _refusal(source: str, reason: str) -> str:
    return one_line(f"cannot take in {source!r}: {reason}", _MESSAGE_LIMIT)


def tree_hash(path: Path) -> str:
    """sha256 of a tree: sorted relative paths, exec bit and bytes of files, targets of symlinks.

    Directories are implied by their content; mtimes, owners and the tree's location do not count.
    Raises IntakeError if the tree holds a device, fifo or socket.
    """
    digest = hashlib.sha256(_HASH_TAG)
    for rel, full in _entries(Path(path)):
        if os.path.islink(full):
            kind, payload = b"L", os.fsencode(os.readlink(full))
        else:
            executable = os.stat(full, follow_symlinks=False).st_mode & 0o111
            kind, payload = (b"X" if executable else b"F"), _file_digest(full)
        name = os.fsencode(rel)
        digest.update(kind + len(name).to_bytes(8, "big") + name + len(payload).to_bytes(8, "big") + payload)
    return digest.hexdigest()


def _stage(source: str, dest: Path, ref: str | None, limits: IntakeLimits) -> StagedSubmission:
    kind, location, ref = _classify(source, ref)
    commit = None
    if kind == "git":
        commit = stage_git(location, ref or "HEAD", StagingTree(dest, limits))
    elif kind == "directory":
        if Path(os.path.realpath(dest)).is_relative_to(os.path.realpath(location)):
            raise HarnessError(f"staging directory {dest} is inside the submission {source!r}")
        copy_directory(location, StagingTree(dest, limits))
    elif kind == "notebook":
        _stage_notebook(location, StagingTree(dest, limits))
    else:
        with open_archive(location, limits) as raw:
            tree = StagingTree(dest, limits, skip=ARCHIVE_SKIPPED_NAMES,
                               compressed_size=os.fstat(raw.fileno()).st_size)
            (extract_zip if kind == "zip" else extract_tar)(raw, tree)
        _unwrap(dest)
    _check_links(dest)
    if not _entries(dest):
        raise IntakeError("the submission is empty")
    return StagedSubmission(source=source, kind=kind, candidate=_candidate(location, kind), path=dest,
                            content_hash=tree_hash(dest), commit=commit)


def _classify(source: str, ref: str | None) -> tuple[str, Path, str | None]:
    """(kind, local path, ref) for a source string. Raises IntakeError."""
    if not source.strip():
        raise IntakeError("the source is empty")
    url = _URL.match(source)
    if url and url[1].lower() == "file":
        path, ref = _file_url(source, ref)
        return "git", path, ref
    if url or (_SCP_LIKE.match(source) and not os.path.lexists(source)):
        raise IntakeError("only local repositories are accepted (network URLs are refused)")
    path = Path(source)
    if not path.exists():
        raise IntakeError("no such file or directory")
    if path.is_dir():
        if ref is not None or is_bare_repo(path):
            return "git", path, ref
        return "directory", path, None
    if ref is not None:
        raise IntakeError("a ref was given but the source is not a git repository")
    name = path.name.lower()
    if name.endswith(".zip"):
        return "zip", path, None
    if name.endswith(_TAR_SUFFIXES):
        return "tar", path, None
    if name.endswith(".ipynb"):
        return "notebook", path, None
    raise IntakeError("unknown kind of submission (expected a directory, a git repository, "
                      ".zip, .tar, .tar.gz, .tgz or .ipynb)")


def _file_url(source: str, ref: str | None) -> tuple[Path, str | None]:
    parts = urlsplit(source)
    if parts.netloc not in ("", "localhost"):
        raise IntakeError("only local repositories are accepted (file:// URLs must not name a host)")
    fragment = unquote(parts.fragment) or None
    if fragment and ref and fragment != ref:
        raise IntakeError(f"the URL names ref {fragment!r} but ref {ref!r} was also given")
    path = Path(unquote(parts.path))
    if not path.is_dir():
        raise IntakeError("no such repository")
    return path, ref or fragment


def _candidate(location: Path, kind: str) -> str:
    name = Path(os.path.realpath(location)).name.lower() if kind in ("directory", "git") else location.name
    for suffix in (".git", ".zip", ".ipynb", *_TAR_SUFFIXES):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")[:64]
    return slug or "submission"


def _stage_notebook(path: Path, tree: StagingTree) -> None:
    """Stage one notebook, after checking it is a valid nbformat v4 document."""
    import nbformat  # slow import, only needed for notebooks

    limit = tree.limits.max_file_bytes
    with open_regular(path) as src:
        data = src.read(limit + 1)
    if len(data) > limit:
        raise IntakeError(f"notebook is larger than {limit} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as err:
        raise IntakeError(f"notebook is not valid JSON ({err})") from err
    if not isinstance(document, dict) or document.get("nbformat") != 4:
        raise IntakeError("notebook is not in nbformat version 4")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nbformat.validate(nbformat.from_dict(document))
    except nbformat.ValidationError as err:
        raise IntakeError(f"notebook is not a valid nbformat v4 document ({err.message})") from err
    except RecursionError as err:  # nbformat converts and validates recursively
        raise IntakeError("notebook is nested too deeply") from err
    tree.add_file((path.name,), io.BytesIO(data), executable=False)


# ---- the staged tree ----------------------------------------------------------------------------

def _prepare(dest: Path) -> bool:
    """Make sure `dest` is an empty directory (mode 0755); True if it was created here."""
    if dest.is_symlink() or (dest.exists() and (not dest.is_dir() or any(dest.iterdir()))):
        raise HarnessError(f"staging directory {dest} must be empty or missing")
    created = not dest.exists()
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    return created


def _clean(dest: Path, created: bool) -> None:
    """Remove what staging wrote (remove_tree copes with any depth and never raises)."""
    if created:
        remove_tree(dest)
        return
    for child in dest.iterdir():
        remove_tree(child)


def _unwrap(root: Path) -> None:
    """If `root` holds a single directory, move that directory's content up to `root`."""
    children = list(root.iterdir())
    if len(children) != 1 or children[0].is_symlink() or not children[0].is_dir():
        return
    if _escaping_link(children[0]) is not None:
        return  # a link reaching out of the wrapper would break (or escape) once unwrapped
    holder = root / f".intake-unwrap-{secrets.token_hex(8)}"
    children[0].rename(holder)
    for child in holder.iterdir():
        child.rename(root / child.name)
    holder.rmdir()


def _check_links(root: Path) -> None:
    escaping = _escaping_link(root)
    if escaping is not None:
        raise IntakeError(f"symlink {escaping!r} resolves outside the submission")


def _escaping_link(root: Path) -> str | None:
    """The first symlink under `root` that resolves (following every link) outside it, if any.

    Raises IntakeError for a link that leads through more than MAX_LINK_HOPS links."""
    real_root = os.path.realpath(root)
    for rel, full in _entries(root):
        if not os.path.islink(full):
            continue
        resolved = real_path(full)
        if resolved is None:
            raise IntakeError(f"symlink {rel!r} leads through more than {MAX_LINK_HOPS} links")
        if os.path.commonpath([resolved, real_root]) != real_root:
            return rel
    return None


def _entries(root: Path) -> list[tuple[str, str]]:
    """(relative path, full path) of every file and symlink under `root`, sorted by path bytes.

    Raises IntakeError for a device, fifo or socket."""
    found: list[tuple[str, str]] = []
    pending = [("", str(root))]
    while pending:
        prefix, directory = pending.pop()
        with os.scandir(directory) as listing:
            for entry in listing:
                rel = prefix + entry.name
                if entry.is_symlink() or entry.is_file(follow_symlinks=False):
                    found.append((rel, entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    pending.append((rel + "/", entry.path))
                else:
                    raise IntakeError(f"{rel!r} is not a regular file, directory or symlink")
    found.sort(key=lambda item: os.fsencode(item[0]))
    return found


def _file_digest(path: str) -> bytes:
    digest = hashlib.sha256()
    with open(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.digest()
