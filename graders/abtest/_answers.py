"""Strict reading of a candidate's answers.json, and per-field lookup checked against its JSON Schema.

Everything here treats the file as hostile: a malformed document or field is a diagnosis (a short,
printable sentence naming the field and the fix), never an exception. Only a broken schema (the
assignment's own file) raises SpecError, and an unreadable harness-owned copy raises HarnessError.

Strictness beyond `json.loads`: NaN, Infinity and -Infinity (which Python accepts), numbers that
overflow to infinity and integers too large for a float are refused where a field uses them; a key
repeated in one object is refused where a field passes through it (JSON leaves the winner undefined);
nesting deeper than MAX_DEPTH refuses the whole document, so no later step can recurse without bound.
Keys of the candidate's are quoted in messages unless they are plain names.
"""

from __future__ import annotations

import functools
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, SchemaError
from jsonschema.exceptions import ValidationError, best_match

from harness.core import HarnessError, SpecError
from harness.core.text import one_line, printable

MAX_BYTES = 64 * 1024
MAX_DEPTH = 32
SHOW = 40  # characters of candidate text quoted in a message
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,39}")  # a key shown as is in a path; others are quoted


@dataclass(frozen=True)
class Rejected:
    """Stands in the parsed document for a value JSON does not define (NaN, a repeated key)."""

    reason: str


@dataclass(frozen=True)
class Answers:
    """A parsed answers document, or why none could be read (then `data` is None)."""

    data: dict[str, Any] | None
    problem: str = ""


@dataclass(frozen=True)
class Lookup:
    """One field of the answers: its value once it passed every check, else the problem."""

    value: Any = None
    problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.problem


def show(value: Any) -> str:
    """A candidate's value, shortened and printable, for a message."""
    return one_line(printable(repr(value)), SHOW)


def json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    return {str: "string", list: "list", dict: "object", type(None): "null"}.get(type(value), "value")


def _constant(name: str) -> Rejected:
    return Rejected(f"{name} is not a JSON number; write a finite number")


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    counts: dict[str, int] = {}
    for key, value in pairs:
        counts[key] = counts.get(key, 0) + 1
        out[key] = value
    for key, n in counts.items():
        if n > 1:
            out[key] = Rejected(f"the key {show(key)} appears {n} times in one object; keep one")
    return out


def _depth(value: Any) -> int:
    """The nesting depth of a parsed document, without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parse_answers(raw: bytes) -> Answers:
    """Parse the bytes of an answers file into a document, or a diagnosis of why it is unusable."""
    if len(raw) > MAX_BYTES:
        return Answers(None, f"the file is larger than {MAX_BYTES // 1024} KiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return Answers(None, f"not valid UTF-8 (byte {exc.start}: {exc.reason}); save the file as UTF-8")
    try:
        data = json.loads(text, parse_constant=_constant, object_pairs_hook=_pairs)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return Answers(None, f"not valid JSON: {one_line(exc.msg, 80)} at {where}")
    except RecursionError:
        return Answers(None, "not usable JSON: nested too deeply")
    except ValueError as exc:
        if "integer string conversion" in str(exc):  # Python's own advice would mislead a candidate
            return Answers(None, f"not usable JSON: an integer has more than {sys.get_int_max_str_digits()} "
                                 "digits; write a finite number")
        return Answers(None, f"not usable JSON: {one_line(printable(str(exc)), 120)}")
    if not isinstance(data, dict):
        return Answers(None, f"the top level is a {json_type(data)}, expected an object {{...}}")
    if _depth(data) > MAX_DEPTH:
        return Answers(None, f"not usable JSON: nested more than {MAX_DEPTH} levels deep")
    return Answers(data)


@functools.lru_cache(maxsize=32)
def _read_cached(path: str, stamp: tuple[int, int]) -> Answers:
    try:
        with open(path, "rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except OSError as exc:
        raise HarnessError(f"cannot read the collected output {path}: {exc.strerror}") from None
    return parse_answers(raw)


def read_answers(path: Path | None, problem: str = "") -> Answers:
    """The answers in a harness-owned copy of the output (`path` None: the pipeline's `problem`).

    Cached by path, modification time and size, since every field's grader reads the same file.
    Raises HarnessError only if the harness's own copy cannot be read.
    """
    if path is None:
        return Answers(None, problem or "not produced")
    try:
        st = path.stat()
    except OSError as exc:
        raise HarnessError(f"cannot read the collected output {path}: {exc.strerror}") from None
    return _read_cached(str(path), (st.st_mtime_ns, st.st_size))


@functools.lru_cache(maxsize=8)
def _schema_cached(path: str, stamp: tuple[int, int]) -> dict[str, Any]:
    try:
        schema = json.loads(Path(path).read_text(encoding="utf-8"))
        Draft202012Validator.check_schema(schema)
    except (OSError, ValueError, SchemaError) as exc:
        raise SpecError(f"answers schema {path}: not a valid JSON Schema ({one_line(exc, 200)})") from None
    if not isinstance(schema, dict):
        raise SpecError(f"answers schema {path}: the top level must be an object")
    return schema


def load_schema(path: Path) -> dict[str, Any]:
    """Load and check a Draft 2020-12 schema (cached). Raises SpecError if missing or invalid."""
    try:
        st = path.stat()
    except OSError:
        raise SpecError(f"answers schema {path} does not exist; fix args.schema") from None
    return _schema_cached(str(path), (st.st_mtime_ns, st.st_size))


def _resolve(node: Any, root: dict[str, Any], where: str) -> dict[str, Any]:
    ref = node.get("$ref") if isinstance(node, dict) else None
    if isinstance(ref, str) and ref.startswith("#/"):
        node = root
        for part in ref[2:].split("/"):
            node = node.get(part.replace("~1", "/").replace("~0", "~"), {}) if isinstance(node, dict) else {}
    if not isinstance(node, dict):
        raise SpecError(f"answers schema: the schema of {where} is not an object")
    return node


def field_schema(schema: dict[str, Any], field: str) -> dict[str, Any]:
    """The sub-schema of a dotted field, following `properties` (and local $refs).

    Raises SpecError if the schema does not describe the field.
    """
    node = schema
    done: list[str] = []
    for part in field.split("."):
        props = node.get("properties", {})
        if not isinstance(props, dict) or part not in props:
            where = ".".join(done) or "the top level"
            raise SpecError(f"answers schema has no property {part!r} under {where}; fix args.field "
                            "or the schema")
        done.append(part)
        node = _resolve(props[part], schema, ".".join(done))
    if "$defs" in schema and "$defs" not in node:  # so that refs inside the field still resolve
        node = {**node, "$defs": schema["$defs"]}
    return node


def _walk(data: dict[str, Any], field: str) -> Lookup:
    node: Any = data
    done: list[str] = []
    for part in field.split("."):
        where = ".".join(done)
        if not isinstance(node, dict):
            return Lookup(problem=f"{where} is a {json_type(node)}, expected an object")
        if part not in node:
            return Lookup(problem=f"missing key {part!r} in {where or 'the top level'}")
        done.append(part)
        node = node[part]
        if isinstance(node, Rejected):
            return Lookup(problem=f"{'.'.join(done)}: {node.reason}")
    return Lookup(node)


def _member(where: str, key: Any) -> str:
    """The path `where` extended by a key of the candidate's: plain names as `.name`, others quoted."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if _NAME.fullmatch(key) else f"{where}[{show(key)}]"


def _fits_float(number: int) -> bool:
    try:
        float(number)
    except OverflowError:
        return False
    return True


def _rejected_inside(value: Any, field: str) -> str:
    """The first NaN/Infinity/overflowing number (or integer) or repeated key inside a field's value."""
    stack: list[tuple[Any, str]] = [(value, field)]
    while stack:
        item, where = stack.pop()
        where = one_line(where, SHOW * 3)
        if isinstance(item, Rejected):
            return f"{where}: {item.reason}"
        if isinstance(item, float) and not math.isfinite(item):
            return f"{where}: {show(item)} is not a finite number (the literal overflows)"
        if isinstance(item, int) and not isinstance(item, bool) and not _fits_float(item):
            return (f"{where}: a {len(str(abs(item)))}-digit integer is not a finite number (too large "
                    "for a float)")
        if isinstance(item, dict):
            stack.extend((v, _member(where, k)) for k, v in reversed(item.items()))
        elif isinstance(item, list):
            stack.extend((v, _member(where, i)) for i, v in reversed(list(enumerate(item))))
    return ""


def _describe(error: ValidationError, field: str) -> str:
    where = field
    for part in error.absolute_path:
        where = one_line(_member(where, part), SHOW * 3)
    # set on every error a validator yields (jsonschema's types also allow Unset, for errors made by hand)
    value: Any = error.instance
    kind = error.validator
    expected: Any = error.validator_value
    if kind == "type":
        wanted = expected if isinstance(expected, str) else " or ".join(map(str, expected))
        if wanted == "integer" and json_type(value) == "number":
            return f"{where}: {show(value)} is not a whole number"
        wanted = {"array": "list", "boolean": "boolean (true or false)"}.get(wanted, wanted)
        article = "an" if wanted[:1] in "aeiou" else "a"
        return f"{where}: {show(value)} is a {json_type(value)}, expected {article} {wanted}"
    if kind in ("minItems", "maxItems"):
        schema: Any = error.schema  # the (object) schema holding the keyword that failed
        exact = schema.get("minItems") == schema.get("maxItems")
        bound = "exactly" if exact else "at least" if kind == "minItems" else "at most"
        return f"{where}: has {len(value)} items, expected {bound} {expected}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        return f"{where}: {show(value)} is outside the allowed range ({kind} {expected})"
    if kind == "enum":
        return f"{where}: {show(value)} is not one of {', '.join(map(repr, expected))}"
    return f"{where}: {one_line(printable(error.message), 160)}"


def lookup(answers: Answers, field: str, schema: dict[str, Any]) -> Lookup:
    """Find `field` (dotted) in the answers and check it against its sub-schema of `schema`.

    Returns the value, or the first problem: the document's own, a missing key or wrong
    container on the way, a non-finite number or repeated key, or a schema violation.
    Raises SpecError if the schema does not describe the field.
    """
    sub = field_schema(schema, field)
    if answers.data is None:
        return Lookup(problem=answers.problem)
    found = _walk(answers.data, field)
    if not found.ok:
        return found
    bad = _rejected_inside(found.value, field)
    if bad:
        return Lookup(problem=bad)
    error = best_match(Draft202012Validator(sub).iter_errors(found.value))
    return Lookup(problem=_describe(error, field)) if error is not None else found
