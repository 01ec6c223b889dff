"""No false result, output that stays valid, paths checked at start, state that heals (#26).

Each test names the defect it was written for; each failed before its fix. Faults are
real: a read-only tmpfs, a full tmpfs, FIFOs, truncated files, two writer processes, a
kill in the middle of a write, a login shell that prints a banner (a real sshd).
"""

from __future__ import annotations

import errno
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import types
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from lora_harness.cli import main
from lora_harness.core import files
from lora_harness.reports import junit

SHAPE = ["--model", "shape:qwen2.5-0.5b", "--suite", "structure"]
ESC = "\x1b]0;pwned\x07\x1b[2J\x9b31m"  # set the title, clear the screen, a C1 CSI


def run(argv, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("lora-harness: error: "), lines
    return lines[0]


@pytest.fixture(scope="module")
def shape_report(tmp_path_factory) -> dict:
    """A complete run report of a shape-only model, made once."""
    out = tmp_path_factory.mktemp("shape-run")
    assert main(["run", "-q", *SHAPE, "--out", str(out)]) == 0
    (path,) = out.glob("*/report.json")
    return json.loads(path.read_text())


def write_report(path: Path, report: dict, **changes) -> Path:
    document = json.loads(json.dumps(report))
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = document
        for key in parents:
            target = target.setdefault(key, {})
        target[last] = value
    path.write_text(json.dumps(document))
    return path


def mount_tmpfs(folder: Path, options: str) -> bool:
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True
    )
    return done.returncode == 0


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "ro"
    if not mount_tmpfs(folder, "ro,size=1m"):
        folder.chmod(0o555)
        if os.access(folder, os.W_OK):
            pytest.skip("cannot make a read-only folder here (root without mount)")
    yield folder
    subprocess.run(["umount", str(folder)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "small"
    if not mount_tmpfs(folder, "size=2m"):
        pytest.skip("needs root to mount a small tmpfs")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def fill(folder: Path, leave: int) -> None:
    """Fill the file system of `folder` until `leave` bytes are free."""
    free = shutil.disk_usage(folder).free
    with open(folder / "ballast", "wb") as stream:
        stream.write(b"\0" * max(free - leave, 0))


# --- 1. false results -------------------------------------------------------------------


def test_compare_fails_a_gate_when_the_new_loss_is_nan(shape_report, tmp_path, capsys):
    summary = {"last_loss": 2.5, "tokens_per_second": 100.0}
    before = write_report(tmp_path / "a.json", shape_report, metrics__summary=summary)
    nan = {**summary, "last_loss": "nan"}  # how json_safe stores a NaN loss
    after = write_report(tmp_path / "b.json", shape_report, metrics__summary=nan)
    code, out, _ = run(["compare", str(before), str(after), "--fail-on", "last_loss:5%"], capsys)
    assert code == 1 and "last_loss: 2.5 -> nan  REGRESSION" in out
    gone = write_report(tmp_path / "c.json", shape_report, metrics__summary={"steps": 1})
    code, out, _ = run(["compare", str(before), str(gone), "--fail-on", "last_loss:5%"], capsys)
    assert code == 1 and "-> missing  REGRESSION" in out
    same = write_report(tmp_path / "d.json", shape_report, metrics__summary=summary)
    assert run(["compare", str(before), str(same), "--fail-on", "last_loss:5%"], capsys)[0] == 0
    # A NaN before and a number after is a recovery, not a regression.
    assert run(["compare", str(after), str(before), "--fail-on", "last_loss:5%"], capsys)[0] == 0


def test_a_key_named_twice_adapts_its_layers_once(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    keys = "self_attn.q_proj,self_attn.q_proj"
    code, _, err = run(["run", "-q", *SHAPE, "--keys", keys, "--json", "r.json"], capsys)
    assert code == 0, err
    config = tmp_path / "cfg.yaml"
    config.write_text("lora_parameters:\n  keys: [self_attn.v_proj, self_attn.v_proj]\n")
    code, _, err = run(["run", "-q", *SHAPE, "-c", str(config)], capsys)
    assert code == 0, err


def _report_file(tmp_path, shape_report) -> Path:
    return write_report(tmp_path / "host-report.json", shape_report)


def test_a_host_whose_harness_exits_3_after_its_report_is_not_passed(tmp_path, shape_report):
    from lora_harness.remote.host_run import HostResult, _judge
    from lora_harness.remote.redact import Redactor
    from lora_harness.remote.shell import Completed

    report = _report_file(tmp_path, shape_report)
    verdicts = {}
    for status in (0, 1, 2, 3, 143):
        result = HostResult("h", "127.0.0.1")
        stderr = "lora-harness: internal error: OSError: read-only\n"
        _judge(result, Completed(status, "", stderr, 0), report, False, Redactor())
        verdicts[status] = (result.status, result.message)
    assert verdicts[0] == ("passed", "verdict pass")
    for status in (1, 2, 3, 143):
        assert verdicts[status][0] == "error", verdicts[status]
    assert "exited 3: lora-harness: internal error" in verdicts[3][1]


# --- 2. output that stays valid ---------------------------------------------------------


def test_junit_stays_well_formed_with_control_characters_anywhere(shape_report):
    hostile = f"m{ESC}\x00\x0c\ud800\ufffe"
    report = json.loads(json.dumps(shape_report))
    report["model"]["spec"] = f"./models/{hostile}"
    report["environment"]["host"] = f"studio{hostile}"
    report["checks"][0].update(status="fail", message=f"bad {hostile}", remedy=hostile)
    report["checks"][0]["observed"] = hostile
    text = junit.render([shape_report, report])
    root = ET.fromstring(text.encode())  # raises on one forbidden character
    assert len(root.findall("testsuite")) == 2
    assert "\\x1b]0;pwned" in text and "\x1b" not in text


def test_compare_prints_no_escape_sequence_from_a_report(shape_report, tmp_path, capsys):
    # (nothing is written: compare prints only)
    before = write_report(tmp_path / "a.json", shape_report)
    report = json.loads(json.dumps(shape_report))
    report["checks"][0]["name"] = f"evil{ESC}"
    report["run"]["id"] = f"id{ESC}"
    report["lora"]["keys"] = [f"q{ESC}"]
    after = write_report(tmp_path / "b.json", report)
    code, out, err = run(["compare", str(before), str(after)], capsys)
    assert code == 0, err
    assert "evil\\x1b]0;pwned\\x07" in out
    assert not any(c in out for c in "\x1b\x07\x9b")


def test_error_lines_print_no_escape_sequence_from_a_path(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(["report", str(tmp_path / f"x{ESC}.json"), "--junit", "j.xml"], capsys)
    assert code == 2 and "\x1b" not in err and "\\x1b" in one_error_line(err)


def test_progress_lines_print_no_escape_sequence(tmp_path, capsys, monkeypatch):
    """Found by the probes: "preparing <model>" and check lines echoed the model path and
    check messages (which may quote generated text) raw."""
    import io

    from lora_harness.cli.progress import Progress

    monkeypatch.chdir(tmp_path)
    folder = tmp_path / f"m{ESC}"
    folder.mkdir()
    code, _, err = run(["run", "--model", str(folder), "--suite", "structure"], capsys)
    assert code == 2 and "\\x1b]0;pwned" in err and not any(c in err for c in "\x1b\x07\x9b")
    stream = io.StringIO()
    result = types.SimpleNamespace(status="fail", name="eos_spam", message=f"said {ESC}")
    Progress(1, stream=stream).on_result(result)
    assert "\x1b" not in stream.getvalue() and "said \\x1b" in stream.getvalue()


# --- 3. paths checked at start ----------------------------------------------------------


@pytest.mark.parametrize("flag", ["--out", "--json", "--save-baseline", "--history"])
def test_read_only_outputs_fail_in_one_line_before_the_model_loads(
    flag, read_only_dir, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    target = read_only_dir / "x"
    # Without -q the run would print "preparing ..." first: one line means nothing ran.
    code, _, err = run(["run", "--model", "fixture:tiny", flag, str(target)], capsys)
    assert code == 2
    assert "cannot be written" in one_error_line(err)
    assert not (tmp_path / "lora-harness-out").exists()


def test_report_html_and_junit_paths_are_checked_before_rendering(
    shape_report, read_only_dir, tmp_path, capsys
):
    report = write_report(tmp_path / "r.json", shape_report)
    for flag in ("--html", "--junit"):
        code, out, err = run(["report", str(report), flag, str(read_only_dir / "x")], capsys)
        assert code == 2 and not out
        one_error_line(err)


def test_odd_output_paths_are_refused_at_start(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    (tmp_path / "a-file").write_text("")
    cases = {
        "--out": [
            "dangling",
            "a" * 300,
            f"{'b' * 300}/run",
            "a-file",
            "a-file/sub",
        ],
        "--json": [str(tmp_path), "dangling/r.json"],
    }
    for flag, values in cases.items():
        for value in values:
            code, _, err = run(["run", "--model", "fixture:tiny", flag, value], capsys)
            assert code == 2, (flag, value)
            one_error_line(err)


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_a_model_path_that_is_not_utf8_is_refused_at_start(tmp_path):
    folder = os.fsencode(tmp_path) + b"/model-\xff"
    os.mkdir(folder)
    done = subprocess.run(
        [sys.executable, "-m", "lora_harness", "run", "--model", folder, "--out", b"out"],
        cwd=tmp_path,
        capture_output=True,
    )
    err = done.stderr.decode(errors="replace")
    assert done.returncode == 2, err
    assert "not valid UTF-8" in one_error_line(err)


def test_a_full_disk_is_one_line_and_exit_2_not_an_internal_error(
    small_disk, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    fill(small_disk, leave=8 * 1024)  # room for the start check, not for the report
    code, _, err = run(["run", "-q", *SHAPE, "--out", str(small_disk / "out")], capsys)
    assert code == 2, err
    line = one_error_line(err)
    assert "(No space left on device)" in line and "internal error" not in line
    assert not list(small_disk.glob("out/*/report.json"))  # no verdict without its files


@pytest.mark.slow  # trains or runs a whole suite: >7 s (fast loop under 2 min)
def test_a_full_disk_while_saving_tensors_is_not_an_internal_error(
    small_disk, tmp_path, capsys, monkeypatch
):
    """Found by the probes: MLX raises RuntimeError("[write] Unable to write ...") on ENOSPC."""
    monkeypatch.chdir(tmp_path)
    fill(small_disk, leave=30 * 1024)
    argv = ["train", "-q", "--model", "fixture:tiny", "--iters", "3", "--save-every", "1"]
    code, _, err = run([*argv, "--adapter-path", str(small_disk / "a")], capsys)
    assert code == 2, err
    last = err.strip().splitlines()[-1]  # a fresh cache first says it builds the fixture
    assert last.startswith("lora-harness: error: could not write") and "internal" not in err
    assert not list(small_disk.glob("a/*.safetensors"))  # no half checkpoint under its name


# --- 4. state files that heal -----------------------------------------------------------

BAD_HISTORY_LINES = [
    '{"run_id": "a", "verdict": "pass", "tokens_per_',  # cut by a full disk
    "",
    "   ",
    "[1, 2]",
    "42",
    '"text"',
    "null",
    '{"run_id": "b", "tokens_per_second": 1e999}',
    '{"run_id": "c", "last_loss": -1e300}',
    '{"run_id": "d", "voice_score": ' + "9" * 5000 + "}",
    '{"run_id": ["not", "text"]}',
    "[" * 5000,
    '{"run_id": "e", "peak_memory_gb": true}',
    "\udcff",
]


def test_a_corrupted_history_is_skipped_line_by_line_and_appending_goes_on(
    tmp_path, capsys, monkeypatch
):
    from lora_harness.reports import history
    from lora_harness.runs import environment

    monkeypatch.chdir(tmp_path)
    path = history.history_file(tmp_path / "h", environment.collect())
    path.parent.mkdir()
    good = json.dumps({"run_id": "ok", "verdict": "pass", "last_loss": "nan"})
    text = "\n".join([good, *BAD_HISTORY_LINES]) + "\n" + '{"run_id": "cut'  # no newline
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    for _ in range(2):
        code, _, err = run(["run", "-q", *SHAPE, "--history", str(tmp_path / "h")], capsys)
        assert code == 0, err
        assert "skipped" in err and "Traceback" not in err and "\udcff" not in err
    lines = path.read_text(errors="replace").splitlines()
    appended = [json.loads(line) for line in lines[-2:]]
    assert all(entry["verdict"] == "pass" for entry in appended)
    entries = history.load(tmp_path / "h", environment.collect())
    assert [e["run_id"] for e in entries][:1] == ["ok"] and len(entries) == 3


def _manifested_copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


@pytest.mark.parametrize(
    "document",
    [
        [],
        {"sha256": []},
        {"sha256": "abc"},
        {"sha256": {}},
        {"sha256": None},
        {"sha256": {"config.json": 5}},
        {"sha256": {"../config.json": "0" * 64}},
        {"sha256": {"ABSOLUTE": "0" * 64}},
        {"sha256": {"FIFO": "0" * 64}},
        {"sha256": {"config.json": "0" * 64}},  # model.safetensors left out
    ],
)
def test_a_fixture_manifest_that_is_not_a_manifest_is_rebuilt(document, fixture_source, tmp_path):
    from lora_harness.models import manifest

    folder = _manifested_copy(fixture_source.path, tmp_path / "tiny")
    os.mkfifo(tmp_path / "fifo")
    os.mkfifo(folder / "fifo")
    text = json.dumps(document).replace("ABSOLUTE", str(tmp_path / "fifo"))
    text = text.replace('"FIFO"', '"fifo"')
    (folder / manifest.MANIFEST).write_text(text)
    problem = manifest.verify(folder)  # returns at once: no FIFO is ever opened
    assert problem, document
    manifest.discard_if_untrusted(folder, "fixture:tiny")
    assert not folder.exists()


def test_flipped_bytes_in_a_format_variant_are_detected_and_rebuilt(fixture_source, capfd):
    from lora_harness.models import fixture, manifest

    folder = fixture.fixture_path("tiny-q8")
    assert manifest.verify(folder) is None
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    capfd.readouterr()
    again = fixture.fixture_path("tiny-q8")
    assert "cannot be trusted" in capfd.readouterr().err
    assert again == folder and manifest.verify(again) is None
    assert (again / "model.safetensors").read_bytes() != bytes(data)


# --- 5. atomicity and locking -----------------------------------------------------------


def _adapter_source(folder: Path) -> Path:
    folder.mkdir(mode=0o700)
    (folder / "adapters.safetensors").write_bytes(b"x" * 100_000)
    (folder / "adapter_config.json").write_text("{}")
    return folder


def _write_run_folder(source: Path, out: Path):
    from lora_harness.runs.run import write_run_folder

    ctx = types.SimpleNamespace(adapter=types.SimpleNamespace(written=True, folder=source))
    report = {"run": {"id": "run-1"}, "artifacts": {}}
    return write_run_folder(report, ctx, out, write_report=False)


def test_a_failed_adapter_copy_leaves_no_file_under_its_final_name(tmp_path, monkeypatch):
    source = _adapter_source(tmp_path / "src")
    real = shutil.copyfile

    def full_disk(src, dst, *args, **kwargs):
        if str(src).endswith(".safetensors"):
            Path(dst).write_bytes(Path(src).read_bytes()[:1000])  # what fitted
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copyfile", full_disk)
    with pytest.raises(OSError):
        _write_run_folder(source, tmp_path / "out")
    assert not (tmp_path / "out" / "run-1" / "adapters").exists()
    assert not [p for p in (tmp_path / "out" / "run-1").iterdir() if p.name != "report.json"]


def test_the_adapters_folder_follows_the_umask(tmp_path):
    source = _adapter_source(tmp_path / "src")
    old = os.umask(0o022)
    try:
        _write_run_folder(source, tmp_path / "out")
    finally:
        os.umask(old)
    folder = tmp_path / "out" / "run-1" / "adapters"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o755
    assert stat.S_IMODE((folder / "adapters.safetensors").stat().st_mode) == 0o644
    assert (folder / "adapters.safetensors").read_bytes() == b"x" * 100_000


def test_a_checkpoint_cut_by_a_kill_never_has_its_final_name(tmp_path, capsys, monkeypatch):
    import mlx.core as mx

    real = mx.save_safetensors
    saved = []

    def killed_mid_write(path, weights, *args, **kwargs):
        if "0000002_" in path or "0000002_" in Path(path).name:
            Path(path).write_bytes(b"half a header")
            raise KeyboardInterrupt  # SIGINT-like: the process stops here
        saved.append(Path(path).name)
        return real(path, weights, *args, **kwargs)

    monkeypatch.setattr(mx, "save_safetensors", killed_mid_write)
    adapters = tmp_path / "adapters"
    argv = ["train", "-q", "--model", "fixture:tiny", "--iters", "3", "--save-every", "1"]
    code, _, err = run([*argv, "--adapter-path", str(adapters)], capsys)
    assert code == 130, err
    assert (adapters / "0000001_adapters.safetensors").is_file()
    assert not (adapters / "0000002_adapters.safetensors").exists()
    assert all(name.startswith(".") for name in saved if "0000001" in name)


def _save_many(path: str, prefix: str, count: int) -> None:
    from lora_harness.runs import baselines

    for index in range(count):
        baselines.save(Path(path), f"{prefix}-{index}", {"voice_score": 0.5, "metrics": {}})


def test_two_processes_saving_baselines_keep_every_entry(tmp_path):
    from lora_harness.runs import baselines

    path = tmp_path / "baselines.json"
    context = multiprocessing.get_context("spawn")
    workers = [
        context.Process(target=_save_many, args=(str(path), name, 60)) for name in ("a", "b")
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert len(baselines.read(path)["baselines"]) == 120


_SLOW_CONVERSION = """
import os, sys, time
import mlx_lm.convert
c = sys.modules["mlx_lm.convert"]  # the package's `convert` attribute is the function
real = c.convert
def convert(*args, **kwargs):
    real(*args, **kwargs)  # the real conversion, into the staging folder
    os.write(1, b"converted\\n")
    time.sleep(300)  # killed here, before the rename
c.convert = convert
from lora_harness.models import fixture
fixture.fixture_path("tiny-bf16")
"""

_HOLD_STAGING = """
import sys, time
from pathlib import Path
from lora_harness.core.files import staging_folder
with staging_folder(Path(sys.argv[1])) as staging:
    print(staging, flush=True)
    time.sleep(300)
"""


def test_a_conversion_killed_mid_way_leaves_no_litter_after_the_next_build(
    fixture_source, tmp_path, monkeypatch
):
    """SIGKILL during mlx_lm.convert left a hidden staging folder (converted weights and
    all) that nothing removed; one per kill. The next build removes those whose owner is
    gone, and never one that a live process is still writing."""
    from lora_harness.models import fixture, manifest

    cache = tmp_path / "cache"
    base = cache / "fixtures" / fixture_source.path.name
    shutil.copytree(fixture_source.path, base)
    env = {**os.environ, "LORA_HARNESS_CACHE": str(cache)}

    def hidden() -> list[str]:
        return sorted(p.name for p in base.parent.iterdir() if p.name[0] == "." and p.is_dir())

    killed = subprocess.Popen([sys.executable, "-c", _SLOW_CONVERSION], env=env,
                              stdout=subprocess.PIPE)  # fmt: skip
    try:
        assert killed.stdout.readline() == b"converted\n"
    finally:
        killed.kill()
        killed.wait()
    assert len(hidden()) == 1  # the kill's litter: a staging folder with the weights
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_STAGING, str(base.parent / f"{base.name}-fp16")],
        env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        live = Path(holder.stdout.readline().strip())
        assert live.is_dir()
        monkeypatch.setenv("LORA_HARNESS_CACHE", str(cache))
        folder = fixture.fixture_path("tiny-bf16")
        assert manifest.verify(folder) is None
        assert hidden() == [live.name]  # the killed one is gone; the live writer's is kept
    finally:
        holder.kill()
        holder.wait()
    fixture.fixture_path("tiny-bf16")  # a build with nothing to do removes nothing
    assert hidden() == [live.name] or not live.exists()


# --- 7. baselines validated before the run ----------------------------------------------

BAD_ENTRIES = [
    {"voice_score": "abc"},
    {"voice_score": None},
    {"voice_score": True},
    {"voice_score": 0.5, "voice_score_spread": -1},
    {"voice_score": 0.5, "voice_score_spread": "x"},
    {"voice_score": 0.5, "metrics": []},
    "not an entry",
]


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_a_bad_baseline_entry_is_exit_2_before_the_run(entry, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "baseline.json"
    path.write_text(json.dumps({"schema_version": 1, "baselines": {"k": entry}}))
    for flag in ("--baseline", "--save-baseline"):
        code, _, err = run(["run", "--model", "fixture:tiny", flag, str(path)], capsys)
        assert code == 2 and "baseline file" in one_error_line(err)


pytest_plugins = ["pytester"]


def test_a_bad_baseline_under_pytest_is_a_usage_error(pytester):
    bad = pytester.path / "baseline.json"
    bad.write_text(json.dumps({"schema_version": 1, "baselines": {"k": {"voice_score": "abc"}}}))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", *("--lora-model", "fixture:tiny", "--lora-baseline", str(bad))
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "voice_score 'abc'" in result.stderr.str()


# --- write atomically: the helpers themselves -------------------------------------------


def test_copy_tree_atomic_replaces_nothing_on_failure(tmp_path, monkeypatch):
    source = _adapter_source(tmp_path / "src")
    monkeypatch.setattr(os, "rename", None)  # Path.rename fails after the copy
    with pytest.raises(TypeError):
        files.copy_tree_atomic(source, tmp_path / "target")
    assert list(tmp_path.iterdir()) == [source]


# --- found by the adversarial probes ----------------------------------------------------


def test_a_baseline_number_too_long_to_read_is_bad_input_not_a_crash(tmp_path):
    from lora_harness.core.errors import InputError
    from lora_harness.runs import baselines

    path = tmp_path / "b.json"
    path.write_text(
        '{"schema_version": 1, "baselines": {"k": {"voice_score": ' + "9" * 5000 + "}}}"
    )
    with pytest.raises(InputError, match="not valid JSON"):
        baselines.read(path)


def test_a_baseline_lock_that_is_a_folder_is_bad_input_not_a_crash(tmp_path):
    from lora_harness.core.errors import InputError
    from lora_harness.runs import baselines

    (tmp_path / ".b.json.lock").mkdir()
    with pytest.raises(InputError, match="is a folder"):
        baselines.save(tmp_path / "b.json", "k", {"voice_score": 0.5})


def test_the_fleet_summary_prints_a_host_name_without_its_escapes(tmp_path, capsys):
    from lora_harness.cli.remote_cmd import _print_summary
    from lora_harness.remote import fleet
    from lora_harness.remote.controller import Outcome
    from lora_harness.remote.host_run import HostResult

    results = [HostResult(f"st{ESC}udio", "127.0.0.1", status="passed", message=f"ok {ESC}")]
    outcome = Outcome(fleet.document(results, {"id": "r"}), results, tmp_path / "fleet.json")
    args = types.SimpleNamespace(json=None)
    assert _print_summary(outcome, args, "fleet summary") == 0
    err = capsys.readouterr().err
    assert "st\\x1b]0;pwned" in err and not any(c in err for c in "\x1b\x07\x9b")


def test_a_failed_copy_is_described_by_the_file_it_could_not_write():
    from lora_harness.core import paths

    error = OSError(errno.ENOSPC, "No space left on device", "/tmp/src", None, "/full/dst")
    assert "could not write /full/dst (No space left on device)" in paths.describe(error)


def test_a_fifo_given_as_a_report_or_summary_is_refused_not_read(tmp_path, capsys):
    """Found by the probes: compare and --retry-failed blocked forever reading a FIFO."""
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    code, _, err = run(["compare", str(fifo), str(fifo)], capsys)
    assert code == 2 and "not a regular file" in one_error_line(err)
    argv = ["remote", "run", "--retry-failed", str(fifo), "--out", str(tmp_path)]
    code, _, err = run(argv, capsys)
    assert code == 2 and "not a regular file" in one_error_line(err)


def _summary_with(tmp_path, **fields) -> Path:
    from lora_harness.remote import fleet
    from lora_harness.remote.host_run import HostResult
    from lora_harness.remote.inventory import Host

    host = {**Host("h", "127.0.0.1", user="root", port=1).describe(), **fields}
    result = HostResult("h", "127.0.0.1", status="unreachable", host=host)
    path = tmp_path / "fleet.json"
    path.write_text(json.dumps(fleet.document([result], {"id": "r"})))
    return path


def test_a_fleet_summary_cannot_plant_a_proxy_command_or_wrong_types(tmp_path, capsys):
    """Found by the probes (rel26): --retry-failed built each Host from every field of the
    summary's entry, so a `proxy_command` planted there (no ~/.ssh/config to override it)
    ran as a local command; a name or python that is not a string was taken as it came."""
    pwned = tmp_path / "PWNED"
    summary = _summary_with(tmp_path, proxy_command=f"touch {pwned}")
    argv = ["remote", "run", "--retry-failed", str(summary), "--known-hosts", os.devnull,
            "--ssh-config", str(tmp_path / "no-ssh-config"), "--connect-timeout", "3",
            "--out", str(tmp_path),
            "--json", "-", "--", *SHAPE]  # fmt: skip
    code, _, _ = run(argv, capsys)
    assert code == 4 and not pwned.exists()
    for bad in ({"name": 5}, {"python": ["x"]}, {"work_dir": 5}, {"labels": "a"}, {"ips": 1}):
        _summary_with(tmp_path, **bad)
        code, _, err = run(argv, capsys)
        assert code == 2 and "--retry-failed" in one_error_line(err), (bad, err)


def test_plan_and_guard_show_a_model_path_escapes_not_run_them(fixture_source, tmp_path, capsys):
    """Found by the probes (rel26): plan's summary and guard's start line printed the model
    path raw, so a folder name with ESC sequences set the title and cleared the screen."""
    model = tmp_path / f"m{ESC}"
    shutil.copytree(fixture_source.path, model)
    data = tmp_path / "data"
    data.mkdir()
    for name, count in (("train", 16), ("valid", 4)):
        rows = [json.dumps({"text": f"the quick brown fox number {i}"}) for i in range(count)]
        (data / f"{name}.jsonl").write_text("\n".join(rows) + "\n")
    code, _, err = run(["plan", "--model", str(model), "--out", str(tmp_path / "p")], capsys)
    assert code == 0 and "m\\x1b]0;pwned" in err, err
    assert not any(c in err for c in "\x1b\x07\x9b")
    argv = ["guard", "--model", str(model), "--data", str(data), "--iters", "2",
            "--batch-size", "2", "--val-batches", "1", "--num-layers", "-1",
            "--check-every", "1", "--adapter-path", str(tmp_path / "a"),
            "--out", str(tmp_path / "g")]  # fmt: skip
    code, _, err = run(argv, capsys)
    assert code in (0, 1) and "m\\x1b]0;pwned" in err, err
    assert not any(c in err for c in "\x1b\x07\x9b")


def test_a_broken_resume_checkpoint_is_bad_input_before_the_model_loads(
    fixture_source, tmp_path, capsys
):
    """Found by the probes (rel26): guard --resume-adapter-file with a checkpoint that a
    kill or a full disk cut short (or garbage, a folder, a missing file) was exit 3
    "internal error" after the model loaded; a FIFO hung the run."""
    data = tmp_path / "data"
    data.mkdir()
    rows = [json.dumps({"text": f"a b c {i}"}) for i in range(8)]
    (data / "train.jsonl").write_text("\n".join(rows) + "\n")
    (data / "valid.jsonl").write_text("\n".join(rows) + "\n")
    good = tmp_path / "good.safetensors"
    import mlx.core as mx

    mx.save_safetensors(str(good), {"a": mx.zeros((64, 64))})
    cases = {
        "garbage.safetensors": lambda p: p.write_bytes(b"garbage"),
        "empty.safetensors": lambda p: p.write_bytes(b""),
        "cut.safetensors": lambda p: p.write_bytes(good.read_bytes()[:-100]),
        "folder.safetensors": os.mkdir,
        "missing.safetensors": lambda p: None,
        "fifo.safetensors": os.mkfifo,  # last: before the fix it hung here
    }
    for name, make in cases.items():
        make(tmp_path / name)
        argv = ["guard", "--model", str(fixture_source.path), "--data", str(data), "-q",
                "--num-layers", "-1", "--iters", "2", "--batch-size", "2", "--val-batches", "1",
                "--resume-adapter-file", str(tmp_path / name), "--out", str(tmp_path / "o")]  # fmt: skip
        code, _, err = run(argv, capsys)
        assert code == 2, (name, err)
        assert "--resume-adapter-file" in one_error_line(err), (name, err)


def test_guard_checkpoints_on_a_full_disk_keep_the_last_good_adapter(
    fixture_source, tmp_path, capsys
):
    """Found by the probes (rel26): guard runs mlx-lm's train(), which saved
    adapters.safetensors and each checkpoint in place: on a full disk the run was exit 3
    "internal error" and left a truncated adapters.safetensors under its final name (what
    mlx_lm.load and --resume-adapter-file read). Room for one adapter, not two."""
    folder = tmp_path / "small"
    if not mount_tmpfs(folder, "size=200k"):
        pytest.skip("needs root to mount a small tmpfs")
    try:
        data = tmp_path / "data"
        data.mkdir()
        rows = [json.dumps({"text": f"the quick brown fox number {i}"}) for i in range(16)]
        (data / "train.jsonl").write_text("\n".join(rows) + "\n")
        (data / "valid.jsonl").write_text("\n".join(rows[:4]) + "\n")
        argv = ["guard", "--model", str(fixture_source.path), "--data", str(data), "-q",
                "--num-layers", "-1", "--iters", "4", "--batch-size", "2", "--val-batches",
                "1", "--save-every", "2", "--inference-format", "text",
                "--adapter-path", str(folder / "a"), "--out", str(tmp_path / "o")]  # fmt: skip
        code, _, err = run(argv, capsys)
        assert code == 2 and "could not write" in one_error_line(err), err
        import mlx.core as mx

        saved = folder / "a" / "adapters.safetensors"
        assert not saved.exists() or mx.load(str(saved))  # whole, or not there at all
        assert not [p.name for p in (folder / "a").iterdir() if ".tmp-" in p.name]
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


QWEN_SHAPE = {
    "model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24,
    "intermediate_size": 4864, "num_attention_heads": 14, "num_key_value_heads": 2,
    "vocab_size": 151936, "rms_norm_eps": 1e-6, "tie_word_embeddings": True,
}  # fmt: skip


@pytest.mark.parametrize(
    "change, code, words",
    [
        ({"num_hidden_layers": 10**12}, 2, "num_hidden_layers"),  # never finished
        ({"num_attention_heads": 0}, 2, "num_attention_heads"),  # ZeroDivisionError, exit 3
        ({"num_key_value_heads": None}, 2, "not describe a valid"),  # AssertionError, exit 3
        ({"num_key_value_heads": 3}, 2, "multiple"),
        ({"hidden_size": 895}, 1, None),  # the 4-bit advice crashed: cannot quantise 895
    ],
)
def test_plan_on_a_hostile_config_is_one_line_never_a_hang_or_a_crash(
    change, code, words, cli, tmp_path
):
    """Found by the probes (rel26): plan builds the model from config.json, so 10^12
    layers never finished, 0 heads divided by zero, a missing num_key_value_heads failed
    mlx-lm's assert, and a hidden size mlx cannot quantise crashed the advice (exit 3)."""
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**QWEN_SHAPE, **change}))
    result = cli("plan", "--model", f"shape:{config}", "--out", "o", timeout=120)
    assert result.returncode == code, result.stderr
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
    if words:
        assert words in one_error_line(result.stderr)


def test_plan_advice_on_a_huge_batch_answers_at_once(cli, tmp_path):
    """Found by the probes (rel26): the batch-size advice counted down from the batch to
    find its divisors; --batch-size 10^11 never answered."""
    result = cli("plan", "--model", "shape:qwen2.5-0.5b", "--batch-size", str(10**11),
                 "--out", "o", timeout=120)  # fmt: skip
    assert result.returncode == 1 and "report:" in result.stderr, result.stderr


def test_plan_q_bits_on_an_unquantisable_model_is_bad_input(cli, tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({**QWEN_SHAPE, "hidden_size": 895}))
    result = cli("plan", "--model", f"shape:{config}", "--q-bits", "4", "--out", "o")
    assert result.returncode == 2 and "cannot be quantised" in one_error_line(result.stderr)


@pytest.mark.parametrize("name, make", [("adapters.safetensors", os.mkdir),
                                        ("adapter_config.json", os.mkdir),
                                        ("metrics.jsonl", os.mkfifo)])  # fmt: skip
def test_an_adapter_folder_holding_a_non_file_under_an_output_name_is_refused_at_start(
    name, make, cli, tmp_path, fixture_source
):
    """Found by the probes (rel26): train into a folder whose metrics.jsonl is a FIFO hung
    (opened for writing, no reader); a folder named adapters.safetensors was exit 3 after
    training. Checked with the other output paths, before any model loads."""
    folder = tmp_path / "adapters"
    folder.mkdir()
    make(folder / name)
    result = cli("train", "--model", str(fixture_source.path), "--adapter-path", str(folder),
                 "--iters", "2", "--save-every", "0", timeout=90)  # fmt: skip
    assert result.returncode == 2 and name in one_error_line(result.stderr), result.stderr
