"""Subprocess entry point that renders one hostile notebook to sanitised HTML under resource limits.

Run as `python -m harness._nbrender_worker SOURCE TARGET MEMORY_BYTES CPU_SECONDS FILE_BYTES` by
`harness.notebook_html`, never in the harness process: nbconvert, mistune and bleach have super-linear
cases (many cells, nested markup, long runs of brackets) a candidate can trigger on purpose. Before
rendering, the notebook is cut to the bounds below, with a visible note wherever something was cut.
Exit status 0 means TARGET holds the page; otherwise the last stderr line says why.
"""

from __future__ import annotations

import html
import json
import re
import resource
import sys
from pathlib import Path
from typing import Any

from harness.core.text import CONTROL

MAX_CELLS = 500
MAX_OUTPUTS_PER_CELL = 50
MAX_TEXT_CHARS = 100_000  # per output (stream, error, text/plain, ...) and per code-cell source
MAX_MARKUP_CHARS = 100_000  # per markdown cell or text/html, text/markdown, image/svg+xml output
MAX_TOTAL_MARKUP_CHARS = 500_000  # for the whole notebook: bleach runs at well under 1 MB/s
MAX_MARKUP_DEPTH = 64  # bleach is quadratic in tag nesting: deeper markup is shown as escaped text
MAX_IMAGE_CHARS = 2_000_000  # base64 PNG/JPEG; a cut image is useless, so it is dropped instead
TRUNCATED = "\u2026 truncated by the harness"

_MARKUP_TYPES = ("text/html", "text/markdown", "image/svg+xml")
_IMAGE_TYPES = ("image/png", "image/jpeg")
_KEPT_TYPES = frozenset((*_MARKUP_TYPES, *_IMAGE_TYPES, "text/plain", "text/latex", "application/json"))

ALLOWED_TAGS = frozenset({
    "p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "table", "thead", "tbody", "tfoot",
    "tr", "th", "td", "caption", "pre", "code", "div", "span", "em", "strong", "b", "i", "a", "img",
    "br", "hr", "blockquote", "sub", "sup",
})
ALLOWED_PROTOCOLS = frozenset({"http", "https", "mailto", "data"})
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_TAG = re.compile(r"<(/?)([a-zA-Z][a-zA-Z0-9]*)[^<>]*?(/?)>")
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
                   "track", "wbr"})


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """Bleach attribute filter: classes anywhere, links, and images only from data: URIs."""
    if name == "class":
        return True
    uri = re.sub(r"[\x00-\x20\x7f]+", "", value).lower()
    if tag == "a":
        return name == "title" or (name == "href" and not uri.startswith("data:"))
    if tag == "img":  # no remote fetches from the reviewer's browser
        return name == "alt" or (name == "src" and uri.startswith("data:image/"))
    return tag in ("th", "td") and name in ("colspan", "rowspan")


def clean_html(markup: Any) -> str:
    """Sanitise `markup` with the explicit allow-list (replaces nbconvert's `clean_html` filter).

    nbconvert's own filter allows neither `p`, headings nor most table tags, so sanitised markdown
    rendered as escaped literal tags. Disallowed tags stay visible as escaped text; `<style>` blocks
    (pandas emits one per table) are dropped rather than shown as CSS text.
    """
    import bleach

    text = markup.decode("utf-8", "replace") if isinstance(markup, bytes) else str(markup)
    text = _without_style_elements(text)
    if _nesting(text) > MAX_MARKUP_DEPTH:
        return (f"<pre>{html.escape(text)}</pre><p>{TRUNCATED}: markup nested deeper than "
                f"{MAX_MARKUP_DEPTH} tags, shown as text</p>")
    return bleach.clean(text, tags=ALLOWED_TAGS,
                        attributes=_allowed_attribute, protocols=ALLOWED_PROTOCOLS,
                        strip=False, strip_comments=True)


def _without_style_elements(text: str) -> str:
    """`text` without `<style>…</style>` elements (a linear scan: a lazy regex is quadratic here)."""
    lowered, kept, start = text.lower(), [], 0
    while (opening := lowered.find("<style", start)) >= 0:
        closing = lowered.find("</style", opening)
        end = lowered.find(">", closing) if closing >= 0 else -1
        if end < 0:
            break
        kept.append(text[start:opening])
        start = end + 1
    return "".join(kept) + text[start:]


def _unchanged(text: str) -> str:
    return text


def _nesting(text: str) -> int:
    """The deepest tag nesting in `text`, counting unclosed tags (a linear scan, unlike bleach)."""
    depth = deepest = 0
    for match in _TAG.finditer(text):
        closing, name, self_closing = match.groups()
        if closing:
            depth = max(0, depth - 1)
        elif not self_closing and name.lower() not in _VOID:
            depth += 1
            deepest = max(deepest, depth)
    return deepest


class _Budget:
    """What is left of the notebook-wide markup allowance."""

    def __init__(self) -> None:
        self.markup = MAX_TOTAL_MARKUP_CHARS

    def take_markup(self, text: str) -> str | None:
        """`text` cut to the per-item and remaining bounds, or None once the allowance is spent."""
        if self.markup <= 0:
            return None
        cut = text[: min(MAX_MARKUP_CHARS, self.markup)]
        self.markup -= len(cut)
        return cut


def _joined(value: Any) -> str:
    return "".join(map(str, value)) if isinstance(value, list) else str(value)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}\n{TRUNCATED} ({len(text):,} characters)\n"


def _note(text: str) -> dict[str, Any]:
    return {"output_type": "display_data", "metadata": {}, "data": {"text/plain": text}}


def _cap_data(output: dict[str, Any], budget: _Budget) -> list[dict[str, Any]]:
    """The output with each mimetype bounded, followed by a note if anything was cut or dropped."""
    data = output.get("data")
    data = data if isinstance(data, dict) else {}
    kept: dict[str, str] = {}
    notes = []
    for mime, value in data.items():
        text = _joined(value)
        if mime not in _KEPT_TYPES:
            continue
        if mime in _IMAGE_TYPES:
            if len(text) > MAX_IMAGE_CHARS or not _BASE64.fullmatch(text):
                notes.append(f"{TRUNCATED}: {mime} image of {len(text):,} characters omitted")
            else:
                kept[mime] = text
        elif mime in _MARKUP_TYPES:
            cut = budget.take_markup(text)
            if cut is None or len(cut) < len(text):
                notes.append(f"{TRUNCATED}: {mime} of {len(text):,} characters cut")
            if cut:
                kept[mime] = cut
        else:
            kept[mime] = _cut(CONTROL.sub("", text), MAX_TEXT_CHARS)
    output["data"] = kept
    output["metadata"] = {}  # image width/height land unquoted in attributes
    return [output, *([_note("\n".join(notes))] if notes else [])]


def _cap_output(output: Any, budget: _Budget) -> list[dict[str, Any]]:
    if not isinstance(output, dict):
        return []
    kind = output.get("output_type")
    if kind == "stream":
        output["text"] = _cut(CONTROL.sub("", _joined(output.get("text", ""))), MAX_TEXT_CHARS)
        return [output]
    if kind == "error":
        lines = output.get("traceback")
        lines = lines if isinstance(lines, list) else []
        output["traceback"] = [_cut(CONTROL.sub("", "\n".join(map(str, lines))), MAX_TEXT_CHARS)]
        output["ename"] = CONTROL.sub("", str(output.get("ename", "")))[:1000]
        output["evalue"] = CONTROL.sub("", str(output.get("evalue", "")))[:MAX_TEXT_CHARS]
        return [output]
    if kind in ("display_data", "execute_result"):
        return _cap_data(output, budget)
    return []


def _cap_cell(cell: dict[str, Any], budget: _Budget) -> None:
    cell["metadata"] = {}  # tags and the like end up in attributes; reviewers do not need them
    source = _joined(cell.get("source", ""))
    if cell.get("cell_type") == "code":
        cell["source"] = _cut(source, MAX_TEXT_CHARS)
        outputs = cell.get("outputs")
        outputs = outputs if isinstance(outputs, list) else []
        capped = [piece for out in outputs[:MAX_OUTPUTS_PER_CELL] for piece in _cap_output(out, budget)]
        if len(outputs) > MAX_OUTPUTS_PER_CELL:
            capped.append(_note(f"{TRUNCATED}: {len(outputs) - MAX_OUTPUTS_PER_CELL:,} more outputs"))
        cell["outputs"] = capped
    else:
        cut = budget.take_markup(source) or ""
        if len(cut) < len(source):
            cut = f"{cut}\n\n{TRUNCATED} ({len(source):,} characters)\n"
        cell["source"] = cut
        if len(json.dumps(cell.get("attachments", {}))) > MAX_IMAGE_CHARS:
            cell["attachments"] = {}


def _safe_metadata(metadata: Any) -> dict[str, Any]:
    """Only the language name (for highlighting) of the notebook's metadata."""
    language = metadata.get("language_info") if isinstance(metadata, dict) else None
    name = language.get("name") if isinstance(language, dict) else None
    return {"language_info": {"name": name}} if isinstance(name, str) and len(name) < 40 else {}


def cap_notebook(raw: dict[str, Any]) -> dict[str, Any]:
    """The notebook JSON (v4) cut to the module bounds, with visible notes where it was cut.

    Raises ValueError if it is not a v4 notebook (the cells are where the harm is).
    """
    if not isinstance(raw, dict) or raw.get("nbformat") != 4 or not isinstance(raw.get("cells"), list):
        raise ValueError("not an nbformat 4 notebook")
    cells, budget = raw["cells"], _Budget()
    raw["metadata"] = _safe_metadata(raw.get("metadata"))
    raw["cells"] = [cell for cell in cells[:MAX_CELLS] if isinstance(cell, dict)]
    for cell in raw["cells"]:
        _cap_cell(cell, budget)
    if len(cells) > MAX_CELLS:
        raw["cells"].append({"cell_type": "markdown", "metadata": {},
                             "source": f"{TRUNCATED}: {len(cells) - MAX_CELLS:,} more cells"})
    return raw


def render(data: bytes) -> str:
    """Sanitised, self-contained HTML (no remote scripts) for the notebook `data`; raises on any failure."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(json.dumps(cap_notebook(json.loads(data.decode("utf-8")))), as_version=4)
    exporter = HTMLExporter(template_name="lab", sanitize_html=True, mathjax_url="", require_js_url="",
                            widget_renderer_url="", jupyter_widgets_base_url="", mermaid_js_url="",
                            mermaid_layout_elk_js_url="",
                            # nbconvert's strip_files_prefix regex is quadratic on hostile markdown;
                            # it only rewrites local "files/" links, which the page does not need.
                            filters={"clean_html": clean_html, "strip_files_prefix": _unchanged})
    body, _resources = exporter.from_notebook_node(notebook)
    return body


def _limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else hard))


def main(argv: list[str]) -> int:
    """Render argv[0] to argv[1] under the memory, CPU and file-size limits argv[2:5]; 0 on success."""
    source, target = Path(argv[0]), Path(argv[1])
    memory, cpu, file_bytes = (int(value) for value in argv[2:5])
    _limit(resource.RLIMIT_AS, memory)
    _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_FSIZE, file_bytes)
    try:
        with source.open("rb") as handle:
            data = handle.read(file_bytes + 1)
        if len(data) > file_bytes:
            raise ValueError(f"notebook larger than {file_bytes:,} bytes")
        page = render(data).encode("utf-8")
        if len(page) > file_bytes:
            raise ValueError(f"rendered page larger than {file_bytes:,} bytes")
        target.write_bytes(page)
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - any failure is the notebook's
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
