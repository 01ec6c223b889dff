"""`watch()`: the gate's checks around any training loop, the user's own included.

    with lora_harness.watch(model, optimizer, lora=lora, config=base_config) as w:
        my_train_loop(model, optimizer, on_loss=w.on_loss)   # or train(..., training_callback=w.callback)
    w.assert_healthy()

On entry: the expectations (from the base model's config, or from the walk of a model not
yet converted, never from the converted model) and fingerprints of every tensor. Inside:
`optimizer.update` is wrapped, so the gradient tree's names are recorded when the step is
traced (compiled loops included); losses arrive through `w.on_loss` or `w.callback` (an
mlx-lm TrainingCallback). On exit: fingerprints again and the optimizer's state. The
checks are the gate's own Check classes, run against a context with the same typed parts
(`ctx.model`, `ctx.training`, `ctx.recipe`, `ctx.lora`) as a harness run.
"""

from __future__ import annotations

import dataclasses
from functools import cached_property

from mlx.utils import tree_flatten

from lora_harness.core.checking import CheckResult
from lora_harness.core.errors import InputError
from lora_harness.lora import expectations as expect_mod
from lora_harness.lora import recipe as recipes
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.reports import json_report
from lora_harness.runs import suites
from lora_harness.runs.training import TrainingOutcome, fingerprints, optimizer_state_keys

# The gate's checks that need no harness-owned data (probe batch, generations, files).
WATCHED = suites.STRUCTURE + [
    "gradient_tree_matches_trainable",
    "optimizer_state_matches_trainable",
    "frozen_base_unchanged",
    "adapters_changed",
    "loss_finite_and_decreasing",
]


class UnhealthyLoRA(AssertionError):
    """Raised by `assert_healthy`: one line per failed check, with its remedy."""


class _WatchedModel:
    """The `ctx.model` part the checks read: the LoRA model, its expectations, its keys."""

    def __init__(self, model):
        self.lora_model = model
        self.expectations: expect_mod.Expectations | None = None  # set on entry

    def trainable_keys(self) -> set[str]:
        return {name for name, _ in tree_flatten(self.lora_model.trainable_parameters())}


class Watch:
    def __init__(
        self, model, optimizer=None, lora=None, config=None, expect=None, count=None, guard=None
    ):
        self.model = _WatchedModel(model)  # `ctx.model`, as the checks read it
        self.optimizer = optimizer
        self.lora = _lora_config(lora)
        self.recipe = dataclasses.replace(
            recipes.CORRECT, name="watch", count_trainable=count or recipes.CORRECT.count_trainable
        )
        self._config, self._pins = config, expect_mod.parse_pins(_pin_items(expect))
        self.losses: list[dict] = []
        self.gradient_keys: set[str] = set()
        self._update_seen = False
        self.asserted = False  # the pytest fixture asserts at teardown when the test did not
        self._before = self._outcome = self._loop_error = None
        self.expectations = None  # set before entry to skip derivation (the guard derives early)
        # guard: {"check_every": N, "stop": True, "live": path}; checks mid-run (guard/monitor.py)
        self._guard_options, self.monitor = guard, None

    # -- the context manager -------------------------------------------------------
    def __enter__(self) -> Watch:
        self.model.expectations = self.expectations or self._derive()
        self._converted_at_entry = bool(recipes.adapter_module_names(self.model.lora_model))
        adapter, base = fingerprints(self.model.lora_model)
        self._before = (adapter, _as_unconverted(self.model.lora_model, base))
        self._wrap_optimizer()
        if self._guard_options is not None:
            from lora_harness.runs.guard_monitor import Monitor

            self.monitor = Monitor(self, **self._guard_options)
            self.monitor.start()
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        self._unwrap_optimizer()
        if exc_type is not None:
            # The loop's own exception is the failure to report; a step that raised while
            # being compiled may leave placeholders in the model that cannot be evaluated.
            self.asserted = True
            self._loop_error = exc_type.__name__
            return
        self._outcome = self.snapshot()

    def snapshot(self) -> TrainingOutcome:
        """The training state now (fingerprints again): what the checks read at any moment."""
        adapter_after, base_after = fingerprints(self.model.lora_model)
        return TrainingOutcome(
            metrics=list(self.losses),
            gradient_keys=set(self.gradient_keys),
            optimizer_state_keys=optimizer_state_keys(self.optimizer) if self.optimizer else set(),
            base_before=self._before[1],
            base_after=_as_unconverted(self.model.lora_model, base_after),
            adapter_before=self._before[0],
            adapter_after=adapter_after,
            optimizer=self.optimizer,
        )

    # -- what the loop reports -------------------------------------------------------
    def on_loss(self, step: int, loss, tokens: int | None = None) -> None:
        """Report one step's (or report window's) training loss."""
        value = float(loss.item() if hasattr(loss, "item") else loss)
        self.losses.append({"iteration": int(step), "loss": value, "loss_tokens": tokens})
        if self.monitor is not None:  # guarded: the checks run when the interval is reached
            self.monitor.step(int(step))

    def on_save(self, step: int, path) -> None:
        """Report that the loop saved an adapter checkpoint at `path` after step `step`.

        Guarded (watch(..., guard={...})), the file is checked at once against the adapters
        in memory, which the loop has not moved since it saved them."""
        if self.monitor is not None:
            from lora_harness.core import fingerprint

            saved = fingerprint.fingerprint(
                dict(tree_flatten(self.model.lora_model.trainable_parameters()))
            )
            self.monitor.checkpoint(int(step), path, saved)

    @cached_property
    def callback(self):
        """An mlx-lm TrainingCallback: `train(..., training_callback=w.callback)`."""
        from mlx_lm.tuner.callbacks import TrainingCallback

        watch = self

        class _Callback(TrainingCallback):
            def on_train_loss_report(self, train_info: dict):
                watch.on_loss(train_info["iteration"], train_info["train_loss"])

        return _Callback()

    # -- the checks the run context offers -------------------------------------------
    @property
    def finished(self) -> bool:
        """True once the with-block has ended (the report can be read)."""
        return self._outcome is not None

    @property
    def training(self) -> TrainingOutcome:
        if self._loop_error:
            raise InputError(f"watch(): the loop raised {self._loop_error}; nothing to check")
        if self._outcome is None:
            raise InputError("watch(): read the report after the with-block has ended")
        return self._outcome

    def offers(self, capability: str) -> bool:
        return capability == "weights"

    def why_not(self, capability: str) -> str:
        return f"watch() observes a training loop; {capability} checks need lora-harness run"

    def results(self) -> list[CheckResult]:
        self.training  # noqa: B018  (raises InputError inside the with-block or after a crash)
        registry = suites.all_checks()
        results = []
        for name in WATCHED:
            reason = self._not_seen(name)
            if reason:
                check = registry[name]
                results.append(CheckResult(name, "skip", check.summary, message=reason))
            else:
                results.append(registry[name]().run(self))
        return results

    def report(self) -> dict:
        """The checks' results and the expectations, in the report's shapes."""
        results = [r.to_dict() for r in self.results()]
        return {
            "kind": "watch",
            "expectations": self.model.expectations.to_dict(),
            "checks": results,
            "metrics": {"steps": self.losses},
            "summary": json_report.summarise(results),
            **({"guard": self.monitor.section()} if self.monitor else {}),
        }

    def assert_healthy(self) -> dict:
        """The report, or UnhealthyLoRA naming every failed check and its remedy."""
        self.asserted = True
        report = self.report()
        bad = [c for c in report["checks"] if c["status"] in ("fail", "error")]
        if bad:
            lines = [f"{c['name']} {c['status']}: {c['message']} -> {c['remedy']}" for c in bad]
            raise UnhealthyLoRA("LoRA training is not healthy:\n  " + "\n  ".join(lines))
        return report

    # -- internals ------------------------------------------------------------------
    def _not_seen(self, name: str) -> str | None:
        if name == "loss_finite_and_decreasing" and not self.losses:
            return "the loop reported no losses: call w.on_loss(step, loss) or pass w.callback"
        if name == "gradient_tree_matches_trainable" and not self._update_seen:
            return "optimizer.update was never seen: pass the optimizer to watch()"
        if name == "optimizer_state_matches_trainable" and self.optimizer is None:
            return "no optimizer was passed to watch()"
        if name == "adapters_changed" and not self._converted_at_entry:
            return "watch() began before conversion: the adapters' initial values were not seen"
        return None

    def _derive(self) -> expect_mod.Expectations:
        converted = bool(recipes.adapter_module_names(self.model.lora_model))
        config = _config_dict(self._config)
        if converted and not expect_mod.derivable_from_config(config):
            raise InputError(
                "watch(): the model is already converted, so its expectations need the base "
                "model's config (config=model.args or the config.json dict of a llama/mistral/"
                "qwen model); otherwise enter watch() before converting"
            )
        return expect_mod.derive(config, self.model.lora_model, self.lora, self._pins)

    def _wrap_optimizer(self) -> None:
        if self.optimizer is None:
            return
        original = self.optimizer.update

        def update(model, gradients):
            # Runs when a compiled step is traced, too: the names are known without a probe.
            self._update_seen = True
            self.gradient_keys.update(name for name, _ in tree_flatten(gradients))
            return original(model, gradients)

        self.optimizer.update = update

    def _unwrap_optimizer(self) -> None:
        if self.optimizer is not None and "update" in vars(self.optimizer):
            del self.optimizer.update


def watch(
    model, optimizer=None, *, lora=None, config=None, expect=None, count=None, guard=None
) -> Watch:
    """Observe a training loop with the gate's checks; see the module docstring.

    lora:   a LoRAConfig, or a dict of its fields / an mlx-lm adapter config
            ({"num_layers", "fine_tune_type", "lora_parameters": {rank, scale, keys}}).
    config: the *base* model's config (model.args, or config.json as a dict).
    expect: pins, e.g. {"trainable_arrays": 392}.
    count:  your trainer's own trainable-array counter, held to the flattened tree.
    guard:  check mid-run too, e.g. {"check_every": 50}: structure at entry, the frozen base,
            gradient/optimizer keys and finite values every N steps of `w.on_loss`, each
            `w.on_save(step, path)` file; the first failure raises GuardStop from the loop.
    """
    return Watch(model, optimizer, lora, config, expect, count, guard)


def _lora_config(lora) -> LoRAConfig:
    """A LoRAConfig from itself, a dict of its fields, or an mlx-lm adapter config dict."""
    if isinstance(lora, LoRAConfig):
        lora.validate(_api_name)
        return lora
    if lora is None:
        return LoRAConfig()
    lora = dict(lora)
    fields = LoRAConfig.__dataclass_fields__
    nested = lora.pop("lora_parameters", None)
    unknown = sorted(set(lora if nested is None else nested) - set(fields))
    if unknown:  # a typo must not silently fall back to a default
        raise InputError(f"watch(lora=...): {unknown[0]!r} is unknown; use {', '.join(fields)}")
    values = {k: v for k, v in {**lora, **(nested or {})}.items() if k in fields}
    return LoRAConfig.checked(values, _api_name)


def _api_name(name: str) -> str:
    return f"watch(lora=...): {name}"


def _config_dict(config) -> dict:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


def _pin_items(expect) -> list[str]:
    if not expect:
        return []
    if isinstance(expect, dict):
        return [f"{name}={value}" for name, value in expect.items()]
    return list(expect)


def _as_unconverted(model, base: dict) -> dict:
    """Base tensor names as before conversion: `x.q_proj.linear.weight` -> `x.q_proj.weight`."""
    adapters = set(recipes.adapter_module_names(model))
    renamed = {}
    for name, digest in base.items():
        parts = name.split(".")
        for cut in range(1, len(parts) - 1):
            if ".".join(parts[:cut]) in adapters and parts[cut] in ("linear", "embedding"):
                name = ".".join(parts[:cut] + parts[cut + 1 :])
                break
        renamed[name] = digest
    return renamed
