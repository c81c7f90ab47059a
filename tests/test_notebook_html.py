"""Rendering a candidate's executed notebook for reviewers: sanitised, and never a crash."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from harness.notebook_html import render_notebook


def test_outputs_are_rendered_but_scripts_and_handlers_are_neutralised(tmp_path):
    hostile = '<b>bold</b><script>steal()</script><img src=x onerror="steal()">'
    nb = new_notebook(cells=[
        new_markdown_cell("# Results <script>steal()</script>"),
        new_code_cell("display(x)", outputs=[
            new_output("display_data", data={"text/html": hostile}),
            new_output("stream", name="stdout", text="lift = 0.0042\n")]),
    ])
    source = tmp_path / "executed.ipynb"
    nbformat.write(nb, source)
    assert render_notebook(source, tmp_path / "executed.html") is None
    page = (tmp_path / "executed.html").read_text()
    assert "lift = 0.0042" in page and "<b>bold</b>" in page
    parser = _Active()
    parser.feed(page)
    assert not [a for a in parser.active if "steal" in a]  # present only as escaped text


class _Active(HTMLParser):
    """Collects what a browser would run: script bodies and on* handler attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.active: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self._in_script = tag == "script"
        self.active += [value or "" for name, value in attrs if name.startswith("on")]

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.active.append(data)


def test_unreadable_notebooks_get_a_page_that_says_why(tmp_path):
    for name, data in {"deep.ipynb": b"[" * 100_000, "text.ipynb": b"\xff\xfe not utf-8",
                       "other.ipynb": b'{"cells": 3}'}.items():
        source = tmp_path / name
        source.write_bytes(data)
        target = tmp_path / f"{name}.html"
        problem = render_notebook(source, target)
        assert problem and problem.startswith("notebook could not be rendered")
        assert "could not be rendered" in target.read_text()


def _page(tmp_path, cells, name="nb"):
    """Render a notebook of `cells`; return (problem, page text)."""
    source = tmp_path / f"{name}.ipynb"
    nbformat.write(new_notebook(cells=cells), source)
    problem = render_notebook(source, tmp_path / f"{name}.html")
    return problem, (tmp_path / f"{name}.html").read_text()


# What a script loads: `import("…")`, `import … from "…"`, `import "…"`.
_IMPORT = re.compile(r"""(?:\bimport\s*\(\s*|\bfrom\s*|\bimport\s*)["'`]([^"'`]*)""")


class _Elements(HTMLParser):
    """Elements a browser would build (tag names), and every script's src and body."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_script = tag == "script"
        if tag == "script":
            self.scripts.append(dict(attrs).get("src") or "")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def _elements(page: str) -> _Elements:
    parser = _Elements()
    parser.feed(page)
    return parser


def test_markdown_and_tables_render_as_elements_not_escaped_text(tmp_path):
    table = ('<style scoped>.dataframe td {letter-spacing: 0.3141em}</style><table class="dataframe">'
             "<thead><tr><th>model</th><th>ndcg</th></tr></thead><tbody><tr><td>bm25</td><td>0.41</td></tr>"
             "</tbody></table>")
    problem, page = _page(tmp_path, [
        new_markdown_cell("# Findings\n\nThe reranker wins on **every** split."),
        new_code_cell("df", outputs=[new_output("execute_result", execution_count=1,
                                                data={"text/html": table, "text/plain": "df"})])])
    assert problem is None
    tags = _elements(page).tags
    assert {"h1", "p", "strong", "table", "thead", "tbody", "th", "td"} <= set(tags)
    assert "&lt;h1" not in page and "&lt;p&gt;" not in page and "&lt;table" not in page
    assert "<td>0.41</td>" in page and "0.3141em" not in page  # the table's <style> is dropped


def test_images_only_from_data_uris_and_no_remote_scripts_even_with_mermaid(tmp_path):
    pixel = "data:image/png;base64,iVBORw0KGgo="
    problem, page = _page(tmp_path, [new_markdown_cell(
        f"![local]({pixel}) ![remote](https://tracker.example/p.png)\n\n"
        "```mermaid\ngraph TD; A-->B\n```\n\n<script src='https://evil.example/x.js'></script>")])
    assert problem is None
    assert "jp-Mermaid" in page  # the fenced block did produce the element that loads mermaid
    assert pixel in page and 'src="https://tracker.example' not in page
    scripts = _elements(page).scripts
    fetched = [url for script in scripts for url in _IMPORT.findall(script)]
    assert fetched and not [url for url in scripts + fetched if url.startswith(("http:", "https:", "//"))]


def test_large_stream_output_is_cut_with_a_visible_note(tmp_path):
    problem, page = _page(tmp_path, [new_code_cell("print(x)", outputs=[
        new_output("stream", name="stdout", text="\x1b[31mred\x1b[0m " + "y" * 1_000_000)])])
    assert problem is None
    assert "truncated by the harness" in page and "red" in page
    assert "y" * 1_000_000 not in page and "\x1b" not in page


def test_hostile_notebooks_are_cut_or_refused_never_rendered_whole(tmp_path):
    many = [new_code_cell(f"cell_{i}") for i in range(20_000)]
    brackets = [new_markdown_cell("[" * 3_000_000)]
    nested = [new_code_cell("", outputs=[new_output("display_data", data={"text/html": "<div>" * 20_000})])]
    styles = [new_markdown_cell("<style>" * 14_000)]
    for name, cells in {"many": many, "brackets": brackets, "nested": nested, "styles": styles}.items():
        problem, page = _page(tmp_path, cells, name)
        assert problem is None or problem.startswith("notebook could not be rendered"), name
        assert "truncated by the harness" in page or "could not be rendered" in page, name
        assert len(page) < 3_000_000, name
    _, page = _page(tmp_path, many, "many")
    assert "cell_499" in page and "cell_500" not in page


def test_image_metadata_cannot_inject_attributes(tmp_path):
    image = new_output("display_data", data={"image/png": "iVBORw0KGgo="},
                       metadata={"image/png": {"width": "1 onerror=steal()"}})
    forged = new_output("display_data", data={"image/png": '"><script>steal()</script>'})
    problem, page = _page(tmp_path, [new_code_cell("plot()", outputs=[image, forged])])
    assert problem is None and "iVBORw0KGgo=" in page
    parser = _Active()
    parser.feed(page)
    assert not [a for a in parser.active if "steal" in a]


def test_a_renderer_that_exceeds_its_limits_yields_the_explanatory_page(tmp_path, monkeypatch):
    from harness import notebook_html

    monkeypatch.setattr(notebook_html, "WORKER_TIMEOUT_SECONDS", 0.05)
    problem, page = _page(tmp_path, [new_markdown_cell("# fine")], "slow")
    assert problem and "longer than" in problem and "could not be rendered" in page
    monkeypatch.setattr(notebook_html, "WORKER_TIMEOUT_SECONDS", 60.0)
    monkeypatch.setattr(notebook_html, "MAX_HTML_BYTES", 10_000)
    problem, page = _page(tmp_path, [new_markdown_cell("# fine")], "big")
    assert problem and "larger than" in problem and "<h1" not in page
