"""Small text helpers for what the harness prints and stores about candidates."""

from __future__ import annotations

import re

# ANSI sequences, C0 and C1 controls, and the invisible or direction-reversing characters that
# could disguise what a reviewer reads (zero-width, bidi embeddings, overrides and isolates).
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]"
                     r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
_WHITESPACE = re.compile(r"\s+")


def printable(text: str) -> str:
    """`text` safe to serialise: undecodable bytes from the command line shown as escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def one_line(value: object, limit: int | None = None) -> str:
    """`value` as one line without control characters, cut to `limit` characters with an ellipsis."""
    text = _WHITESPACE.sub(" ", CONTROL.sub(" ", str(value))).strip()
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "\u2026"


def slug(text: str) -> str:
    """A name for folders and MLflow: [a-z0-9._-]."""
    return re.sub(r"[^a-z0-9._-]+", "-", printable(text).lower()).strip("-.") or "submission"
