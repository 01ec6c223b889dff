"""JUnit XML from report JSON: one testsuite per host, one testcase per check.

CI systems (GitHub, GitLab, Jenkins) read this natively: failures carry the message and
the remedy, skipped checks their reason, crashed checks are <error>.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

# Characters XML 1.0 cannot hold, even escaped: one in a model path, a hostname or a message
# would make the whole file unreadable, and CI would lose every host's results with it.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xml_text(value) -> str:
    """`value` as text XML 1.0 can hold: each forbidden character shown as an escape."""
    return _NOT_XML.sub(lambda m: f"\\x{ord(m.group()):02x}", str(value))


def _clean(root: ET.Element) -> None:
    for element in root.iter():
        element.text = None if element.text is None else xml_text(element.text)
        element.tail = None if element.tail is None else xml_text(element.tail)
        for key, value in element.attrib.items():
            element.set(key, xml_text(value))


def _testcase(suite: ET.Element, check: dict, classname: str) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=check["name"],
        classname=classname,
        time=f"{check['duration_s']:.6f}",
    )
    detail = (
        f"observed: {json.dumps(check['observed'])}\nexpected: {json.dumps(check['expected'])}\n"
        f"{check['message']}\nremedy: {check['remedy']}"
    )
    if check["status"] == "fail":
        ET.SubElement(
            case, "failure", message=check["message"], type="HealthCheckFailure"
        ).text = detail
    elif check["status"] == "error":
        ET.SubElement(case, "error", message=check["message"], type="CheckError").text = detail
    elif check["status"] == "skip":
        ET.SubElement(case, "skipped", message=check["message"])
    elif check["status"] == "warn":
        ET.SubElement(
            case, "system-out"
        ).text = f"WARNING: {check['message']}\nremedy: {check['remedy']}"


def _suite(root: ET.Element, report: dict) -> None:
    checks = report["checks"]
    host = report["environment"].get("host", "host")
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"lora-harness.{host}",
        tests=str(len(checks)),
        failures=str(sum(c["status"] == "fail" for c in checks)),
        errors=str(sum(c["status"] == "error" for c in checks)),
        skipped=str(sum(c["status"] == "skip" for c in checks)),
        time=f"{report['run']['duration_s']:.3f}",
        timestamp=report["run"]["started_at"],
        hostname=host,
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in [
        ("model", report["model"]["spec"]),
        ("run_id", report["run"]["id"]),
        ("mlx", report["environment"].get("mlx")),
        ("mlx_lm", report["environment"].get("mlx_lm")),
    ]:
        ET.SubElement(properties, "property", name=key, value=str(value))
    for check in checks:
        _testcase(suite, check, classname=f"lora_harness.{host}")


def render(reports: list[dict]) -> str:
    root = ET.Element("testsuites", name="lora-harness")
    for report in reports:
        _suite(root, report)
    root.set("tests", str(sum(len(r["checks"]) for r in reports)))
    root.set("failures", str(sum(c["status"] == "fail" for r in reports for c in r["checks"])))
    root.set("errors", str(sum(c["status"] == "error" for r in reports for c in r["checks"])))
    _clean(root)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
