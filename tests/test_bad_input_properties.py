"""Generated junk for the loaders and the validation layer: exit 2 and one line, never 3.

Hypothesis writes rows, YAML configs, fleet.toml files and option values; the CLI runs
in-process on a shape-only model, so every example fails (or passes) in milliseconds.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from lora_harness.cli import main
from lora_harness.core.errors import InputError
from lora_harness.runs import options, validate

SHAPE = ["--model", "shape:qwen2.5-7b", "--suite", "structure"]
PROPERTY = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
row_keys = st.sampled_from(["text", "messages", "prompt", "completion", "role", "content", "x"])
rows = st.dictionaries(row_keys, json_values, max_size=3) | json_values


def run(argv, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.strip()]


def assert_clean(code: int, lines: list[str], allowed=(0, 2)) -> None:
    assert code in allowed, lines
    if code == 2:
        assert len(lines) == 1 and lines[0].startswith("lora-harness: error: "), lines


@pytest.fixture(scope="module")
def tokenizer(fixture_cache):
    from lora_harness.models.sources import resolve

    return resolve("fixture:tiny").load()[1]


@PROPERTY
@given(items=st.lists(rows, min_size=1, max_size=6), raw=st.binary(max_size=30))
def test_junk_training_rows(items, raw, tmp_path_factory, capsys, tokenizer):
    from lora_harness.text import data

    folder = tmp_path_factory.mktemp("rows")
    lines = [json.dumps(item) for item in items] + ([raw.decode("latin-1")] if raw else [])
    (folder / "train.jsonl").write_bytes("\n".join(lines).encode("utf-8", "surrogatepass"))
    code, err = run(["run", "-q", *SHAPE, "--data", str(folder)], capsys)
    assert_clean(code, err)
    if code == 0:  # the rows passed: mlx-lm must be able to tokenise every one of them
        dataset = data.tokenized_dataset(data.load_rows(str(folder)), tokenizer)
        assert all(len(dataset[i][0]) > 0 for i in range(len(dataset)))


config_keys = st.sampled_from(
    ["rank", "scale", "dropout", "keys", "iters", "learning_rate", "batch_size", "seed", "num_layers",
     "max_seq_length", "fine_tune_type", "lora_parameters", "model", "lora_paramters", "itres"]
)  # fmt: skip
yaml_documents = st.dictionaries(
    config_keys, json_values | st.dictionaries(config_keys, json_values, max_size=3), max_size=5
)


@pytest.mark.slow
@PROPERTY
@given(document=yaml_documents | json_values, junk=st.text(max_size=40))
def test_junk_yaml_configs(document, junk, tmp_path_factory, capsys):
    folder = tmp_path_factory.mktemp("yaml")
    (folder / "dumped.yaml").write_text(yaml.safe_dump(document))
    (folder / "junk.yaml").write_text(junk, encoding="utf-8", errors="surrogatepass")
    for name in ("dumped.yaml", "junk.yaml"):
        code, err = run(["run", "-q", *SHAPE, "-c", str(folder / name)], capsys)
        assert_clean(code, err)


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else str(value)


host_keys = st.sampled_from(
    ["name", "hostname", "user", "port", "identity_file", "python", "work_dir", "labels", "ips", "hostnmae"]
)  # fmt: skip
toml_scalars = st.booleans() | st.integers(-(2**40), 2**40) | st.floats() | st.text(max_size=12)
host_tables = st.dictionaries(
    host_keys, toml_scalars | st.lists(toml_scalars, max_size=3), max_size=6
)


@PROPERTY
@given(hosts=st.lists(host_tables, max_size=3), defaults=host_tables, junk=st.text(max_size=40))
def test_junk_fleet_files(hosts, defaults, junk, tmp_path_factory):
    from lora_harness.remote.inventory import load_fleet

    folder = tmp_path_factory.mktemp("fleet")
    text = "[defaults]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in defaults.items())
    for host in hosts:
        text += "[[hosts]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in host.items())
    (folder / "fleet.toml").write_text(text, encoding="utf-8", errors="surrogatepass")
    (folder / "junk.toml").write_text(junk, encoding="utf-8", errors="surrogatepass")
    for name in ("fleet.toml", "junk.toml"):
        try:
            loaded = load_fleet(folder / name)
        except InputError as error:
            assert str(error).strip()
        else:
            assert all(1 <= h.port <= 65535 and isinstance(h.hostname, str) for h in loaded)
            assert all(isinstance(label, str) for h in loaded for label in h.labels)


RUN_DESTS = {o.dest for o in options.RUN_OPTIONS}
RANGED = [d for d, r in options.RULES.items() if d in RUN_DESTS and r.kind in (int, float)]


def violates(rule, value: float) -> bool:
    if isinstance(value, float) and not math.isfinite(value):
        return True
    if rule.kind is int and not float(value).is_integer():
        return True
    if value in rule.also:
        return False
    low = (rule.minimum is None or value >= rule.minimum) and (
        rule.above is None or value > rule.above
    )
    high = (rule.maximum is None or value <= rule.maximum) and (
        rule.below is None or value < rule.below
    )
    return not (low and high)


@PROPERTY
@given(dest=st.sampled_from(RANGED), value=st.floats() | st.integers(-(2**70), 2**70))
def test_out_of_range_numbers_exit_2_naming_the_flag(dest, value, capsys):
    rule = options.RULES[dest]
    if not violates(rule, value):
        return
    text = str(int(value)) if rule.kind is int and float(value).is_integer() else repr(value)
    flag = validate.cli_flag(dest)
    code, err = run(["run", "-q", *SHAPE, f"{flag}={text}"], capsys)
    assert code == 2, err
    assert_clean(code, err)
    assert flag in err[0] or "invalid" in err[0]


FLAGS = [
    "--rank", "--scale", "--dropout", "--iters", "--learning-rate", "--seed", "--batch-size",
    "--max-seq-length", "--num-layers", "--keys", "--fine-tune-type", "--voice-tolerance",
    "--distributed-timeout", "--data", "--config", "--prompts", "--voice-references",
    "--baseline", "--voice-scorer", "--check", "--suite", "--trainer", "--save-baseline",
]  # fmt: skip


@PROPERTY
@given(flag=st.sampled_from(FLAGS), value=st.text(max_size=16))
def test_any_text_for_any_flag_never_crashes(flag, value, tmp_path_factory, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))
    code, err = run(["run", "-q", *SHAPE, f"{flag}={value}"], capsys)
    assert_clean(code, err)


@PROPERTY
@given(argv=st.lists(st.sampled_from(FLAGS) | st.text(max_size=8), max_size=5))
@example(argv=["\x00", ""])  # found in a fresh clone: compare read a path with a NUL (#26)
@example(argv=["\udcff"])  # a byte that is not UTF-8, as the shell passes it
def test_any_argv_for_any_command_never_crashes(argv, capsys):
    for command in (["report"], ["compare"], ["doctor"]):
        capsys.readouterr()
        code = main([*command, *argv]) if "--help" not in argv and "-h" not in argv else 2
        err = capsys.readouterr().err
        assert code == 2 and "Traceback" not in err, err
