"""The registries of graders and sandbox backends (harness.core.registry): built-ins are published
as entry points like any plugin's (pyproject.toml), read without importing anything, loaded when
first named, checked against their base class; a wrong name fails with the close ones."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import EntryPoint

import pytest

from harness.core import GRADERS, Grader, Registry, SpecError
from tests.conftest import REPO


def test_the_built_in_graders_and_backends_are_published_entry_points():
    from harness.backends import BACKENDS, docker_runtime, local_runtime

    assert set(GRADERS.names()) >= {"ranking", "ab_answer", "endpoint_latency", "code_quality",
                                    "test_pass_rate", "hidden_tests", "completion"}
    assert {"docker", "local"} <= set(BACKENDS.names())
    assert BACKENDS.get("docker") is docker_runtime and BACKENDS.get("local") is local_runtime
    assert all(issubclass(GRADERS.get(name), Grader) for name in GRADERS.names())


def test_naming_graders_imports_nothing_and_getting_one_imports_only_its_family():
    code = ("import sys; from harness.core import GRADERS; names = GRADERS.names(); "
            "before = sorted(m for m in sys.modules if m.startswith('graders.')); GRADERS.get('ranking'); "
            "after = sorted(m for m in sys.modules if m.startswith('graders.') and m.count('.') == 1); "
            "print(before, after)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "[] ['graders.ranking']", out.stdout


def test_an_unknown_name_fails_with_the_close_ones():
    with pytest.raises(SpecError, match=r"unknown grader 'rankng'; did you mean 'ranking'"):
        GRADERS.get("rankng")


def test_a_published_object_that_is_not_a_grader_is_refused():
    registry: Registry[type[Grader]] = Registry("grader", "test.graders", base=Grader)
    registry._published = {"odd": EntryPoint("odd", "pathlib:PurePath", "test.graders"),
                           "gone": EntryPoint("gone", "no_such_module_here:Thing", "test.graders")}
    with pytest.raises(SpecError, match=r"grader 'odd' \(pathlib:PurePath\) is not a Grader"):
        registry.get("odd")
    with pytest.raises(SpecError, match=r"grader 'gone' is published as 'no_such_module_here:Thing', "
                                        r"which does not load: ModuleNotFoundError"):
        registry.get("gone")


def test_two_objects_under_one_name_are_refused():
    registry: Registry[object] = Registry("thing")
    registry.register("a")(len)
    registry.register("a")(len)  # the same object again is harmless (a module imported twice)
    with pytest.raises(ValueError, match="thing 'a' is registered twice"):
        registry.register("a")(abs)
