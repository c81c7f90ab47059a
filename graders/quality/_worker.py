"""Subprocess entry point: parse candidate Python with `ast` and radon under resource limits.

Run as `python -P graders/quality/_worker.py MEMORY_BYTES CPU_SECONDS OUTPUT_BYTES` by
graders.quality._tools, never in the harness process: a hostile file (deep nesting, a huge
expression) can exhaust the parser's stack or memory. It imports only the standard library and
radon. The job arrives as JSON on stdin:
`{"unit_seconds": s, "units": [{"id": n, "path": p, "cells": [first lines]}]}`; each unit's
analysis is written as one JSON line to stdout as soon as it is done, so when the process dies
the caller knows which unit killed it. Nothing is imported or executed from the analysed code.
"""

from __future__ import annotations

import ast
import io
import json
import resource
import signal
import sys
import tokenize
from bisect import bisect_right
from collections.abc import Iterator
from typing import Any

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
_DEFINITIONS = (*_FUNCTIONS, ast.ClassDef)
_NOT_SCRIPT = (*_DEFINITIONS, ast.Import, ast.ImportFrom)
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")
_NAME_CHARS = 100  # of one name in a block's qualified name (Python names have no length limit)


def _children(node: ast.AST) -> Iterator[ast.AST]:
    """The statements (and handlers, match cases) directly inside `node`'s blocks."""
    for name in _BODIES:
        yield from getattr(node, name, ()) or ()


def _own_statements(nodes: list[ast.stmt]) -> list[int]:
    """Lines of the statements in `nodes` and in their blocks; a nested function or class counts as one."""
    lines: list[int] = []
    stack: list[ast.AST] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.stmt):
            lines.append(node.lineno)
        if not isinstance(node, _DEFINITIONS):
            stack.extend(_children(node))
    return sorted(lines)


def _slots(node: ast.FunctionDef | ast.AsyncFunctionDef, method: bool) -> tuple[int, int]:
    """(annotation slots, annotated): each parameter but a method's self/cls, plus the return."""
    args = node.args
    params = [*args.posonlyargs, *args.args, *args.kwonlyargs]
    static = any(isinstance(d, ast.Name) and d.id == "staticmethod" for d in node.decorator_list)
    if method and not static and params and args.posonlyargs + args.args:
        params = params[1:]
    params += [a for a in (args.vararg, args.kwarg) if a is not None]
    done = sum(p.annotation is not None for p in params) + (node.returns is not None)
    return len(params) + 1, done


def _qualified(prefix: str, name: str) -> str:
    """`prefix` + `name` within what a block may hold: long names cut, a long prefix cut from the left."""
    name = name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "\u2026"
    full = prefix + name
    return full if len(full) <= 3 * _NAME_CHARS else "\u2026" + full[-(3 * _NAME_CHARS - 1):]


def _function_blocks(tree: ast.Module, complexity: dict[tuple[int, int], int]) -> Iterator[dict[str, Any]]:
    """Every function and method, with its qualified name, size, complexity and documentation."""
    stack: list[tuple[ast.AST, str, bool, str]] = [(tree, "", True, "module")]
    while stack:
        parent, prefix, public, scope = stack.pop()
        for node in _children(parent):
            if isinstance(node, ast.ClassDef):
                open_class = public and scope != "function" and not node.name.startswith("_")
                stack.append((node, _qualified(prefix, node.name) + ".", open_class, "class"))
            elif isinstance(node, _FUNCTIONS):
                method = scope == "class"
                slots, done = _slots(node, method)
                key = (node.lineno, node.col_offset)
                yield {"name": _qualified(prefix, node.name), "kind": "method" if method else "function",
                       "line": node.lineno, "end": node.end_lineno or node.lineno,
                       "cc": complexity.get(key) or _complexity_of([node]),
                       "statements": _own_statements(node.body),
                       "public": public and scope != "function" and not node.name.startswith("_"),
                       "doc": bool(ast.get_docstring(node)), "slots": slots, "annotated": done}
                stack.append((node, _qualified(prefix, node.name) + ".", False, "function"))
            else:
                stack.append((node, prefix, public, scope))


def _complexity_of(body: list[ast.stmt]) -> int:
    from radon.visitors import ComplexityVisitor

    visitor = ComplexityVisitor.from_ast(ast.Module(body=body, type_ignores=[]))
    if len(body) == 1 and isinstance(body[0], _FUNCTIONS) and visitor.functions:
        return int(visitor.functions[0].complexity)
    return int(visitor.complexity)


def _radon_complexity(tree: ast.Module) -> dict[tuple[int, int], int]:
    """radon's cyclomatic complexity of every function and method, by (line, column)."""
    from radon.complexity import cc_visit_ast
    from radon.visitors import Class

    found, stack = {}, list(cc_visit_ast(tree))
    while stack:
        block = stack.pop()
        if isinstance(block, Class):
            stack.extend(block.methods)
            stack.extend(block.inner_classes)
        else:
            found[(block.lineno, block.col_offset)] = int(block.complexity)
            stack.extend(block.closures)
    return found


def _script_blocks(tree: ast.Module, cells: list[int]) -> Iterator[dict[str, Any]]:
    """Top-level code outside definitions and imports: one block per file, or per notebook cell."""
    body = tree.body[1:] if ast.get_docstring(tree, clean=False) is not None else tree.body
    groups: dict[int, list[ast.stmt]] = {}
    for node in body:
        if not isinstance(node, _NOT_SCRIPT):
            groups.setdefault(bisect_right(cells, node.lineno) if cells else 0, []).append(node)
    for index, nodes in groups.items():
        yield {"name": f"code of cell {index}" if cells else "top-level code", "kind": "script",
               "cell": index, "line": nodes[0].lineno, "end": max(n.end_lineno or n.lineno for n in nodes),
               "cc": _complexity_of(nodes), "statements": _own_statements(nodes),
               "public": False, "doc": False, "slots": 0, "annotated": 0}


def _imports(tree: ast.Module) -> list[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return sorted(names)


_NOT_CODE = frozenset({tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER})


def logical_lines(text: str) -> list[int]:
    """First physical line of each logical line (Python reference, 2.1.1: ended by a NEWLINE token)."""
    starts, start = [], None
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.NEWLINE:
            if start is not None:
                starts.append(start)
            start = None
        elif token.type not in _NOT_CODE and start is None:
            start = token.start[0]
    return starts


def analyse(text: str, cells: list[int]) -> dict[str, Any]:
    """The measures of one Python text. Raises SyntaxError, ValueError or RecursionError."""
    from radon.metrics import mi_visit
    from radon.raw import analyze

    tree = ast.parse(text)
    raw = analyze(text)
    complexity = _radon_complexity(tree)
    blocks = [*_function_blocks(tree, complexity), *_script_blocks(tree, cells)]
    return {"ok": True, "logical": logical_lines(text),
            "lloc": raw.lloc, "sloc": raw.sloc, "mi": float(mi_visit(text, True)), "blocks": blocks,
            "imports": _imports(tree)}


def _timeout(_signum: int, _frame: object) -> None:
    raise TimeoutError


def _one(unit: dict[str, Any], seconds: float) -> dict[str, Any]:
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with open(unit["path"], encoding="utf-8") as handle:
            text = handle.read()
        return analyse(text, [int(c) for c in unit.get("cells", [])])
    except SyntaxError as exc:
        return {"ok": False, "line": exc.lineno or 1, "error": f"syntax error: {exc.msg}"}
    except (ValueError, tokenize.TokenError) as exc:
        return {"ok": False, "line": 1, "error": f"not parseable: {exc}"}
    except (RecursionError, MemoryError):
        return {"ok": False, "line": 1, "error": "too deeply nested or too large to analyse"}
    except TimeoutError:
        return {"ok": False, "line": 1, "error": f"analysis took longer than {seconds:g} s"}
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def _limit(kind: int, value: int) -> None:
    _soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value if hard == resource.RLIM_INFINITY else hard))


def main(argv: list[str]) -> int:
    """Analyse the units of the job on stdin under the limits in argv; 0 when all were attempted."""
    memory, cpu, output = (int(v) for v in argv[:3])
    _limit(resource.RLIMIT_AS, memory)
    _limit(resource.RLIMIT_CPU, cpu)
    _limit(resource.RLIMIT_FSIZE, output)
    _limit(resource.RLIMIT_CORE, 0)
    signal.signal(signal.SIGALRM, _timeout)
    job = json.loads(sys.stdin.read())
    for unit in job["units"]:
        result = _one(unit, float(job["unit_seconds"]))
        sys.stdout.write(json.dumps({"id": unit["id"], **result}) + "\n")
        sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
