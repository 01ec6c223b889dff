"""Plain helpers the tests share: paths, a gate run in process, the CLI's result, specs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"

# A 2-block qwen2 config.json, small enough for `random:` models in seconds.
TINY = {
    "model_type": "qwen2",
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "intermediate_size": 128,
    "vocab_size": 1536,
    "rms_norm_eps": 1e-6,
    "rope_theta": 10000.0,
    "max_position_embeddings": 1024,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
}


def constant_scorer(generations, references):
    """A `module:callable` voice scorer for tests that pass specs to the CLI."""
    return 0.5


def run_gate(source, recipe=None, **lora_changes):
    """Run the gate suite on `source` with `recipe`; returns {check name: CheckResult}."""
    from lora_harness.lora.lora_config import LoRAConfig, learning_rate_for
    from lora_harness.lora.recipe import CORRECT
    from lora_harness.runs import suites
    from lora_harness.runs.context import RunContext

    if "learning_rate" not in lora_changes:  # the default a user of the CLI gets
        rank = lora_changes.get("rank", LoRAConfig.rank)
        lora_changes["learning_rate"] = learning_rate_for(source.config, rank)
    lora = dataclasses.replace(LoRAConfig(), **lora_changes)
    ctx = RunContext(source, lora, recipe=recipe or CORRECT)
    return {r.name: r for r in suites.run_checks(ctx, suites.GATE)}


@dataclasses.dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        return json.loads(self.stdout)


def assert_one_line_error(result, *fragments):
    """Bad input: exit 2 and exactly one `lora-harness: error:` line holding each fragment."""
    assert result.returncode == 2, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith("lora-harness: error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
