"""The harness's exceptions and the exit codes they map to.

    HarnessError                 exit 1   a bug or an unexpected state of the harness
    ├── UsageError               exit 2   the command asks for what cannot be (a missing results
    │                                     folder, an inbox folder given as one submission)
    ├── SpecError                exit 3   an assignment spec is malformed (file, field, fix)
    ├── IntakeError              exit 4   a submission cannot be taken in (missing, corrupt, unsafe)
    └── InfraError               exit 5   Docker, an image build, the disk: retried, never scored
        ├── ImageBuildError               the assignment's own image does not build
        ├── ClusterLost                   the Dask scheduler went away: the batch stops
        └── DeterministicInfraError       the harness fails on this submission's data (a grader
                                          raised, a probe failed): not retried, never scored

`InfraError.transient` tells the batch whether a retry could help: true for Docker API errors,
a daemon that does not answer, a full disk or a network hiccup during a build; false for a
failure that the same input would cause again (a retry would only spend the batch's time again).

The sandbox raises its own errors (sandbox.errors); `from_sandbox` maps them onto these where the
harness calls it (`sandbox_errors()` around the call): a BackendError is an InfraError (transient
as the backend said), an image that does not build an ImageBuildError, an InvalidRequest a
HarnessError (the harness asked for what no backend can run: a bug).

Usage errors (bad flags, and UsageError) exit 2, as click does. A candidate's failure (non-zero exit,
timeout, OOM, bad predictions) is never an exception: it is a status on the result.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sandbox import errors as _sandbox


class HarnessError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(HarnessError):
    """The command line (or API call) names something that cannot be used; the message says what to type."""

    exit_code = 2


class SpecError(HarnessError):
    """An assignment spec is invalid. The message names the file and the field."""

    exit_code = 3


class IntakeError(HarnessError):
    """A submission could not be taken in safely (missing, corrupt, unsafe, too big)."""

    exit_code = 4


class InfraError(HarnessError):
    """The harness's own infrastructure failed; the submission is retried, then left ungraded."""

    exit_code = 5
    transient = True  # a retry may succeed


class DeterministicInfraError(InfraError):
    """The harness failed on this submission in a way a retry would repeat; left ungraded at once."""

    transient = False


class ClusterLost(InfraError):
    """The Dask scheduler a batch grades on stopped answering (harness.cluster). The batch stops:
    what was graded is saved, and a re-run grades the rest."""


class ImageBuildError(InfraError):
    """An assignment image (or the base image) could not be built."""


def from_sandbox(exc: _sandbox.SandboxError) -> HarnessError:
    """The harness's error for a sandbox error: same message, same transience."""
    if not isinstance(exc, _sandbox.BackendError):
        return HarnessError(str(exc))
    mapped = (ImageBuildError if isinstance(exc, _sandbox.ImageBuildError) else InfraError)(str(exc))
    mapped.transient = exc.transient
    return mapped


@contextmanager
def sandbox_errors() -> Iterator[None]:
    """Raise the sandbox's errors raised in the block as the harness's (`from_sandbox`)."""
    try:
        yield
    except _sandbox.SandboxError as exc:
        raise from_sandbox(exc) from exc
