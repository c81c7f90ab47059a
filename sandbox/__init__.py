"""Sandbox backends: the interface, the docker and local backends, and image recipes."""

from sandbox._base import (
    RUNNERS_DIR,
    RUNNERS_MOUNT,
    SERVICE_STARTED_ENV,
    Limits,
    Mount,
    RunRequest,
    RunResult,
    SandboxBackend,
    StageStatus,
)
from sandbox._fs import OutputRefused, copy_workspace, make_writable_dir, pid_alive, read_bounded, tree_size

__all__ = ["RUNNERS_DIR", "RUNNERS_MOUNT", "SERVICE_STARTED_ENV", "Limits", "Mount", "OutputRefused",
           "RunRequest", "RunResult", "SandboxBackend", "StageStatus", "copy_workspace", "make_writable_dir",
           "pid_alive", "read_bounded", "tree_size"]
