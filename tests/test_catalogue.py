"""One catalogue: each check declares what it catches, suites list check classes, and the
README's tables are generated from them. Cheap: nothing here trains (the slow tests in
tests/test_checks.py run the self-test that verifies the declarations)."""

from __future__ import annotations

import re

import pytest

from lora_harness.core.checking import REGISTRY, Check
from lora_harness.lora.faults import ALL_FAULTS, DISTRIBUTED_FAULTS, DPO_FAULTS, FAULTS
from lora_harness.runs import suites
from lora_harness.runs.selftest import caught_table
from lora_harness.runs.suites import all_checks
from tests.support.helpers import ROOT

# Which suite runs each family of faults: a declaration no run of that suite can verify is void.
FAULT_SUITES = [(FAULTS, "gate"), (DPO_FAULTS, "dpo"), (DISTRIBUTED_FAULTS, "distributed")]


def how_it_fails(check: type[Check]) -> str | None:
    """None when `check` can be shown failing (a declared fault, or a named test that
    exists and names the check); else what is wrong: a check that cannot fail is a defect."""
    unknown = [f for f in check.catches if f not in ALL_FAULTS]
    if unknown:
        return f"{check.name} declares unknown fault {unknown[0]!r} (lora/faults.py)"
    for faults, suite in FAULT_SUITES:
        declared = [f for f in check.catches if f in faults]
        if declared and check.name not in suites.SUITES[suite].names:
            return f"{check.name} declares {declared[0]}, which only the {suite} suite runs"
    if check.catches:
        return None
    if not check.shown_failing_in:
        return f"{check.name} declares no fault it catches and no test that shows it failing"
    path, _, test = check.shown_failing_in.partition("::")
    source = ROOT / path
    if not source.is_file() or not re.search(
        rf"^def {re.escape(test)}\(", source.read_text(), re.M
    ):
        return f"{check.name}: {check.shown_failing_in} does not exist"
    if check.name not in source.read_text():
        return f"{check.name}: {path} never names the check"
    return None


@pytest.mark.parametrize("name", sorted(all_checks()))
def test_every_check_can_be_shown_failing(name):
    assert how_it_fails(all_checks()[name]) is None


def test_a_check_that_cannot_fail_is_reported():
    class Silent(Check):
        name, summary, symptom, remedy = "silent", "s", "s", "r"

    class Misplaced(Silent):
        catches = ("dpo_loss_sign_flipped",)  # a DPO fault, declared by a check outside dpo

    class Pointing(Silent):
        shown_failing_in = "tests/test_catalogue.py::test_that_does_not_exist"

    assert "no fault" in how_it_fails(Silent)
    assert "only the dpo suite" in how_it_fails(Misplaced)
    assert "does not exist" in how_it_fails(Pointing)


def test_every_selftest_fault_is_declared_or_measured_without_effect():
    # A fault no check declares must be one the self-test measures as having no effect
    # (tests/test_checks.py asserts it); today that is skip_optimizer_init alone.
    undeclared = [f for f in FAULTS if not suites.catchers(f, suites.GATE)]
    assert undeclared == ["skip_optimizer_init"]


@pytest.mark.parametrize("suite", sorted(suites.SUITES))
def test_suites_list_registered_check_classes(suite):
    checks = suites.SUITES[suite].checks
    assert checks and all(REGISTRY[c.name] is c for c in checks)
    assert len(set(checks)) == len(checks), "a check listed twice"
    assert suites.select(suite, None) == [c.name for c in checks]


def test_the_readmes_selftest_table_is_the_declared_one():
    """The README's fault table is `lora-harness selftest --declared`, generated."""
    begin, end = (
        "<!-- lora-harness selftest --declared: begin -->\n",
        "<!-- lora-harness selftest --declared: end -->",
    )
    readme = (ROOT / "README.md").read_text()
    assert begin in readme and end in readme
    table = readme.split(begin, 1)[1].split(end, 1)[0]
    assert table == caught_table(), (
        "README.md's self-test table is stale: paste `lora-harness selftest --declared`"
    )
    assert len(readme.splitlines()) <= 250


def test_selftest_declared_prints_the_table(cli):
    result = cli("selftest", "--declared")
    assert result.returncode == 0, result.stderr
    assert result.stdout == caught_table()
