"""Similarity detection within a batch (harness.similarity).

The fixtures in tests/fixtures/similarity are one task (summary statistics of a CSV column) solved
four different ways (plain loops, numpy, a streaming class, a stdlib notebook), all on the same
starter kit, and `renamed_copy`: the loops solution with every name changed, functions reordered,
docstrings dropped, comments and line breaks changed. The independent reference for the figures
is copydetect 0.5.0 (a separate MOSS-style implementation: pygments tokens, character k-grams).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from copydetect import CodeFingerprint, compare_files

from harness import _winnow
from harness.similarity import (
    SimilarPair,
    SnapshotError,
    compare,
    find_groups,
    load_snapshot,
    make_snapshot,
    save_snapshot,
    snapshot,
)
from harness.similarity_html import render_index, render_pair, write_report

FIXTURES = Path(__file__).parent / "fixtures" / "similarity"
STARTER = FIXTURES / "starter"
UNRELATED = ["loops", "numpy_vec", "welford", "stdlib_nb"]
LOOSE = {"threshold": 0.0, "max_share": 1.0, "min_shared": 1}  # every pair sharing anything


@pytest.fixture(scope="module")
def snaps():
    names = [*UNRELATED, "renamed_copy"]
    return {name: make_snapshot(FIXTURES / name, starter_dir=STARTER) for name in names}


def _code_lines(text: str) -> list[int]:
    rows = enumerate(text.split("\n"), 1)
    return [n for n, line in rows if line.strip() and not line.strip().startswith("#")]


def _lines_in(ranges: list[tuple[int, int]]) -> set[int]:
    return {line for start, end in ranges for line in range(start, end + 1)}


def _submission(root: Path, name: str, files: dict[str, str]) -> Path:
    folder = root / name
    for path, text in files.items():
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        (folder / path).write_text(text)
    return folder


# --- detection ---------------------------------------------------------------------------------------

def test_renamed_and_reformatted_copy_is_the_only_pair_flagged(snaps):
    pairs = compare(snaps, threshold=0.5, max_share=0.25, min_shared=15)
    assert [(p.a, p.b) for p in pairs] == [("loops", "renamed_copy")]
    assert pairs[0].similarity > 0.8
    copied = (FIXTURES / "renamed_copy" / "helpers.py").read_text()
    matched = _lines_in(pairs[0].ranges("b")["helpers.py"])
    code = _code_lines(copied)
    assert len(matched & set(code)) >= 0.8 * len(code)


def test_unrelated_solutions_of_the_same_task_are_not_similar(snaps):
    unrelated = {name: snaps[name] for name in UNRELATED}
    assert compare(unrelated) == []
    assert all(pair.similarity < 0.15 for pair in compare(unrelated, **LOOSE))


def test_a_copied_function_maps_to_its_lines_on_both_sides(tmp_path):
    source = (FIXTURES / "numpy_vec" / "vecstats.py").read_text().split("\n")
    start = next(n for n, line in enumerate(source, 1) if line.startswith("def kde"))
    end = next(n for n, line in enumerate(source, 1) if "return grid, density" in line)
    own = (FIXTURES / "welford" / "online.py").read_text()
    pasted_at = own.count("\n") + 3
    copier = tmp_path / "copier"
    shutil.copytree(FIXTURES / "welford", copier)
    (copier / "online.py").write_text(own + "\n\n" + "\n".join(source[start - 1: end]) + "\n")
    snaps = {"copier": make_snapshot(copier, starter_dir=STARTER),
             "original": make_snapshot(FIXTURES / "numpy_vec", starter_dir=STARTER)}
    [pair] = compare(snaps, threshold=0.0, min_shared=3)
    assert pair.blocks
    for block in pair.blocks:  # copier is a, original is b
        assert block.a.file == "online.py"
        assert pasted_at <= block.a.start <= block.a.end <= pasted_at + end - start
        assert block.b.file == "vecstats.py" and start <= block.b.start <= block.b.end <= end
    assert _lines_in(pair.ranges("b")["vecstats.py"]) >= set(range(start + 2, end))


def test_starter_kit_shared_by_all_does_not_match(tmp_path):
    kit = (STARTER / "stats_task.py").read_text()
    extras = ["def spread(xs):\n    return max(xs) - min(xs)\n",
              "def halves(values):\n    middle = len(values) // 2\n"
              "    return values[:middle], values[middle:]\n"]
    folders = {f"s{i}": _submission(tmp_path, f"s{i}", {"stats_task.py": kit + "\n\n" + extra})
               for i, extra in enumerate(extras)}
    without = compare({name: make_snapshot(f) for name, f in folders.items()})
    assert [(p.a, p.b) for p in without] == [("s0", "s1")]  # the kit alone would make them copies
    with_kit = {name: make_snapshot(f, starter_dir=STARTER) for name, f in folders.items()}
    assert compare(with_kit, **LOOSE) == []
    lines = kit.split("\n")
    code = {n for n in _code_lines(kit) if n > 4 and '"""' not in lines[n - 1]}  # docstrings have no tokens
    assert code <= _lines_in(with_kit["s0"].files[0].starter_lines)


def test_starter_code_pasted_into_a_notebook_is_marked_and_not_counted(snaps):
    info = snaps["stdlib_nb"].files[0]
    text = snaps["stdlib_nb"].sources[info.path].split("\n")
    first = next(n for n, line in enumerate(text, 1) if line.startswith("def load_values"))
    last = next(n for n, line in enumerate(text, 1) if n > first and line.strip() == "return values")
    assert set(range(first + 2, last + 1)) <= _lines_in(info.starter_lines)
    inside = [i for i, f in enumerate(snaps["stdlib_nb"].first) if first + 2 <= f and
              snaps["stdlib_nb"].last[i] <= last]
    assert inside == []


def test_boilerplate_most_of_the_batch_writes_is_ignored(tmp_path, snaps):
    helper = ("import matplotlib.pyplot as plt\n\n\ndef save_histogram(values, path, bins=30, title=''):\n"
              "    figure, axis = plt.subplots(figsize=(6, 4))\n"
              "    axis.hist(values, bins=bins, color='grey')\n"
              "    axis.set_title(title)\n    axis.set_xlabel('value')\n    axis.set_ylabel('count')\n"
              "    figure.tight_layout()\n    figure.savefig(path, dpi=120)\n    plt.close(figure)\n"
              "    return path\n")
    batch = {}
    for name in UNRELATED:
        folder = tmp_path / name
        shutil.copytree(FIXTURES / name, folder)
        (folder / "plots.py").write_text(helper)
        batch[name] = make_snapshot(folder, starter_dir=STARTER)
    shared = compare(batch, threshold=0.05, max_share=1.0, min_shared=5)
    assert len(shared) == 6 and all("plots.py" in p.ranges("a") for p in shared)
    # a round this small is under MIN_ROUND: only the starter kit is boilerplate, the helper counts
    assert len(compare(batch, threshold=0.05, max_share=0.5, min_shared=5)) == 6
    assert compare(batch, threshold=0.05, max_share=0.5, min_shared=5, min_round=4) == []
    two = {"loops": snaps["loops"], "renamed_copy": snaps["renamed_copy"]}  # a pair is never boilerplate
    assert len(compare(two, max_share=0.1, min_round=2)) == 1


def test_hashes_do_not_depend_on_the_process(snaps):
    code = ("import sys; from pathlib import Path; from harness.similarity import make_snapshot; "
            "print(make_snapshot(Path(sys.argv[1]), starter_dir=Path(sys.argv[2])).model_dump_json())")
    for seed in ("1", "2"):
        command = [sys.executable, "-c", code, str(FIXTURES / "loops"), str(STARTER)]
        out = subprocess.run(command, check=True, capture_output=True, text=True,
                             env={**os.environ, "PYTHONHASHSEED": seed}).stdout
        assert json.loads(out)["hashes"] == snaps["loops"].hashes


def test_winnowing_finds_every_long_enough_common_run():
    # The guarantee of Schleimer et al. (2003): a common run of K + W - 1 tokens shares a fingerprint.
    rng = random.Random(5)
    run = _winnow.K + _winnow.W - 1
    for _ in range(100):
        common = [f"t{rng.randrange(1000)}" for _ in range(run)]
        a = [f"a{rng.randrange(999)}" for _ in range(rng.randrange(200))] + common + ["a"] * rng.randrange(50)
        b = [f"b{rng.randrange(999)}" for _ in range(rng.randrange(200))] + common + ["b"] * rng.randrange(50)
        ha, hb = _winnow.kgram_hashes(a), _winnow.kgram_hashes(b)
        assert {ha[i] for i in _winnow.winnow(ha)} & {hb[i] for i in _winnow.winnow(hb)}
    # robust winnowing keeps its pick while it is in the window: one per W positions on a repeated token,
    # where picking the rightmost minimum would take every position
    assert len(_winnow.winnow([7] * 100)) <= 100 // _winnow.W + 1


def test_renaming_and_layout_give_the_same_tokens():
    one = "def total(values, start=0):\n    '''Sum.'''\n    acc = start  # running\n    for v in values:\n" \
          "        acc += v * 2\n    return acc\n"
    two = "def s(xs, b=10):\n\n    acc2 = b\n    for x in \\\n            xs:\n        acc2 += x * 3\n" \
          "    return acc2   # done\n"
    tokens = [_winnow.tokenise(_winnow.Source(name, text)).symbols for name, text in (("a", one), ("b", two))]
    assert tokens[0] == tokens[1] and "V" in tokens[0] and "for" in tokens[0]


# --- hostile input -----------------------------------------------------------------------------------

def test_hostile_sources_do_not_raise(tmp_path):
    root = tmp_path / "evil"
    copied = (FIXTURES / "loops" / "describe.py").read_text()
    _submission(root, "", {
        "binary.py": "", "latin1.py": "", "broken.ipynb": "{not json", "deep.ipynb": "[" * 200_000,
        "weird.ipynb": json.dumps({"cells": [1, {"cell_type": "code", "source": 5},
                                             {"cell_type": "code", "source": ["x = 1\n", 3]},
                                             {"cell_type": "code", "source": "y = '\ud800'\n"}]}),
        "huge.py": "def f(a):\n    return a + 1\n" * 40_000,
        "bad_indent.py": "def f(:\n  x = 1\n    y = 2\n z = 3\n" + copied,
        "unterminated.py": 's = """never closed\n' + "x = 1\n" * 10,
        ".venv/lib/x.py": copied, "venv/x.py": copied, "__pycache__/x.py": copied, ".hidden/x.py": copied,
        "myenv/pyvenv.cfg": "home = /usr\n", "myenv/x.py": copied,
    })
    (root / "binary.py").write_bytes(os.urandom(4096) + b"\x00")
    (root / "latin1.py").write_bytes("name = 'caf\xe9'\n".encode("latin-1"))
    (root / "escape.py").symlink_to(FIXTURES / "loops" / "describe.py")
    (root / "linkdir").symlink_to(FIXTURES / "loops", target_is_directory=True)
    os.mkfifo(root / "fifo.py")
    (root / os.fsdecode(b"odd\xffname.py")).write_text("x = 1\n")
    snap = make_snapshot(root)
    files = {info.path: info for info in snap.files}
    assert set(files) == {"bad_indent.py", "huge.py", "latin1.py", "odd\\xffname.py", "unterminated.py",
                          "weird.ipynb"}
    assert files["huge.py"].truncated and len(snap.sources["huge.py"]) <= _winnow.MAX_FILE_BYTES
    assert "x = 1" not in snap.sources["weird.ipynb"]  # a malformed cell is left out, not guessed at
    assert "y = '?'" in snap.sources["weird.ipynb"]  # a lone surrogate from a JSON escape, replaced
    notes = " ".join(snap.skipped)
    assert "binary.py: binary" in notes and "broken.ipynb: not a notebook" in notes and "deep.ipynb" in notes
    save_snapshot(snap, tmp_path / "snap")  # everything kept is serialisable
    loaded = load_snapshot(tmp_path / "snap")
    # tokenize gives up on bad_indent.py; the regex tokeniser still finds the copy after it
    [pair] = compare({"evil": loaded, "loops": make_snapshot(FIXTURES / "loops")}, threshold=0.5)
    assert set(pair.ranges("a")) == {"bad_indent.py"}


def test_caps_on_files_and_total_text(tmp_path, monkeypatch):
    root = _submission(tmp_path, "many", {f"m{i:03d}.py": f"x{i} = {i}\n" * 50 for i in range(30)})
    monkeypatch.setattr(_winnow, "MAX_FILES", 10)
    assert len(make_snapshot(root).files) == 10
    monkeypatch.setattr(_winnow, "MAX_FILES", 500)
    monkeypatch.setattr(_winnow, "MAX_TOTAL_BYTES", 2000)
    snap = make_snapshot(root)
    assert sum(len(text) for text in snap.sources.values()) <= 2000
    assert any("total source cap" in note for note in snap.skipped)
    _submission(tmp_path, "many", {f"deep/d{i}/x.py": "x = 1\n" for i in range(20)})
    monkeypatch.setattr(_winnow, "MAX_ENTRIES", 15)
    snap = make_snapshot(root)
    assert len(snap.files) < 15 and any("files and folders" in note for note in snap.skipped)


# --- HTML --------------------------------------------------------------------------------------------

_ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table", "tr", "th",
                 "td", "a", "div", "pre", "span"}


class _Page(HTMLParser):
    """Tags, attributes, anchors and text of a page, as a browser would see them."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.tags: set[str] = set()
        self.attrs: list[tuple[str, str]] = []
        self.ids: set[str] = set()
        self.hrefs: list[str] = []
        self.text: list[str] = []
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += [(name, value or "") for name, value in attrs]
        self.ids |= {value for name, value in attrs if name == "id"}
        self.hrefs += [value for name, value in attrs if name == "href"]

    def handle_data(self, data):
        self.text.append(data)


def test_pair_page_escapes_candidate_text_and_links_blocks(tmp_path):
    evil = ('# </pre><script>alert("c")</script>\nNOTE = "<img src=x onerror=alert(1)>"\n'
            'LABEL = "\u202egnp.exe"\n' + (FIXTURES / "loops" / "describe.py").read_text())
    folders = {name: _submission(tmp_path, f"s{i}", {"<b>x</b>.py": evil})
               for i, name in enumerate(['<script>alert("a")</script>', "b<img src=x>"])}
    snaps = {name: make_snapshot(folder) for name, folder in folders.items()}
    [pair] = compare(snaps)
    page = render_pair(pair, snaps[pair.a], snaps[pair.b])
    parsed = _Page(page)
    assert parsed.tags <= _ALLOWED_TAGS
    assert not [name for name, _ in parsed.attrs if name.startswith("on") or name == "src"]
    assert "\u202e" not in page and "http" not in page
    text = "".join(parsed.text)
    assert '<script>alert("c")</script>' in text and '<script>alert("a")</script>' in text
    assert parsed.ids == {f"{side}{block.number}" for block in pair.blocks for side in "ab"}
    assert {href.lstrip("#") for href in parsed.hrefs} == parsed.ids


def test_index_and_report_link_only_to_pair_pages(tmp_path, snaps):
    pairs = compare(snaps, threshold=0.5)
    hostile = SimilarPair(a="<script>x</script>", b="y", similarity=0.9, share_a=0.9, share_b=0.9, shared=20,
                          fingerprints_a=22, fingerprints_b=22)
    page = render_index([*pairs, hostile], {(pairs[0].a, pairs[0].b): "pair-001.html",
                                            (hostile.a, hostile.b): "javascript:alert(1)"})
    parsed = _Page(page)
    assert parsed.tags <= _ALLOWED_TAGS and parsed.hrefs == ["pair-001.html"]
    index = write_report(pairs, snaps, tmp_path / "report")
    linked = _Page(index.read_text()).hrefs
    assert linked and all((index.parent / href).is_file() for href in linked)
    assert _Page((index.parent / linked[0]).read_text()).tags <= _ALLOWED_TAGS


# --- snapshots ---------------------------------------------------------------------------------------

def test_snapshot_round_trip_and_comparison_of_loaded_snapshots(tmp_path, snaps):
    for name in snaps:
        snapshot(FIXTURES / name, starter_dir=STARTER, dest=tmp_path / name)
    loaded = {name: load_snapshot(tmp_path / name) for name in snaps}
    for name, snap in snaps.items():
        assert loaded[name] == snap and loaded[name].sources == snap.sources
    assert compare(loaded) == compare(snaps)


def test_missing_corrupt_or_stale_snapshots_raise_snapshot_error(tmp_path, snaps):
    with pytest.raises(SnapshotError):
        load_snapshot(tmp_path / "nothing")
    damages = {
        "garbage": lambda d: (d / "fingerprints.json").write_text("{not json"),
        "truncated": lambda d: _cut(d / "fingerprints.json", 500),
        "no-sources": lambda d: (d / "sources.json").unlink(),
        "sources-not-map": lambda d: (d / "sources.json").write_text("[1, 2]"),
        "stale": lambda d: _edit(d, k=_winnow.K + 1),
        "uneven": lambda d: _edit(d, pos=[]),
    }
    for name, damage in damages.items():
        save_snapshot(snaps["loops"], tmp_path / name)
        damage(tmp_path / name)
        with pytest.raises(SnapshotError):
            load_snapshot(tmp_path / name)
    other_kit = make_snapshot(FIXTURES / "welford")  # no starter kit excluded: not comparable
    with pytest.raises(SnapshotError):
        compare({"loops": snaps["loops"], "welford": other_kit})


def _cut(path: Path, size: int) -> None:
    path.write_text(path.read_text()[:size])


def _edit(folder: Path, **changes) -> None:
    data = json.loads((folder / "fingerprints.json").read_text())
    (folder / "fingerprints.json").write_text(json.dumps({**data, **changes}))


def test_notebook_lines_are_reported_as_cells(snaps):
    notebook = json.loads((FIXTURES / "stdlib_nb" / "analysis.ipynb").read_text())
    cells = enumerate(notebook["cells"])
    cell = next(i for i, c in cells if "".join(c["source"]).startswith("def ci_of_mean"))
    info = snaps["stdlib_nb"].files[0]
    text = snaps["stdlib_nb"].sources[info.path].split("\n")
    line = next(n for n, row in enumerate(text, 1) if row.startswith("def ci_of_mean"))
    assert info.where(line) == f"analysis.ipynb cell {cell} line 1"
    assert info.where(line + 2) == f"analysis.ipynb cell {cell} line 3"


# --- cross-check -------------------------------------------------------------------------------------

@pytest.mark.parametrize(("left", "right", "copied"), [
    ("loops/describe.py", "renamed_copy/helpers.py", True),
    ("loops/describe.py", "welford/online.py", False),
    ("numpy_vec/vecstats.py", "welford/online.py", False),
    ("../similarity_ring/ring_a/summary.py", "../similarity_ring/ring_c/summary.py", True),
    ("../similarity_ring/ring_b/summary.py", "welford/online.py", False),
])
def test_similarity_agrees_with_copydetect(tmp_path, left, right, copied):
    # copydetect's defaults: noise threshold 25 characters of filtered code, guarantee 25 (window 1)
    theirs = max(compare_files(CodeFingerprint(str(FIXTURES / left), 25, 1),
                               CodeFingerprint(str(FIXTURES / right), 25, 1))[1])
    snaps = {}
    for side, rel in (("l", left), ("r", right)):
        (tmp_path / side).mkdir()
        shutil.copy(FIXTURES / rel, tmp_path / side)
        snaps[side] = make_snapshot(tmp_path / side)
    ours = max((pair.similarity for pair in compare(snaps, **LOOSE)), default=0.0)
    if copied:
        assert ours > 0.8 and theirs > 0.8 and abs(ours - theirs) < 0.15
    else:
        assert ours < 0.2 and theirs < 0.2


# --- a ring of copies in rounds of every size -----------------------------------------------------
# tests/fixtures/similarity_ring: ring_a is one solution of the task; ring_b and ring_c are copies of
# it with every name changed, the functions reordered, comments and docstrings changed (ring_c also
# joins the returned dict onto three lines). All three fill in the same starter kit.

RING = Path(__file__).parent / "fixtures" / "similarity_ring"
RING_NAMES = ["ring_a", "ring_b", "ring_c"]
HELPER = ("import matplotlib.pyplot as plt\n\n\ndef save_histogram(values, path, bins=30, title=''):\n"
          "    figure, axis = plt.subplots(figsize=(6, 4))\n"
          "    axis.hist(values, bins=bins, color='grey')\n"
          "    axis.set_title(title)\n    axis.set_xlabel('value')\n    axis.set_ylabel('count')\n"
          "    figure.tight_layout()\n    figure.savefig(path, dpi=120)\n    plt.close(figure)\n"
          "    return path\n")
_STEPS = [  # statement shapes of the generated honest solutions; names and numbers vary
    "{a} = [{x} {op} {n} for {x} in {b}]", "{a} = sum({b}) / len({b})",
    "{a} = sorted({b}, reverse=True)[:{n}]", "if len({a}) > {n}:\n{t}{a} = {a}[{n}:]",
    "{a} = {{{i}: {x} {op} {n} for {i}, {x} in enumerate({b})}}",
    "for {i}, {x} in enumerate({b}):\n{t}{a}.append({x} {op} {i})", "{a} = max({b}) - min({b})",
    "{a} = round({b} {op} {n}, {n})", "while {a} and {a}[-1] < {n}:\n{t}{a}.pop()",
    "{a} = list(zip({b}, {a}))", "{a} = any({x} > {n} for {x} in {b})", "{a} = {b}.get('{x}', {n})",
    "{a} = abs({b} {op} {n})", "try:\n{t}{a} = float({b})\nexcept ValueError:\n{t}{a} = {n}",
    "{a} = [{x} for {x} in {b} if {x} % {n} == 0]", "{a} = str({b}).strip().lower()",
    "{a}, {x} = divmod({b}, {n})", "assert isinstance({b}, list), '{x}'", "{a} = {b}[::-1] if {n} else {b}",
    "{a} += {b} ** {n}", "{a} = set({b}) - set({a})", "{a} = {b}.copy()", "del {a}[{n}]",
    "{a} = dict.fromkeys({b}, {n})", "{a} = next(iter({b}), None)",
]


def honest(seed: int) -> dict[str, str]:
    """A generated independent solution: functions of randomly drawn statements, seeded."""
    rng = random.Random(seed)
    names = ["values", "data", "rows", "xs", "cells", "items", "acc", "out", "tmp", "res"]
    parts = ["import math\n"]
    for f in range(rng.randint(3, 5)):
        body = []
        for _ in range(rng.randint(5, 9)):
            step = rng.choice(_STEPS).replace("\n", "\n    ")
            body.append("    " + step.format(a=rng.choice(names), b=rng.choice(names), x=rng.choice("vkz"),
                                             i=rng.choice("ij"), n=rng.randint(1, 9), t="    ",
                                             op=rng.choice("+-*/%")))
        parts.append(f"\n\ndef step_{f}(values, data=None, rows=(), xs=(), cells=(), items=(), acc=0, out=(),"
                     f" tmp=(), res=()):\n" + "\n".join(body) + f"\n    return {rng.choice(names)}\n")
    return {"solution.py": "".join(parts)}


def ring_round(tmp_path: Path, honest_count: int, *, copies: int = 3, helper: bool = False) -> dict:
    """Snapshots of a round: `copies` of the ring, the hand-written honest fixtures, then generated
    honest solutions; with `helper`, every submission also has the same plots.py (not in the kit)."""
    names = RING_NAMES[:copies] + [UNRELATED[i] if i < len(UNRELATED) else f"honest{i}"
                                   for i in range(honest_count)]
    for index, name in enumerate(names):
        source = RING / name if name in RING_NAMES else FIXTURES / name if name in UNRELATED else None
        if source is not None:
            shutil.copytree(source, tmp_path / name)
        else:
            _submission(tmp_path, name, honest(index))
        if helper:
            (tmp_path / name / "plots.py").write_text(HELPER)
    return {name: make_snapshot(tmp_path / name, starter_dir=STARTER) for name in names}


@pytest.mark.parametrize(("size", "copies"), [(2, 2), (3, 3), (5, 3), (40, 3)])
def test_a_ring_of_copies_is_one_group_in_a_round_of_any_size(tmp_path, size, copies):
    snaps = ring_round(tmp_path, size - copies, copies=copies, helper=size == 40)
    assert len(snaps) == size
    pairs = compare(snaps)  # the defaults: threshold 0.5, max_share 0.25, min_shared 15
    [group] = find_groups(pairs)
    assert group.members == RING_NAMES[:copies]
    assert len(group.pairs) == copies * (copies - 1) // 2 and all(p.similarity > 0.8 for p in group.pairs)
    for pair in pairs:  # the starter kit's code, in every submission, is in no matched block
        files = {block.a.file for block in pair.blocks} | {block.b.file for block in pair.blocks}
        assert files == {"summary.py"}, files


def test_in_a_large_round_code_a_large_share_writes_is_boilerplate(tmp_path):
    snaps = ring_round(tmp_path, 37, helper=True)  # every one of the 40 also has plots.py
    loose = compare(snaps, threshold=0.0, min_shared=1)
    assert loose and all("plots.py" not in p.ranges("a") for p in loose)
    # under MIN_ROUND the same helper counts: in a round of five it is shared evidence
    small = {name: snaps[name] for name in [*RING_NAMES, "loops", "numpy_vec"]}
    assert any("plots.py" in p.ranges("a") for p in compare(small, threshold=0.0, min_shared=1))
    assert [g.members for g in find_groups(compare(small))] == [RING_NAMES]


def test_a_group_page_lists_its_members_and_pairwise_similarity(tmp_path):
    snaps = ring_round(tmp_path, 2)
    pairs = compare(snaps)
    index = write_report(pairs, snaps, tmp_path / "report", groups=find_groups(pairs)).read_text()
    assert "Group 1: 3 submissions" in index
    for pair in pairs:
        assert f"{pair.similarity:.0%}</a>" in index
    assert "<script" not in index.lower()
