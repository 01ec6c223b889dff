"""Guard mlx-lm's own trainer: `mlx_lm.tuner.trainer.train`, unmodified, checked as it runs.

`mlx_lm.lora.run` rebinds its `training_callback` argument to the reporting callbacks
(wandb/swanlab) and `train_model` builds the optimizer inside, so neither lets an observer
in. The guard does what `train_model` does, with mlx-lm's own functions (freeze,
`linear_to_lora_layers`, the resume load, `save_config`, `TrainingArgs`, `build_schedule`,
the optimizer class by name), and then calls mlx-lm's `train()` with two of its own
parameters: `training_callback` (losses) and `iterate_batches` (mlx-lm's batches, passed
through; asking for batch k+1 means step k, its report and its save are done). The loop,
the compiled step, gradient accumulation and checkpointing are mlx-lm's.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import mlx.core as mx
import numpy as np

from lora_harness.core.errors import InputError
from lora_harness.runs.guard_args import lora_config
from lora_harness.runs.guard_monitor import GuardStop
from lora_harness.runs.watch import Watch


@contextlib.contextmanager
def _atomic_saves():
    """mlx-lm's train() writes adapters.safetensors and each checkpoint in place, so a kill
    or a full disk mid-save left a truncated file under the very name that mlx_lm.load and
    --resume-adapter-file read. While it runs, its saves go through a temporary name and a
    rename (and a failed write is the OSError it is, not an internal error)."""
    from mlx_lm.tuner import trainer

    from lora_harness.lora.adapters import replace_file, save_tensors

    real = trainer.mx

    class AtomicSaves:
        def __getattr__(self, name):
            return getattr(real, name)

        @staticmethod
        def save_safetensors(path, arrays, metadata=None):
            if metadata is not None:  # not what train() passes; kept as mlx writes it
                return real.save_safetensors(path, arrays, metadata=metadata)
            replace_file(Path(path), lambda temporary: save_tensors(temporary, arrays))

    trainer.mx = AtomicSaves()
    try:
        yield
    finally:
        trainer.mx = real


class GuardedRun:
    """One guarded mlx_lm.lora run; `monitor` holds every result, `stopped` the stop."""

    def __init__(
        self,
        args,
        check_every: int,
        on_report=None,
        hooks=(),
        optimizer=None,
        check_resume: bool = False,
        inference_format: str = "auto",
    ):
        self.args, self.check_every, self.on_report = args, check_every, on_report
        # The user's own optimizer (and schedule), used instead of the one the config builds;
        # lr_schedule_applied holds it to the configured lr_schedule.
        self.user_optimizer, self.check_resume = optimizer, check_resume
        self.inference_format = inference_format  # how the adapter will be prompted
        self.hooks = list(hooks)  # callables(run, iteration): tests plant faults here
        self.watch = self.monitor = self.model = self.optimizer = None
        self.steps: list[dict] = []  # mlx-lm's loss reports
        self.batches: list = []  # (tokens, lengths) per step, when record_batches
        self.record_batches = False
        self.source_config: dict = {}

    def run(self) -> Watch:
        from mlx_lm.tuner.datasets import CacheDataset, load_dataset
        from mlx_lm.tuner.trainer import train
        from mlx_lm.utils import load

        args = self.args
        np.random.seed(args.seed)
        model, tokenizer = load(args.model, tokenizer_config={"trust_remote_code": False})
        self.model, self.tokenizer = model, tokenizer
        train_set, valid_set, _ = load_dataset(args, tokenizer)
        train_data = CacheDataset(train_set)
        self.train_set = train_set
        training_args = self._prepare(model, tokenizer, train_data)
        try:
            with self.watch, _atomic_saves():
                self.monitor = self.watch.monitor
                train(
                    model=model,
                    args=training_args,
                    optimizer=self.optimizer,
                    train_dataset=train_data,
                    val_dataset=CacheDataset(valid_set) if len(valid_set) else None,
                    training_callback=self._callback(),
                    iterate_batches=self._iterate_batches,
                )
                self._finish(training_args)
        except GuardStop:
            pass  # kept on the monitor; the report says where and why
        finally:
            self.monitor = self.watch.monitor
        return self.watch

    # -- what train_model does, with mlx-lm's functions ------------------------------------
    def _prepare(self, model, tokenizer, train_data):
        from mlx_lm.tuner.trainer import TrainingArgs
        from mlx_lm.tuner.utils import linear_to_lora_layers
        from mlx_lm.utils import save_config

        from lora_harness.lora import expectations as expect_mod

        args = self.args
        mx.random.seed(args.seed)
        model.freeze()
        if args.num_layers > len(model.layers):
            raise InputError(
                f"--num-layers {args.num_layers} is more than the model's {len(model.layers)} "
                "blocks; mlx_lm.lora refuses it too (use -1 for all)"
            )
        lora = lora_config(args)
        self.source_config = _config_of(args.model)
        expectations = expect_mod.derive(self.source_config, model, lora)
        linear_to_lora_layers(
            model, args.num_layers, args.lora_parameters, use_dora=args.fine_tune_type == "dora"
        )
        if args.resume_adapter_file is not None:
            model.load_weights(args.resume_adapter_file, strict=False)
        adapter_path = Path(args.adapter_path)
        adapter_path.mkdir(parents=True, exist_ok=True)
        save_config(vars(args), adapter_path / "adapter_config.json")
        self.optimizer = self.user_optimizer or make_optimizer(args)
        self.watch = Watch(model, self.optimizer, lora=lora)
        self.watch.expectations = expectations
        has_text = not str(args.model).startswith("random:")
        self.watch._guard_options = {
            "check_every": self.check_every,
            "tokenizer": tokenizer,
            "has_text": has_text,
            "on_report": self.on_report,
            **self._probes(train_data),
        }
        return TrainingArgs(
            batch_size=args.batch_size,
            iters=args.iters,
            val_batches=args.val_batches,
            steps_per_report=args.steps_per_report,
            steps_per_eval=args.steps_per_eval,
            steps_per_save=args.save_every,
            adapter_file=adapter_path / "adapters.safetensors",
            max_seq_length=args.max_seq_length,
            grad_checkpoint=args.grad_checkpoint,
            grad_accumulation_steps=args.grad_accumulation_steps,
        )

    def _probes(self, train_data) -> dict:
        """Trainer-behaviour checks at the start, on mlx-lm's own trainer and the run's data."""
        from mlx_lm.tuner.trainer import iterate_batches

        from lora_harness.checks.lr_schedule_applied import ScheduleProbe
        from lora_harness.lora.accumulation import AccumulationProbe, mlx_lm_trainer

        args, start = self.args, []
        k = args.grad_accumulation_steps
        context = {
            "schedule": ScheduleProbe(
                configured_lr(args), k, str(args.lr_schedule or args.learning_rate)
            )
        }
        context["chat_format"] = self._chat_probe()
        start.append("chat_format_parity")
        if k == 1 and not self.check_resume:
            return {"context": context, "extra": {"start": start}}
        numpy_state = np.random.get_state()  # the run's own batch order must not move
        batches = iterate_batches(train_data, args.batch_size, args.max_seq_length, loop=True)
        micro = [next(batches) for _ in range(max(k + max(1, k // 2), 4 * k))]
        np.random.set_state(numpy_state)
        if k > 1:
            context["accumulation"] = AccumulationProbe(mlx_lm_trainer, "mlx_lm", k, micro)
            start.append("grad_accumulation_matches_batch")
        if self.check_resume:
            from lora_harness.lora.resume_probe import mlx_lm_probe

            context["resume"] = mlx_lm_probe(lambda: make_optimizer(args), micro[: 4 * k], k)
            start.append("resume_continues_run")
        return {"context": context, "extra": {"start": start}}

    def _chat_probe(self):
        from lora_harness.checks.chat_format_parity import ChatFormatProbe, default_inference

        rows = [self.train_set[i] for i in range(min(8, len(self.train_set)))]
        inference = self.inference_format
        if inference == "auto":
            inference = default_inference(self.tokenizer)
        return ChatFormatProbe(
            self.train_set.process, rows, self.tokenizer, inference, bool(self.args.mask_prompt)
        )

    # -- the hooks mlx-lm's train() offers --------------------------------------------------
    def _iterate_batches(
        self, dataset, batch_size, max_seq_length, loop=False, seed=None, comm_group=None
    ):
        from mlx_lm.tuner.trainer import iterate_batches

        batches = iterate_batches(dataset, batch_size, max_seq_length, loop, seed, comm_group)
        if not loop:  # validation: pass through
            yield from batches
            return
        previous = None
        for index, batch in enumerate(batches):
            if index > 0:
                self._after_step(index, previous)
            if self.record_batches:
                self.batches.append(batch)
            previous = batch
            yield batch

    def _after_step(self, iteration: int, batch) -> None:
        """Step `iteration` (with its report and save) is done; check if one is due."""
        for hook in self.hooks:
            hook(self, iteration)
        self.monitor.last_batch = batch
        self.monitor.iteration = iteration
        if iteration % self.args.save_every == 0:
            self._checkpoint(iteration)
        else:
            self.monitor.step(iteration, batch)

    def _checkpoint(self, iteration: int) -> None:
        folder = Path(self.args.adapter_path)
        self.monitor.checkpoint(
            iteration, folder / f"{iteration:07d}_adapters.safetensors", self._adapter_digests()
        )

    def _adapter_digests(self) -> dict:
        from mlx.utils import tree_flatten

        from lora_harness.core import fingerprint

        return fingerprint.fingerprint(dict(tree_flatten(self.model.trainable_parameters())))

    def _finish(self, training_args) -> None:
        iters = self.args.iters
        for hook in self.hooks:
            hook(self, iters)
        self.monitor.iteration = iters
        if iters % self.args.save_every == 0:
            self._checkpoint(iters)
        self.monitor.end(iters, training_args.adapter_file, self._adapter_digests())

    def _callback(self):
        from mlx_lm.tuner.callbacks import TrainingCallback

        guarded = self

        class _Report(TrainingCallback):
            def on_train_loss_report(self, info: dict):
                guarded.steps.append(_step_row(info, guarded.steps))
                guarded.watch.losses.append(
                    {
                        "iteration": info["iteration"],
                        "loss": float(info["train_loss"]),
                        "loss_tokens": guarded.steps[-1]["loss_tokens"],
                    }
                )

        return _Report()


def configured_lr(args):
    """The lr the config asks for, read afresh: build_schedule(lr_schedule) or learning_rate."""
    from mlx_lm.tuner.utils import build_schedule

    return build_schedule(args.lr_schedule) if args.lr_schedule else float(args.learning_rate)


def make_optimizer(args):
    """mlx_lm.lora's optimizer: the class by name, its config, build_schedule's lr."""
    import mlx.optimizers as optim
    from mlx_lm.tuner.utils import build_schedule

    classes = {
        "adam": optim.Adam,
        "adamw": optim.AdamW,
        "muon": optim.Muon,
        "sgd": optim.SGD,
        "adafactor": optim.Adafactor,
    }
    name = str(args.optimizer).lower()
    if name not in classes:
        raise InputError(f"--optimizer {args.optimizer}: use one of {', '.join(classes)}")
    lr = build_schedule(args.lr_schedule) if args.lr_schedule else args.learning_rate
    return classes[name](learning_rate=lr, **(args.optimizer_config or {}).get(name, {}))


def _step_row(info: dict, previous: list[dict]) -> dict:
    """mlx-lm's loss report as the report's step row (the window's mean, as measured)."""
    tokens = info["trained_tokens"] - sum(p["loss_tokens"] for p in previous)
    per_second = info.get("iterations_per_second") or 0.0
    return {
        "iteration": info["iteration"],
        "loss": float(info["train_loss"]),
        "loss_tokens": int(tokens),
        "step_time_s": 1.0 / per_second if per_second > 0 else 0.0,
        "tokens_per_second": info.get("tokens_per_second"),
        "peak_memory_gb": float(info.get("peak_memory", 0.0)),
        "learning_rate": float(info.get("learning_rate", 0.0)),
    }


def _config_of(model_path: str) -> dict:
    import json

    path = Path(model_path) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}
