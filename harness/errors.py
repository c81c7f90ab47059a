"""The harness's exceptions and the exit codes they map to.

    HarnessError                 exit 1   a bug or an unexpected state of the harness
    ├── SpecError                exit 3   an assignment spec is malformed (file, field, fix)
    ├── IntakeError              exit 4   a submission cannot be taken in (missing, corrupt, unsafe)
    └── InfraError               exit 5   Docker, an image build, the disk: retried, never scored
        ├── ImageBuildError               the assignment's own image does not build
        └── DeterministicInfraError       the harness fails on this submission's data (a grader
                                          raised, a probe failed): not retried, never scored

`InfraError.transient` tells the batch whether a retry could help: true for Docker API errors,
a daemon that does not answer, a full disk or a network hiccup during a build; false for a
failure that the same input would cause again (a retry would only spend the batch's time again).

Usage errors (bad flags) exit 2, as click does. A candidate's failure (non-zero exit,
timeout, OOM, bad predictions) is never an exception: it is a status on the result.
"""

from __future__ import annotations


class HarnessError(Exception):
    """Base class; `exit_code` is what the CLI exits with."""

    exit_code = 1


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


class ImageBuildError(InfraError):
    """An assignment image (or the base image) could not be built."""

