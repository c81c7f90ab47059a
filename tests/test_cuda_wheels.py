"""CUDA-only wheels in a candidate's requirements are refused, naming every line that pulls one.

The unit tests read hand-made wheels (a zip with a METADATA file: what pip resolved); the slow
test resolves real requirements from the package index with `pip download`.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from sandbox import _wheels
from sandbox._cuda import cuda_problem
from sandbox._wheels import RequirementsError, Target

IMAGE = Target(python=(3, 11), machine="x86_64", glibc=(2, 36))  # Debian bookworm's


def wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    """A wheel file holding only its METADATA, as pip would have resolved it."""
    project = name.replace("-", "_")
    metadata = "".join(["Metadata-Version: 2.1\n", f"Name: {name}\n", f"Version: {version}\n",
                        *(f"Requires-Dist: {r}\n" for r in requires)])
    with zipfile.ZipFile(folder / f"{project}-{version}-py3-none-manylinux_2_28_x86_64.whl", "w") as zf:
        zf.writestr(f"{project}-{version}.dist-info/METADATA", metadata)


def test_every_line_that_pulls_a_cuda_wheel_is_named_with_its_cpu_build(tmp_path: Path) -> None:
    wheel(tmp_path, "xgboost", "3.2.0", "numpy", "nvidia-nccl-cu12; platform_system == 'Linux'",
          "pandas; extra == 'pandas'")
    wheel(tmp_path, "numpy", "2.4.6")
    wheel(tmp_path, "nvidia-nccl-cu12", "2.32.3")
    wheel(tmp_path, "gpu-kit", "1.0", "cuda-glue>=1")  # pulls CUDA through a dependency
    wheel(tmp_path, "cuda-glue", "1.1", "nvidia-cublas-cu12")
    wheel(tmp_path, "nvidia-cublas-cu12", "12.9.1")
    wheel(tmp_path, "lightgbm", "4.7.0", "numpy", "nvidia-cudnn-cu12; extra == 'gpu'")
    requirements = ["gpu-kit==1.0", "lightgbm==4.7.0", "xgboost==3.2.0"]
    message = cuda_problem(tmp_path, requirements)
    assert "'xgboost==3.2.0' pulls nvidia-nccl-cu12: pin xgboost-cpu==3.2.0" in message
    assert "'gpu-kit==1.0' pulls nvidia-cublas-cu12" in message
    assert "lightgbm" not in message  # its CUDA dependency belongs to an extra nobody asked for


def test_an_extra_that_asks_for_cuda_is_named_and_torch_gets_the_harness_pin(tmp_path: Path) -> None:
    wheel(tmp_path, "lightgbm", "4.7.0", "nvidia-cudnn-cu12; extra == 'gpu'")
    wheel(tmp_path, "nvidia-cudnn-cu12", "9.1.0")
    wheel(tmp_path, "torch", "2.13.0", "nvidia-cudnn-cu12; platform_system == 'Linux'")
    message = cuda_problem(tmp_path, ["lightgbm[gpu]==4.7.0", "torch==2.13.0"],
                           constraints=["torch==2.13.0", "pytest==8.4.2"])
    assert "'lightgbm[gpu]==4.7.0' pulls nvidia-cudnn-cu12" in message
    assert "'torch==2.13.0' pulls nvidia-cudnn-cu12: pin torch==2.13.0 (the CPU build" in message


def test_wheels_without_cuda_pass_and_a_bad_wheel_is_no_evidence(tmp_path: Path) -> None:
    wheel(tmp_path, "xgboost-cpu", "3.2.0", "numpy", "scipy")
    # NVIDIA's pure-Python NVML bindings (pulled by pynvml, gpustat) are no CUDA runtime wheel
    wheel(tmp_path, "pynvml", "12.0.0", "nvidia-ml-py")
    wheel(tmp_path, "nvidia-ml-py", "12.575.51")
    (tmp_path / "broken-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    assert cuda_problem(tmp_path, ["xgboost-cpu==3.2.0", "broken==1.0", "pynvml==12.0.0"]) == ""


@pytest.mark.slow
def test_plain_xgboost_is_refused_before_anything_is_installed(tmp_path: Path) -> None:
    # real resolution from the index: xgboost 3.2.0 needs nvidia-nccl-cu12 on Linux
    with pytest.raises(RequirementsError) as caught:
        _wheels.download(["lightgbm==4.7.0", "xgboost==3.2.0"], dest=tmp_path / "wheels",
                         wheelhouse=tmp_path / "house", target=IMAGE, candidate=True,
                         limits=_wheels.DownloadLimits())
    message = str(caught.value)
    assert "'xgboost==3.2.0' pulls nvidia-nccl-cu12: pin xgboost-cpu==3.2.0" in message
    assert "lightgbm" not in message
    assert list((tmp_path / "wheels").iterdir()) == [] and list((tmp_path / "house").iterdir()) == []
