"""The user's own backend (examples/user_backend) gated by `--recipe` and by `watch()`.

Each bug of the seed's "What Doesn't Work" list is planted into that backend by a flag,
never into the harness's recipe, and must fail the checks docs/gate-your-own-trainer.md names for it under
both front ends. Skipping optimizer.init() has no observable effect on this MLX (state is
created lazily on the first update): shown by bit-identical parameters, not faked.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import mlx.core as mx
import pytest

from lora_harness.core.errors import InputError
from lora_harness.lora import user_recipe
from lora_harness.lora.recipe import CORRECT, Recipe
from lora_harness.runs import suites
from lora_harness.runs.run import prepare, settings_from
from lora_harness.runs.watch import WATCHED, UnhealthyLoRA, watch
from lora_harness.text import data
from tests.support.helpers import ROOT

pytest_plugins = ["pytester"]

EXAMPLE = ROOT / "examples" / "user_backend"
SPEC = "mlx_backend.lora_gate:{}"

# Seed bug -> (lora_gate object planting it, checks docs/gate-your-own-trainer.md names for it).
SEED_BUGS = {
    "manual_from_base": (
        "MANUAL_FROM_BASE",
        ["lora_layer_count", "trainable_array_count", "trainable_keys_exact"],
    ),
    "hand_built_lora": (
        "HAND_BUILT_LORA",
        ["trainable_array_count", "trainable_keys_exact", "frozen_base_unchanged"],
    ),
    "unfreeze_without_keys": (
        "UNFREEZE_WITHOUT_KEYS",
        [
            "trainable_array_count",
            "trainable_keys_exact",
            "gradient_tree_matches_trainable",
            "frozen_base_unchanged",
        ],
    ),
    "mx_value_and_grad": (
        "MX_VALUE_AND_GRAD",
        [
            "gradient_tree_matches_trainable",
            "optimizer_state_matches_trainable",
            "frozen_base_unchanged",
        ],
    ),
    "top_level_count": ("TOP_LEVEL_COUNT", ["trainable_array_count"]),
}
# The flags each lora_gate object sets (MX_VALUE_AND_GRAD is the seed's silent combination).
FLAGS = {
    "manual_from_base": ("manual_from_base",),
    "hand_built_lora": ("hand_built_lora",),
    "unfreeze_without_keys": ("unfreeze_without_keys",),
    "mx_value_and_grad": ("mx_value_and_grad", "skip_optimizer_init"),
    "top_level_count": ("top_level_count",),
}


@pytest.fixture(autouse=True)
def in_user_repo(monkeypatch):
    """Run as a user would: from the root of their repository, which holds mlx_backend/."""
    monkeypatch.chdir(EXAMPLE)
    monkeypatch.syspath_prepend(str(EXAMPLE))


def gate_with_recipe(name: str, checks=None, **values) -> tuple[object, dict]:
    settings = settings_from({"model": "fixture:tiny", "recipe": SPEC.format(name), **values})
    ctx = prepare(settings)
    results = suites.run_checks(ctx, checks or settings.check_names)
    return ctx, {r.name: r for r in results}


def watched_sft_run(bugs=(), steps: int = 6, count=True):
    """The backend's own SFT trainer and compiled step, with watch() around its loop."""
    from mlx_backend.mlx_adapter_manager import MLXAdapterManager
    from mlx_backend.mlx_sft_trainer import MLXSFTTrainer

    model, batch = _model_and_batch()
    manager = MLXAdapterManager(bugs=frozenset(bugs))
    mx.random.seed(0)
    manager.apply_lora(model)
    trainer = MLXSFTTrainer(model, bugs=bugs)
    with watch(
        model,
        trainer.optimizer,
        lora={"rank": 8, "scale": 20.0},
        config=model.args,
        count=manager.count_trainable if count else None,
    ) as w:
        trainer.train([batch] * steps, on_loss=w.on_loss)
    return w


def _model_and_batch():
    from lora_harness.models.sources import resolve

    model, tokenizer = resolve("fixture:tiny").load()
    dataset = CORRECT.tokenize(data.load_rows(None), tokenizer)
    return model, data.first_batch(dataset, 4, 256, 0)


def statuses(results) -> dict:
    return {name: r.status for name, r in results.items()}


# -- the protocol and its validation -------------------------------------------------------


def test_protocol_documents_every_recipe_step():
    methods = {n for n in vars(user_recipe.RecipeSteps) if not n.startswith("_")}
    assert methods == set(user_recipe.STEPS)
    for step in user_recipe.STEPS:
        assert getattr(user_recipe.RecipeSteps, step).__doc__, step


@pytest.mark.parametrize("name", ["AS_RECIPE", "AS_DICT", "AsClass"])
def test_recipe_objects_swap_only_the_steps_they_supply(name):
    recipe = user_recipe.load(f"tests.support.recipe_specs:{name}")
    assert isinstance(recipe, Recipe) and recipe.name == f"tests.support.recipe_specs:{name}"
    assert recipe.unfreeze is not CORRECT.unfreeze
    assert recipe.convert is CORRECT.convert and recipe.loss is CORRECT.loss


@pytest.mark.parametrize(
    "spec, says",
    [
        ("nosuch_pkg.mod:RECIPE", "cannot import nosuch_pkg.mod"),
        ("mlx_backend.lora_gate:NOPE", "has no attribute 'NOPE'"),
        ("mlx_backend.lora_gate", "must look like module:object"),
        (
            "tests.support.recipe_specs:MisnamedStep",
            "'unfreez' is not a recipe step; did you mean 'unfreeze'",
        ),
        ("tests.support.recipe_specs:MISNAMED_KEY", "'unfreez' is not a recipe step"),
        ("tests.support.recipe_specs:NOT_CALLABLE", "step 'freeze' is not callable"),
        ("tests.support.recipe_specs:WRONG_ARITY", "the trainer calls unfreeze(model, lora)"),
        ("tests.support.recipe_specs:NO_STEPS", "supplies none of the training steps"),
        ("tests.support.recipe_specs:NeedsArguments", "cannot be built without arguments"),
    ],
)
def test_bad_recipe_is_one_clear_input_error(monkeypatch, spec, says):
    monkeypatch.syspath_prepend(str(ROOT))
    with pytest.raises(InputError) as error:
        user_recipe.load(spec)
    assert says in str(error.value) and "\n" not in str(error.value)


@pytest.mark.slow  # a subprocess per command
@pytest.mark.parametrize("command", ["run", "selftest"])
def test_bad_recipe_exits_2_with_one_line(command):
    done = _cli(command, "--model", "fixture:tiny", "--recipe", "mlx_backend.lora_gate:RECIPES")
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0
    assert "has no attribute 'RECIPES'" in done.stderr


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lora_harness", *args],
        cwd=EXAMPLE,  # the user's repo root: the harness puts it on sys.path itself
        capture_output=True,
        text=True,
        timeout=600,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
    )


# -- the correct backend passes --------------------------------------------------------------


@pytest.mark.slow  # a CLI gate run in a subprocess
def test_correct_backend_passes_the_gate_from_the_cli(tmp_path):
    done = _cli(
        "run", "--model", "fixture:tiny", "--recipe", SPEC.format("RECIPE"), "--json", "-", "-q",
        "--out", str(tmp_path),
    )  # fmt: skip
    report = json.loads(done.stdout)
    assert done.returncode == 0, [c for c in report["checks"] if c["status"] != "pass"]
    assert report["run"]["recipe"]["name"] == SPEC.format("RECIPE")
    assert report["run"]["recipe"]["correct_steps"] == [
        "tokenize", "fuse", "save", "average_gradients"
    ]  # fmt: skip
    assert {c["name"] for c in report["checks"]} == set(suites.GATE)


@pytest.mark.slow
def test_correct_backend_passes_under_watch():
    report = watched_sft_run().assert_healthy()
    assert {c["name"]: c["status"] for c in report["checks"]} == dict.fromkeys(WATCHED, "pass")


@pytest.mark.slow
def test_correct_dpo_backend_passes_under_recipe_and_watch():
    _, results = gate_with_recipe("RECIPE", trainer="dpo", iters=3)
    assert set(statuses(results).values()) == {"pass"}, statuses(results)
    watched_dpo_run().assert_healthy()


def watched_dpo_run(bugs=()):
    from mlx_backend.mlx_adapter_manager import MLXAdapterManager
    from mlx_backend.mlx_dpo_trainer import MLXDPOTrainer

    from lora_harness.lora import dpo
    from lora_harness.models.sources import resolve

    model, tokenizer = resolve("fixture:tiny").load()
    tokens, spans = dpo.encode_pairs(dpo.default_pairs(4), tokenizer)
    MLXAdapterManager(bugs=frozenset(bugs)).apply_lora(model)
    trainer = MLXDPOTrainer(model, bugs=bugs)
    with watch(model, trainer.optimizer, config=model.args) as w:
        trainer.train(tokens, spans, iters=3, on_loss=w.on_loss)
    return w


# -- every seed bug planted into the backend is caught -----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(SEED_BUGS))
def test_seed_bug_in_the_backend_fails_its_checks_under_recipe(bug):
    planted, named = SEED_BUGS[bug]
    _, results = gate_with_recipe(planted, checks=named)
    assert statuses(results) == dict.fromkeys(named, "fail")


@pytest.mark.slow
@pytest.mark.parametrize("bug", sorted(SEED_BUGS))
def test_seed_bug_in_the_backend_fails_its_checks_under_watch(bug):
    _, named = SEED_BUGS[bug]
    w = watched_sft_run(FLAGS[bug])
    failed = {c.name for c in w.results() if c.status == "fail"}
    assert set(named) <= failed
    with pytest.raises(UnhealthyLoRA, match=named[0]):
        w.assert_healthy()


def test_dpo_trainer_bug_is_caught_under_watch():
    w = watched_dpo_run(("unfreeze_without_keys",))
    failed = {c.name for c in w.results() if c.status == "fail"}
    assert {"trainable_keys_exact", "frozen_base_unchanged"} <= failed


@pytest.fixture
def random_state_restored():
    """A compiled step that raises while it is traced leaves its tracer in mx.random.state
    (the step's declared state), and every later random draw in this process fails with
    "eval an array without a primitive". Give the tests that follow a real key again."""
    import mlx.core as mx

    yield
    mx.random.seed(0)  # the state cannot be assigned; seeding replaces the tracer


def test_mx_value_and_grad_alone_is_loud_not_silent(random_state_restored):
    # With optimizer.init(trainable) done right, Adam has no state for the base weights the
    # whole-model gradient holds: the first step raises. Only with init skipped is it silent.
    with pytest.raises(KeyError):
        watched_sft_run(("mx_value_and_grad",), steps=1)
    _, results = gate_with_recipe("MX_VALUE_AND_GRAD_ONLY", checks=["frozen_base_unchanged"])
    assert results["frozen_base_unchanged"].status == "error"
    assert "KeyError" in results["frozen_base_unchanged"].message


@pytest.mark.slow
def test_skip_optimizer_init_has_no_observable_effect_on_this_mlx():
    """MLX initialises optimizer state lazily on the first update: same state, same weights."""
    clean_ctx, clean = gate_with_recipe("RECIPE", checks=WATCHED)
    skip_ctx, skipped = gate_with_recipe("SKIP_OPTIMIZER_INIT", checks=WATCHED)
    assert set(statuses(skipped).values()) == {"pass"}
    for ctx_a, ctx_b in [(clean_ctx, skip_ctx)]:
        assert ctx_a.training.optimizer_state_keys == ctx_b.training.optimizer_state_keys
        assert ctx_a.training.adapter_after == ctx_b.training.adapter_after  # bit-identical
    clean_w, skip_w = watched_sft_run(), watched_sft_run(("skip_optimizer_init",))
    skip_w.assert_healthy()
    assert clean_w.training.adapter_after == skip_w.training.adapter_after
    assert clean_w.training.optimizer_state_keys == skip_w.training.optimizer_state_keys


# -- watch() around other loops -----------------------------------------------------------------


def _mlx_lm_train(bugs=(), enter_before_conversion=False):
    import mlx.optimizers as optim
    from mlx_backend.mlx_adapter_manager import MLXAdapterManager
    from mlx_lm.tuner.trainer import TrainingArgs, train

    from lora_harness.models.sources import resolve

    model, tokenizer = resolve("fixture:tiny").load()
    # Four rows and batch size four: every step sees the same batch, so the loss must fall.
    dataset = CORRECT.tokenize(data.load_rows(None)[:4], tokenizer)
    manager = MLXAdapterManager(bugs=frozenset(bugs))
    optimizer = optim.Adam(learning_rate=1e-3)
    args = TrainingArgs(batch_size=4, iters=6, steps_per_report=1, adapter_file=os.devnull)
    if not enter_before_conversion:
        manager.apply_lora(model)
    with watch(model, optimizer, lora={"lora_parameters": {"rank": 8, "scale": 20.0}}) as w:
        if enter_before_conversion:
            manager.apply_lora(model)
        train(model, optimizer, dataset, args=args, training_callback=w.callback)
    return w


@pytest.mark.slow
def test_watch_works_with_mlx_lms_own_train(capsys):
    w = _mlx_lm_train(enter_before_conversion=True)
    report = w.assert_healthy()
    assert report["expectations"]["derived_from"] == "model-structure"  # walked before converting
    assert len(report["metrics"]["steps"]) == 6
    by_name = {c["name"]: c["status"] for c in report["checks"]}
    assert by_name["adapters_changed"] == "skip"  # initial adapters were never seen
    assert by_name["gradient_tree_matches_trainable"] == "pass"
    bad = _mlx_lm_train(("unfreeze_without_keys",), enter_before_conversion=True)
    failed = {c.name for c in bad.results() if c.status == "fail"}
    assert {"trainable_keys_exact", "gradient_tree_matches_trainable"} <= failed
    assert "frozen_base_unchanged" in failed


def test_watch_refuses_a_converted_model_without_its_base_config():
    with pytest.raises(InputError, match="base model's config"):
        _mlx_lm_train()


@pytest.mark.parametrize("lora", [{"rnak": 8}, {"lora_parameters": {"rank": 8, "alpha": 16}}])
def test_watch_refuses_unknown_lora_fields(lora):
    with pytest.raises(InputError, match="is unknown"):
        watch(None, lora=lora)


def test_watch_skips_what_the_loop_does_not_show():
    from mlx_backend.mlx_adapter_manager import MLXAdapterManager

    model, _ = _model_and_batch()
    MLXAdapterManager().apply_lora(model)
    with watch(model, config=model.args) as w:
        with pytest.raises(InputError, match="after the with-block"):
            w.report()
    by_name = {r.name: r for r in w.results()}
    assert by_name["loss_finite_and_decreasing"].status == "skip"
    assert by_name["optimizer_state_matches_trainable"].status == "skip"
    assert by_name["gradient_tree_matches_trainable"].status == "skip"
    assert by_name["adapters_changed"].status == "fail"  # nothing trained: nothing moved


# -- faults are recipes: applied on top of the user's recipe -----------------------------------


@pytest.mark.slow
def test_selftest_faults_apply_on_the_users_recipe():
    from lora_harness.models.sources import resolve
    from lora_harness.runs.selftest import run_selftest

    settings = settings_from({"model": "fixture:tiny", "recipe": SPEC.format("RECIPE")})
    section = run_selftest(resolve("fixture:tiny"), settings, ["unfreeze_without_keys"])
    assert section["summary"]["clean_not_passing"] == []
    assert section["faults"][0]["caught"]
    fault_settings = settings_from(
        {"recipe": SPEC.format("RECIPE"), "inject_fault": "count_without_tree_flatten"}
    )
    assert fault_settings.recipe.name == SPEC.format("RECIPE") + "+count_without_tree_flatten"
    assert fault_settings.recipe.convert.__self__.__class__.__name__ == "BackendRecipe"


# -- the pytest plugin gates a foreign repository's own backend --------------------------------


_HEALTHY_TEST = """
from mlx_backend.mlx_adapter_manager import MLXAdapterManager
from mlx_backend.mlx_sft_trainer import MLXSFTTrainer

from lora_harness.lora.recipe import CORRECT
from lora_harness.models.sources import resolve
from lora_harness.text import data

BUGS = {bugs!r}


def test_my_trainer(lora_watch):
    model, tokenizer = resolve("fixture:tiny").load()
    batch = data.first_batch(CORRECT.tokenize(data.load_rows(None), tokenizer), 4, 256, 0)
    manager = MLXAdapterManager(bugs=frozenset(BUGS))
    manager.apply_lora(model)
    trainer = MLXSFTTrainer(model, bugs=BUGS)
    with lora_watch(model, trainer.optimizer, config=model.args, count=manager.count_trainable) as w:
        trainer.train([batch] * 6, on_loss=w.on_loss)
"""


def _foreign_repo(pytester, bugs=()):
    shutil.copytree(EXAMPLE / "mlx_backend", pytester.path / "mlx_backend")
    pytester.makepyfile(test_my_backend=_HEALTHY_TEST.format(bugs=tuple(bugs)))


def test_plugin_gates_a_foreign_repos_backend_with_lora_recipe(pytester):
    _foreign_repo(pytester)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lora-model", "fixture:tiny", "--lora-recipe",
        "mlx_backend.lora_gate:RECIPE",
    )  # fmt: skip
    result.assert_outcomes(passed=len(suites.GATE) + 1)


def test_plugin_fails_a_foreign_repos_buggy_backend(pytester):
    _foreign_repo(pytester, bugs=("unfreeze_without_keys",))
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lora-model", "fixture:tiny", "--lora-suite", "structure",
        "--lora-recipe", "mlx_backend.lora_gate:UNFREEZE_WITHOUT_KEYS",
    )  # fmt: skip
    # The structure checks fail as items; the lora_watch test fails when it is torn down.
    result.assert_outcomes(passed=2, failed=3, errors=1)
    result.stdout.fnmatch_lines(["*trainable_keys_exact fail*", "*UnhealthyLoRA*"])


def test_plugin_bad_recipe_is_a_usage_error(pytester):
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--lora-model", "fixture:tiny", "--lora-recipe", "nosuch:RECIPE"
    )
    assert result.ret != 0
    assert (
        "--lora-recipe nosuch:RECIPE: cannot import nosuch"
        in result.stdout.str() + result.stderr.str()
    )
