"""serve.json, the candidate's declaration of how to start their server, read and validated.

    {"command": ["python", "server.py"], "port": 8000}

`command`: 1..32 strings of at most 256 characters (argv, run without a shell; the program name
non-empty, no NUL characters); `port`: an integer 1024..65535; no other keys. The same rules as
the starter kit's serve.schema.json. Used by serve.py (which starts the command) and probe.py
(which needs the port). Runs inside the sandbox: standard library only.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

MAX_BYTES = 16 << 10
MAX_ARGS = 32
MAX_ARG_CHARS = 256
PORTS = range(1024, 65536)


class ManifestError(ValueError):
    """serve.json is missing, unreadable or breaks a rule; the message says which and how to fix it."""


@dataclass(frozen=True)
class Manifest:
    command: tuple[str, ...]
    port: int


def load_manifest(path: str) -> Manifest:
    """Read and validate serve.json at `path`. Raises ManifestError."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise ManifestError(f"{path} not found: the repository needs a serve.json at its root") from None
    except OSError as exc:
        raise ManifestError(f"{path} unreadable: {exc.strerror or exc}") from None
    if len(raw) > MAX_BYTES:
        raise ManifestError(f"{path} is larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ManifestError(f"{path} is not valid JSON: {exc}") from None
    return parse_manifest(data, source=path)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def parse_manifest(data: object, *, source: str = "serve.json") -> Manifest:
    """Validate decoded serve.json content. Raises ManifestError."""
    if not isinstance(data, dict):
        raise ManifestError(f"{source}: expected a JSON object with \"command\" and \"port\"")
    unknown = sorted(set(data) - {"command", "port"})
    if unknown:
        named = ", ".join(repr(key[:40]) for key in unknown[:5]) + (", ..." if len(unknown) > 5 else "")
        raise ManifestError(f"{source}: unknown key(s) {named}; "
                            f"only \"command\" and \"port\" are allowed")
    missing = [key for key in ("command", "port") if key not in data]
    if missing:
        raise ManifestError(f"{source}: missing {' and '.join(map(repr, missing))}")
    return Manifest(command=_command(data["command"], source), port=_port(data["port"], source))


def _command(value: object, source: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise ManifestError(f"{source}: \"command\" must be a non-empty list of strings (argv, no shell), "
                            f"e.g. [\"python\", \"server.py\"]")
    if len(value) > MAX_ARGS:
        raise ManifestError(f"{source}: \"command\" has {len(value)} items; at most {MAX_ARGS} are allowed")
    for index, arg in enumerate(value):
        if not isinstance(arg, str):
            raise ManifestError(f"{source}: \"command\"[{index}] is {type(arg).__name__}, not a string")
        if len(arg) > MAX_ARG_CHARS:
            raise ManifestError(f"{source}: \"command\"[{index}] is {len(arg)} characters long; "
                                f"at most {MAX_ARG_CHARS} are allowed")
        if "\0" in arg:
            raise ManifestError(f"{source}: \"command\"[{index}] contains a NUL character")
    if not value[0]:
        raise ManifestError(f"{source}: \"command\"[0], the program, is empty")
    return tuple(value)


def _port(value: object, source: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in PORTS:
        raise ManifestError(f"{source}: \"port\" must be an integer from {PORTS.start} to {PORTS.stop - 1}, "
                            f"not {json.dumps(value)[:40]}")
    return value
