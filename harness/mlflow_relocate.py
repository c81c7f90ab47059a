"""A results folder keeps its MLflow artifacts when it is copied or moved.

MLflow's sqlite store records each experiment's and run's artifact location as an absolute
`file://` URI, so a results folder copied to another path or machine opens with runs whose
artifacts (report, logs, plots) point at the old place. The harness keeps a sqlite store's
artifacts in `<store folder>/mlartifacts/<experiment>/`; when the store is opened from a folder
that holds them and the recorded locations name another `.../mlartifacts`, the locations are
rewritten to this folder's (idempotent; nothing else in the store is touched).
"""

from __future__ import annotations

import sqlite3
import warnings
from contextlib import closing
from pathlib import Path
from urllib.parse import unquote


def relocate_artifacts(database: Path, artifacts: Path) -> int:
    """Point the artifact URIs in `database` that name another `mlartifacts` folder at `artifacts`
    (when the experiment's folder is there); return how many experiments moved. Never raises: a
    store it cannot update (locked, another schema) is left as it is, with a warning."""
    if not database.is_file():
        return 0
    new_root = artifacts.resolve().as_uri()
    try:
        with closing(sqlite3.connect(database, timeout=30)) as con, con:
            moved = 0
            experiments = con.execute("SELECT experiment_id, artifact_location FROM experiments").fetchall()
            for experiment_id, location in experiments:
                old_root = _old_root(location, artifacts.name)
                if old_root is None or old_root == new_root:
                    continue
                if not (artifacts / unquote(location[len(old_root):]).strip("/")).is_dir():
                    continue  # not copied along: leave the old location, which may still be right
                cut = len(old_root)
                con.execute("UPDATE experiments SET artifact_location = ? || substr(artifact_location, ?) "
                            "WHERE experiment_id = ?", (new_root, cut + 1, experiment_id))
                con.execute("UPDATE runs SET artifact_uri = ? || substr(artifact_uri, ?) "
                            "WHERE experiment_id = ? AND substr(artifact_uri, 1, ?) = ?",
                            (new_root, cut + 1, experiment_id, cut, old_root))
                moved += 1
            return moved
    except sqlite3.Error as exc:  # locked, or a schema this MLflow does not have: the runs stay usable
        warnings.warn(f"MLflow store {database}: its artifact locations were not re-pointed at "
                      f"{artifacts} ({exc}); artifacts copied with it may not show", stacklevel=2)
        return 0


def _old_root(location: str | None, folder: str) -> str | None:
    """The `file://.../<folder>` prefix of `location`, or None when it is not a file URI under one."""
    if not location or not location.startswith("file://"):
        return None
    cut = location.rfind(f"/{folder}/")
    return location[: cut + len(folder) + 1] if cut >= 0 else None
