"""HTML in real headless Chromium, JUnit read by a real consumer, compare and history."""

from __future__ import annotations

import copy
import json

import pytest

from lora_harness.core.errors import InputError
from lora_harness.reports import compare, html, json_report, junit
from lora_harness.reports import history as run_history
from tests.support.browser import chromium, chromium_path
from tests.support.helpers import ARTIFACTS

pytestmark = pytest.mark.slow  # every test starts from a CLI gate run (run_report)


@pytest.fixture(scope="module")
def run_report(tmp_path_factory, fixture_cache):
    """A real gate run on the fixture, as the CLI writes it."""
    import subprocess
    import sys

    from tests.support.helpers import ROOT

    out = tmp_path_factory.mktemp("run")
    subprocess.run(
        [sys.executable, "-m", "lora_harness", "run", "-q", "--out", str(out)],
        check=True,
        cwd=out,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT)},
    )
    (path,) = out.glob("*/report.json")
    return path


def _fleet(report: dict, hosts: int) -> list[dict]:
    documents = []
    for index in range(hosts):
        document = copy.deepcopy(report)
        document["environment"]["host"] = f"studio-{index:02d}"
        if index == 1:
            document["checks"][0]["status"] = "fail"
            document["checks"][0]["remedy"] = "do the thing"
            document["summary"] = json_report.summarise(document["checks"])
        documents.append(document)
    return documents


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (.ci/run installs it)")
def test_html_report_loads_cleanly_in_chromium(run_report):
    page_path = run_report.parent / "report.html"
    assert page_path.exists(), "lora-harness run writes report.html next to report.json"
    url = page_path.resolve().as_uri()
    with chromium() as page:
        page.load(url)
        assert page.problems(url) == []
        report = json.loads(run_report.read_text())
        assert page.evaluate("document.querySelectorAll('tr.check').length") == len(
            report["checks"]
        )
        assert page.evaluate("document.querySelectorAll('.chart svg').length") == 3
        first_status = page.evaluate("document.querySelector('tr.check').dataset.status")
        assert first_status in ("fail", "error", "warn", "skip", "pass")
        page.screenshot(ARTIFACTS / "report-fixture.png")


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (.ci/run installs it)")
def test_fleet_html_of_32_hosts_opens_fast_and_puts_failures_first(run_report, tmp_path):
    report = json.loads(run_report.read_text())
    documents = _fleet(report, 32)
    page_path = tmp_path / "fleet.html"
    page_path.write_text(
        html.render(documents, infrastructure=[{"name": "studio-99", "status": "unreachable"}])
    )
    url = page_path.as_uri()
    with chromium() as page:
        page.load(url)
        assert page.problems(url) == []
        assert page.evaluate("document.querySelectorAll('tr.fleet-host').length") == 33
        assert page.evaluate("document.querySelectorAll('section.host').length") == 33
        failing = "document.querySelector('#host-1 tr.check').dataset.status"
        assert page.evaluate(failing) == "fail"
        page.screenshot(ARTIFACTS / "report-fleet.png")
    assert page_path.stat().st_size < 8_000_000


def test_junit_is_read_by_junitparser(run_report):
    from junitparser import Error, Failure, JUnitXml, Skipped

    report = json.loads(run_report.read_text())
    documents = _fleet(report, 2)
    path = run_report.parent / "fleet-junit.xml"
    path.write_text(junit.render(documents))
    xml = JUnitXml.fromfile(str(path))
    suites = list(xml)
    assert [s.name for s in suites] == ["lora-harness.studio-00", "lora-harness.studio-01"]
    assert all(s.tests == len(report["checks"]) for s in suites)
    failed = [c for c in suites[1] if any(isinstance(r, Failure) for r in c.result)]
    assert len(failed) == 1 and "remedy: do the thing" in failed[0].result[0].text
    assert not any(isinstance(r, (Error, Skipped)) for s in suites for c in s for r in c.result)


def _with_metric(report: dict, tokens_per_second: float) -> dict:
    document = copy.deepcopy(report)
    document["metrics"]["summary"]["tokens_per_second"] = tokens_per_second
    document["run"]["id"] = f"run-{tokens_per_second}"
    return document


def test_compare_status_flips_and_deltas(run_report):
    before = json.loads(run_report.read_text())
    after = copy.deepcopy(before)
    after["checks"][0]["status"] = "fail"
    after["environment"]["hardware_fingerprint"] = "other"
    result = compare.compare(before, after)
    assert result["status_changes"] == [
        {"check": before["checks"][0]["name"], "before": "pass", "after": "fail"}
    ]
    assert result["hardware_differs"]


@pytest.mark.parametrize("after_tps, exit_code", [(96.0, 0), (90.0, 1)])
def test_compare_fail_on_threshold(cli, run_report, tmp_path, after_tps, exit_code):
    report = json.loads(run_report.read_text())
    (tmp_path / "a.json").write_text(json.dumps(_with_metric(report, 100.0)))
    (tmp_path / "b.json").write_text(json.dumps(_with_metric(report, after_tps)))
    result = cli("compare", "a.json", "b.json", "--fail-on", "tokens_per_second:5%")
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert "tokens_per_second: 100 -> " in result.stdout


def test_bad_fail_on_and_bad_report_files(cli, tmp_path):
    with pytest.raises(InputError):
        compare.parse_fail_on(["speed:5%"])
    (tmp_path / "bad.json").write_text("{")
    (tmp_path / "old.json").write_text(json.dumps({"schema_version": "0.1"}))
    for name, fragment in [("bad.json", "not valid JSON"), ("old.json", "schema_version 0.1")]:
        result = cli("report", name, "--html", "x.html")
        assert result.returncode == 2 and fragment in result.stderr
        assert "Traceback" not in result.stderr


def test_report_command_renders_existing_files(cli, run_report, tmp_path):
    result = cli("report", str(run_report), str(run_report), "--html", "f.html", "--junit", "f.xml")
    assert result.returncode == 0, result.stderr
    assert "Fleet: host" in (tmp_path / "f.html").read_text()
    assert (tmp_path / "f.xml").read_text().count("<testsuite ") == 2


def test_history_appends_per_machine_and_feeds_trends(run_report, tmp_path):
    report = json.loads(run_report.read_text())
    for tps in (100.0, 110.0, 120.0):
        run_history.append(tmp_path, _with_metric(report, tps))
    other = copy.deepcopy(report)
    other["environment"]["machine_id"] = "another-mac"
    run_history.append(tmp_path, other)
    entries = run_history.load(tmp_path, report["environment"])
    assert [e["tokens_per_second"] for e in entries] == [100.0, 110.0, 120.0]
    assert len(list(tmp_path.glob("*.jsonl"))) == 2
    page = html.render([report], [entries])
    assert "History on this machine" in page and "Tokens/s over runs" in page


@pytest.mark.browser
@pytest.mark.skipif(chromium_path() is None, reason="Chromium not installed (.ci/run installs it)")
def test_report_command_takes_a_screenshot(cli, run_report, tmp_path):
    result = cli("report", str(run_report), "--html", "r.html", "--screenshot", "r.png")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_fleet_summaries(cli, run_report, tmp_path):
    report = json.loads(run_report.read_text())
    paths = {}
    for label, tps in (("a", 100.0), ("b", 80.0)):
        host_report = tmp_path / f"{label}-report.json"
        host_report.write_text(json.dumps(_with_metric(report, tps)))
        paths[label] = host_report

    def fleet(label, status):
        return {
            "schema_version": "1.0",
            "kind": "fleet",
            "run": {"id": label},
            "hosts": [
                {"name": "studio-1", "status": status, "report": str(paths[label])},
                {"name": "studio-2", "status": "unreachable", "report": None},
            ],
            "summary": {},
        }

    (tmp_path / "fa.json").write_text(json.dumps(fleet("a", "passed")))
    (tmp_path / "fb.json").write_text(json.dumps(fleet("b", "failed")))
    result = cli(
        "compare", "fa.json", "fb.json", "--fail-on", "tokens_per_second:5%", "--json", "-"
    )
    assert result.returncode == 1
    comparison = result.json()
    assert {"check": "studio-1: host", "before": "passed", "after": "failed"} in comparison[
        "status_changes"
    ]
    assert comparison["regressions"] == ["studio-1: tokens_per_second"]
