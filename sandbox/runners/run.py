"""Run a submission's entry point inside the sandbox: a notebook (papermill-style parameters) or a script.

    python /opt/mlgrade/run.py [--param NAME=VALUE]... [--executed PATH] ENTRY [ENTRY...]

The first ENTRY that exists (relative to the working directory) runs:
* `*.ipynb`: a cell `NAME = 'VALUE'` per parameter is inserted after the cell tagged `parameters`
  (at the top if there is none), the notebook runs top to bottom with nbclient on the `python3`
  kernel, and the executed notebook is written to PATH after every cell, so a reviewer sees how
  far it got even when a later cell fails or the stage is killed. Exit 0, or 1 on an error; a cell
  that raises is named last on stderr, for the harness to read:
  "run.py: ENTRY: cell N begins: FIRST SOURCE LINE" and "run.py: ENTRY: cell N raised ENAME: EVALUE"
  (N counted in the candidate's notebook, from 1). Without a cell tagged `parameters` the line
  "run.py: warning: ..." says so (as papermill warns), naming the cells that set a parameter
  again and so override the injected value. A kernel that dies (e.g. killed for memory while
  this runner lives on) is noticed within a second:
  the line "run.py: ENTRY: kernel died in cell N ..." names the cell (counted in the candidate's
  notebook), and the exit code is 128+SIG when a signal killed it, as a shell reports a killed
  process, so the backend's verdict (OOM, disk limit) is the kernel's.
* `*.py`: replaced by `python ENTRY --name-with-dashes VALUE ...`; its exit code is the stage's.
No ENTRY found: exit 2. This file runs with the sandbox's Python; it imports only the standard
library and, for notebooks, nbformat and nbclient.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="run.py")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--executed", help="where the executed notebook is written")
    parser.add_argument("entries", nargs="+")
    args = parser.parse_args(argv)
    params = [_parse_param(p, parser) for p in args.param]
    entry = next((e for e in args.entries if os.path.isfile(e)), None)
    if entry is None:
        print(f"run.py: none of {', '.join(args.entries)} found in the submission", file=sys.stderr)
        return 2
    if entry.endswith(".ipynb"):
        return _run_notebook(entry, params, args.executed)
    script_args = [a for name, value in params for a in (f"--{name.replace('_', '-')}", value)]
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, entry, *script_args])  # noqa: S606 - the stage's own command
    return 1  # not reached


def _parse_param(text: str, parser: argparse.ArgumentParser) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.isidentifier():
        parser.error(f"--param {text!r}: expected NAME=VALUE with NAME a Python identifier")
    return name, value


def cell_tags(cell) -> list[str]:
    """A cell's tags as far as they are a list of strings (the notebook is the candidate's JSON).
    Also what `harness check` reads (harness/kit.py loads this file), so both agree."""
    metadata = cell.get("metadata")
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    return [t for t in tags if isinstance(t, str)] if isinstance(tags, list) else []


def _inject(notebook, params: list[tuple[str, str]], entry: str) -> None:
    from nbformat.v4 import new_code_cell

    source = "# Parameters injected by the grading harness\n"
    source += "".join(f"{name} = {value!r}\n" for name, value in params)
    cell = new_code_cell(source, metadata={"tags": [INJECTED_TAG]})
    tagged = [i for i, cell in enumerate(notebook.cells) if PARAMETERS_TAG in cell_tags(cell)]
    if params and not tagged:
        _warn_untagged(notebook, entry, [name for name, _ in params])
    notebook.cells.insert(tagged[0] + 1 if tagged else 0, cell)


def _warn_untagged(notebook, entry: str, names: list[str]) -> None:
    """Say (as papermill does) that no cell is tagged `parameters`, and which cells set a parameter
    again: they run after the injected first cell and override its value."""
    setters = []
    for number, cell in enumerate(notebook.cells, 1):
        if cell.get("cell_type") == "code":
            assigned = [n for n in names if n in assigned_names(cell.get("source", ""))]
            if assigned:
                setters.append(f"cell {number} sets {', '.join(assigned)}")
    where = (f"; {'; '.join(setters[:5])}, overriding the harness's values" if setters else "")
    print(f"run.py: warning: {entry} has no cell tagged \"{PARAMETERS_TAG}\": the harness's values of "
          f"{', '.join(names)} were put in a new first cell{where}. Tag the cell that defines them "
          f"\"{PARAMETERS_TAG}\" (papermill's convention).", file=sys.stderr)


def assigned_names(source: str) -> set[str]:
    """Names a cell assigns at its top level (IPython magics and shell lines left out)."""
    import ast

    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError, RecursionError, MemoryError):  # the candidate's code: any of it
        return set()
    names: set[str] = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        for target in targets:
            elements = target.elts if isinstance(target, ast.Tuple | ast.List) else [target]
            names.update(e.id for e in elements if isinstance(e, ast.Name))
    return names


def _write(notebook, path: str | None) -> None:
    """Write atomically, so the harness never reads half a notebook."""
    if not path:
        return
    import nbformat

    folder = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".executed-", suffix=".ipynb")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        nbformat.write(notebook, handle)
    os.replace(tmp, path)


def _run_notebook(entry: str, params: list[tuple[str, str]], executed: str | None) -> int:
    import nbformat
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, DeadKernelError

    scratch = tempfile.gettempdir()  # the sandbox's private /tmp: the rest of the root is read-only
    for var, default in (("JUPYTER_RUNTIME_DIR", "jupyter-runtime"), ("IPYTHONDIR", "ipython"),
                         ("MPLCONFIGDIR", "matplotlib")):
        os.environ.setdefault(var, os.path.join(scratch, default))
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        notebook = nbformat.read(entry, as_version=4)
    except Exception as exc:  # noqa: BLE001 - the candidate's file: say why and fail the stage
        print(f"run.py: {entry} is not a readable notebook: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _inject(notebook, params, entry)
    # IPC sockets in the private /tmp rather than TCP ports: nothing listens on the network at all.
    # Async: nbclient's blocking client waits for a reply without ever checking that the kernel
    # still lives (no cell timeout), so a kernel killed mid-cell would hang the stage to its limit.
    kernel = AsyncKernelManager(kernel_name="python3", transport="ipc", ip=os.path.join(scratch, "kernel"))
    running: list[int] = []
    client = NotebookClient(notebook, km=kernel, timeout=None, allow_errors=False,
                            resources={"metadata": {"path": os.getcwd()}},
                            on_cell_execute=lambda cell_index, **_: running.append(cell_index),
                            on_cell_executed=lambda **_: _write(notebook, executed))
    try:
        client.execute()
    except DeadKernelError:
        return _kernel_died(entry, notebook, executed, running[-1] if running else None, kernel)
    except CellExecutionError as exc:
        _write(notebook, executed)
        print(f"run.py: {entry} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        _cell_raised(entry, notebook, running[-1] if running else None, exc)
        return 1
    except Exception as exc:  # noqa: BLE001 - a kernel that would not start, ...
        _write(notebook, executed)
        print(f"run.py: {entry} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    _write(notebook, executed)
    print(f"run.py: {entry} ran to the end ({len(notebook.cells)} cells)", file=sys.stderr)
    return 0


def _cell_number(notebook, index: int) -> int | None:
    """The cell at `index` counted from 1 in the candidate's notebook; None for the injected cell."""
    injected = [i for i, cell in enumerate(notebook.cells) if INJECTED_TAG in cell_tags(cell)]
    return None if index in injected else index + 1 - sum(1 for i in injected if i < index)


def _cell_raised(entry: str, notebook, index: int | None, exc) -> None:
    """Name the cell that raised and its error, on the last lines of stderr (one line each)."""
    number = None if index is None else _cell_number(notebook, index)
    if number is None:
        return
    source = notebook.cells[index].get("source", "")
    first = next((line.strip() for line in source.splitlines() if line.strip()), "")
    ename, evalue = getattr(exc, "ename", "") or type(exc).__name__, getattr(exc, "evalue", "") or ""
    error = f"{ename}: {evalue}" if evalue else ename
    print(f"run.py: {entry}: cell {number} begins: {' '.join(first.split())[:200]}", file=sys.stderr)
    print(f"run.py: {entry}: cell {number} raised {' '.join(error.split())[:500]}", file=sys.stderr)


def _kernel_died(entry: str, notebook, executed: str | None, index: int | None, kernel) -> int:
    """Say in which cell and how the kernel died, mark that cell in the executed notebook, and exit
    as the kernel did."""
    from nbformat.v4 import new_output

    process = getattr(getattr(kernel, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.valid_signals() else f"signal {-code}"
        how = f"killed by {name}" + (", most likely out of memory" if -code == signal.SIGKILL else "")
    else:
        how = "cause unknown" if code is None else f"it exited with code {code}"
    where = "before its first cell"
    if index is not None:
        number = _cell_number(notebook, index)
        where = "in the injected parameters cell" if number is None else f"in cell {number}"
        evalue = f"the kernel died in this cell ({how})"
        notebook.cells[index].setdefault("outputs", []).append(new_output(
            "error", ename="DeadKernelError", evalue=evalue, traceback=[f"DeadKernelError: {evalue}"]))
    _write(notebook, executed)
    print(f"run.py: {entry}: kernel died {where} ({how}); the cells after it did not run",
          file=sys.stderr)
    return 128 - code if code is not None and code < 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
