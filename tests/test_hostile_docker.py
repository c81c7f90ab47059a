"""Hostile submissions through the whole pipeline, in real Docker, graded to the right status."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import api
from harness.results import Status
from tests.conftest import REPO

pytestmark = pytest.mark.docker
PROBE = REPO / "tests" / "fixtures" / "assignments" / "probe"
SECRET = "hidden-label-7f3a9c"  # tests/fixtures/assignments/probe/data/generate.py

ESCAPE = r'''
import os, socket
found, complete = [], []
TOKEN = ("hidden-label-" + "7f3a9c").encode()  # built at run time so this file does not contain it
def scan(top, budget=[200000]):
    for root, dirs, files in os.walk(top, onerror=lambda e: None):
        dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(root, d))]
        for name in files:
            budget[0] -= 1
            if budget[0] < 0:
                return False
            path = os.path.join(root, name)
            try:
                with open(path, "rb") as fh:
                    if TOKEN in fh.read(1 << 16):
                        found.append(path)
            except OSError:
                pass
for top in ("/data", "/workspace", "/submission", "/tmp", "/home", "/opt", "/etc", "/root", "/var", "/mnt"):
    if scan(top) is not False:
        complete.append(top)
writable = []
for target in ("/submission/x", "/data/public/x", "/etc/x", "/usr/x", "/x"):
    try:
        open(target, "w").write("x"); writable.append(target)
    except OSError:
        pass
nets = sorted(os.listdir("/sys/class/net"))
routes = open("/proc/net/route").read().splitlines()[1:]
with open("/output/report.txt", "w") as fh:
    fh.write(f"found={found}\ncomplete={complete}\nwritable={writable}\nnets={nets}\nroutes={routes}\n"
             f"uid={os.getuid()}\n")
print(open("/output/report.txt").read())
os.symlink("/etc/passwd", "/output/found.txt")  # try to make the harness read a host file
'''

SUBMISSIONS = {
    "sleeper": ("import time\ntime.sleep(60)\n", Status.TIMEOUT),
    "hog": ("x = bytearray(1 << 30)\nprint(len(x))\n", Status.OOM),
    "forkbomb": ("import os, time\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n"
                 "        time.sleep(0.01)\n", Status.TIMEOUT),
    "flood": ("while True:\n    print('x' * 1000)\n", Status.OUTPUT_LIMIT),
    "diskfill": ("f = open('/workspace/big', 'wb')\nwhile True:\n    f.write(b'0' * (1 << 20))\n",
                 Status.DISK_LIMIT),
    "crasher": ("raise SystemExit(7)\n", Status.ERROR),
    "escape": (ESCAPE, Status.OK),
}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    paths = []
    for name, (code, _) in SUBMISSIONS.items():
        (root / name).mkdir()
        (root / name / "main.py").write_text(code)
        paths.append(str(root / name))
    report = api.grade(PROBE, paths, results_dir=root / "results", jobs=2, log_to_mlflow=False, retries=0)
    return {item.result.candidate: item for item in report.items}


@pytest.mark.parametrize("name", sorted(SUBMISSIONS))
def test_each_hostile_submission_gets_its_status(graded, name):
    result = graded[name].result
    assert result.status is SUBMISSIONS[name][1], result.message
    assert result.total_score is not None  # a candidate's failure is graded, never ungraded


def test_escape_attempt_sees_nothing_and_changes_nothing(graded):
    item = graded["escape"]
    log = (item.folder / "logs" / "run.log").read_text()
    assert "found=[]" in log, log  # the hidden labels are nowhere in the sandbox
    # every place was searched whole, the image's own folders too (the probe's run limit is 15 s: on
    # CI's busy machine, once, the whole scan overran a 5 s limit at half a core)
    assert ("complete=['/data', '/workspace', '/submission', '/tmp', '/home', '/opt', '/etc', '/root', "
            "'/var', '/mnt']") in log, log
    # read-only root and data; /submission is the submission's working copy (issue 11), which is
    # thrown away: the original, on the host, is unchanged
    assert "writable=['/submission/x']" in log, log
    assert sorted(p.name for p in Path(graded["escape"].source).iterdir()) == ["main.py"]
    assert "nets=['lo']" in log and "routes=[]" in log, log  # no network but loopback
    assert "uid=0" not in log
    assert SECRET not in log
    assert not (item.folder / "outputs" / "found.txt").exists()  # the symlink was refused


HIDDEN_WRITER = '''
import os, time
handles = []
for i in range(12):  # 12 x 4 MiB = 48 MiB, three times the 16 MiB cap, none of it visible in the tree
    path = f"/workspace/hidden{i}"
    handle = open(path, "wb")
    os.unlink(path)
    handle.write(b"0" * (4 << 20))
    handle.flush()
    handles.append(handle)
time.sleep(30)
'''


def test_deleted_but_open_files_count_against_the_disk_cap(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "main.py").write_text(HIDDEN_WRITER)
    report = api.grade(PROBE, [str(tmp_path / "sub")], results_dir=tmp_path / "results", log_to_mlflow=False,
                       retries=0)
    assert report.items[0].result.status is Status.DISK_LIMIT, report.items[0].result.message


def test_an_overrun_that_exits_between_two_checks_is_still_caught(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "main.py").write_text(
        "for i in range(6):\n    open(f'/workspace/f{i}', 'wb').write(b'0' * (4 << 20))\n")  # 24 MiB, exits 0
    report = api.grade(PROBE, [str(tmp_path / "sub")], results_dir=tmp_path / "results", log_to_mlflow=False,
                       retries=0)
    assert report.items[0].result.status is Status.DISK_LIMIT, report.items[0].result.message
