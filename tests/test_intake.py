"""harness.intake: every kind of source is staged and hashed alike; unsafe or broken input is refused.

The hash is our own definition (see `tree_hash`), so its tests check properties (equal for equal
trees whatever the source, different when one byte, mode or link changes), not fixed values.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
import struct
import subprocess
import tarfile
import threading
import warnings
import zipfile
from contextlib import suppress
from pathlib import Path

import pytest

import harness._git
from harness._archives import real_path
from harness._workdirs import remove_tree
from harness.errors import HarnessError, IntakeError
from harness.intake import IntakeLimits, stage_submission, tree_hash

MiB = 1 << 20


# ---- helpers ------------------------------------------------------------------------------------

def make_project(root: Path) -> Path:
    """A small submission: nested files, an executable, a relative symlink."""
    (root / "src").mkdir(parents=True)
    (root / "main.py").write_text("print('hello')\n")
    (root / "src" / "model.py").write_text("WEIGHTS = [1, 2, 3]\n")
    (root / "run.sh").write_text("#!/bin/sh\npython main.py\n")
    (root / "run.sh").chmod(0o755)
    os.symlink("../main.py", root / "src" / "entry.py")
    return root


def zip_tree(archive: Path, root: Path, prefix: str = "") -> Path:
    """Zip a directory the way `zip -ry` does: unix modes, symlinks as links."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(root.rglob("*")):
            name = prefix + path.relative_to(root).as_posix()
            if path.is_symlink():
                add_zip_symlink(zf, name, os.readlink(path))
            elif path.is_file():
                zf.write(path, name)
    return archive


def add_zip_symlink(zf: zipfile.ZipFile, name: str, target: str) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, target)


def tar_with(archive: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: str = "w:gz") -> Path:
    with tarfile.open(archive, mode) as tf:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return archive


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


def git(repo: Path, *args: str) -> str:
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    env.update(GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    done = subprocess.run(["git", "-C", str(repo), "-c", "user.name=Test", "-c", "user.email=t@example.com",
                           *args], env=env, check=True, capture_output=True, text=True)
    return done.stdout.strip()


def git_repo(root: Path) -> Path:
    root.mkdir(exist_ok=True)
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "first")
    return root


def assert_refused(source: Path | str, dest: Path, match: str, **kwargs: object) -> IntakeError:
    """Staging fails with a one-line IntakeError naming the source, and leaves dest empty."""
    with pytest.raises(IntakeError, match=match) as caught:
        stage_submission(str(source), dest=dest, **kwargs)  # type: ignore[arg-type]
    message = str(caught.value)
    assert "\n" not in message
    assert str(source) in message
    assert not dest.exists() or not any(dest.iterdir())
    return caught.value


@pytest.fixture
def dest(tmp_path: Path) -> Path:
    return tmp_path / "staged"


# ---- each kind, and the hash --------------------------------------------------------------------

def test_directory_is_copied_with_safe_modes_and_without_caches(tmp_path: Path, dest: Path) -> None:
    source = make_project(tmp_path / "My Project!")
    (source / "main.py").chmod(0o600)
    (source / "src").chmod(0o700)
    for junk in (".git/config", "__pycache__/main.cpython-311.pyc", ".ipynb_checkpoints/x.ipynb"):
        (source / junk).parent.mkdir(exist_ok=True)
        (source / junk).write_text("junk")

    staged = stage_submission(str(source), dest=dest)

    assert (staged.kind, staged.candidate, staged.commit) == ("directory", "my-project", None)
    assert staged.path == dest
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == [
        "main.py", "run.sh", "src", "src/entry.py", "src/model.py"]
    assert stat.S_IMODE((dest / "main.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((dest / "run.sh").stat().st_mode) == 0o755
    assert stat.S_IMODE((dest / "src").stat().st_mode) == 0o755
    assert os.readlink(dest / "src" / "entry.py") == "../main.py"
    assert staged.content_hash == tree_hash(dest)


def test_same_tree_hashes_the_same_from_every_kind_of_source(tmp_path: Path) -> None:
    source = make_project(tmp_path / "proj")
    wrapped_zip = zip_tree(tmp_path / "proj.zip", source, prefix="proj/")
    with zipfile.ZipFile(wrapped_zip, "a") as zf:  # what macOS Finder adds
        zf.writestr("__MACOSX/proj/._main.py", b"\x00\x05\x16\x07")
    flat_zip = zip_tree(tmp_path / "flat.zip", source)
    with tarfile.open(tmp_path / "proj.tar.gz", "w:gz") as tf:
        tf.add(source, arcname="proj")
    repo = tmp_path / "repo"
    source.rename(repo)
    git_repo(repo)
    sources = {"dir": (str(repo), None), "zip": (str(wrapped_zip), None), "flat": (str(flat_zip), None),
               "tar": (str(tmp_path / "proj.tar.gz"), None), "git": (str(repo), "main")}

    staged = {name: stage_submission(src, dest=tmp_path / f"out-{name}", ref=ref)
              for name, (src, ref) in sources.items()}

    assert len({s.content_hash for s in staged.values()}) == 1
    assert [s.kind for s in staged.values()] == ["directory", "zip", "zip", "tar", "git"]
    assert not (tmp_path / "out-zip" / "__MACOSX").exists()
    assert (tmp_path / "out-tar" / "run.sh").read_text().startswith("#!")
    assert staged["git"].commit == git(repo, "rev-parse", "HEAD")
    assert staged["git"].candidate == "repo"


def test_hash_ignores_mtime_and_location_but_not_bytes_modes_or_links(tmp_path: Path) -> None:
    first = make_project(tmp_path / "a")
    second = make_project(tmp_path / "elsewhere" / "b")
    os.utime(second / "main.py", (0, 0))
    baseline = tree_hash(first)
    assert tree_hash(second) == baseline

    (second / "main.py").write_text("print('hellp')\n")
    assert tree_hash(second) != baseline
    (second / "main.py").write_text("print('hello')\n")
    (second / "run.sh").chmod(0o644)
    assert tree_hash(second) != baseline
    (second / "run.sh").chmod(0o755)
    os.remove(second / "src" / "entry.py")
    os.symlink("model.py", second / "src" / "entry.py")
    assert tree_hash(second) != baseline
    os.remove(second / "src" / "entry.py")
    os.symlink("../main.py", second / "src" / "entry.py")
    os.rename(second / "src" / "model.py", second / "src" / "model2.py")
    assert tree_hash(second) != baseline


def test_git_ref_selects_the_older_commit(tmp_path: Path, dest: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "model.py").write_text("VERSION = 1\n")
    git_repo(repo)
    older = git(repo, "rev-parse", "HEAD")
    (repo / "model.py").write_text("VERSION = 2\n")
    (repo / "extra.py").write_text("pass\n")
    git(repo, "commit", "-q", "-am", "second")
    git(repo, "add", "extra.py")
    git(repo, "commit", "-q", "-m", "third")
    git(repo, "tag", "v1", older)

    staged = stage_submission(str(repo), dest=dest, ref="v1")

    assert staged.commit == older
    assert (dest / "model.py").read_text() == "VERSION = 1\n"
    assert not (dest / "extra.py").exists()


def test_file_url_with_ref_fragment_and_bare_repository(tmp_path: Path) -> None:
    repo = tmp_path / "work"
    repo.mkdir()
    (repo / "a.txt").write_text("one\n")
    git_repo(repo)
    first = git(repo, "rev-parse", "HEAD")
    (repo / "a.txt").write_text("two\n")
    git(repo, "commit", "-q", "-am", "second")
    git(tmp_path, "clone", "-q", "--bare", str(repo), str(tmp_path / "Team Repo.git"))
    url = (tmp_path / "Team Repo.git").as_uri()

    by_fragment = stage_submission(f"{url}#{first}", dest=tmp_path / "a")
    by_param = stage_submission(url, dest=tmp_path / "b", ref=first)
    at_head = stage_submission(url, dest=tmp_path / "c")

    assert by_fragment.commit == by_param.commit == first
    assert (tmp_path / "a" / "a.txt").read_text() == "one\n"
    assert (tmp_path / "c" / "a.txt").read_text() == "two\n"
    assert at_head.commit == git(repo, "rev-parse", "HEAD")
    assert (by_fragment.kind, by_fragment.candidate) == ("git", "team-repo")
    assert_refused(f"{url}#main", tmp_path / "d", "ref", ref=first)
    assert_refused(url, tmp_path / "e", "not a commit", ref="no-such-branch")


def test_host_git_variables_do_not_leak(tmp_path: Path, dest: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    (decoy / "decoy.txt").write_text("wrong repo\n")
    git_repo(decoy)
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "right.txt").write_text("right repo\n")
    git_repo(repo)
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))

    stage_submission(str(repo), dest=dest, ref="HEAD")

    assert [p.name for p in dest.iterdir()] == ["right.txt"]


def test_repository_config_cannot_run_programs(tmp_path: Path, dest: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / ".gitattributes").write_text("* filter=evil\n")
    (repo / "a.txt").write_text("raw content\n")
    git_repo(repo)
    marker = tmp_path / "pwned"
    for key in ("filter.evil.smudge", "filter.evil.process", "core.fsmonitor", "core.pager"):
        git(repo, "config", key, f"touch {marker}")
    (repo / ".git" / "hooks" / "post-checkout").write_text(f"#!/bin/sh\ntouch {marker}\n")
    (repo / ".git" / "hooks" / "post-checkout").chmod(0o755)

    stage_submission(str(repo), dest=dest, ref="HEAD")

    assert not marker.exists()
    assert (dest / "a.txt").read_text() == "raw content\n"


def test_git_directory_without_ref_is_its_working_tree(tmp_path: Path, dest: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "committed.py").write_text("x = 1\n")
    git_repo(repo)
    (repo / "uncommitted.py").write_text("y = 2\n")

    staged = stage_submission(str(repo), dest=dest)

    assert (staged.kind, staged.commit) == ("directory", None)
    assert sorted(p.name for p in dest.iterdir()) == ["committed.py", "uncommitted.py"]


@pytest.mark.parametrize("url", ["https://github.com/a/b.git", "http://example.com/r", "ssh://host/r.git",
                                 "git@github.com:a/b.git", "git://host/r", "file://otherhost/srv/r.git"])
def test_network_urls_are_refused(url: str, dest: Path) -> None:
    assert_refused(url, dest, "only local repositories are accepted")


def test_notebook_is_staged_as_a_directory_holding_it(tmp_path: Path, dest: Path) -> None:
    notebook = {"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                "cells": [{"cell_type": "code", "id": "c1", "metadata": {}, "source": "1 + 1",
                           "outputs": [], "execution_count": None}]}
    path = tmp_path / "Solution.ipynb"
    path.write_text(json.dumps(notebook))

    staged = stage_submission(str(path), dest=dest)

    assert (staged.kind, staged.candidate) == ("notebook", "solution")
    assert [p.name for p in dest.iterdir()] == ["Solution.ipynb"]
    assert (dest / "Solution.ipynb").read_bytes() == path.read_bytes()


@pytest.mark.parametrize(("content", "match"), [
    ("{not json", "not valid JSON"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": []}), "version 4"),
    (json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{"cell_type": "sql"}]}),
     "not a valid nbformat"),
])
def test_invalid_notebooks_are_refused(content: str, match: str, tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "nb.ipynb"
    path.write_text(content)
    assert_refused(path, dest, match)


# ---- unsafe content -----------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "match"), [("../evil.py", r"'\.\.'"), ("a/../../evil.py", r"'\.\.'"),
                                             ("/etc/cron.d/evil", "absolute"), ("C:/evil.py", "Windows"),
                                             ("a\\..\\..\\evil.py", "Windows")])
def test_zip_member_escaping_the_root_is_refused(name: str, match: str, tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.py", "pass\n")
        zf.writestr(name, "pwned\n")
    assert_refused(archive, dest, match)


@pytest.mark.parametrize(("name", "match"), [("../evil.py", r"'\.\.'"), ("/tmp/evil.py", "absolute"),
                                             ("a/../../evil.py", r"'\.\.'")])
def test_tar_member_escaping_the_root_is_refused(name: str, match: str, tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "bad.tar.gz", [(member("ok.py"), b"pass\n"), (member(name), b"pwned\n")])
    assert_refused(archive, dest, match)


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside.txt", "sub/../../outside.txt"])
def test_symlink_pointing_outside_is_refused_in_every_kind(target: str, tmp_path: Path) -> None:
    (tmp_path / "outside.txt").write_text("secret\n")
    source = tmp_path / "dir"
    (source / "sub").mkdir(parents=True)
    os.symlink(target, source / "link")
    archive = tmp_path / "links.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        add_zip_symlink(zf, "link", target)
    tarball = tar_with(tmp_path / "links.tar", [(member("link", tarfile.SYMTYPE, target), None)], mode="w")

    for index, bad in enumerate((source, archive, tarball)):
        assert_refused(bad, tmp_path / f"out{index}", "outside the submission")


def test_symlinks_inside_are_kept_relative(tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "dir"
    (source / "sub").mkdir(parents=True)
    (source / "data.csv").write_text("a\n1\n")
    os.symlink(source / "data.csv", source / "sub" / "absolute-link")

    stage_submission(str(source), dest=dest)

    assert os.readlink(dest / "sub" / "absolute-link") == "../data.csv"
    assert (dest / "sub" / "absolute-link").read_text() == "a\n1\n"


def test_links_chained_to_escape_are_refused(tmp_path: Path, dest: Path) -> None:
    # Each link alone stays inside lexically; followed, 'up' leaves the root.
    archive = tar_with(tmp_path / "chain.tar.gz", [(member("f.txt"), b"x"),
                                                   (member("here", tarfile.SYMTYPE, "."), None),
                                                   (member("up", tarfile.SYMTYPE, "here/.."), None)])
    assert_refused(archive, dest, "resolves outside")


def test_writing_through_a_symlink_is_refused(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "through.tar.gz", [(member("sub", tarfile.DIRTYPE), None),
                                                     (member("link", tarfile.SYMTYPE, "sub"), None),
                                                     (member("link/evil.py"), b"pwned")])
    assert_refused(archive, dest, "'link/evil.py' would be written through the symlink 'link'")


@pytest.mark.parametrize(("linkname", "match"), [("../../etc/passwd", "outside the submission"),
                                                 ("/etc/passwd", "outside the submission"),
                                                 ("never-added.py", "not an earlier")])
def test_tar_hardlink_outside_or_to_a_non_member_is_refused(linkname: str, match: str, tmp_path: Path,
                                                            dest: Path) -> None:
    archive = tar_with(tmp_path / "hard.tar.gz", [(member("ok.py"), b"pass\n"),
                                                  (member("link.py", tarfile.LNKTYPE, linkname), None)])
    assert_refused(archive, dest, match)


def test_tar_hardlink_to_a_member_is_copied(tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "hard.tar.gz", [(member("ok.py"), b"pass\n"),
                                                  (member("copy.py", tarfile.LNKTYPE, "ok.py"), None)])
    stage_submission(str(archive), dest=dest)
    assert (dest / "copy.py").read_bytes() == b"pass\n"
    assert (dest / "copy.py").stat().st_nlink == 1


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_tar_devices_and_fifos_are_refused(kind: bytes, tmp_path: Path, dest: Path) -> None:
    archive = tar_with(tmp_path / "dev.tar", [(member("ok.py"), b"pass\n"), (member("dev", kind), None)],
                       mode="w")
    assert_refused(archive, dest, "device or fifo")


def test_fifo_in_a_directory_is_refused(tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    (source / "ok.py").write_text("pass\n")
    os.mkfifo(source / "pipe")
    assert_refused(source, dest, "fifo")


def test_duplicate_zip_members_are_refused(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "dup.zip"
    with warnings.catch_warnings(), zipfile.ZipFile(archive, "w") as zf:
        warnings.simplefilter("ignore")  # zipfile warns about the duplicate we want
        zf.writestr("a.py", "first\n")
        zf.writestr("a.py", "second\n")
    assert_refused(archive, dest, "appears twice")


# ---- bombs, limits, corruption ------------------------------------------------------------------

def zip_of_zeros(archive: Path, size: int) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf, \
            zf.open("zeros.bin", "w", force_zip64=True) as out:
        for _ in range(size // MiB):
            out.write(bytes(MiB))
    return archive


def test_zip_bomb_is_refused_by_ratio(tmp_path: Path, dest: Path) -> None:
    archive = zip_of_zeros(tmp_path / "bomb.zip", 16 * MiB)
    assert archive.stat().st_size < 100_000
    assert_refused(archive, dest, "decompression bomb")


def test_zip_is_refused_when_actual_bytes_exceed_the_budget(tmp_path: Path, dest: Path) -> None:
    archive = zip_of_zeros(tmp_path / "big.zip", 4 * MiB)
    assert_refused(archive, dest, "larger than 1048576 bytes",
                   limits=IntakeLimits(max_bytes=MiB, max_file_bytes=10 * MiB, max_ratio=1e9))


def test_gzip_bomb_is_refused(tmp_path: Path, dest: Path) -> None:
    info = member("zeros.bin")
    info.size = 16 * MiB
    with tarfile.open(tmp_path / "bomb.tar.gz", "w:gz") as tf:
        tf.addfile(info, io.BytesIO(bytes(info.size)))
    assert_refused(tmp_path / "bomb.tar.gz", dest, "decompression bomb")


def test_gzip_of_zeros_after_the_tar_end_is_refused(tmp_path: Path, dest: Path) -> None:
    # Zero blocks end a tar at once: the bytes after the end are still counted.
    archive = tmp_path / "padding.tar.gz"
    with gzip.open(archive, "wb") as out:
        for _ in range(16):
            out.write(bytes(MiB))
    assert_refused(archive, dest, "decompression bomb")


def test_corrupt_zip_is_refused(tmp_path: Path, dest: Path) -> None:
    garbage = tmp_path / "garbage.zip"
    garbage.write_bytes(os.urandom(4096))
    assert_refused(garbage, tmp_path / "a", "corrupt")

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("data.txt", "some text that compresses " * 200)
    raw = bytearray(damaged.read_bytes())
    raw[60] ^= 0xFF  # inside the compressed data of the only member
    damaged.write_bytes(bytes(raw))
    assert_refused(damaged, tmp_path / "b", "corrupt")


def test_truncated_and_garbage_tars_are_refused(tmp_path: Path) -> None:
    whole = tar_with(tmp_path / "whole.tar.gz", [(member("noise.bin"), os.urandom(256 * 1024))])
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(os.urandom(8192))

    assert_refused(truncated, tmp_path / "a", "corrupt or truncated")
    assert_refused(garbage, tmp_path / "b", "corrupt")


@pytest.mark.parametrize("kind", ["directory", "zip", "tar"])
def test_too_many_files_is_refused(kind: str, tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "many"
    source.mkdir()
    for index in range(30):
        (source / f"f{index}.txt").write_text(str(index))
    if kind == "zip":
        source = zip_tree(tmp_path / "many.zip", source)
    elif kind == "tar":
        with tarfile.open(tmp_path / "many.tgz", "w:gz") as tf:
            tf.add(source, arcname=".")
        source = tmp_path / "many.tgz"
    assert_refused(source, dest, "more than 10 files", limits=IntakeLimits(max_files=10))


def test_file_larger_than_the_per_file_limit_is_refused(tmp_path: Path, dest: Path) -> None:
    source = tmp_path / "dir"
    source.mkdir()
    (source / "weights.bin").write_bytes(bytes(2 * MiB))
    assert_refused(source, dest, "'weights.bin' is larger than", limits=IntakeLimits(max_file_bytes=MiB))


# ---- sources that are not there or not understood -----------------------------------------------

def test_missing_unknown_and_empty_sources_are_refused(tmp_path: Path) -> None:
    (tmp_path / "thing.rar").write_bytes(b"Rar!")
    (tmp_path / "empty").mkdir()
    (tmp_path / "only-cache" / "__pycache__").mkdir(parents=True)
    (tmp_path / "only-cache" / "__pycache__" / "x.pyc").write_bytes(b"\x00")
    with zipfile.ZipFile(tmp_path / "empty.zip", "w"):
        pass

    assert_refused(tmp_path / "nope", tmp_path / "a", "no such file")
    assert_refused(tmp_path / "thing.rar", tmp_path / "b", "unknown kind")
    assert_refused(tmp_path / "empty", tmp_path / "c", "empty")
    assert_refused(tmp_path / "only-cache", tmp_path / "d", "empty")
    assert_refused(tmp_path / "empty.zip", tmp_path / "e", "empty")
    assert_refused(tmp_path / "empty.zip", tmp_path / "f", "not a git repository", ref="main")


def test_existing_empty_dest_stays_and_is_left_empty_on_error(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()
    archive = tar_with(tmp_path / "bad.tar.gz", [(member("ok.py"), b"pass\n"), (member("../x"), b"x")])
    assert_refused(archive, dest, r"'\.\.'")
    assert dest.is_dir()


def test_non_empty_dest_is_a_harness_error_and_is_untouched(tmp_path: Path, dest: Path) -> None:
    dest.mkdir()
    (dest / "keep.txt").write_text("mine\n")
    with pytest.raises(HarnessError, match="must be empty") as caught:
        stage_submission(str(make_project(tmp_path / "proj")), dest=dest)
    assert not isinstance(caught.value, IntakeError)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]


def test_dest_inside_the_source_directory_is_refused(tmp_path: Path) -> None:
    source = make_project(tmp_path / "proj")
    with pytest.raises(HarnessError, match="inside the submission"):
        stage_submission(str(source), dest=source / "staged")
    assert not (source / "staged").exists()


# ---- deep trees, long link chains, hangs, oversized archives, messages -------------------------

DEEP = 1500  # beyond Python's recursion limit: shutil.rmtree and os.path.realpath recurse per level


def deep_directory(root: Path, depth: int) -> Path:
    """root/a/a/.../a/x.txt, made relative to open directories so that no path gets long."""
    root.mkdir()
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir("a", dir_fd=fd)
            inner = os.open("a", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        leaf = os.open("x.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.write(leaf, b"x")
        os.close(leaf)
    finally:
        os.close(fd)
    return root


def git_repo_with_file(root: Path, name: str) -> Path:
    """A repository whose one commit holds the file `name` (any depth), made by fast-import."""
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    stream = (f"commit refs/heads/main\ncommitter T <t@example.com> 0 +0000\ndata 0\n"
              f"M 100644 inline {name}\ndata 2\nx\n\n").encode()
    env = {key: value for key, value in os.environ.items() if not key.startswith("GIT_")}
    subprocess.run(["git", "-C", str(root), "fast-import", "--quiet"], input=stream, env=env, check=True)
    return root


@pytest.mark.parametrize("kind", ["zip", "tar", "directory", "git"])
def test_deeply_nested_paths_are_refused_in_every_kind(kind: str, tmp_path: Path, dest: Path) -> None:
    name = "a/" * DEEP + "x.txt"
    # A later bad member: without the depth cap, cleaning a 1500-deep dest raised RecursionError.
    if kind == "zip":
        source = tmp_path / "deep.zip"
        with zipfile.ZipFile(source, "w") as zf:
            zf.writestr(name, "x")
            zf.writestr("../after.txt", "x")
    elif kind == "tar":
        source = tar_with(tmp_path / "deep.tar", [(member(name), b"x"), (member("../after.txt"), b"x")],
                          mode="w")
    elif kind == "directory":
        source = deep_directory(tmp_path / "deep", DEEP)
    else:
        source = git_repo_with_file(tmp_path / "deep", name)
    try:
        error = assert_refused(source, dest, "nested more than 64 levels deep",
                               **({"ref": "main"} if kind == "git" else {}))
    finally:
        remove_tree(source)  # pytest's own cleanup would recurse 1500 levels
        remove_tree(dest)
    assert "'a/a/a/a/" in str(error)
    assert len(str(error)) < 1000


def test_tree_64_levels_deep_is_accepted(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "ok.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a/" * 63 + "x.txt", "x")
        zf.writestr("top.txt", "y")  # two top-level entries: nothing is unwrapped
    stage_submission(str(archive), dest=dest)
    assert dest.joinpath(*["a"] * 63, "x.txt").read_text() == "x"


@pytest.mark.parametrize("kind", ["directory", "tar"])
def test_long_symlink_chains_are_refused_without_recursing(kind: str, tmp_path: Path, dest: Path) -> None:
    links = [(f"l{index}", f"l{index - 1}") for index in range(1, 1200)]
    if kind == "directory":
        source = tmp_path / "chain"
        source.mkdir()
        (source / "l0").write_text("x")
        for name, target in links:
            os.symlink(target, source / name)
    else:
        source = tar_with(tmp_path / "chain.tar", [(member("l0"), b"x")] + [
            (member(name, tarfile.SYMTYPE, target), None) for name, target in links], mode="w")
    assert_refused(source, dest, "leads through more than 40 links")


def test_real_path_agrees_with_os_path_realpath(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    links = {"rel": "d/e", "abs": str(tmp_path / "d"), "up": "d/e/..", "via": "rel/../e",
             "dangling": "missing/../../x", "chain": "up/e", "loop": "loop", "to_root": "/"}
    for name, target in links.items():
        os.symlink(target, tmp_path / name)
    for name in [*links, "rel/x/../y", "d/../abs/e", "chain/..", "missing/rel"]:
        path = str(tmp_path / name)
        if name == "loop":
            assert real_path(path) is None  # os.path.realpath gives up and returns the loop as is
        else:
            assert real_path(path) == os.path.realpath(path), name


def test_deeply_nested_notebook_is_refused(tmp_path: Path, dest: Path) -> None:
    path = tmp_path / "deep.ipynb"
    # Valid JSON that json.loads accepts; nbformat converts and validates it recursively.
    path.write_text('{"nbformat": 4, "nbformat_minor": 5, "cells": [], "metadata": {"x": '
                    + "[" * 600 + "]" * 600 + "}}")
    assert_refused(path, dest, "nested too deeply")


def repo_with_fifo_blob(root: Path) -> Path:
    """A repository whose one blob's loose object is a fifo (git blocks opening it); returns the fifo."""
    root.mkdir()
    (root / "a.txt").write_text("content\n")
    git_repo(root)
    oid = git(root, "rev-parse", "HEAD:a.txt")
    loose = root / ".git" / "objects" / oid[:2] / oid[2:]
    loose.unlink()
    os.mkfifo(loose)
    return loose


def refused_without_hanging(source: Path, dest: Path, match: str, fifo: Path,
                            **kwargs: object) -> IntakeError:
    """assert_refused, run in a thread. If staging blocks on `fifo` for a minute, opening it for
    writing wakes the reader with EOF, so the test fails instead of hanging the suite."""
    outcome: dict[str, BaseException] = {}

    def run() -> None:
        try:
            outcome["error"] = assert_refused(source, dest, match, **kwargs)
        except BaseException as err:  # re-raised in the test's thread
            outcome["failure"] = err

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=60)
    if thread.is_alive():
        with suppress(OSError):
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(timeout=30)
        pytest.fail("staging blocked on a fifo")
    if "failure" in outcome:
        raise outcome["failure"]
    return outcome["error"]  # type: ignore[return-value]


def test_git_object_store_holding_a_fifo_is_refused_before_git_runs(tmp_path: Path, dest: Path) -> None:
    fifo = repo_with_fifo_blob(tmp_path / "repo")
    refused_without_hanging(tmp_path / "repo", dest, r"objects/[0-9a-f]{2}/[0-9a-f]+' is not a regular file",
                            fifo, ref="main")


def test_git_that_stops_answering_is_killed_after_the_timeout(tmp_path: Path, dest: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = repo_with_fifo_blob(tmp_path / "repo")
    monkeypatch.setattr(harness._git, "GIT_TIMEOUT", 2.0)
    monkeypatch.setattr(harness._git, "_check_git_dir", lambda git_dir: None)  # let git reach the fifo
    refused_without_hanging(tmp_path / "repo", dest, "git took more than 2 s to read commit", fifo,
                            ref="main")


@pytest.mark.parametrize(("tamper", "match"), [
    ("alternates", "keeps objects elsewhere"),
    ("config-fifo", "config is not a regular file"),
    ("objects-symlink", "is not a regular file or directory"),
    ("gitfile", "not a plain directory"),
])
def test_git_repository_reading_outside_itself_or_from_special_files_is_refused(
        tamper: str, match: str, tmp_path: Path, dest: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "a.txt").write_text("content\n")
    git_repo(repo)
    git_dir = repo / ".git"
    if tamper == "alternates":
        (git_dir / "objects" / "info" / "alternates").write_text(f"{tmp_path / 'other' / 'objects'}\n")
    elif tamper == "config-fifo":
        (git_dir / "config").unlink()
        os.mkfifo(git_dir / "config")
    elif tamper == "objects-symlink":
        os.symlink("/dev/zero", git_dir / "objects" / "pack" / "evil.pack")
    else:
        git_dir.rename(tmp_path / "real.git")
        (repo / ".git").write_text(f"gitdir: {tmp_path / 'real.git'}\n")
    assert_refused(repo, dest, match, ref="main")


def zip_bytes(count: int) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        for index in range(count):
            zf.writestr(f"e{index}.txt", b"")
    return out.getvalue()


def with_zip64_end(data: bytes) -> bytes:
    """The same zip with a zip64 end record and locator, and the classic end record saying 'see zip64'."""
    end = data.rfind(b"PK\x05\x06")
    entries, size, offset = struct.unpack_from("<HLL", data, end + 10)
    zip64 = struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, entries, entries, size, offset)
    locator = struct.pack("<4sLQL", b"PK\x06\x07", 0, end, 1)
    classic = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return data[:end] + zip64 + locator + classic


def test_zip_listing_more_entries_than_max_files_is_refused_before_zipfile_reads_them(tmp_path: Path) -> None:
    limits = IntakeLimits(max_files=10)
    honest = zip_bytes(11)
    # zipfile walks the central directory by its size and ignores the end record's count.
    understated = bytearray(honest)
    struct.pack_into("<HH", understated, honest.rfind(b"PK\x05\x06") + 8, 1, 1)
    assert len(zipfile.ZipFile(io.BytesIO(understated)).infolist()) == 11
    # One entry with a 60 KB comment: few entries, but a directory far larger than 10 need.
    commented = io.BytesIO()
    with zipfile.ZipFile(commented, "w") as zf:
        zf.writestr(zipfile.ZipInfo("a.txt"), b"")
        zf.infolist()[0].comment = b"c" * 60_000
    too_many = "zip archive lists more than 10 files"
    cases = {"honest": (honest, too_many), "understated": (understated, too_many),
             "zip64": (with_zip64_end(honest), too_many),
             "commented": (commented.getvalue(), "zip archive has a central directory larger than")}
    for name, (data, match) in cases.items():
        (tmp_path / f"{name}.zip").write_bytes(data)
        assert_refused(tmp_path / f"{name}.zip", tmp_path / f"out-{name}", match, limits=limits)


def test_zip64_end_record_is_read(tmp_path: Path, dest: Path) -> None:
    archive = tmp_path / "zip64.zip"
    archive.write_bytes(with_zip64_end(zip_bytes(3)))
    assert len(zipfile.ZipFile(archive).infolist()) == 3  # the reference reader agrees it is valid
    stage_submission(str(archive), dest=dest, limits=IntakeLimits(max_files=10))
    assert sorted(p.name for p in dest.iterdir()) == ["e0.txt", "e1.txt", "e2.txt"]


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_archive_file_larger_than_the_limits_allow_is_refused_unopened(kind: str, tmp_path: Path) -> None:
    limits = IntakeLimits(max_bytes=MiB, max_files=10)

    def archive(name: str, size: int) -> Path:
        noise = os.urandom(size)  # incompressible: the archive is as large as its content
        if kind == "tar":
            return tar_with(tmp_path / f"{name}.tar", [(member("noise.bin"), noise)], mode="w")
        with zipfile.ZipFile(tmp_path / f"{name}.zip", "w", zipfile.ZIP_STORED) as zf:
            zf.writestr("noise.bin", noise)
        return tmp_path / f"{name}.zip"

    assert_refused(archive("big", 3 * MiB), tmp_path / "a", "archive file is larger than", limits=limits)
    staged = stage_submission(str(archive("fits", MiB)), dest=tmp_path / "b", limits=limits)
    assert (staged.path / "noise.bin").stat().st_size == MiB


@pytest.mark.parametrize("name", ["pipe.zip", "pipe.tar.gz", "pipe.ipynb"])
def test_fifo_named_like_a_file_source_is_refused(name: str, tmp_path: Path, dest: Path) -> None:
    os.mkfifo(tmp_path / name)
    refused_without_hanging(tmp_path / name, dest, "not a regular file", tmp_path / name)


@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_messages_are_one_line_without_control_characters(kind: str, tmp_path: Path, dest: Path) -> None:
    # A name component too long for the file system: the OS error names the path built from it.
    name = "\x1b[2J\x1b]0;pwned\x07\nsecond line\r" + "x" * 300
    if kind == "zip":
        source = tmp_path / "nasty.zip"
        with zipfile.ZipFile(source, "w") as zf:
            zf.writestr(name, "x")
    else:
        source = tar_with(tmp_path / "nasty.tar", [(member(name), b"x")], mode="w")
    error = assert_refused(source, dest, "File name too long")
    assert not any(ord(char) < 32 or ord(char) == 0x7F for char in str(error))
    assert "pwned" in str(error)
