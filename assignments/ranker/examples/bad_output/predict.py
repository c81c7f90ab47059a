"""Writes bm25 scores with every kind of damage the grader must diagnose.

Of the test rows: every 10th gets NaN, every 25th is left out, every 50th is written twice
(the second time with a huge score), a few rows name unknown ids, and one line has the
wrong number of fields.
"""

from pathlib import Path

import pandas as pd

DATA = Path("/data")
OUTPUT = Path("/output")

if __name__ == "__main__":
    test = pd.read_csv(DATA / "test" / "test.csv", dtype={"query_id": str, "doc_id": str})
    rows = ["query_id,doc_id,score"]
    for i, (query, doc, score) in enumerate(zip(test["query_id"], test["doc_id"], test["bm25"], strict=True)):
        if i % 25 == 0:
            continue
        rows.append(f"{query},{doc},{'nan' if i % 10 == 0 else score}")
        if i % 50 == 1:
            rows.append(f"{query},{doc},1e9")
    rows += [f"q99999,d{n:07d},1.0" for n in range(5)]
    rows.append("this line,has,too,many,fields")
    OUTPUT.mkdir(parents=True, exist_ok=True)
    (OUTPUT / "scores.csv").write_text("\n".join(rows) + "\n")
