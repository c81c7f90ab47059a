"""What the cohort page and the candidate pages share: the page shell, inline CSS, safe links.

No scripts, no external fonts, styles or images: the pages open offline from a copied folder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from urllib.parse import quote

from harness._escape import esc

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f4f4f4}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.why{border-left:5px solid #c62828;background:#fdecea;padding:.5em 1em;margin:1em 0}
.warn{border-left:5px solid #f9a825;background:#fff8e1;padding:.5em 1em;margin:1em 0}
.st-ok{color:#2e7d32;font-weight:bold}.st-bad{color:#c62828;font-weight:bold}.muted{color:#777}.prov{color:#e65100}
.flag{color:#6a1b9a;font-weight:bold}.sw{display:inline-block;width:10px;height:10px;margin-right:4px}
pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:30em;font-size:12px}
code{background:#f3f3f3;padding:0 3px}img{max-width:100%;border:1px solid #eee}
figure{margin:.5em 0}.reason{display:inline-block;min-width:14em}svg{display:block;margin:.5em 0 1em}
"""


def page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width"><title>{esc(title, 200)}</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n</body></html>\n")


def href(path: str) -> str:
    """A relative link to `path` (a '/'-separated path inside the results): percent-encoded, so no
    name can carry a scheme, a query or a quote."""
    return esc(quote(path, safe="/._-"))


def link(path: str, text: str) -> str:
    return f'<a href="{href(path)}">{esc(text, 200)}</a>'


def table(head: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    """A table of already-escaped cells; columns in `numeric` are right-aligned."""
    top = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
                                    for i, c in enumerate(row)) + "</tr>\n" for row in rows)
    return f"<table><tr>{top}</tr>\n{body}</table>\n"


def num(value: float | None, digits: int = 3) -> str:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "n/a"
    if not math.isfinite(value):
        return esc(str(value))
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.{digits}f}"


def status_class(status: str) -> str:
    return "st-ok" if status == "ok" else "st-bad"
