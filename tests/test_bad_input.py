"""The bad-input probe list: every case must exit 2 with one line that names the problem.

Each case is argv plus the files it needs (written into a fresh folder that becomes the
working directory) and a fragment the one error line must contain. The CLI runs in-process
(`lora_harness.cli.main(argv)` returns the exit code), so the whole list stays fast: nearly
every case fails in the validation layer before a model is loaded.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lora_harness.cli import build_parser, main

DIR = object()  # a file spec that makes a folder
SHAPE = ["--model", "shape:qwen2.5-7b", "--suite", "structure"]
GOOD_ROWS = "\n".join(json.dumps({"text": f"row {i} says hello"}) for i in range(8))
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}
GOOD_ADAPTER = {
    "fine_tune_type": "lora",
    "num_layers": 4,
    "lora_parameters": {"rank": 8, "scale": 20.0, "dropout": 0.0},
}


@dataclass
class Case:
    id: str
    argv: list[str]
    fragment: str
    files: dict = field(default_factory=dict)


def rows(*items) -> str:
    return "\n".join(i if isinstance(i, str) else json.dumps(i) for i in items) + "\n"


def option_cases() -> list[Case]:
    bad = {
        "rank": ["0", "-1", "2.5", "abc", ""],
        "scale": ["nan", "inf", "-inf", "0", "-1", "abc"],
        "dropout": ["2", "1", "-0.1", "nan"],
        "learning-rate": ["nan", "inf", "0", "-0.001"],
        "iters": ["0", "1", "-5", "1.5"],
        "batch-size": ["0", "-1"],
        "max-seq-length": ["0", "1", "-3"],
        "num-layers": ["0", "-2"],
        "seed": ["-1", str(2**40)],
        "voice-tolerance": ["nan", "-0.1", "2", "inf"],
        "max-tokens": ["0", "-1", "1.5"],
        "distributed-timeout": ["0", "-1", "nan", "inf"],
        "fine-tune-type": ["full"],
        "trainer": ["ppo"],
        "suite": ["nope"],
        "keys": [","],
    }
    cases = [
        Case(f"run--{flag}={value or 'empty'}", ["run", "-q", f"--{flag}", value], f"--{flag}")
        for flag, values in bad.items()
        for value in values
    ]
    for flag, value in [("rank", "0"), ("iters", "1"), ("scale", "nan"), ("save-every", "-1")]:
        cases.append(
            Case(f"train--{flag}={value}", ["train", "-q", f"--{flag}", value], f"--{flag}")
        )
    cases += [
        Case("run--inject-fault", ["run", "-q", "--inject-fault", "nope"], "--inject-fault"),
        Case("run--expect-no-eq", ["run", "-q", "--expect", "trainable_arrays"], "--expect"),
        Case("run--expect-nan", ["run", "-q", "--expect", "trainable_arrays=nan"], "--expect"),
        Case("run--expect-text", ["run", "-q", "--expect", "trainable_arrays=x"], "--expect"),
        Case("run--expect-typo", ["run", "-q", "--expect", "trainable_aray=3"], "did you mean"),
        Case("run--check-typo", ["run", "-q", "--check", "lora_layer_cont"], "did you mean"),
        Case("run--unknown-flag", ["run", "--rnak", "8"], "unrecognized arguments"),
        Case("no-command-typo", ["rn"], "invalid choice"),
        Case("doctor--rank", ["doctor", "--adapter-path", ".", "--rank", "8"], "--rank"),
        Case(
            "doctor--voice-tolerance",
            ["doctor", "--adapter-path", ".", "--voice-tolerance", "nan"],
            "--voice-tolerance",
        ),
        Case("doctor-no-adapter-path", ["doctor"], "--adapter-path"),
    ]
    return cases


def path_cases() -> list[Case]:
    file = {"f.txt": "x\n", "d": DIR}
    return [
        Case("data-missing", ["run", "-q", "--data", "nope"], "--data"),
        Case("data-is-file", ["run", "-q", "--data", "f.txt"], "--data", file),
        Case("data-no-train-jsonl", ["run", "-q", "--data", "d"], "train.jsonl", file),
        Case("config-missing", ["run", "-q", "-c", "nope.yaml"], "--config"),
        Case("config-is-dir", ["run", "-q", "-c", "d"], "--config", file),
        Case("prompts-missing", ["run", "-q", "--prompts", "nope.txt"], "--prompts"),
        Case("prompts-is-dir", ["run", "-q", "--prompts", "d"], "--prompts", file),
        Case("references-missing", ["run", "-q", "--voice-references", "no"], "--voice-references"),
        Case("baseline-missing", ["run", "-q", "--baseline", "nope.json"], "--baseline"),
        Case("save-baseline-dir", ["run", "-q", "--save-baseline", "d"], "--save-baseline", file),
        Case(
            "save-baseline-under-file",
            ["run", "-q", "--save-baseline", "f.txt/b.json"],
            "f.txt",
            file,
        ),
        Case("history-is-file", ["run", "-q", "--history", "f.txt"], "--history", file),
        Case("out-is-file", ["run", "-q", "--out", "f.txt"], "--out", file),
        Case("train-data-missing", ["train", "-q", "--data", "nope"], "--data"),
        Case("json-under-file", ["run", "-q", "--json", "f.txt/r.json"], "f.txt", file),
        Case("json-is-dir", ["run", "-q", "--json", "d"], "--json", file),
        Case("report-html-is-dir", ["report", "x.json", "--html", "d"], "--html", file),
        Case("report-junit-under-file", ["report", "x.json", "--junit", "f.txt/j"], "f.txt", file),
        Case("compare-json-is-dir", ["compare", "a", "b", "--json", "d"], "--json", file),
        Case("scorer-no-colon", ["run", "-q", "--voice-scorer", "nope"], "--voice-scorer"),
        Case(
            "scorer-no-module", ["run", "-q", "--voice-scorer", "no_such_mod_x:f"], "cannot import"
        ),
        Case(
            "scorer-no-attribute", ["run", "-q", "--voice-scorer", "os:no_such_f"], "cannot import"
        ),
        Case("scorer-not-callable", ["run", "-q", "--voice-scorer", "os:sep"], "not callable"),
        Case(
            "baseline-not-json",
            ["run", "-q", "--baseline", "b.json"],
            "not valid JSON",
            {"b.json": "{"},
        ),
        Case(
            "baseline-binary",
            ["run", "-q", "--baseline", "b.json"],
            "not valid JSON",
            {"b.json": b"\xff"},
        ),
        Case(
            "baseline-other-format",
            ["run", "-q", "--baseline", "b.json"],
            "baseline file",
            {"b.json": '{"schema_version": 9}'},
        ),
        Case(
            "baseline-no-table",
            ["run", "-q", "--baseline", "b.json"],
            "baseline file",
            {"b.json": '{"schema_version": 1, "baselines": []}'},
        ),
        Case("doctor-data-missing", ["doctor", "--adapter-path", ".", "--data", "no"], "--data"),
    ]


def ignored_option_cases() -> list[Case]:
    return [
        Case("run-suite-dpo-sft", ["run", "-q", "--suite", "dpo"], "--trainer dpo"),
        Case("run-suite-distributed", ["run", "-q", "--suite", "distributed"], "--distributed"),
        Case(
            "train-trainer-dpo",
            ["train", "-q", "--trainer", "dpo"],
            "unrecognized arguments: --trainer",
        ),
        Case("train-inject-fault", ["train", "-q", "--inject-fault", "x"], "--inject-fault"),
        Case("train-distributed", ["train", "-q", "--distributed"], "--distributed"),
        Case(
            "bench-trainer-dpo",
            ["bench", "-q", "--trainer", "dpo"],
            "unrecognized arguments: --trainer",
        ),
        Case("bench-inject-fault", ["bench", "-q", "--inject-fault", "x"], "--inject-fault"),
        Case("bench-pairs-zero", ["bench", "-q", "--pairs", "0"], "--pairs"),
        Case("bench-rank-zero", ["bench", "-q", "--rank", "0"], "--rank"),
        Case(
            "save-baseline-structure",
            ["run", "-q", *SHAPE, "--save-baseline", "b.json"],
            "--save-baseline",
        ),
        Case(
            "save-baseline-dpo",
            ["run", "-q", "--trainer", "dpo", "--save-baseline", "b.json"],
            "--save-baseline",
        ),
        Case(
            "save-baseline-shape-gate",
            ["run", "-q", "--model", "shape:qwen2.5-7b", "--save-baseline", "b.json"],
            "shape-only",
        ),
    ]


def data_cases() -> list[Case]:
    def case(name, content, fragment="train.jsonl", trainer=()):
        files = {"d": DIR, "d/train.jsonl": content}
        return Case(f"data-{name}", ["run", "-q", *trainer, "--data", "d"], fragment, files)

    dpo = ["--trainer", "dpo"]
    good_dpo = {"prompt": "p", "chosen": "c", "rejected": "r"}
    return [
        case("text-empty", rows({"text": ""}), "empty"),
        case("text-blank", rows({"text": "   "}), "empty"),
        case("text-int", rows({"text": 42}), "got int"),
        case("text-null", rows({"text": None}), "got NoneType"),
        case("text-list", rows({"text": ["a"]}), "got list"),
        case("binary", b"\x89PNG\r\n\x1a\n\x00\xff\xfe", "UTF-8"),
        case("missing-text-later", GOOD_ROWS + "\n" + rows({"txt": "x"}), "train.jsonl:9"),
        case("chat-no-content", rows({"messages": [{"role": "user"}]}), "content"),
        case("chat-bad-role", rows({"messages": [{"role": "robot", "content": "x"}]}), "role"),
        case("chat-not-list", rows({"messages": "hello"}), "messages"),
        case("chat-empty", rows({"messages": []}), "messages"),
        case("chat-item-str", rows({"messages": ["hi"]}), "messages[0]"),
        case(
            "chat-later-bad", rows(CHAT, CHAT, {"messages": [{"role": "user", "content": 3}]}), ":3"
        ),
        case("completion-int", rows({"prompt": "p", "completion": 5}), "completion"),
        case("completion-missing", rows({"prompt": "p", "completion": "c"}, {"prompt": "q"}), ":2"),
        case("invalid-json", rows({"text": "ok"}, "{not json"), "not valid JSON"),
        case("array-row", rows([1, 2]), "JSON object"),
        case("number-row", rows(7), "JSON object"),
        case("string-row", rows('"text"'), "JSON object"),
        case("empty-file", "", "no rows"),
        case("blank-lines", "\n\n  \n", "no rows"),
        case("unknown-format", rows({"foo": 1}), "no mlx-lm format"),
        case("deep-nesting", "[" * 100000 + "\n", "not valid JSON"),
        case("dpo-missing-rejected", rows({"prompt": "p", "chosen": "c"}), "rejected", dpo),
        case("dpo-chosen-int", rows({**good_dpo, "chosen": 1}), "chosen", dpo),
        case("dpo-later-bad", rows(good_dpo, {**good_dpo, "prompt": ""}), ":2", dpo),
        Case(
            "data-train-jsonl-is-dir",
            ["run", "-q", "--data", "d"],
            "folder",
            {"d": DIR, "d/train.jsonl": DIR},
        ),
        Case(
            "train-data-text-int",
            ["train", "-q", "--data", "d"],
            "got int",
            {"d": DIR, "d/train.jsonl": rows({"text": 1})},
        ),
        Case(
            "prompts-binary",
            ["run", "-q", "--prompts", "p.txt"],
            "UTF-8",
            {"p.txt": b"\xff\xfe\x00"},
        ),
        Case("prompts-empty", ["run", "-q", "--prompts", "p.txt"], "no text", {"p.txt": "\n \n"}),
    ]


def config_cases() -> list[Case]:
    def case(name, text, fragment):
        return Case(
            f"yaml-{name}", ["run", "-q", *SHAPE, "-c", "c.yaml"], fragment, {"c.yaml": text}
        )

    return [
        case(
            "misspelt-lora-parameters",
            "lora_paramters:\n  rank: 4\n",
            "did you mean 'lora_parameters'",
        ),
        case("misspelt-iters", "itres: 3\n", "did you mean 'iters'"),
        case("misspelt-rank-in-section", "lora_parameters:\n  rnak: 4\n", "did you mean 'rank'"),
        case("unknown-key-far", "zzzzzz: 1\n", "unknown key"),
        case("iters-text", "iters: abc\n", "iters in c.yaml"),
        case("iters-one", "iters: 1\n", "iters in c.yaml"),
        case("iters-float", "iters: 2.5\n", "an integer"),
        case("rank-bool", "lora_parameters:\n  rank: true\n", "lora_parameters.rank"),
        case("rank-zero", "lora_parameters:\n  rank: 0\n", "lora_parameters.rank"),
        case("rank-list", "lora_parameters:\n  rank: [8]\n", "an integer"),
        case("lr-nan", "learning_rate: .nan\n", "finite"),
        case("lr-inf", "learning_rate: .inf\n", "finite"),
        case("lr-text", "learning_rate: fast\n", "learning_rate"),
        case("scale-inf", "lora_parameters:\n  scale: .inf\n", "finite"),
        case("dropout-high", "lora_parameters:\n  dropout: 1.5\n", "dropout"),
        case("keys-ints", "lora_parameters:\n  keys: [1, 2]\n", "keys"),
        case("keys-empty", "lora_parameters:\n  keys: []\n", "empty"),
        case("keys-mapping", "lora_parameters:\n  keys: {a: 1}\n", "keys"),
        case("section-not-mapping", "lora_parameters: 5\n", "mapping"),
        case("alpha", "lora_parameters:\n  alpha: 16\n", "alpha"),
        case("fine-tune-type", "fine_tune_type: full\n", "fine_tune_type"),
        case("fine-tune-type-int", "fine_tune_type: 3\n", "fine_tune_type"),
        case("num-layers-zero", "num_layers: 0\n", "num_layers"),
        case("batch-negative", "batch_size: -1\n", "batch_size"),
        case("max-seq-one", "max_seq_length: 1\n", "max_seq_length"),
        case("seed-negative", "seed: -3\n", "seed"),
        case("top-level-list", "- rank: 8\n", "mapping"),
        case("scalar", "8\n", "mapping"),
        case("invalid-yaml", "rank: [8\n", "not valid YAML"),
        case("tab-indent", "lora_parameters:\n\trank: 8\n", "not valid YAML"),
        case("binary", b"\x00\xff\xfe\x89", "UTF-8"),
        case("date-as-iters", "iters: 2024-01-01\n", "iters"),
    ]


def fleet_cases() -> list[Case]:
    def case(name, text, fragment):
        argv = ["remote", "run", "--hosts", "fleet.toml"]
        return Case(f"fleet-{name}", argv, fragment, {"fleet.toml": text})

    host = '[[hosts]]\nname = "a"\nhostname = "h"\n'
    return [
        case("port-text", host + 'port = "abc"\n', "port"),
        case("port-high", host + "port = 70000\n", "65535"),
        case("port-zero", host + "port = 0\n", "port"),
        case("port-bool", host + "port = true\n", "port"),
        case("port-float", host + "port = 22.5\n", "port"),
        case("identity-list", host + 'identity_file = ["a", "b"]\n', "identity_file"),
        case("labels-string", host + 'labels = "x"\n', "labels"),
        case("labels-ints", host + "labels = [1, 2]\n", "labels"),
        case("ips-string", host + 'ips = "10.0.0.1"\n', "ips"),
        case("unknown-key", host + 'hostnmae = "x"\n', "did you mean 'hostname'"),
        case("defaults-unknown", '[defaults]\npyton = "p"\n' + host, "did you mean 'python'"),
        case("defaults-name", '[defaults]\nhostname = "x"\n' + host, "unknown key"),
        case("defaults-port", "[defaults]\nport = -1\n" + host, "port"),
        case("top-unknown", 'host = "x"\n' + host, "did you mean 'hosts'"),
        case("no-hosts", '[defaults]\npython = "p"\n', "no [[hosts]]"),
        case("hosts-not-tables", "hosts = 5\n", "[[hosts]]"),
        case("hosts-strings", 'hosts = ["a"]\n', "[[hosts]]"),
        case("no-hostname", '[[hosts]]\nname = "a"\n', "hostname"),
        case("hostname-int", "[[hosts]]\nhostname = 42\n", "hostname"),
        case("hostname-empty", '[[hosts]]\nhostname = ""\n', "hostname"),
        case("python-int", host + "python = 3\n", "python"),
        case("duplicate-names", host + host, "two hosts"),
        case("invalid-toml", "[[hosts]\nhostname = 1\n", "not valid TOML"),
        case("binary", b"\x00\xff\xfe\x01", "UTF-8"),
        Case("fleet-folder", ["remote", "run", "--hosts", "d"], "folder", {"d": DIR}),
        Case("fleet-missing", ["remote", "run", "--hosts", "nope.toml"], "nope.toml"),
        Case("host-port-text", ["remote", "run", "--host", "u@h:abc"], "port"),
        Case("host-port-high", ["remote", "run", "--host", "u@h:99999"], "65535"),
        Case("host-port-zero", ["remote", "run", "--host", "u@h:0"], "port"),
        Case("host-empty-user", ["remote", "run", "--host", "@h"], "user@host"),
        Case("host-empty", ["remote", "run", "--host", ""], "user@host"),
        Case(
            "timeout-negative", ["remote", "run", "--host", "h", "--connect-timeout", "-1"], "> 0"
        ),
        Case("timeout-nan", ["remote", "run", "--host", "h", "--run-timeout", "nan"], "finite"),
        Case("parallel-zero", ["remote", "run", "--host", "h", "--parallel", "0"], "--parallel"),
        Case(
            "port-base-high", ["remote", "run", "--host", "h", "--starting-port", "70000"], "65535"
        ),
        Case(
            "deploy-timeout-zero", ["remote", "run", "--host", "h", "--deploy-timeout", "0"], "> 0"
        ),
        Case(
            "collect-timeout-inf",
            ["remote", "run", "--host", "h", "--collect-timeout", "inf"],
            "finite",
        ),
        Case("bench-parallel-zero", ["remote", "bench", "--host", "h", "--parallel", "0"], ">= 1"),
        Case("grace-negative", ["remote", "train", "--host", "h", "--start-grace", "-1"], ">= 0"),
        Case("grace-nan", ["remote", "train", "--host", "h", "--start-grace", "nan"], "finite"),
        Case("cap-zero", ["remote", "run", "--host", "h", "--collect-max-bytes", "0"], "positive"),
        Case(
            "cap-text", ["remote", "run", "--host", "h", "--collect-max-file-bytes", "4X"], "a size"
        ),
        Case("bench-only-typo", ["bench", "--only", "fingerprnt"], "--only"),
        Case("plan-parallel-zero", ["remote", "plan", "--host", "h", "--parallel", "0"], ">= 1"),
        Case("run-accumulation-zero", ["run", "--grad-accumulation-steps", "0"], ">= 1"),
        Case("guard-full-fine-tune", ["guard", "--fine-tune-type", "full"], "no frozen base"),
        Case("guard-optimizer-typo", ["guard", "--optimizer", "adamm"], "--optimizer"),
        Case("guard-val-batches", ["guard", "--val-batches", "0"], "--val-batches"),
        Case("guard-test-batches", ["guard", "--test-batches", "-2"], "--test-batches"),
        Case("guard-report-zero", ["guard", "--steps-per-report", "0"], "--steps-per-report"),
        Case("guard-eval-zero", ["guard", "--steps-per-eval", "0"], "--steps-per-eval"),
        Case("guard-save-zero", ["guard", "--save-every", "0"], "--save-every"),
        Case("guard-check-every-zero", ["guard", "--check-every", "0"], "--check-every"),
        Case("guard-inference-typo", ["guard", "--inference-format", "html"], "--inference-format"),
        Case("plan-ranks-zero", ["plan", "--ranks", "0"], "--ranks"),
        Case("plan-q-bits-one", ["plan", "--q-bits", "1"], "--q-bits"),
        Case("plan-group-small", ["plan", "--q-group-size", "8"], "--q-group-size"),
        Case("plan-memory-zero", ["plan", "--memory-gb", "0"], "--memory-gb"),
        Case("plan-calibrate-steps", ["plan", "--calibrate-steps", "1"], "--calibrate-steps"),
        # One rule per option: the guard and remote's forwarded options obey the run's rules.
        Case("guard-iters-one", ["guard", "--iters", "1"], "--iters must be >= 2, got 1"),
        Case(
            "guard-yaml-rank-zero",
            ["guard", "-c", "c.yaml"],
            "lora_parameters.rank must be >= 1, got 0",
            {"c.yaml": "lora_parameters:\n  rank: 0\n"},
        ),
        Case(
            "remote-run-forwarded-rank",
            ["remote", "run", "--host", "h", "--", "--rank", "0"],
            "--rank (after --) must be >= 1",
        ),
        Case(
            "remote-bench-forwarded-pairs",
            ["remote", "bench", "--host", "h", "--", "--pairs", "0"],
            "--pairs (after --) must be >= 1",
        ),
        Case(
            "remote-train-forwarded-save-every",
            ["remote", "train", "--host", "h", "--", "--save-every", "-1"],
            "--save-every (after --) must be >= 0",
        ),
    ]


def report_json(mutate) -> callable:
    def write(path: Path, w) -> None:
        document = json.loads(json.dumps(w.report))
        result = mutate(document)
        path.write_text(json.dumps(document if result is None else result))

    return write


def _drop(*keys):
    def mutate(document):
        holder = document
        for key in keys[:-1]:
            holder = holder[key]
        del holder[keys[-1]]

    return mutate


def report_cases() -> list[Case]:
    broken = {
        "not-json": "{nope",
        "binary": b"\x00\xff\xfe",
        "list": "[1, 2]",
        "empty-object": "{}",
        "other-version": report_json(lambda d: d.update(schema_version="2.0")),
        "unknown-kind": report_json(lambda d: d.update(kind="mystery")),
        "no-run-id": report_json(_drop("run", "id")),
        "checks-not-list": report_json(lambda d: d.update(checks={})),
        "bad-status": report_json(lambda d: d["checks"][0].update(status="weird")),
        "no-summary": report_json(_drop("summary")),
        "check-no-name": report_json(_drop("checks", 0, "name")),
        "model-not-object": report_json(lambda d: d.update(model="x")),
    }
    fragments = {"not-json": "not valid JSON", "binary": "not valid JSON", "list": "schema_version"}
    fragments.update({"empty-object": "schema_version", "other-version": "2.0"})
    fragments.update(
        {
            "unknown-kind": "mystery",
            "no-run-id": "run.id",
            "checks-not-list": "checks",
            "bad-status": "checks[0].status",
            "no-summary": "summary",
            "check-no-name": "checks[0].name",
            "model-not-object": "model",
        }
    )
    cases = []
    for name, content in broken.items():
        fragment = fragments[name]
        cases.append(
            Case(
                f"report-{name}",
                ["report", "x.json", "--html", "o.html"],
                fragment,
                {"x.json": content},
            )
        )
        files = {"x.json": content, "good.json": report_json(lambda d: None)}
        cases.append(Case(f"compare-{name}", ["compare", "good.json", "x.json"], fragment, files))
    good = {"good.json": report_json(lambda d: None)}
    fleet = {"fleet.json": json.dumps(FLEET), **good}
    cases += [
        Case("report-fleet", ["report", "fleet.json", "--html", "o.html"], "fleet summary", fleet),
        Case("report-missing", ["report", "nope.json", "--html", "o.html"], "not found"),
        Case("report-dir", ["report", "d", "--html", "o.html"], "folder", {"d": DIR}),
        Case("report-no-output", ["report", "good.json"], "--html", good),
        Case("compare-run-vs-fleet", ["compare", "good.json", "fleet.json"], "fleet", fleet),
        Case("compare-missing", ["compare", "good.json", "nope.json"], "not found", good),
    ]
    for gate, fragment in [
        ("x", "METRIC:PCT"),
        ("tokens_per_second", "METRIC:PCT"),
        ("nope:5%", "METRIC:PCT"),
        (":5", "METRIC:PCT"),
        ("tokens_per_second:abc", "percentage"),
        ("tokens_per_second:-5%", ">= 0"),
        ("tokens_per_second:nan", "finite"),
        ("tokens_per_second:inf%", "finite"),
    ]:
        argv = ["compare", "good.json", "good.json", "--fail-on", gate]
        cases.append(Case(f"compare-fail-on-{gate}", argv, fragment, good))
    argv = [
        "compare",
        "good.json",
        "good.json",
        "--fail-on",
        "last_loss:1%",
        "--fail-on",
        "last_loss:2%",
    ]
    cases.append(Case("compare-fail-on-twice", argv, "twice", good))
    return cases


FLEET = {
    "schema_version": "1.0",
    "kind": "fleet",
    "run": {"id": "f1"},
    "hosts": [{"name": "a", "status": "passed", "report": None}],
    "summary": {"verdict": "passed"},
}


def adapter(config=None, tensors: bytes | None = None):
    def write(path: Path, w) -> None:
        path.mkdir()
        if config is not None:
            text = config if isinstance(config, str) else json.dumps(config)
            (path / "adapter_config.json").write_text(text)
        if tensors is not None:
            (path / "adapters.safetensors").write_bytes(tensors)

    return write


def with_parameters(**changes):
    return {**GOOD_ADAPTER, "lora_parameters": {**GOOD_ADAPTER["lora_parameters"], **changes}}


def adapter_cases() -> list[Case]:
    def case(name, write, fragment):
        argv = ["doctor", "-q", "--model", "fixture:tiny", "--adapter-path", "a"]
        return Case(f"adapter-{name}", argv, fragment, {"a": write})

    no_params = {k: v for k, v in GOOD_ADAPTER.items() if k != "lora_parameters"}
    return [
        case("no-config", adapter(), "adapter_config.json is missing"),
        case("config-not-json", adapter("{oops"), "not valid JSON"),
        case("config-list", adapter("[]"), "lora_parameters"),
        case("no-lora-parameters", adapter(no_params), "lora_parameters"),
        case(
            "parameters-list", adapter({**GOOD_ADAPTER, "lora_parameters": [8]}), "lora_parameters"
        ),
        case("no-rank", adapter({**GOOD_ADAPTER, "lora_parameters": {"scale": 20.0}}), "'rank'"),
        case("rank-text", adapter(with_parameters(rank="8")), "lora_parameters.rank"),
        case("rank-zero", adapter(with_parameters(rank=0)), "lora_parameters.rank"),
        case(
            "scale-nan",
            adapter('{"num_layers": 4, "lora_parameters": {"rank": 8, "scale": NaN}}'),
            "finite",
        ),
        case("dropout-two", adapter(with_parameters(dropout=2)), "dropout"),
        # The adapter's scale obeys LoRAConfig's declared bound (adapters.py had its own, none).
        case("scale-zero", adapter(with_parameters(scale=0)), "lora_parameters.scale"),
        case("keys-ints", adapter(with_parameters(keys=[1])), "keys"),
        case("num-layers-zero", adapter({**GOOD_ADAPTER, "num_layers": 0}), "num_layers"),
        case(
            "fine-tune-full", adapter({**GOOD_ADAPTER, "fine_tune_type": "full"}), "fine_tune_type"
        ),
        case("no-tensors", adapter(GOOD_ADAPTER), "adapters.safetensors is missing"),
        case("tensors-garbage", adapter(GOOD_ADAPTER, b"garbage" * 10), "corrupt or truncated"),
        case("tensors-empty", adapter(GOOD_ADAPTER, b""), "corrupt or truncated"),
        Case("adapter-path-file", ["doctor", "--adapter-path", "f"], "not a folder", {"f": "x"}),
        Case("adapter-path-missing", ["doctor", "--adapter-path", "nope"], "not a folder"),
        Case(
            "doctor-shape",
            ["doctor", "--model", "shape:qwen2.5-7b", "--adapter-path", "x"],
            "shape-only",
        ),
    ]


def model(change):
    def write(path: Path, w) -> None:
        shutil.copytree(w.fixture, path)
        change(path)

    return write


def _truncate(path: Path) -> None:
    weights = path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])


def _config(text):
    return lambda path: (path / "config.json").write_text(text)


def model_cases() -> list[Case]:
    def case(name, change, fragment):
        return Case(f"model-{name}", ["run", "-q", "--model", "m"], fragment, {"m": model(change)})

    def remove(*names):
        return lambda path: [(path / n).unlink() for n in names]

    return [
        case("truncated-weights", _truncate, "cannot load"),
        case("no-tokenizer", remove("tokenizer.json", "tokenizer_config.json"), "no tokenizer"),
        case("no-weights", remove("model.safetensors"), "no model*.safetensors"),
        case("no-config", remove("config.json"), "config.json not found"),
        case("config-not-json", _config("{"), "not valid JSON"),
        case("config-binary", lambda p: (p / "config.json").write_bytes(b"\xff\x00"), "UTF-8"),
        case("config-no-model-type", _config('{"num_hidden_layers": 2}'), "model_type"),
        case(
            "config-unsupported",
            _config('{"model_type": "nope", "num_hidden_layers": 2}'),
            "not supported",
        ),
        case(
            "config-layers-text",
            _config('{"model_type": "qwen2", "num_hidden_layers": "x"}'),
            "num_hidden_layers",
        ),
        Case("model-is-file", ["run", "-q", "--model", "f"], "is a file", {"f": "x"}),
        Case("model-unknown-shape", ["run", "-q", "--model", "shape:gpt-9"], "unknown shape"),
        Case("model-unknown-fixture", ["run", "-q", "--model", "fixture:huge"], "unknown fixture"),
        Case(
            "model-shape-missing", ["run", "-q", "--model", "shape:nope/config.json"], "not found"
        ),
        Case("model-nonsense", ["run", "-q", "--model", "./nope"], "no such folder"),
    ]


CASES = (
    option_cases()
    + path_cases()
    + ignored_option_cases()
    + data_cases()
    + config_cases()
    + fleet_cases()
    + report_cases()
    + adapter_cases()
    + model_cases()
)


class Workspace:
    """What file specs may need: a valid report to break, the fixture model to copy."""

    def __init__(self, report: dict):
        self.report = report

    @property
    def fixture(self) -> Path:
        from lora_harness.models.fixture import fixture_path

        return fixture_path("tiny")


@pytest.fixture(scope="module")
def valid_report(tmp_path_factory, fixture_cache):
    folder = tmp_path_factory.mktemp("valid-report")
    code = main(
        [*("run", "-q", *SHAPE), "--out", str(folder / "o"), "--json", str(folder / "r.json")]
    )
    assert code == 0
    return json.loads((folder / "r.json").read_text())


def materialise(files: dict, root: Path, workspace: Workspace) -> None:
    for name, content in files.items():
        path = root / name
        if content is DIR:
            path.mkdir(parents=True, exist_ok=True)
        elif callable(content):
            content(path, workspace)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def run_cli(argv, capsys) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip() and "building fixture" not in line]
    return code, lines


def _bounded_options() -> dict:
    """Each distinct definition of an option that takes a number, a size or a choice:
    (flag, type, choices) -> the first subcommand that declares it."""
    found = {}

    def walk(parser, path):
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
                continue
            kind = getattr(action.type, "__name__", None)
            if (
                action.option_strings
                and action.nargs != 0
                and (kind in ("int", "float", "integer", "number", "_size") or action.choices)
            ):
                key = (action.option_strings[-1], kind, tuple(action.choices or ()))
                found.setdefault(key, path)

    walk(build_parser(), [])
    return found


def test_every_bounded_option_has_a_bad_input_probe():
    """A new numeric or choice option (or a second definition of one) gets a probe here."""
    assert len({c.id for c in CASES}) == len(CASES), "probe ids must be unique"
    unprobed = [
        f"{' '.join(path)} {flag}"
        for (flag, _, _), path in _bounded_options().items()
        if not any(c.argv[: len(path)] == path and flag in c.argv for c in CASES)
    ]
    assert not unprobed, "options without a bad-input probe: " + ", ".join(unprobed)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_exits_2_with_one_line(case, tmp_path, monkeypatch, capsys, valid_report):
    materialise(case.files, tmp_path, Workspace(valid_report))
    monkeypatch.chdir(tmp_path)
    code, lines = run_cli(case.argv, capsys)
    assert code == 2, lines
    assert len(lines) == 1, lines
    assert lines[0].startswith("lora-harness: error: "), lines
    assert case.fragment in lines[0], lines


VALID = [
    ("yaml-with-mlx-lm-keys", ["run", "-q", *SHAPE, "-c", "c.yaml"], 0),
    ("yaml-lr-as-text", ["run", "-q", *SHAPE, "-c", "lr.yaml"], 0),
    (
        "compare-self-under-gates",
        ["compare", "good.json", "good.json", "--fail-on", "last_loss:0%"],
        0,
    ),
    ("report-renders", ["report", "good.json", "--html", "o.html", "--junit", "j.xml"], 0),
]
VALID_FILES = {
    "c.yaml": "model: x\ndata: y\ntrain: true\nlr_schedule: null\niters: 4\n"
    "lora_parameters:\n  rank: 4\n  scale: 10.0\n  dropout: 0.0\n",
    "lr.yaml": "learning_rate: 1e-5\n",
    "good.json": report_json(lambda d: d["metrics"]["summary"].update(last_loss=1.5)),
}


@pytest.mark.parametrize("argv, code", [(a, c) for _, a, c in VALID], ids=[i for i, _, _ in VALID])
def test_valid_inputs_still_pass(argv, code, tmp_path, monkeypatch, capsys, valid_report):
    materialise(VALID_FILES, tmp_path, Workspace(valid_report))
    monkeypatch.chdir(tmp_path)
    got, lines = run_cli(argv, capsys)
    assert got == code, lines


def test_compare_says_when_lora_settings_differ(tmp_path, capsys, valid_report):
    before, after = tmp_path / "a.json", tmp_path / "b.json"
    before.write_text(json.dumps(valid_report))
    changed = json.loads(json.dumps(valid_report))
    changed["lora"]["rank"] = 16
    after.write_text(json.dumps(changed))
    assert main(["compare", str(before), str(after)]) == 0
    assert "different LoRA settings (rank 8 -> 16)" in capsys.readouterr().out


# One rule per option: a bad value, written as a flag, in a -c YAML and through the Python
# API, is refused with one sentence; only the name differs. Before, the API accepted iters 1,
# scale 0, dropout 1, seed -1 and max_seq_length 1, and rank, num_layers, fine_tune_type and
# keys had their own wording in each place.
SAME_RULE = [
    # field, as a flag, as YAML, as a Python value
    ("iters", "1", "1", 1),
    ("rank", "0", "0", 0),
    ("num_layers", "0", "0", 0),
    ("scale", "0", "0", 0.0),
    ("dropout", "1", "1", 1.0),
    ("learning_rate", "-1", "-1", -1.0),
    ("seed", "-1", "-1", -1),
    ("max_seq_length", "1", "1", 1),
    ("batch_size", "0", "0", 0),
    ("grad_accumulation_steps", "0", "0", 0),
    ("fine_tune_type", "full", "full", "full"),
    ("keys", ",", "[]", []),
]


def _tail(message: str, name: str) -> str:
    assert name in message, message
    return message.split(name, 1)[1]


@pytest.mark.parametrize(
    "name, flag_text, yaml_text, value", SAME_RULE, ids=[c[0] for c in SAME_RULE]
)
def test_one_rule_per_option_one_sentence(
    name, flag_text, yaml_text, value, tmp_path, monkeypatch, capsys
):
    from lora_harness.core.errors import InputError
    from lora_harness.runs.run import settings_from
    from lora_harness.runs.watch import watch

    monkeypatch.chdir(tmp_path)
    flag = "--" + name.replace("_", "-")
    code, lines = run_cli(["run", "-q", *SHAPE, flag, flag_text], capsys)
    assert code == 2 and len(lines) == 1, lines
    (tmp_path / "c.yaml").write_text(f"{name}: {yaml_text}\n")
    code, yaml_lines = run_cli(["run", "-q", *SHAPE, "-c", "c.yaml"], capsys)
    assert code == 2 and len(yaml_lines) == 1, yaml_lines
    with pytest.raises(InputError) as from_watch:
        watch(None, lora={name: value})
    with pytest.raises(InputError) as from_settings:
        settings_from({name: value})
    tails = {
        _tail(lines[0], flag),
        _tail(yaml_lines[0], f"{name} in c.yaml"),
        _tail(str(from_watch.value), f"watch(lora=...): {name}"),
        _tail(str(from_settings.value), flag),
    }
    assert len(tails) == 1, tails


def test_help_states_each_bound_and_default():
    """--help derives from the same declarations: every ranged flag says its bounds."""
    from lora_harness.runs import options

    for option in options.ALL_OPTIONS:
        if option.rule is not None and option.rule.kind in (int, float):
            assert option.rule.bounds() in option.help, option.name
            assert "default" in option.help, option.name
