"""Rendering a candidate's executed notebook for reviewers: sanitised, and never a crash."""

from __future__ import annotations

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
