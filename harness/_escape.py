"""The harness's escapers, one per format a candidate's text is written into: HTML (the cohort,
candidate and similarity pages), Markdown (report.md, the `--format markdown` leaderboard) and
CSV cells (the leaderboard's `--format csv` and `harness export --format csv`).

CSV: a leading `'` on a text cell a spreadsheet would run as a formula. OWASP,
https://owasp.org/www-community/attacks/CSV_Injection: cells starting with `=`, `+`, `-`, `@`,
tab or carriage return; ASVS 5.0 V1.2.10 adds NUL; a line feed starts a new line inside a quoted
cell, after which a spreadsheet may read `=` as the start of a formula again.

Markdown: every ASCII punctuation character that can start markup (emphasis, links and images,
code, HTML, tables, headings, math in renderers that have it) is backslash-escaped, which
CommonMark allows for any ASCII punctuation; parentheses are left as they are (a link needs its
brackets, which are escaped), so a Python error reads as written. The text is made one line
first, so no line of it can start a block.
"""

from __future__ import annotations

import html
import re

from harness.core.text import CONTROL, one_line

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")
_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>#+!|~&$])")


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it, never as a formula: a leading `'` where it would be one."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def esc(text: object, limit: int | None = None) -> str:
    """`text` safe inside HTML text or a quoted attribute, control characters shown as U+FFFD."""
    value = CONTROL.sub("\ufffd", str(text))
    if limit is not None and len(value) > limit:
        value = value[: limit - 1] + "\u2026"
    return html.escape(value, quote=True)


def markdown_text(value: object, limit: int | None = None) -> str:
    """`value` as literal Markdown text on one line (a paragraph, a bullet or a table cell)."""
    return _MARKDOWN.sub(r"\\\1", one_line(value, limit))
