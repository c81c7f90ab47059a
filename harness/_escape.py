"""The one CSV-cell escaper of the harness (the leaderboard's `--format csv` and `harness export
--format csv` both use it): a leading `'` on a text cell a spreadsheet would run as a formula.

OWASP, https://owasp.org/www-community/attacks/CSV_Injection: cells starting with `=`, `+`, `-`,
`@`, tab or carriage return; ASVS 5.0 V1.2.10 adds NUL; a line feed starts a new line inside a
quoted cell, after which a spreadsheet may read `=` as the start of a formula again.
"""

from __future__ import annotations

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "\n", "\0")


def safe_cell(text: str) -> str:
    """`text` as a spreadsheet shows it, never as a formula: a leading `'` where it would be one."""
    return "'" + text if text.startswith(FORMULA_STARTS) else text
