"""Render a notebook a stage wrote into sanitised, self-contained HTML for reviewers."""

from __future__ import annotations

import html
import logging

from harness._text import one_line
from harness.results import write_atomic

_log = logging.getLogger(__name__)


def render_notebook(source, target) -> str | None:
    """Write `target` (HTML) from the notebook file `source`; return a problem or None.

    The notebook is the candidate's: it is parsed as data, its outputs are sanitised (no scripts,
    no active HTML) and no remote scripts are referenced. A notebook that cannot be read or rendered
    gets an HTML page saying why, never an exception.
    """
    try:
        body = _render(source.read_bytes())
        problem = None
    except (Exception, RecursionError) as exc:  # noqa: BLE001 - any failure is the notebook's
        problem = f"notebook could not be rendered: {one_line(f'{type(exc).__name__}: {exc}', 300)}"
        body = f"<!DOCTYPE html><meta charset=utf-8><title>notebook</title><p>{html.escape(problem)}</p>"
        _log.info("%s: %s", source, problem)
    write_atomic(target, body)
    return problem


def _render(data: bytes) -> str:
    import nbformat
    from nbconvert import HTMLExporter

    notebook = nbformat.reads(data.decode("utf-8"), as_version=4)
    exporter = HTMLExporter(template_name="lab", sanitize_html=True, mathjax_url="", require_js_url="",
                            widget_renderer_url="", jupyter_widgets_base_url="")
    body, _resources = exporter.from_notebook_node(notebook)
    return body
