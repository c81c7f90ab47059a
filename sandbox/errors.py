"""What a sandbox backend raises about itself; a candidate's failure is never one of these (it is
a status on the RunResult).

    SandboxError
    ├── BackendError        the backend failed: no daemon, an image missing, a container that
    │   │                   would not start, the run cancelled; `transient` says whether a retry
    │   │                   could help
    │   └── ImageBuildError an image (the base, an assignment's, a candidate's) does not build
    └── InvalidRequest      a RunRequest no backend can run (an empty command, two mounts on one
                            target): the caller's bug, never retried

The harness maps these onto its own errors and exit codes (harness.errors.from_sandbox).
"""

from __future__ import annotations


class SandboxError(Exception):
    """Base class of the sandbox's own errors."""

    transient = False


class BackendError(SandboxError):
    """The backend could not run the request; a retry may succeed (`transient`)."""

    transient = True


class ImageBuildError(BackendError):
    """An image could not be built."""


class InvalidRequest(SandboxError):
    """The request itself cannot be run; retrying it changes nothing."""
