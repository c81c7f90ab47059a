"""The command line that builds a local sandbox with bubblewrap, and the in-sandbox launcher.

The sandbox's root is an empty read-only tmpfs holding only: the system directories
needed to run Python (read-only), the interpreter's prefixes (read-only), a handful of
`/etc` files (synthetic passwd/group/hosts, the dynamic loader's cache), the request's
mounts, a size-capped tmpfs at /tmp and /dev/shm, and fresh /dev and /proc.

Why no user namespace when the harness is root: a user namespace created by root maps
the stage's uid to host uid 0, so anything it wrote would be owned by root on the host
and RLIMIT_NPROC would not apply to it. Instead bwrap runs as root without one, and the
launcher (pid 1) sets the rlimits and forks the stage, which drops to `SANDBOX_UID` (so it
cannot raise them again).
Without root, bwrap needs an unprivileged user namespace, and the stage's host uid is the
harness's own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sandbox._base import Limits, RunRequest

SANDBOX_UID = SANDBOX_GID = 10001
TMP = "/tmp"  # noqa: S108 - the sandbox's own tmpfs, not the host's /tmp
_SHM = "/dev/shm"  # noqa: S108 - likewise inside the sandbox
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# `python` and `python3` always name the backend's interpreter: its own bin dir comes first
# on PATH, and this dir (symlinks to it) second, for names that bin dir lacks.
_FALLBACK_BIN = "/.sandbox/bin"
_RESERVED = (*SYSTEM_DIRS, "/etc", "/dev", "/proc", "/.sandbox")
# Host /etc files a Python process may need; everything else in /etc (credentials, tool
# configs such as pip.conf or docker's) stays hidden.
_ETC_FILES = ("ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "mime.types")
_SHM_BYTES = 64 << 20  # Docker's default /dev/shm size
_NOFILE = 4096
_FSIZE_SLACK = 1  # FSIZE = disk cap + 1, so a single file crossing the cap is seen as over it

# Pid 1 of the sandbox. It sets the rlimits, forks the stage, and reaps every process until the
# stage exits, then exits with the stage's status. The stage's child drops to the sandbox uid,
# tells the host that setup succeeded (one byte on the ready fd) and execs the command.
# Pid 1 keeps bwrap's uid and its parent-death signal: a uid change would clear that signal,
# and bwrap (without capabilities) may not signal another uid, so a pid 1 running as the
# sandbox uid would outlive a harness killed with SIGKILL. Reaping here also feeds the peak
# RSS of every sandbox process into bwrap's wait4() rusage, and keeps zombies (which count
# against RLIMIT_NPROC) from piling up.
_LAUNCHER = """\
import os, resource, sys
ready, uid, gid, count = (int(x) for x in sys.argv[1:5])
for spec in sys.argv[5:5 + count]:
    name, value = spec.split("=")
    resource.setrlimit(getattr(resource, name), (int(value), int(value)))
command = sys.argv[5 + count:]
stage = os.fork()
if stage == 0:
    if uid >= 0:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    os.write(ready, b"1")
    os.close(ready)
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        sys.stderr.write(f"sandbox: cannot run {command[0]!r}: {exc.strerror}\\n")
        os._exit(127)
os.close(ready)
while True:
    pid, status = os.wait()
    if pid == stage:
        break
code = os.waitstatus_to_exitcode(status)
os._exit(code if code >= 0 else 128 - code)
"""


@dataclass(frozen=True)
class Layout:
    """What the host contributes to every sandbox: interpreter, its prefixes, the bwrap binary."""

    bwrap: str
    python: str
    prefixes: tuple[str, ...]  # read-only host dirs the interpreter lives in
    privileged: bool  # the harness is root: no user namespace, the launcher drops privileges
    tmpfs_size: bool  # this bwrap supports --size


def rlimits(limits: Limits) -> dict[str, int]:
    """The per-process limits the launcher sets (see LocalBackend for what each one means)."""
    return {
        "RLIMIT_AS": limits.memory_bytes,
        "RLIMIT_NPROC": limits.pids,
        "RLIMIT_FSIZE": limits.disk_bytes + _FSIZE_SLACK,
        "RLIMIT_CORE": 0,
        "RLIMIT_NOFILE": _NOFILE,
    }


def bwrap_argv(
    layout: Layout, request: RunRequest, *, ready_fd: int, info_fd: int, data_fds: dict[str, int],
    own_network: bool = True,
) -> list[str]:
    """The full argv: bwrap options, then the launcher, then the stage's command.

    bwrap writes its child's pid (JSON) to `info_fd`; `data_fds` maps an /etc file name to
    an fd holding its content (see `etc_data`). The mount targets must pass `check_target`.
    `own_network=False` keeps the caller's network namespace: for a probe started (with
    nsenter) inside its service's namespace, which has loopback only.
    """
    # --as-pid-1: the launcher is pid 1 rather than bwrap's own init, so bwrap reaps it directly
    # and wait4() on bwrap reports the sandbox's peak memory. The host kills the sandbox by
    # signalling that pid 1 (reported on info_fd); --die-with-parent covers a dying harness.
    argv = [layout.bwrap, *_namespaces(layout, own_network), "--as-pid-1", "--die-with-parent",
            "--new-session", "--clearenv", "--info-fd", str(info_fd)]
    # /tmp first: an interpreter prefix or a mount under /tmp is then bound on top of it.
    argv += _tmpfs(layout, TMP, request.limits.tmpfs_bytes)
    argv += _system(layout, data_fds)
    argv += _tmpfs(layout, _SHM, min(_SHM_BYTES, request.limits.tmpfs_bytes))
    argv += _request_mounts(request)
    argv += ["--remount-ro", "/", "--chdir", request.workdir]
    for key, value in environment(layout, request).items():
        argv += ["--setenv", key, value]
    limits = [f"{name}={value}" for name, value in rlimits(request.limits).items()]
    uid, gid = (SANDBOX_UID, SANDBOX_GID) if layout.privileged else (-1, -1)
    argv += ["--", layout.python, "-I", "-S", "-c", _LAUNCHER, str(ready_fd), str(uid), str(gid)]
    return [*argv, str(len(limits)), *limits, *request.command]


def check_target(target: str) -> str | None:
    """Why `target` cannot be a mount point in the sandbox, or None if it can."""
    path = PurePosixPath(target)
    if not path.is_absolute() or ".." in path.parts:
        return "not an absolute path without '..'"
    if str(path) in ("/", TMP) or any(path.is_relative_to(d) for d in _RESERVED):
        return "reserved by the sandbox (system dirs, /etc, /dev, /proc, /.sandbox)"
    return None


def is_system_path(path: str) -> bool:
    """True for a path under a directory the sandbox provides itself (system dirs, /etc, /dev, ...)."""
    return any(PurePosixPath(path).is_relative_to(d) for d in _RESERVED)


def environment(layout: Layout, request: RunRequest) -> dict[str, str]:
    """The stage's whole environment: PATH (interpreter first) and HOME, then request.env."""
    path = [str(Path(layout.python).parent), _FALLBACK_BIN, "/usr/local/bin", "/usr/bin", "/bin"]
    return {"PATH": ":".join(dict.fromkeys(path)), "HOME": TMP, **dict(request.env)}


def etc_data() -> dict[str, bytes]:
    """Synthetic /etc files: the sandbox user and group, and localhost only."""
    return {
        "passwd": (f"root:x:0:0::/:/usr/sbin/nologin\n"
                   f"sandbox:x:{SANDBOX_UID}:{SANDBOX_GID}::{TMP}:/bin/sh\n").encode(),
        "group": f"root:x:0:\nsandbox:x:{SANDBOX_GID}:\n".encode(),
        "hosts": b"127.0.0.1 localhost\n::1 localhost\n",
    }


def _namespaces(layout: Layout, own_network: bool) -> list[str]:
    net = ["--unshare-net"] if own_network else []
    shared = ["--unshare-ipc", "--unshare-pid", *net, "--unshare-uts", "--unshare-cgroup-try"]
    if layout.privileged:  # pid 1 keeps only what it needs to drop to the sandbox uid
        caps = ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        return [*shared, *caps, "--hostname", "sandbox"]
    user = ["--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_GID)]
    return [*shared, *user, "--hostname", "sandbox"]


def _system(layout: Layout, data_fds: dict[str, int]) -> list[str]:
    argv: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for prefix in layout.prefixes:
        argv += [*_parents(prefix, ()), "--ro-bind", prefix, prefix]
    argv += ["--perms", "0755", "--dir", "/.sandbox", "--perms", "0755", "--dir", _FALLBACK_BIN]
    for name in ("python", "python3"):
        argv += ["--symlink", layout.python, f"{_FALLBACK_BIN}/{name}"]
    argv += ["--perms", "0755", "--dir", "/etc"]
    for name in _ETC_FILES:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for name, fd in data_fds.items():
        argv += ["--perms", "0644", "--ro-bind-data", str(fd), f"/etc/{name}"]
    return [*argv, "--dev", "/dev", "--proc", "/proc"]


def _tmpfs(layout: Layout, target: str, size: int) -> list[str]:
    sized = ["--size", str(size)] if layout.tmpfs_size else []
    return ["--perms", "1777", *sized, "--tmpfs", target]


def _request_mounts(request: RunRequest) -> list[str]:
    argv: list[str] = []
    targets = tuple(m.target for m in request.mounts)
    # Parents before children, so a mount nested in another one is not hidden by it.
    for mount in sorted(request.mounts, key=lambda m: len(PurePosixPath(m.target).parts)):
        flag = "--ro-bind" if mount.read_only else "--bind"
        argv += [*_parents(mount.target, targets), flag, str(mount.source), mount.target]
    if not _covered(PurePosixPath(request.workdir), targets):
        argv += [*_parents(request.workdir, targets), "--perms", "0755", "--dir", request.workdir]
    return argv


def _parents(target: str, mounted: tuple[str, ...]) -> list[str]:
    # bwrap creates missing parents with mode 0700, which the sandbox uid could not traverse;
    # parents inside a mount or a system dir exist already (or the bind fails, as it should).
    argv: list[str] = []
    for parent in reversed(PurePosixPath(target).parents):
        if not _covered(parent, mounted):
            argv += ["--perms", "0755", "--dir", str(parent)]
    return argv


def _covered(path: PurePosixPath, mounted: tuple[str, ...]) -> bool:
    if str(path) in ("/", TMP) or is_system_path(str(path)):
        return True
    return any(path.is_relative_to(t) for t in mounted)
