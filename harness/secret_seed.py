"""Per-install secret seeds for assignment data generators (hidden test sets, hidden re-runs).

A generator derives its hidden data from `hidden/seed.txt`. The seed is drawn on first use,
128 bits, so that no part of the hidden data can be found by trying seeds: the path a data
set is mounted from is visible inside the sandbox, and it is derived from the seed.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Collection
from pathlib import Path

SEED_FILE = "seed.txt"
SEED_BITS = 128
MIN_SECRET_SEED = 2**64  # anything smaller could be searched


def create_seed(path: Path) -> None:
    """Write a fresh secret seed to `path` (mode 0600) unless a file is already there.

    The file appears whole or not at all, and a seed written meanwhile by another process is
    kept (a hard link never replaces an existing file). Raises OSError if it cannot be written.
    """
    seed = 0
    while seed < MIN_SECRET_SEED:  # redrawn with probability 2**-64
        seed = secrets.randbits(SEED_BITS)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".seed-")  # mkstemp creates it 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(f"{seed}\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(tmp)


def secret_seed(hidden_dir: Path, *, public: Collection[int] = (), what: str = "the hidden data") -> int:
    """The secret seed in `hidden_dir/seed.txt`, created first if missing.

    Raises ValueError if the file does not hold one integer, or holds a seed in `public` or below
    MIN_SECRET_SEED (the message says how to rotate); OSError if it cannot be created or read.
    """
    path = hidden_dir / SEED_FILE
    if not path.exists():
        create_seed(path)
    text = path.read_text(encoding="utf-8").strip()
    rotate = f"delete {path} and the data cache (results/.cache/) to draw new {what}"
    if not (text.isascii() and text.isdigit() and len(text) <= 100):
        raise ValueError(f"{path}: expected one non-negative integer of at most 100 digits (the "
                         f"secret seed), got {text[:40]!r}; fix it, or {rotate}")
    seed = int(text)
    if seed in public:
        raise ValueError(f"{path}: {seed} is a public seed, so candidates could rebuild {what}; {rotate}")
    if seed < MIN_SECRET_SEED:
        raise ValueError(f"{path}: the secret seed is below 2**64, too weak to keep secret (candidates "
                         f"could try every smaller seed and rebuild {what}); {rotate}")
    return seed
