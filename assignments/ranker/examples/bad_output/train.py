"""Nothing to learn: predict.py writes a damaged version of the bm25 ranking."""

from pathlib import Path

WORKSPACE = Path("/workspace")

if __name__ == "__main__":
    (WORKSPACE / "model").mkdir(parents=True, exist_ok=True)
    (WORKSPACE / "model" / "done").write_text("ok\n")
