"""Never gets a model to use: training always fails first."""

from pathlib import Path

WORKSPACE = Path("/workspace")

if __name__ == "__main__":
    (WORKSPACE / "model" / "model.json").read_text()  # raises: train.py never wrote it
