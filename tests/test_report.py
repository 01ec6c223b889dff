"""The report document: schema-valid, JSON-safe with NaN losses, written atomically."""

from __future__ import annotations

import json

import jsonschema
import pytest

from lora_harness.core.errors import InputError
from lora_harness.core.files import exclusive_lock, write_atomic
from lora_harness.reports import json_report


def test_nan_and_inf_become_strings_so_the_json_stays_valid():
    text = json_report.dumps({"loss": float("nan"), "xs": [float("inf"), 1.0]})
    assert json.loads(text) == {"loss": "nan", "xs": ["inf", 1.0]}


def test_write_atomic_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "report.json"
    write_atomic(path, "old\n")

    class Boom:
        def __str__(self):
            raise RuntimeError("disk full")

    with pytest.raises(TypeError):
        write_atomic(path, Boom())
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_a_second_process_waits_for_the_lock_before_building(tmp_path):
    """What keeps two pytest-xdist workers from building the same fixture at once."""
    import subprocess
    import sys
    import time

    lock, ready, built = tmp_path / ".lock", tmp_path / "ready", tmp_path / "built"
    waiter = (
        "import pathlib; from lora_harness.core.files import exclusive_lock\n"
        f"pathlib.Path({str(ready)!r}).touch()\n"
        f"with exclusive_lock(pathlib.Path({str(lock)!r})):\n"
        f"    print(pathlib.Path({str(built)!r}).exists())"
    )
    with exclusive_lock(lock):
        other = subprocess.Popen([sys.executable, "-c", waiter], stdout=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)  # without the lock the other process would look now, before the build
        built.write_text("done")
    assert other.communicate(timeout=60)[0].strip() == "True"


@pytest.mark.parametrize(
    "content, message",
    [
        ("{nope", "not valid JSON"),
        ('{"a": 1}', "no schema_version"),
        ('{"schema_version": "9.0"}', "schema_version 9.0"),
    ],
)
def test_load_refuses_what_is_not_a_report(tmp_path, content, message):
    path = tmp_path / "r.json"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        json_report.load(path)


def test_schema_rejects_an_unknown_status():
    schema = json_report.schema()
    check = {
        "name": "x",
        "status": "maybe",
        "summary": "",
        "observed": 1,
        "expected": 1,
        "message": "",
        "remedy": "",
        "duration_s": 0,
        "evidence": {},
    }
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(check, {**schema["$defs"]["check"], "$defs": schema["$defs"]})


def test_summary_verdict():
    results = [{"status": "pass"}, {"status": "error"}, {"status": "skip"}]
    assert json_report.summarise(results)["verdict"] == "error"
    assert json_report.summarise(results + [{"status": "fail"}])["verdict"] == "fail"
