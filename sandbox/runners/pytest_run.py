"""Run a test suite inside the sandbox and leave its report in /output for the harness to parse.

    python -I -S /opt/mlgrade/pytest_run.py --mode own|hidden --prefix STAGE

* own: the submission's own tests, found under /submission as `pytest` would find them (its
  conftest.py, ini files and installed plugins apply: they are the candidate's project), with
  line coverage of the submission's code (tests excluded) by coverage.py.
* hidden: the assignment's suite at /opt/mlgrade-tests, run with the harness's configuration
  only. The interpreter starts isolated (-I: no PYTHON* variables, no current directory on
  sys.path) and without `site` (-S: no .pth file or sitecustomize runs); this file adds the
  package folders by hand, imports pytest, and only then appends /submission to sys.path, after
  the standard library and the packages, so no module of the submission shadows pytest, json or
  xml. The configuration is a file of ours (-c), the root and the conftest boundary are the
  suite's folder, plugin auto-loading is off and the cache provider is disabled, so the
  submission's conftest.py, pytest.ini, pyproject options and plugins play no part.

Writes STAGE.junit.xml, STAGE.coverage.json (own mode) and STAGE.run.json (pytest's exit code,
and `problem` when pytest stopped before collecting: a conftest.py that failed to import) to
/output, then leaves with os._exit: no atexit hook or thread the tested code started runs
after the report is written; in hidden mode, as PID 1 (Docker), every other process is killed
just before pytest writes its report. A hidden suite that runs the submission's code in a child
process (as the ranker's conftest.py does) keeps that code out of the pytest process entirely.
Exits 0 whenever pytest ran, whatever the tests did; 3 if pytest could not be imported.
Imports only the standard library, pytest and (own mode) coverage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import site
import sys
import sysconfig
from types import ModuleType

SUBMISSION, TESTS, OUTPUT = "/submission", "/opt/mlgrade-tests", "/output"
HIDDEN_INI = ("[pytest]\njunit_family = xunit2\npython_files = test_*.py *_test.py\n"
              "python_classes = Test*\npython_functions = test*\n")  # as in graders/testsuite/_junit.py
TEST_FILES = ["*/test_*.py", "*/*_test.py", "*/tests/*", "*/conftest.py"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="pytest_run.py")
    parser.add_argument("--mode", choices=("own", "hidden"), required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--submission", default=SUBMISSION)  # the folders, for tests outside a sandbox
    parser.add_argument("--tests", default=TESTS)
    parser.add_argument("--output", default=OUTPUT)
    args = parser.parse_args(argv)
    sys.dont_write_bytecode = True  # the submission is read-only; -I ignores PYTHONDONTWRITEBYTECODE
    for folder in _package_dirs():
        if folder not in sys.path:
            sys.path.append(folder)
    for name in [k for k in os.environ if k.startswith(("PYTEST_", "COVERAGE_", "COV_"))]:
        del os.environ[name]
    try:
        import pytest
    except ImportError as exc:
        print(f"pytest_run.py: pytest is not installed in this image: {exc}", file=sys.stderr)
        return 3
    out = os.path.join(args.output, args.prefix)
    junit = f"{out}.junit.xml"
    common = ["-p", "no:cacheprovider", "-o", "junit_family=xunit2", f"--junitxml={junit}",
              "--continue-on-collection-errors", "-q"]
    watch = _ConftestWatch(pytest, args.tests if args.mode == "hidden" else args.submission)
    if args.mode == "hidden":
        code = _hidden(pytest, common, args.submission, args.tests, watch)
    else:
        code = _own(pytest, common, args.submission, f"{out}.coverage.json", watch)
    payload = {"mode": args.mode, "pytest_exit": int(code)}
    if watch.problem:
        payload["problem"] = watch.problem
    _write_json(f"{out}.run.json", payload)
    return 0


class _ConftestWatch:
    """Notes why pytest could not load a conftest.py before collecting (it then writes no report
    and only prints the error), as "PATH failed to import: TYPE: MESSAGE"."""

    def __init__(self, pytest, root: str) -> None:
        self.problem = ""

        def load(early_config, parser, args):  # a function: pluggy marks it, a bound method it cannot
            try:
                return (yield)
            except Exception as exc:
                cause = getattr(exc, "cause", None) or exc  # pytest's ConftestImportFailure wraps it
                path = str(getattr(exc, "path", "") or "conftest.py")
                name = os.path.relpath(path, root) if path.startswith(root) else path
                message = " ".join(f"{type(cause).__name__}: {cause}".split())
                self.problem = f"{name} failed to import: {message}"[:1000]
                raise

        self.pytest_load_initial_conftests = pytest.hookimpl(wrapper=True)(load)


def _package_dirs() -> list[str]:
    """The interpreter's package folders, as `site` would add them (but running no .pth file).

    Without `site`, a virtual environment is not recognised (sys.prefix stays the base
    Python's), so its pyvenv.cfg is read here as site.venv() would.
    """
    found = []
    venv = os.path.dirname(os.path.dirname(os.path.abspath(sys.executable)))
    config = os.path.join(venv, "pyvenv.cfg")
    if os.path.isfile(config):
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        found.append(os.path.join(venv, "lib", version, "site-packages"))
        with open(config, encoding="utf-8") as fh:
            pairs = (line.partition("=") for line in fh)
            settings = {k.strip().lower(): v.strip().lower() for k, _, v in pairs}
        if settings.get("include-system-site-packages") != "true":
            return [d for d in found if os.path.isdir(d)]
    found += [sysconfig.get_path("purelib"), sysconfig.get_path("platlib"), *site.getsitepackages()]
    return [d for d in dict.fromkeys(found) if d and os.path.isdir(d)]


def _hidden(pytest, common: list[str], submission: str, tests: str, watch: _ConftestWatch) -> int:
    os.environ["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # only plugins pytest ships with
    ini = "/tmp/mlgrade-hidden-pytest.ini"  # noqa: S108 - the sandbox's private /tmp
    with open(ini, "w", encoding="utf-8") as fh:
        fh.write(HIDDEN_INI)
    sys.path.append(submission)  # last: the submission's modules shadow nothing already there
    return pytest.main([*common, "-c", ini, f"--rootdir={tests}", f"--confcutdir={tests}",
                        "--import-mode=importlib", tests], plugins=[_StrayKiller(pytest), watch])


class _StrayKiller:
    """Before pytest writes its report, stop every other process of the sandbox (those the tested
    code left running could otherwise rewrite the report once written). Only as PID 1, i.e. the
    init of the sandbox's own PID namespace (Docker), where kill(-1) reaches nothing else."""

    def __init__(self, pytest) -> None:
        self.pytest_sessionfinish = pytest.hookimpl(tryfirst=True)(self._finish)

    @staticmethod
    def _finish(session) -> None:
        if os.getpid() == 1:
            try:
                os.kill(-1, signal.SIGKILL)
            except ProcessLookupError:  # nothing else was running
                pass


def _own(pytest, common: list[str], submission: str, coverage_json: str, watch: _ConftestWatch) -> int:
    coverage: ModuleType | None
    try:  # imported before the submission is on sys.path: its own coverage.py shadows nothing
        import coverage
    except ImportError:
        coverage = None
    sys.path.insert(0, submission)  # as `python -m pytest` run from the submission would
    if coverage is None:
        return pytest.main([*common, submission], plugins=[watch])
    # config_file=False: a .coveragerc in the submission cannot change what is measured
    cov = coverage.Coverage(data_file=None, config_file=False, source=[submission], omit=TEST_FILES)
    cov.start()
    try:
        code = pytest.main([*common, submission], plugins=[watch])
    finally:
        cov.stop()
    try:
        cov.json_report(outfile=coverage_json)
    except coverage.CoverageException as exc:  # nothing measured: no code of the submission ran
        _write_json(coverage_json, {"files": {}, "note": str(exc)[:200]})
    return code


def _write_json(path: str, payload: dict) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(payload, fh)


if __name__ == "__main__":
    status = main(sys.argv[1:])
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # skip atexit hooks and threads of the tested code
