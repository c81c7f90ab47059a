"""Start a candidate's server as its serve.json declares: the entry point of a service stage.

    python /opt/mlgrade/serve.py [--manifest /submission/serve.json]

Validates the manifest (manifest.py), then replaces itself (`os.execvpe`, no shell) with the
declared command, in the current working directory, with the current environment plus
MODEL_DIR=/data/model unless MODEL_DIR is already set. Exit codes when it cannot: 2 for a bad
manifest (the reason on stderr), 127 when the program is not found, 126 when it cannot be run.
Runs inside the sandbox: standard library only.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # siblings, even under `python -I`

from manifest import ManifestError, load_manifest  # noqa: E402

DEFAULT_MODEL_DIR = "/data/model"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="serve.py", description="Start the server declared in serve.json.")
    parser.add_argument("--manifest", default="/submission/serve.json")
    args = parser.parse_args(argv)
    try:
        manifest = load_manifest(args.manifest)
    except ManifestError as exc:
        print(f"serve.py: {exc}", file=sys.stderr)
        return 2
    env = dict(os.environ)
    env.setdefault("MODEL_DIR", DEFAULT_MODEL_DIR)
    print(f"serve.py: starting {' '.join(manifest.command)!r} (port {manifest.port}, "
          f"MODEL_DIR={env['MODEL_DIR']})", file=sys.stderr, flush=True)
    sys.stdout.flush()
    try:
        os.execvpe(manifest.command[0], list(manifest.command), env)  # noqa: S606 - the candidate's argv, no shell
    except FileNotFoundError:
        print(f"serve.py: {manifest.command[0]!r} not found (PATH={env.get('PATH', '')})", file=sys.stderr)
        return 127
    except OSError as exc:
        print(f"serve.py: cannot run {manifest.command[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 126
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
