"""Runs the candidate's `fit` and `predict` once, in a child process, on data this suite writes.

The candidate's code never runs in the pytest process: whatever it does, it cannot reach pytest's
state or its report. The child's answers come back as .npy arrays (no pickle) and CSV files,
which the tests read as untrusted data.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

TRAIN = Path("/data/train/train.csv")
SUBMISSION = Path("/submission")
IDS = ["query_id", "doc_id"]
DTYPES = {"query_id": str, "doc_id": str}
CHILD_SECONDS = 240

CHILD = """
import json, sys, traceback
from pathlib import Path
import numpy as np, pandas as pd
work = Path(sys.argv[1])
read = lambda name: pd.read_csv(work / name, dtype={"query_id": str, "doc_id": str})
errors = {}
try:
    import predict, train
    frame = read("train.csv")
    frame.to_csv(work / "train_before.csv", index=False)
    model = train.fit(frame, json.loads((work / "features.json").read_text()))
    frame.to_csv(work / "train_after.csv", index=False)
    for name in ("test", "shuffled", "again", "single"):
        try:
            scores = predict.predict(model, read(("test" if name == "again" else name) + ".csv"))
            np.save(work / f"{name}.npy", np.asarray(scores, dtype=float), allow_pickle=False)
        except Exception:
            errors[name] = traceback.format_exc(limit=3)[-2000:]
except Exception:
    errors["fit"] = traceback.format_exc(limit=3)[-2000:]
(work / "errors.json").write_text(json.dumps(errors))
"""


class Answers:
    """What the child wrote, read back on demand. `scores(name)` fails the test that asks for a
    prediction the child could not make, with the child's traceback."""

    def __init__(self, work: Path, log: str) -> None:
        self.work, self.log = work, log
        try:
            self.errors = json.loads((work / "errors.json").read_text())
        except (OSError, ValueError):
            self.errors = {"child": f"the child process wrote no errors.json; its output:\n{log}"}

    def _check(self, name: str) -> None:
        for key in ("child", "fit", name):
            if key in self.errors:
                pytest.fail(f"{key}: {self.errors[key]}", pytrace=False)

    def scores(self, name: str) -> np.ndarray:
        self._check(name)
        try:
            return np.load(self.work / f"{name}.npy", allow_pickle=False)
        except (OSError, ValueError) as exc:
            pytest.fail(f"{name}: no readable scores ({exc})", pytrace=False)

    def frames(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        self._check("fit")
        return (pd.read_csv(self.work / "train_before.csv", dtype=DTYPES),
                pd.read_csv(self.work / "train_after.csv", dtype=DTYPES))


def shuffled_order(test: pd.DataFrame) -> pd.Index:
    """The row order of shuffled.csv (a fixed permutation of test.csv)."""
    return test.sample(frac=1.0, random_state=3).index


@pytest.fixture(scope="session")
def shuffled_index(data) -> pd.Index:
    """The rows of the held-out frame in the order of shuffled.csv."""
    return shuffled_order(data[1])


@pytest.fixture(scope="session")
def data() -> tuple[pd.DataFrame, pd.DataFrame]:
    """120 training queries and 60 held-out queries (with labels, which the child never sees)."""
    frame = pd.read_csv(TRAIN, dtype=DTYPES)
    queries = np.random.default_rng(7).permutation(sorted(frame["query_id"].unique()))
    return (frame[frame["query_id"].isin(queries[:120])].reset_index(drop=True),
            frame[frame["query_id"].isin(queries[120:180])].reset_index(drop=True))


@pytest.fixture(scope="session")
def answers(data, tmp_path_factory) -> Answers:
    train, held_out = data
    work = tmp_path_factory.mktemp("child")
    test = held_out.drop(columns="label")
    train.to_csv(work / "train.csv", index=False)
    test.to_csv(work / "test.csv", index=False)
    test.loc[shuffled_order(test)].to_csv(work / "shuffled.csv", index=False)
    test[test["query_id"] == test["query_id"].iloc[0]].head(1).to_csv(work / "single.csv", index=False)
    features = [c for c in train.columns if c not in [*IDS, "label"]]
    (work / "features.json").write_text(json.dumps(features))
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(work)],  # a normal start, as scripts get
                              cwd=SUBMISSION, capture_output=True, text=True, timeout=CHILD_SECONDS)
        log = (proc.stdout + proc.stderr)[-3000:]
    except subprocess.TimeoutExpired:
        log = f"fit and predict did not finish within {CHILD_SECONDS} s"
    return Answers(work, log)
