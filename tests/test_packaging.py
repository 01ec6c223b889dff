"""The installed artifact works where users put it: the wheel in a fresh venv outside the
checkout, every module importable first, imports flowing one way, and no clash with a
user's own `checks`, `reports` or `harness` packages."""

from __future__ import annotations

import ast
import json
import os
import re
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from lora_harness import LAYERS  # lowest first: import your own layer or a lower one

ROOT = Path(__file__).resolve().parents[1]
# The source roots: under each, a file's path is its import name (harness/lora_harness/...).
SOURCE_ROOTS = ("harness", "checks", "reports")


def _modules() -> dict[str, Path]:
    found = {}
    for folder in SOURCE_ROOTS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            parts = parts[:-1] if parts[-1] == "__init__" else parts
            found[".".join(parts)] = path
    return found


def _layer(module: str) -> int:
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "top"
    return LAYERS.index(name) if name in LAYERS else len(LAYERS)  # top-level modules: above all


def _imports(module: str, path: Path, known: set[str]) -> set[str]:
    """Harness modules `module` imports; `from pkg import sub` counts sub, not pkg's __init__."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base]).strip(".")
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {name for name in found if name.startswith("lora_harness")}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {
        m: {i for i in _imports(m, p, known) if i in known and i != m} for m, p in modules.items()
    }


def test_imports_never_run_up_a_layer():
    upward = [
        f"{m} -> {i}"
        for m, targets in _graph().items()
        for i in targets
        if _layer(i) > _layer(m) and not (m.count(".") == 0)
    ]
    assert not upward, "imports that run back up:\n" + "\n".join(upward)


def test_the_architecture_page_lists_the_layers_in_their_order():
    bullets = re.findall(
        r"^- `(?:harness/lora_harness/)?(\w+)/`", (ROOT / "docs/architecture.md").read_text(), re.M
    )
    assert [b for b in bullets if b in LAYERS] == list(LAYERS)
    assert set(next(os.walk(ROOT / "harness/lora_harness"))[1]) - {"__pycache__"} <= set(LAYERS)


def test_no_import_circles():
    graph, state, circles = _graph(), {}, []

    def visit(node, trail):
        state[node] = "open"
        for nxt in graph[node]:
            if state.get(nxt) == "open":
                circles.append(trail[trail.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not circles, "import circles: " + "; ".join(" -> ".join(c) for c in circles)


# One fresh interpreter loads the third-party libraries once, checks that no lora_harness
# module came with them, then forks a child per module: each child imports its module
# first, as a fresh interpreter would, without paying mlx/transformers' import again.
_FORK_EACH = """
import json, os, sys
import mlx.core, mlx.nn, mlx.optimizers, mlx.utils, mlx_lm, numpy, paramiko, yaml
assert not [m for m in sys.modules if m.startswith("lora_harness")], "preloaded lora_harness"
failures = {}
for module in sys.argv[1:]:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        try:
            __import__(module)
            os._exit(0)
        except BaseException as error:
            os.write(write, f"{type(error).__name__}: {error}".encode()[:2000])
            os._exit(1)
    os.close(write)
    message = os.read(read, 4000).decode()
    os.close(read)
    if os.waitpid(pid, 0)[1]:
        failures[module] = message or "child died"
print(json.dumps(failures))
"""


@pytest.mark.slow
def test_every_module_imports_first_in_a_fresh_interpreter():
    names = [m for m in _modules() if not m.endswith("__main__")]
    done = subprocess.run(
        [sys.executable, "-c", _FORK_EACH, *names],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    failures = json.loads(done.stdout)
    assert not failures, "\n".join(f"{m}: {err}" for m, err in failures.items())


def test_a_module_that_imports_in_a_circle_is_caught_by_the_import_test(tmp_path):
    """The fork-per-module probe itself fails on a real import circle."""
    for name, other in (("circle_a", "circle_b"), ("circle_b", "circle_a")):
        (tmp_path / f"{name}.py").write_text(f"from {other} import VALUE\nVALUE = 1\n")
    done = subprocess.run(
        [sys.executable, "-c", _FORK_EACH, "circle_a", "json"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert list(json.loads(done.stdout)) == ["circle_a"]
    assert "ImportError" in json.loads(done.stdout)["circle_a"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (path,) = out.glob("*.whl")
    return path


@pytest.mark.wheel
def test_the_wheel_holds_every_module_and_data_file(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module, path in _modules().items():
        suffix = "/__init__.py" if path.name == "__init__.py" else ".py"
        assert module.replace(".", "/") + suffix in names, f"{path} is not in the wheel"
    assert "lora_harness/reports/run.schema.json" in names
    assert "lora_harness/reports/templates/report.html.j2" in names


@pytest.fixture(scope="module")
def fresh_venv(wheel, tmp_path_factory) -> Path:
    """A venv that cannot see this checkout: no editable finder, no PYTHONPATH.

    Its runtime dependencies come from this interpreter's site-packages through a plain
    path entry: a path added that way has its .pth files ignored, so the editable install's
    finder (a .pth hook) never runs there.
    """
    home = tmp_path_factory.mktemp("venv")
    venv.create(home, with_pip=True)
    python = home / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "base-dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
    )
    return home


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


@pytest.mark.wheel
def test_the_installed_wheel_runs_outside_the_checkout(fresh_venv, tmp_path):
    cli = str(fresh_venv / "bin" / "lora-harness")
    where = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import lora_harness; print(lora_harness.__file__)",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=_clean_env(),
        check=True,
    ).stdout
    assert where.startswith(str(fresh_venv)), where
    for argv in (
        ["--help"],
        ["list"],
        ["run", "--model", "shape:qwen2.5-7b", "--suite", "structure", "-q"],
    ):
        done = subprocess.run(
            [cli, *argv], capture_output=True, text=True, cwd=tmp_path, env=_clean_env()
        )
        assert done.returncode == 0, (argv, done.stderr)


USERS_PACKAGES = {
    "checks/__init__.py": "",
    "checks/x.py": "def y():\n    return 'users own checks'\n",
    "reports/__init__.py": "",
    "reports/x.py": "VALUE = 'users own reports'\n",
    "harness/__init__.py": "",
    "harness/x.py": "VALUE = 'users own harness'\n",
    "tests/test_own.py": (
        "from checks.x import y\nfrom harness.x import VALUE\nfrom reports.x import VALUE as R\n\n"
        "def test_users_packages_still_import():\n"
        "    assert y() == 'users own checks' and VALUE == 'users own harness' and R\n"
    ),
}


@pytest.fixture
def users_repo(tmp_path) -> Path:
    for name, text in USERS_PACKAGES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.wheel
def test_the_gate_runs_in_a_repo_with_its_own_checks_reports_and_harness(users_repo):
    env = {**_clean_env(), "PYTHONPATH": "."}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--lora-model",
            "fixture:tiny",
            "--lora-suite",
            "gate",
        ],
        capture_output=True,
        text=True,
        cwd=users_repo,
        env=env,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    from lora_harness.runs.suites import GATE

    assert f"{len(GATE) + 1} passed" in done.stdout  # the gate's items + the user's own test


@pytest.mark.wheel
def test_the_cli_runs_inside_a_repo_with_its_own_packages(users_repo):
    env = {**_clean_env(), "PYTHONPATH": "."}
    for argv in (["list"], ["run", "--model", "shape:qwen2.5-7b", "--suite", "structure", "-q"]):
        done = subprocess.run(
            [sys.executable, "-m", "lora_harness", *argv],
            capture_output=True,
            text=True,
            cwd=users_repo,
            env=env,
        )
        assert done.returncode == 0, (argv, done.stderr)
