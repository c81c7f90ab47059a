"""The one rule for a file a spec names for the harness or a grader to read (an output in
/output, a grader's answers or labels file): a plain name, never a path."""

from __future__ import annotations

import re

_PLAIN_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
RULE = ("a plain file name: letters, digits, '.', '_', '-', starting with a letter or digit, no '/' "
        "(at most 128 characters)")


def plain_file_name(value: str) -> str:
    """`value` if it is a plain file name; ValueError (a pydantic validator's error) if not."""
    if not _PLAIN_FILE.match(value):
        raise ValueError(f"{value!r} must be {RULE}")
    return value
