"""Where results and exports go unless told: shared by the API and the command line, which reads
them when it starts (before it imports the API, so `harness --help` stays quick)."""

from pathlib import Path

DEFAULT_RESULTS = Path("results")
DEFAULT_EXPORTS = Path("exports")
