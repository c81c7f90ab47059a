"""Image recipes: strict requirement parsing, and real offline builds against the Docker daemon.

The base image comes from `ensure_base_image(base="debian")`, which runs debootstrap once
and is then cached by tag; HARNESS_BASE_IMAGE=<local image> skips that (e.g. for quick runs).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest

from sandbox import _debian, _wheels, images
from sandbox.errors import ImageBuildError
from sandbox.images import ImageRef, RequirementsError, parse_requirements

PURE_PACKAGE = "threadpoolctl==3.8.0"  # one small pure-Python wheel, no dependencies
CANDIDATE_PACKAGE = "joblib==1.4.2"


# -- parse_requirements ---------------------------------------------------------------------------

@pytest.mark.parametrize(("line", "expected"), [
    ("numpy==2.4.6", "numpy==2.4.6"),
    ("scikit-learn==1.9.1", "scikit-learn==1.9.1"),
    ("torch==2.13.0+cpu", "torch==2.13.0+cpu"),
    ("Foo_Bar.baz==1.0rc1", "Foo_Bar.baz==1.0rc1"),
    ("pkg==1!2.0.post1.dev3", "pkg==1!2.0.post1.dev3"),
    ("pkg[extra1, extra2]==1.0", "pkg[extra1,extra2]==1.0"),
    ("pkg===1.0-custom", "pkg===1.0-custom"),
    ("  numpy == 2.4.6   # pinned for the grader", "numpy==2.4.6"),
])
def test_parse_requirements_accepts_exact_pins(line: str, expected: str) -> None:
    assert parse_requirements(f"# header\n\n{line}\n") == [expected]


@pytest.mark.parametrize(("line", "reason"), [
    ("-r other.txt", "options"),
    ("-e .", "options"),
    ("--index-url https://example.invalid/simple", "options"),
    ("--extra-index-url https://example.invalid/simple", "options"),
    ("--find-links /tmp/wheels", "options"),
    ("-c constraints.txt", "options"),
    ("https://example.invalid/pkg-1.0-py3-none-any.whl", "URLs"),
    ("./vendor/pkg", "URLs"),
    ("/abs/pkg-1.0-py3-none-any.whl", "URLs"),
    ("~/pkg", "URLs"),
    ("C:\\pkgs\\pkg.whl", "URLs"),
    ("git+https://example.invalid/x/y.git@v1", "URLs"),
    ("pkg @ https://example.invalid/pkg.whl", "URLs"),
    ("numpy==1.0; python_version > '3'", "markers"),
    ("numpy", "pin"),
    ("numpy>=1.0", "pin"),
    ("numpy~=1.0", "pin"),
    ("numpy!=1.0", "pin"),
    ("numpy<2", "pin"),
    ("numpy==1.*", "pin"),
    ("numpy==1.0 --hash=sha256:abcd", "options"),
    ("numpy==1.0 \\", "continuation"),
    ("numpy==1.0,<2", "pin"),
    ("numpy=1.0", "pin"),
    ("numpy 1.0", "requirement"),
])
def test_parse_requirements_rejects_anything_but_exact_pins(line: str, reason: str) -> None:
    text = f"threadpoolctl==3.8.0\n# comment\n\n{line}\n"
    with pytest.raises(RequirementsError, match=r"^line 4: .*" + reason):
        parse_requirements(text)


def test_parse_requirements_rejects_a_project_listed_twice() -> None:
    with pytest.raises(RequirementsError, match="line 3: 'scikit-learn' is already required on line 1"):
        parse_requirements("scikit_learn==1.9.1\nnumpy==2.4.6\nScikit-Learn==1.9.0\n")


def test_parse_requirements_names_every_bad_line_at_once() -> None:
    text = "pandas\nnumpy==2.4.6\n--extra-index-url https://example.invalid\nscikit-learn>=1.5\nNumPy==2.4.5\n"
    with pytest.raises(RequirementsError) as caught:
        parse_requirements(text)
    assert str(caught.value) == (
        "line 1: 'pandas': pin an exact version as name==version (no ranges, wildcards or bare names); "
        "line 3: '--extra-index-url https://example.invalid': pip options are not allowed; "
        "line 4: 'scikit-learn>=1.5': pin an exact version as name==version (no ranges, wildcards or "
        "bare names); line 5: 'numpy' is already required on line 2")


@pytest.mark.parametrize(("requirements", "message"), [
    (["pytest==9.2.0"], "'pytest==9.2.0': the harness provides pytest==9.0.3 (the harness pins "
                        "coverage==7.17.4, pytest==9.0.3, torch==2.13.0: list these only at exactly these "
                        "versions, or leave them out)"),
    (["Coverage==7.0", "torch==2.5.1", "numpy==2.4.6"],
     "'Coverage==7.0': the harness provides coverage==7.17.4; 'torch==2.5.1': the harness provides "
     "torch==2.13.0 ("),
])
def test_a_pin_against_the_harness_names_the_version_it_provides(requirements, message) -> None:
    constraints = ("torch==2.13.0", "pytest==9.0.3", "coverage==7.17.4")
    with pytest.raises(RequirementsError) as caught:
        _wheels.check_harness_pins(requirements, constraints)
    assert str(caught.value).startswith(message)
    _wheels.check_harness_pins(["pytest==9.0.3", "torch==2.13.0", "numpy==2.4.6"], constraints)  # same: fine
    _wheels.check_harness_pins(["coverage==7.17.4.0", "pytest==9.0.3"], constraints)  # the same version


def test_an_indirect_conflict_with_a_harness_pin_says_what_the_harness_pins() -> None:
    # pip 25's output for a plugin that needs a newer pytest than the harness's constraint
    output = ("ERROR: Cannot install pytest-xyz==2.0.0 because these package versions have conflicting "
              "dependencies.\n\nThe conflict is caused by:\n    pytest-xyz 2.0.0 depends on pytest>=9.1\n"
              "    The user requested (constraint) pytest==9.0.3\n\nTo fix this you could try to:\n"
              "1. loosen the range of package versions you've specified\n"
              "ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/\n")
    failure = _wheels._pip_failure(output, 1, candidate=True, constraints=("pytest==9.0.3",))
    assert isinstance(failure, RequirementsError)
    assert str(failure) == (
        "no installable wheel: Cannot install pytest-xyz==2.0.0 because these package versions have "
        "conflicting dependencies. The conflict is caused by: pytest-xyz 2.0.0 depends on pytest>=9.1; "
        "The user requested (constraint) pytest==9.0.3. Note that the harness pins pytest==9.0.3: list "
        "these only at exactly these versions, or leave them out.")


def test_parse_requirements_limits_lines_and_bytes() -> None:
    many = [f"pkg{i}==1.0" for i in range(201)]
    assert len(parse_requirements("\n".join(many[:200]))) == 200
    with pytest.raises(RequirementsError, match="more than 200 lines"):
        parse_requirements("\n".join(many))
    with pytest.raises(RequirementsError, match="larger than"):
        parse_requirements("# " + "x" * (64 << 10) + "\nnumpy==2.4.6\n")
    assert issubclass(RequirementsError, ValueError)


# -- download limits and whose fault a failure is ---------------------------------------------------

def test_disk_usage_counts_a_wheel_in_two_places_once(tmp_path) -> None:
    # pip downloads into its temporary folder, then copies to --dest: one wheel, two files
    (tmp_path / "tmp" / "pip-unpack-1").mkdir(parents=True)
    (tmp_path / "wheels").mkdir()
    (tmp_path / "tmp" / "pip-unpack-1" / "a-1.0-py3-none-any.whl").write_bytes(b"x" * 100)
    (tmp_path / "wheels" / "a-1.0-py3-none-any.whl").write_bytes(b"x" * 100)
    (tmp_path / "wheels" / "b-1.0-py3-none-any.whl").write_bytes(b"x" * 50)
    (tmp_path / "requirements.txt").write_bytes(b"x" * 10)
    assert _wheels.disk_usage(tmp_path) == (160, 2)
    _wheels.DownloadLimits(max_bytes=160, max_files=2).check(tmp_path)
    with pytest.raises(RequirementsError, match=r"needs more than 159 bytes of wheels"):
        _wheels.DownloadLimits(max_bytes=159, max_files=2).check(tmp_path)
    with pytest.raises(RequirementsError, match=r"needs more than 1 wheel files"):
        _wheels.DownloadLimits(max_bytes=160, max_files=1).check(tmp_path)
    with pytest.raises(ValueError, match="positive"):
        _wheels.DownloadLimits(max_bytes=0)


def _dead(pid: int) -> bool:
    try:  # field 3 of /proc/PID/stat is the state; Z is a zombie (dead, not yet reaped)
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (FileNotFoundError, ProcessLookupError):
        return True


def test_watch_stops_a_writer_over_the_limit_with_its_whole_process_group(tmp_path) -> None:
    # a stand-in for pip that never finishes: it starts a helper, then writes without end
    script = textwrap.dedent(f"""
        import os, subprocess, sys, time
        helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / "pids")!r}, "w").write(f"{{os.getpid()}} {{helper.pid}}")
        with open({str(tmp_path / "out" / "big-1.0-py3-none-any.whl")!r}, "wb") as out:
            while True:
                out.write(b"x" * 4096)
                out.flush()
                time.sleep(0.001)
    """)
    (tmp_path / "out").mkdir()
    limits = _wheels.DownloadLimits(max_bytes=50_000)
    with pytest.raises(RequirementsError, match="needs more than 50000 bytes"):
        _wheels.run_bounded([sys.executable, "-c", script], timeout_s=120,
                            watch=lambda: limits.check(tmp_path / "out"))
    pids = [int(pid) for pid in (tmp_path / "pids").read_text().split()]
    deadline = time.monotonic() + 10  # a SIGKILLed process takes a moment to die: liveness, not speed
    while not all(_dead(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) == 2 and all(_dead(pid) for pid in pids)


@pytest.mark.parametrize(("code", "output", "expected", "message"), [
    (-1, "Collecting joblib==1.4.2\n(timed out after 900 s)", RequirementsError, "took more than"),
    (-1, "WARNING: Retrying (Retry(total=4)) after connection broken by 'NewConnectionError('x')'",
     ImageBuildError, "pip download failed"),
    # a package name that looks like a network error does not make its failure ours
    (1, "ERROR: No matching distribution found for NewConnectionError==1.0", RequirementsError,
     "No matching distribution found for NewConnectionError"),
    (1, "ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device",
     ImageBuildError, "No space left"),
])
def test_pip_download_failures_are_blamed_on_the_right_side(code, output, expected, message) -> None:
    failure = _wheels._pip_failure(output, code, candidate=True)
    assert type(failure) is expected and message in str(failure)
    assert type(_wheels._pip_failure(output, code, candidate=False)) is ImageBuildError


def _failing_client(message: str, log: list[str]) -> SimpleNamespace:
    def build(**_):
        raise docker.errors.BuildError(message, iter([{"stream": f"{line}\n"} for line in log]))
    return SimpleNamespace(images=SimpleNamespace(build=build))


_CANDIDATE_PLAN = images._Plan(tag="mlgrade/x-req:0", digest="0", recipe="", parent=("PARENT", "sha256:0"),
                               fetch=(), install=(), constraints=(), labels=(), candidate=True)
# the daemon wraps a step's stderr in colour codes
_CONFLICT = ["Processing /tmp/wheels/a-1.0-py3-none-any.whl",
             "\x1b[91mERROR: Cannot install a==1.0 and b==2.0 because these package versions have "
             "conflicting dependencies.",
             "\x1b[0mThe conflict is caused by:", "    a 1.0 depends on b<2",
             "\x1b[91mERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/"]


@pytest.mark.parametrize(("candidate", "message", "log", "expected", "shown"), [
    (True, "returned a non-zero code: 1", _CONFLICT, RequirementsError,
     "in the image failed: Cannot install a==1.0 and b==2.0"),
    (True, "returned a non-zero code: 1",
     ["ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device"],
     ImageBuildError, "No space left"),
    (True, "returned a non-zero code: 137", _CONFLICT, ImageBuildError, "code: 137"),  # killed
    (True, "returned a non-zero code: 1", ["Traceback (most recent call last):"], ImageBuildError,
     "Traceback"),
    (False, "returned a non-zero code: 1", _CONFLICT, ImageBuildError, "Cannot install"),  # not a candidate's
])
def test_a_failed_build_is_blamed_on_the_right_side(tmp_path, candidate, message, log, expected,
                                                     shown) -> None:
    plan = dataclasses.replace(_CANDIDATE_PLAN, candidate=candidate)
    with pytest.raises(expected) as caught:
        images._docker_build(_failing_client(message, log), tmp_path, plan)
    assert type(caught.value) is expected and shown in str(caught.value)
    if expected is RequirementsError:  # the candidate sees one line, not the build log
        assert "\n" not in str(caught.value)


# -- real builds ------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def client():
    import docker

    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:  # fail, never skip: these tests claim Docker
        pytest.fail(f"no Docker daemon (bash scripts/setup.sh starts one): {exc}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("image-cache")


@pytest.fixture(scope="session")
def base_image(client, cache_dir) -> ImageRef:
    """The debootstrap Debian base (built once, then cached by tag), or HARNESS_BASE_IMAGE."""
    return images.ensure_base_image(client, base="debian", cache_dir=cache_dir)


@pytest.fixture(scope="session")
def made_tags(client):
    """Tags the tests build; removed at the end, newest first (children before parents)."""
    tags: list[str] = []
    yield tags
    for tag in reversed(tags):
        try:
            client.images.remove(tag)
        except Exception:  # best-effort cleanup of test images
            pass


@pytest.fixture(scope="session")
def name_prefix() -> str:
    return f"test-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def assignment_build(client, base_image, cache_dir, made_tags, name_prefix):
    """Build the assignment image once, recording which wheels each build context held."""
    decoy = cache_dir / "wheelhouse" / "decoy_unrelated-1.0-py3-none-any.whl"
    decoy.parent.mkdir(parents=True, exist_ok=True)
    decoy.write_bytes(b"not needed by this image")
    contexts: list[list[str]] = []
    real_build = images._docker_build

    def spy(client_, context, plan):
        contexts.append(sorted(p.name for p in (context / "wheels").iterdir()))
        return real_build(client_, context, plan)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "_docker_build", spy)
        ref = images.ensure_image(client, name=name_prefix, base=base_image, packages=[PURE_PACKAGE],
                                  cache_dir=cache_dir)
    made_tags.append(ref.tag)
    return ref, contexts


@pytest.fixture
def no_building(monkeypatch):
    """Make any download, probe or build fail the test; returns the list of attempted calls."""
    calls: list[str] = []

    def forbid(what):
        def record(*args, **kwargs):
            calls.append(what)
            raise AssertionError(f"{what} was called")
        return record

    monkeypatch.setattr(images, "_docker_build", forbid("docker build"))
    monkeypatch.setattr(images._wheels, "download", forbid("pip download"))
    monkeypatch.setattr(images, "_probe", forbid("probe"))
    return calls


def run(client, tag: str, code: str) -> str:
    output = client.containers.run(tag, ["python", "-c", code], network_mode="none", remove=True)
    return output.decode().strip()


@pytest.mark.docker
@pytest.mark.slow
def test_assignment_image_runs_as_sandbox_user_with_its_packages(client, assignment_build, name_prefix):
    ref, _ = assignment_build
    assert ref.built and ref.tag.startswith(f"mlgrade/{name_prefix}:") and len(ref.tag.split(":")[1]) == 12
    code = ("import os, sys, threadpoolctl; open('/workspace/w', 'w').write('x'); "
            "print(os.getuid(), os.getgid(), sys.prefix, os.getcwd(), os.environ['HOME'], "
            "os.environ['PYTHONDONTWRITEBYTECODE'], threadpoolctl.__version__)")
    assert run(client, ref.tag, code).split() == [
        "10001", "10001", "/opt/venv", "/submission", "/home/sandbox", "1", PURE_PACKAGE.split("==")[1]]
    labels = client.images.get(ref.tag).labels
    assert json.loads(labels["mlgrade.packages"]) == [PURE_PACKAGE]
    assert labels["mlgrade.inputs-hash"].startswith(ref.tag.split(":")[1])


@pytest.mark.docker
@pytest.mark.slow
def test_build_context_holds_only_the_needed_wheels(assignment_build, cache_dir):
    _, contexts = assignment_build
    wheelhouse = {p.name for p in (cache_dir / "wheelhouse").glob("*.whl")}
    assert contexts == [["constraints.txt", "requirements.txt", "threadpoolctl-3.8.0-py3-none-any.whl"]]
    assert {"threadpoolctl-3.8.0-py3-none-any.whl", "decoy_unrelated-1.0-py3-none-any.whl"} <= wheelhouse
    assert list((cache_dir / "tmp").iterdir()) == []  # scratch contexts are removed


@pytest.mark.docker
@pytest.mark.slow
def test_second_ensure_image_builds_nothing(client, assignment_build, base_image, cache_dir, no_building,
                                            name_prefix):
    ref, _ = assignment_build
    again = images.ensure_image(client, name=name_prefix, base=base_image, packages=[PURE_PACKAGE],
                                cache_dir=cache_dir)
    assert again == ImageRef(ref.tag, ref.id, built=False)
    assert no_building == []


@pytest.mark.docker
@pytest.mark.slow
def test_concurrent_callers_build_once_and_extra_wheels_install(client, assignment_build, base_image,
                                                                cache_dir, made_tags, name_prefix, tmp_path):
    wheel = tmp_path / "threadpoolctl-3.8.0-py3-none-any.whl"
    shutil.copy(cache_dir / "wheelhouse" / wheel.name, wheel)
    builds: list[str] = []
    real_build = images._docker_build

    def counting(client_, context, plan):
        builds.append(plan.tag)
        return real_build(client_, context, plan)

    results: list[ImageRef] = []

    def ask() -> None:
        results.append(images.ensure_image(client, name=f"{name_prefix}-extra", base=base_image, packages=[],
                                           cache_dir=cache_dir, extra_wheels=[str(wheel)]))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "_docker_build", counting)
        threads = [threading.Thread(target=ask) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    made_tags.append(results[0].tag)
    assert len(builds) == 1 and sorted(r.built for r in results) == [False, True]
    assert results[0].id == results[1].id
    assert run(client, results[0].tag, "import threadpoolctl; print(threadpoolctl.__file__)").startswith(
        "/opt/venv/")


@pytest.mark.docker
@pytest.mark.slow
def test_candidate_image_is_cached_by_its_inputs(client, assignment_build, cache_dir, made_tags, name_prefix):
    parent, _ = assignment_build
    requirements = ["packaging==24.2", CANDIDATE_PACKAGE]
    first = images.ensure_candidate_image(client, parent=parent, requirements=requirements,
                                          cache_dir=cache_dir)
    made_tags.append(first.tag)
    assert first.built and first.tag.startswith(f"mlgrade/{name_prefix}-req:")
    code = "import os, joblib, packaging, threadpoolctl; print(os.getuid())"
    assert run(client, first.tag, code) == "10001"
    labels = client.images.get(first.tag).labels
    assert json.loads(labels["mlgrade.packages"]) == sorted(requirements)
    # a candidate's wheels stay out of the shared wheelhouse, so candidates cannot grow it
    assert not list((cache_dir / "wheelhouse").glob("joblib-*"))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(images, "_docker_build", lambda *a: pytest.fail("built again"))
        patch.setattr(images._wheels, "download", lambda *a, **k: pytest.fail("downloaded again"))
        again = images.ensure_candidate_image(client, parent=parent, requirements=requirements[::-1],
                                              cache_dir=cache_dir)
    assert again == ImageRef(first.tag, first.id, built=False)
    none = images.ensure_candidate_image(client, parent=parent, requirements=[], cache_dir=cache_dir)
    assert (none.tag, none.id) == (parent.tag, parent.id)


@pytest.mark.docker
@pytest.mark.parametrize(("requirements", "constraints", "message"), [
    (["threadpoolctl==99.0.0"], (), "No matching distribution found for threadpoolctl==99.0.0"),
    # the constraint rules it out: named before pip runs, with the version the harness provides
    (["joblib==1.4.0"], (CANDIDATE_PACKAGE,), "'joblib==1.4.0': the harness provides joblib==1.4.2"),
])
def test_candidate_requirement_without_a_wheel_is_the_candidates_fault(
        client, base_image, cache_dir, requirements, constraints, message, monkeypatch):
    monkeypatch.setattr(images, "_docker_build", lambda *a: pytest.fail("nothing should be built"))
    parent = ImageRef(base_image.tag, base_image.id, built=False)
    with pytest.raises(RequirementsError, match=message):
        images.ensure_candidate_image(client, parent=parent, requirements=requirements,
                                      cache_dir=cache_dir, constraints=constraints)


@pytest.mark.docker
def test_candidate_requirements_are_checked_again(client, base_image, cache_dir):
    with pytest.raises(RequirementsError, match="options"):
        images.ensure_candidate_image(client, parent=base_image, requirements=["--index-url=x"],
                                      cache_dir=cache_dir)


@pytest.mark.docker
def test_base_image_carries_the_libraries_common_wheels_assume(client, base_image):
    # the list comes from the wheels' ELF NEEDED entries (see sandbox/images.py); without libgomp1,
    # LightGBM's wheel raised "OSError: libgomp.so.1: cannot open shared object file"
    code = (f"import ctypes\nfor name in {images.WHEEL_SYSTEM_LIBRARIES!r}:\n    ctypes.CDLL(name)\n"
            "print('loaded')")
    output = client.containers.run(base_image.tag, ["python3", "-c", code], network_mode="none", remove=True)
    assert output.decode().strip() == "loaded"


@pytest.fixture(scope="session")
def base_without_libgomp(client, base_image, tmp_path_factory, made_tags, name_prefix) -> ImageRef:
    """A stand-in for python:3.11-slim, which has no libgomp (this machine cannot pull it): the
    Debian base with its libgomp deleted."""
    context = tmp_path_factory.mktemp("no-libgomp")
    (context / "Dockerfile").write_text(
        "ARG BASE\nFROM ${BASE}\nUSER root\n"
        "RUN rm -f /usr/lib/x86_64-linux-gnu/libgomp.so.1* /lib/x86_64-linux-gnu/libgomp.so.1* && ldconfig\n")
    tag = f"mlgrade/{name_prefix}-nogomp:test"
    image, _ = client.images.build(path=str(context), tag=tag, buildargs={"BASE": base_image.id},
                                   network_mode="none", rm=True, pull=False)
    made_tags.append(tag)
    return ImageRef(tag, image.id, built=True)


@pytest.mark.docker
@pytest.mark.slow
def test_a_base_without_a_library_wheels_assume_gets_the_hosts_copy(
        client, base_image, base_without_libgomp, cache_dir, made_tags, name_prefix) -> None:
    load = "import ctypes; ctypes.CDLL('libgomp.so.1'); print('loaded')"
    with pytest.raises(docker.errors.ContainerError, match="libgomp.so.1: cannot open shared object"):
        client.containers.run(base_without_libgomp.tag, ["python3", "-c", load], network_mode="none",
                              remove=True)
    assert images._missing_libraries(client, base_without_libgomp.id) == ("libgomp.so.1",)
    assert images._missing_libraries(client, base_image.id) == ()  # its images keep their digest
    ref = images.ensure_image(client, name=f"{name_prefix}-slimlike", base=base_without_libgomp,
                              packages=[], cache_dir=cache_dir)
    made_tags.append(ref.tag)
    assert run(client, ref.tag, load) == "loaded"  # as the sandbox user, like LightGBM's import


@pytest.mark.docker
def test_base_image_must_exist_locally_unless_overridden(client, base_image, cache_dir, monkeypatch):
    monkeypatch.delenv(images.BASE_IMAGE_ENV, raising=False)
    with pytest.raises(ImageBuildError, match="not present locally and images are never pulled"):
        images.ensure_base_image(client, base="mlgrade-test/absent:nope", cache_dir=cache_dir)
    monkeypatch.setenv(images.BASE_IMAGE_ENV, base_image.tag)
    chosen = images.ensure_base_image(client, base="mlgrade-test/absent:nope", cache_dir=cache_dir)
    assert chosen == ImageRef(base_image.tag, base_image.id, built=False)


@pytest.mark.docker
def test_debian_base_explains_that_it_needs_root_and_debootstrap(client, cache_dir, tmp_path, monkeypatch):
    recipe = json.loads(_debian.RECIPE_PATH.read_text())
    recipe["comment"] = f"a variant never built: {uuid.uuid4()}"  # so its tag is absent
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    monkeypatch.setattr(_debian, "RECIPE_PATH", tmp_path / "recipe.json")
    monkeypatch.delenv(images.BASE_IMAGE_ENV, raising=False)
    monkeypatch.setattr(_debian.os, "geteuid", lambda: 1000)
    with pytest.raises(ImageBuildError, match="needs root.*HARNESS_BASE_IMAGE"):
        images.ensure_base_image(client, base="debian", cache_dir=cache_dir)
    monkeypatch.setattr(_debian.os, "geteuid", lambda: 0)
    monkeypatch.setattr(_debian.shutil, "which", lambda name: None)
    with pytest.raises(ImageBuildError, match="apt-get install debootstrap"):
        images.ensure_base_image(client, base="debian", cache_dir=cache_dir)


@pytest.mark.docker
def test_failed_build_reports_the_end_of_its_log(client, base_image, cache_dir, tmp_path, monkeypatch,
                                                  name_prefix):
    # the marker is computed by the shell, so it appears only if the step's output is reported
    recipe = 'ARG BASE\nFROM ${BASE}\nRUN echo "marker-$((40+2))"; exit 3\n'
    (tmp_path / "assignment.Dockerfile").write_text(recipe)
    monkeypatch.setattr(images, "RECIPES", tmp_path)
    with pytest.raises(ImageBuildError, match=r"(?s)returned a non-zero code: 3.*marker-42"):
        images.ensure_image(client, name=f"{name_prefix}-broken", base=base_image, packages=[],
                            cache_dir=cache_dir)
    assert list((cache_dir / "tmp").iterdir()) == []


@pytest.mark.docker
@pytest.mark.parametrize(("requirements", "limits", "message"), [
    (["joblib==1.4.2"], {"max_download_bytes": 50_000},  # its wheel is 301,817 bytes
     "requirements.txt needs more than 50000 bytes of wheels"),
    (["packaging==24.2", "threadpoolctl==3.5.0"], {"max_wheel_files": 1},
     "requirements.txt needs more than 1 wheel files"),
])
def test_candidate_requirements_over_the_download_limits_are_refused(
        client, base_image, cache_dir, requirements, limits, message, monkeypatch):
    monkeypatch.setattr(images, "_docker_build", lambda *a: pytest.fail("nothing should be built"))
    runs: list[tuple[list[str], dict]] = []
    real_run = _wheels.run_bounded

    def spy(command, **kwargs):
        runs.append((list(command), kwargs))
        return real_run(command, **kwargs)

    monkeypatch.setattr(_wheels, "run_bounded", spy)
    wheelhouse = cache_dir / "wheelhouse"
    before = sorted(p.name for p in wheelhouse.iterdir()) if wheelhouse.exists() else []
    with pytest.raises(RequirementsError, match=message):
        images.ensure_candidate_image(client, parent=base_image, requirements=requirements,
                                      cache_dir=cache_dir, **limits)
    assert sorted(p.name for p in wheelhouse.iterdir()) == before  # the refused wheels went nowhere
    assert list((cache_dir / "tmp").iterdir()) == []
    # pip was watched while it ran, wrote nothing outside the scratch folder (no pip cache)
    [(command, kwargs)] = runs
    assert kwargs["watch"] is not None and "--no-cache-dir" in command
    assert Path(kwargs["env"]["TMPDIR"]).is_relative_to(cache_dir / "tmp")


@pytest.mark.docker
@pytest.mark.slow
def test_wheels_that_pip_cannot_install_in_the_image_are_the_candidates_fault(
        client, assignment_build, cache_dir, monkeypatch):
    """A wheel for another platform gets past the host's download but not the image's pip.

    The probe is made to report Python 3.12, so the host fetches MarkupSafe's cp312 wheel
    (a compiled, 28 kB one); the image's Python 3.11 pip finds no wheel it can install.
    """
    parent, _ = assignment_build
    real_probe = images._probe
    monkeypatch.setattr(images, "_probe", lambda c, image_id: dataclasses.replace(
        real_probe(c, image_id), python=(3, 12)))
    builds: list[str] = []
    real_build = images._docker_build

    def counting(client_, context, plan):
        builds.append(sorted(p.name for p in (context / "wheels").glob("*.whl")))
        return real_build(client_, context, plan)

    monkeypatch.setattr(images, "_docker_build", counting)
    with pytest.raises(RequirementsError, match=r"^installing requirements.txt in the image failed: "
                                                r"No matching distribution found for markupsafe==2.1.5$"):
        images.ensure_candidate_image(client, parent=parent, requirements=["markupsafe==2.1.5"],
                                      cache_dir=cache_dir)
    assert len(builds) == 1 and len(builds[0]) == 1 and "-cp312-" in builds[0][0]  # it failed in the build


@pytest.mark.parametrize("assignment", ["ranker", "abtest", "endpoint"])
def test_each_brief_states_the_versions_the_harness_pins(assignment) -> None:
    # a candidate reads the brief, not the code: the pins it promises must be the ones enforced
    from harness.spec import TEST_PACKAGES

    brief = (Path(__file__).parents[1] / "assignments" / assignment / "BRIEF.md").read_text()
    for pin in (*TEST_PACKAGES, images.TORCH_PIN):
        assert f"`{pin}`" in brief
