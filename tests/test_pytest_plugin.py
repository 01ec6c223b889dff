"""The pytest plugin, exercised with pytest's own pytester.

Runs go through runpytest_subprocess: an in-process run restores sys.modules afterwards,
and re-importing mlx's native module in one process aborts.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from lora_harness.runs import suites

pytest_plugins = ["pytester"]


def test_plugin_is_inert_without_its_options(pytester):
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert "lora-harness::" not in result.stdout.str()  # no health-check items


def test_gate_checks_become_test_items_and_junit_works(pytester):
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--lora-model",
        "fixture:tiny",
        "--lora-suite",
        "gate",
        "--junitxml",
        "junit.xml",
        "-v",
    )
    result.assert_outcomes(passed=len(suites.GATE))
    for name in suites.GATE:
        result.stdout.fnmatch_lines([f"*lora-harness::{name} PASSED*"])
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    assert {c.get("name") for c in cases} == set(suites.GATE)


def test_failure_message_shows_observed_expected_and_remedy(pytester):
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--lora-model",
        "shape:qwen2.5-7b",
        "--lora-suite",
        "structure",
        "--lora-expect",
        "trainable_arrays=390",
    )
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*trainable_array_count fail: 392 trainable arrays, expected 390*",
            "*observed: 392*",
            "*expected: 390*",
            "*remedy:*unfreeze(keys=*",
        ]
    )


def test_shared_options_reach_the_run(pytester):
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "--lora-model",
        "shape:qwen2.5-7b",
        "--lora-check",
        "lora_layer_count",
        "--lora-num-layers",
        "16",
        "--lora-keys",
        "self_attn.q_proj",
        "--lora-expect",
        "lora_layers=16",  # 16 blocks x 1 key: without --lora-num-layers 28, without --lora-keys 112
        "-v",
    )
    result.assert_outcomes(passed=1)


def test_lora_run_fixture_serves_users_own_checks(pytester):
    pytester.makepyfile(
        """
        def test_my_own_invariant(lora_run):
            metrics = lora_run.training.metrics
            assert metrics[-1]["loss"] < metrics[0]["loss"]
            assert lora_run.generation.voice_score(lora_run.generation.generations) > 0
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lora-model", "fixture:tiny")
    result.assert_outcomes(passed=len(suites.GATE) + 1)


def test_bad_plugin_input_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lora-model", "shape:gpt-9")
    assert result.ret != 0
    assert "unknown shape" in result.stdout.str() + result.stderr.str()


def test_bad_option_value_is_a_usage_error_naming_the_plugin_flag(pytester):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lora-model", "shape:qwen2.5-7b", "--lora-rank", "0"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    output = result.stdout.str() + result.stderr.str()
    assert "--lora-rank must be >= 1" in output
    assert "INTERNALERROR" not in output and "Traceback" not in output


def test_a_missing_model_folder_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--lora-model", "./nope")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "--lora-model ./nope: no such folder" in result.stderr.str()


def test_a_failed_prepare_is_kept_not_retried_per_item(pytester):
    pytester.makeconftest(
        """
        import lora_harness.runs.run as run

        calls = []
        real = run.prepare

        def counting(*args, **kwargs):
            calls.append(1)
            return real(*args, **kwargs)

        run.prepare = counting

        def pytest_sessionfinish(session):
            print(f"prepare calls: {len(calls)}")
        """
    )
    result = pytester.runpytest_subprocess(
        "-p",
        "no:cacheprovider",
        "-s",
        "--lora-model",
        "shape:qwen2.5-7b",
        "--lora-suite",
        "structure",
        "--lora-keys",
        "self_attn.nope_proj",
    )
    result.assert_outcomes(failed=len(suites.STRUCTURE))
    result.stdout.fnmatch_lines(["*prepare calls: 1*", "*could not prepare the run*"])
