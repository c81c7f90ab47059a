"""Similarity detection at batch scale: snapshot N synthetic submissions, then compare every pair.

    python bench/similarity.py [--count 200] [--lines 500] [--planted 6] [--seed 1]

Each submission is the starter kit verbatim plus about `--lines` lines of generated Python: random
functions (statements and expressions drawn from a small grammar, random names and constants),
and a few idioms from a shared pool that many candidates write alike. `--planted` submissions are
disguised copies of others: every identifier renamed, functions shuffled, comments and blank lines
added, a few functions replaced. Prints the time of each phase, the pairs compared per second,
how many planted pairs were found and the highest similarity among the other pairs.
"""

from __future__ import annotations

import argparse
import io
import keyword
import random
import sys
import tempfile
import time
import tokenize
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import similarity  # noqa: E402
from harness._winnow import BUILTINS  # noqa: E402

STARTER = '''"""Starter kit: fit a model on train.csv and write predictions for test.csv."""
import argparse
import csv
from pathlib import Path


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_predictions(rows, path):
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "prediction"])
        writer.writeheader()
        writer.writerows(rows)


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--train", default="train.csv")
    parser.add_argument("--test", default="test.csv")
    parser.add_argument("--out", default="predictions.csv")
    args = parser.parse_args(argv)
    model = fit(read_rows(args.train))
    write_predictions(predict(model, read_rows(args.test)), args.out)
'''

IDIOMS = [  # what most candidates write alike: the comparison ignores it (max_share)
    "def mean(xs):\n    return sum(xs) / len(xs)\n",
    "def column(rows, name):\n    return [float(row[name]) for row in rows if row[name] != \"\"]\n",
    "def split(rows, ratio=0.8, seed=0):\n    rng = random.Random(seed)\n    rows = rows[:]\n"
    "    rng.shuffle(rows)\n    cut = int(len(rows) * ratio)\n    return rows[:cut], rows[cut:]\n",
    "def accuracy(truth, guess):\n    hits = sum(1 for t, g in zip(truth, guess) if t == g)\n"
    "    return hits / len(truth)\n",
    "def standardise(xs):\n    mu = sum(xs) / len(xs)\n"
    "    sd = (sum((x - mu) ** 2 for x in xs) / len(xs)) ** 0.5\n    return [(x - mu) / sd for x in xs]\n",
]
_SYLLABLES = "ka lo mi ne ru sa ti vo xe ya zu bo ce di fa gu hi ja".split()
_METHODS = "append get items keys values split strip lower update pop sort copy extend index count".split()
_CALLS = "len sum min max abs round sorted int float str list dict set enumerate zip range".split()
_OPS = "+ - * / // % ** == != < > <= >= and or".split()
_AUG = "+= -= *= /=".split()


class Program:
    """A random program from a small grammar of Python statements and expressions."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.names = ["".join(rng.choices(_SYLLABLES, k=rng.randint(2, 3))) for _ in range(40)]

    def name(self) -> str:
        return self.rng.choice(self.names)

    def expr(self, depth: int = 0) -> str:
        r, kinds = self.rng, 8 if depth < 2 else 3
        kind = r.randrange(kinds)
        if kind == 0:
            return self.name()
        if kind == 1:
            return str(r.randint(0, 999)) if r.random() < 0.7 else f"{r.random():.3f}"
        if kind == 2:
            return repr(r.choice(self.names) + r.choice(["", " total", ":", "_id"]))
        if kind == 3:
            return f"{self.expr(depth + 1)} {r.choice(_OPS)} {self.expr(depth + 1)}"
        if kind == 4:
            args = ", ".join(self.expr(depth + 1) for _ in range(r.randint(1, 2)))
            return f"{r.choice(_CALLS)}({args})"
        if kind == 5:
            return f"{self.name()}.{r.choice(_METHODS)}({self.expr(depth + 1) if r.random() < 0.6 else ''})"
        if kind == 6:
            return f"{self.name()}[{self.expr(depth + 1)}]"
        return f"[{self.expr(depth + 1)} for {self.name()} in {self.name()} if {self.expr(depth + 1)}]"

    def block(self, indent: int, depth: int, size: int) -> list[str]:
        lines: list[str] = []
        for _ in range(size):
            lines += self.statement(indent, depth)
        return lines

    def statement(self, indent: int, depth: int) -> list[str]:
        r, pad = self.rng, "    " * indent
        kind = r.randrange(7 if depth < 2 else 3)
        if kind == 0:
            return [f"{pad}{self.name()} = {self.expr()}"]
        if kind == 1:
            return [f"{pad}{self.name()} {r.choice(_AUG)} {self.expr()}"]
        if kind == 2:
            return [f"{pad}{self.name()}.{r.choice(_METHODS)}({self.expr()})"]
        if kind == 3:
            head = [f"{pad}if {self.expr()}:", *self.block(indent + 1, depth + 1, r.randint(1, 3))]
            return head + ([f"{pad}else:", *self.block(indent + 1, depth + 1, r.randint(1, 2))]
                           if r.random() < 0.4 else [])
        if kind == 4:
            body = self.block(indent + 1, depth + 1, r.randint(1, 4))
            return [f"{pad}for {self.name()} in {self.expr()}:", *body]
        if kind == 5:
            return [f"{pad}while {self.expr()}:", *self.block(indent + 1, depth + 1, r.randint(1, 3)),
                    f"{pad}    break"]
        return [f"{pad}try:", *self.block(indent + 1, depth + 1, r.randint(1, 2)),
                f"{pad}except (ValueError, KeyError):", f"{pad}    {self.name()} = None"]

    def function(self) -> str:
        params = ", ".join(self.rng.sample(self.names, self.rng.randint(1, 3)))
        body = self.block(1, 0, self.rng.randint(3, 7))
        return "\n".join([f"def {self.name()}_{self.rng.randrange(100)}({params}):", *body,
                          f"    return {self.expr()}"]) + "\n"


_SHARED_RNG = random.Random(12345)
SHARED = [Program(_SHARED_RNG).function() for _ in range(40)]  # e.g. from the same tutorial: a few each


def submission(rng: random.Random, lines: int) -> list[str]:
    """Functions (as text) of one submission: idioms, a few shared functions, and random functions
    up to `lines` lines."""
    program = Program(rng)
    parts = rng.sample(IDIOMS, rng.randint(1, len(IDIOMS))) + rng.sample(SHARED, rng.randint(0, 4))
    while sum(part.count("\n") + 2 for part in parts) < lines:
        parts.append(program.function())
    return parts


def disguise(parts: list[str], rng: random.Random) -> list[str]:
    """A copy of `parts` with every identifier renamed, functions shuffled, comments and blank lines
    added, and about one function in ten replaced by a new one."""
    renames: dict[str, str] = {}
    program = Program(rng)
    out = []
    for part in parts:
        if rng.random() < 0.1:
            out.append(program.function())
            continue
        pieces = []
        for tok in tokenize.generate_tokens(io.StringIO(part).readline):
            text = tok.string
            if tok.type == tokenize.NAME and not keyword.iskeyword(text) and text not in BUILTINS:
                text = renames.setdefault(text, f"v{len(renames)}_{rng.choice(_SYLLABLES)}")
            pieces.append((tok.start, tok.end, text))
        out.append(_respell(part, pieces, rng))
    rng.shuffle(out)
    return out


def _respell(part: str, pieces: list[tuple[tuple[int, int], tuple[int, int], str]],
             rng: random.Random) -> str:
    lines = part.split("\n")
    for (row, col), (end_row, end_col), text in reversed(pieces):
        if row == end_row and text != lines[row - 1][col:end_col]:
            lines[row - 1] = lines[row - 1][:col] + text + lines[row - 1][end_col:]
    spaced = []
    for line in lines:
        spaced.append(line + ("  # checked" if line.strip() and rng.random() < 0.15 else ""))
        if rng.random() < 0.1:
            spaced.append("")
    return "\n".join(spaced)


def make_batch(root: Path, count: int, lines: int, planted: int, seed: int) -> tuple[dict[str, Path], set]:
    """Write the starter kit and `count` submissions under `root`; return them and the planted pairs."""
    rng = random.Random(seed)
    (root / "starter").mkdir(parents=True)
    (root / "starter" / "main.py").write_text(STARTER)
    texts = {f"cand{i:03d}": submission(rng, lines) for i in range(count)}
    names = sorted(texts)
    copiers = rng.sample(names, planted)
    sources = rng.sample([n for n in names if n not in copiers], planted)
    for copier, source in zip(copiers, sources, strict=True):
        texts[copier] = disguise(texts[source], rng)
    folders = {}
    for name, parts in texts.items():
        folder = root / "subs" / name
        (folder / "src").mkdir(parents=True)
        (folder / "main.py").write_text(STARTER + "\n\n" + "\n\n".join(parts[: len(parts) // 2]))
        (folder / "src" / "model.py").write_text("import random\n\n\n" + "\n\n".join(parts[len(parts) // 2:]))
        folders[name] = folder
    return folders, {frozenset(pair) for pair in zip(copiers, sources, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--lines", type=int, default=500)
    parser.add_argument("--planted", type=int, default=6)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folders, planted = make_batch(root, args.count, args.lines, args.planted, args.seed)
        total_lines = sum(len(p.read_text().splitlines()) for f in folders.values() for p in f.rglob("*.py"))
        start = time.perf_counter()
        for name, folder in folders.items():
            similarity.snapshot(folder, starter_dir=root / "starter", dest=root / "snaps" / name)
        snapped = time.perf_counter()
        snaps = {name: similarity.load_snapshot(root / "snaps" / name) for name in folders}
        loaded = time.perf_counter()
        flagged = similarity.compare(snaps, threshold=args.threshold, max_share=0.25, min_shared=15)
        compared = time.perf_counter()
        everything = similarity.compare(snaps, threshold=0.05, max_share=0.25, min_shared=1)  # untimed
    pairs = args.count * (args.count - 1) // 2
    found = sum(1 for p in flagged if frozenset((p.a, p.b)) in planted)
    others = [p.similarity for p in everything if frozenset((p.a, p.b)) not in planted]
    planted_sims = sorted(p.similarity for p in everything if frozenset((p.a, p.b)) in planted)
    print(f"{args.count} submissions, {total_lines / args.count:.0f} lines each on average "
          f"(starter kit included), {args.planted} planted disguised copies")
    print(f"snapshot (read, tokenise, winnow, write): {snapped - start:.1f} s "
          f"({1000 * (snapped - start) / args.count:.0f} ms per submission)")
    print(f"load snapshots: {loaded - snapped:.2f} s")
    print(f"compare all {pairs} pairs: {compared - loaded:.2f} s, {pairs / (compared - loaded):,.0f} pairs/s")
    print(f"total: {compared - start:.1f} s")
    print(f"planted pairs found at threshold {args.threshold}: {found}/{len(planted)} "
          f"(their similarities {', '.join(f'{s:.2f}' for s in planted_sims)})")
    print(f"other pairs flagged: {len(flagged) - found}; other pairs at 5% or more: {len(others)}, "
          f"the highest at {max(others, default=0):.2f}")


if __name__ == "__main__":
    main()
