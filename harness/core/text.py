"""Small text helpers for what the harness prints and stores about candidates."""

from __future__ import annotations

import re

# CSI sequences (7-bit or C1, colours and cursor moves) whole; C0 and C1 controls but newline and
# tab, so no other escape sequence can start (an OSC 52 clipboard write or a title is left as plain
# text without its ESC and BEL); and the invisible or direction-reversing characters that could
# disguise what a reviewer reads (zero-width, word joiners, byte-order mark, bidi marks, embeddings,
# overrides and isolates).
CSI = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]")  # ANSI colours and cursor moves
CONTROL = re.compile(CSI.pattern +
                     r"|[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069"
                     r"\ufeff]")
_WHITESPACE = re.compile(r"\s+")
_CARRIAGE_RETURN = re.compile(r"\r\n?")


def printable(text: str) -> str:
    """`text` safe to serialise: undecodable bytes from the command line shown as escapes."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def terminal_safe(text: str) -> tuple[str, int]:
    """`text` safe to `cat` or `less` in a terminal, and how many sequences or characters were removed.

    Lines and tabs are kept. A carriage return becomes a line break (CRLF one, a bare CR one too, so
    no line can be overwritten on screen by the text after it); everything CONTROL matches is removed.
    """
    return CONTROL.subn("", _CARRIAGE_RETURN.sub("\n", text))


def reviewer_text(data: bytes) -> tuple[str, list[str]]:
    """A file a candidate wrote, as text a reviewer can `cat` (`terminal_safe`), and what was changed.

    A file that is not UTF-8 is still shown as text, never passed on as is: undecodable bytes
    become U+FFFD.
    """
    notes = []
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("utf-8", errors="replace")
        notes.append("not UTF-8 text: undecodable bytes shown as U+FFFD")
    text, removed = terminal_safe(text)
    if removed:
        notes.append(f"{removed} terminal control, invisible or bidi characters or sequences removed")
    return text, notes


def one_line(value: object, limit: int | None = None) -> str:
    """`value` as one line without control characters, cut to `limit` characters with an ellipsis.
    Colour codes go without a trace (`\x1b[31mKeyError\x1b[0m: 'x'` reads `KeyError: 'x'`)."""
    text = _WHITESPACE.sub(" ", CONTROL.sub(" ", CSI.sub("", str(value)))).strip()
    return text if limit is None or len(text) <= limit else text[: limit - 1] + "\u2026"


def slug(text: str) -> str:
    """A name for folders and MLflow: [a-z0-9._-]."""
    return re.sub(r"[^a-z0-9._-]+", "-", printable(text).lower()).strip("-.") or "submission"
