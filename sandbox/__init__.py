"""Sandbox backends: the interface, the docker and local backends, and image recipes."""

from sandbox._base import Limits, Mount, RunRequest, RunResult, SandboxBackend, StageStatus
from sandbox._fs import OutputRefused, make_writable_dir, pid_alive, read_bounded, tree_size

__all__ = ["Limits", "Mount", "OutputRefused", "RunRequest", "RunResult", "SandboxBackend", "StageStatus",
           "make_writable_dir", "pid_alive", "read_bounded", "tree_size"]
