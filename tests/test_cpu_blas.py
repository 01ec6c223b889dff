"""MLX's Linux CPU float32 matmuls go to a system OpenBLAS when one is installed."""

import os
import subprocess
import sys

import pytest

from lora_harness.core import cpu_blas

PROBE = (
    "import lora_harness, mlx.core as mx; from lora_harness.core import cpu_blas;"
    "a = mx.random.normal((64, 64)); import numpy as np;"
    "assert np.allclose(np.array(a @ a.T), np.array(a) @ np.array(a).T, atol=1e-4);"
    "print(cpu_blas.describe())"
)
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux CPU wheel")


def _describe(**env) -> str:
    return _describe_with(PROBE, **env)


def _describe_with(probe: str, **env) -> str:
    unset = ("LD_PRELOAD", cpu_blas.ENV, "OPENBLAS_NUM_THREADS", "PYTEST_XDIST_WORKER_COUNT")
    environ = {k: v for k, v in os.environ.items() if k not in unset}
    done = subprocess.run(
        [sys.executable, "-c", probe], env={**environ, **env}, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@linux_only
def test_a_system_openblas_is_loaded_ahead_of_the_bundled_one():
    found = cpu_blas._system_openblas()
    if found is None:
        pytest.skip("no system OpenBLAS here (.ci/run installs libopenblas0-pthread)")
    assert _describe() == f"openblas {found}"


@linux_only
def test_pytest_xdist_workers_share_the_cores_as_openblas_threads():
    if cpu_blas._system_openblas() is None:
        pytest.skip("no system OpenBLAS here (.ci/run installs libopenblas0-pthread)")
    threads = max(1, len(os.sched_getaffinity(0)) // 2)
    probe = PROBE.replace("print(", "import os; print(os.environ['OPENBLAS_NUM_THREADS'], ")
    said = _describe_with(probe, PYTEST_XDIST_WORKER_COUNT="2")
    assert said.startswith(f"{threads} openblas ") and "2 pytest-xdist workers" in said
    # The user's own setting wins, and a single process keeps OpenBLAS's default.
    assert _describe_with(probe, PYTEST_XDIST_WORKER_COUNT="2", OPENBLAS_NUM_THREADS="3")[0] == "3"
    assert "OPENBLAS_NUM_THREADS" not in _describe_with(
        PROBE.replace("print(", "import os; print(*os.environ, ")
    )


@linux_only
def test_the_bundled_blas_is_kept_when_asked_and_the_report_says_so():
    assert _describe(**{cpu_blas.ENV: "0"}).startswith("reference BLAS bundled with mlx")


@linux_only
def test_an_unloadable_library_is_named_and_the_bundled_blas_kept(tmp_path):
    bogus = tmp_path / "libopenblas.so.0"
    bogus.write_text("not a library")
    said = _describe(**{cpu_blas.ENV: str(bogus)})
    assert said.startswith("reference BLAS bundled with mlx") and str(bogus) in said


def test_mlx_imported_first_is_named_as_the_reason(monkeypatch):
    monkeypatch.delenv(cpu_blas.ENV, raising=False)
    monkeypatch.setattr(sys, "platform", "linux")
    import mlx.core  # noqa: F401  (already imported by the test session)

    assert "mlx was imported before lora_harness" in cpu_blas._choose()
