"""Data-parallel LoRA across ranks with MLX's own distributed engine (mx.distributed).

Launched by `mlx.launch` (ring over TCP/Thunderbolt, or MPI): every rank trains the same
recipe on its shard of each batch with gradients averaged across ranks. Afterwards the
ranks all-gather small summaries (fingerprints, counts) so rank 0 can report on all.
A watchdog ends a rank that makes no progress, so a dead peer never hangs the run.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time

import mlx.core as mx

from lora_harness.core import fingerprint, numerics
from lora_harness.core.errors import EXIT_RANK_LOST
from lora_harness.lora import recipe as recipes
from lora_harness.lora import trainer
from lora_harness.runs.training import RanksOutcome, TrainingOutcome, fingerprints, outcome

# Seconds without a finished step before a rank gives up on its peers.
DEFAULT_DISTRIBUTED_TIMEOUT_S = 600.0


def group():
    return mx.distributed.init()


def shard(batch, rank: int, size: int):
    """This rank's rows of a (tokens, lengths) batch, as mlx-lm's batcher splits them."""
    tokens, lengths = batch
    if tokens.shape[0] % size:
        from lora_harness.core.errors import InputError

        raise InputError(f"--batch-size {tokens.shape[0]} must be divisible by the {size} ranks")
    return tokens[rank::size], lengths[rank::size]


def all_gather_ints(values: list[int]) -> list[list[int]]:
    """Each rank's list of ints (same length on every rank), gathered on every rank."""
    local = mx.array([v % (1 << 31) for v in values], dtype=mx.int32)[None]
    gathered = mx.distributed.all_gather(local, stream=mx.cpu)
    return gathered.tolist()


def digest_ints(digests: dict) -> list[int]:
    return [v for name in sorted(digests) for v in digests[name]]


def single_process_reference(ctx, batch, reverse: bool = False) -> dict[str, mx.array]:
    """The same steps in one process: gradients of each rank's shard, averaged locally.

    `reverse` sums the shards in the opposite order: equal in exact arithmetic, so the
    two references differ only by this backend's rounding (the noise floor)."""
    from mlx.utils import tree_map

    from lora_harness.lora.adapters import adapter_weights

    part = ctx.model
    model, _ = part.source.load()
    trainer.prepare_lora_model(model, part.lora, part.recipe)
    optimizer = trainer.make_optimizer(model, part.lora, part.recipe)
    loss_and_grad = part.recipe.value_and_grad(model, part.recipe.loss)
    size = ctx.group.size()
    for _ in range(part.lora.iters):
        total = None
        for rank in reversed(range(size)) if reverse else range(size):
            _, grads = loss_and_grad(model, *shard(batch, rank, size))
            total = grads if total is None else tree_map(lambda a, b: a + b, total, grads)
        optimizer.update(model, tree_map(lambda g: g / size, total))
        mx.eval(model.parameters(), optimizer.state)
    return adapter_weights(model)


def end_rank(rank: int, what: str) -> None:
    """Leave at once with a clear message: a lost peer makes every later collective fail or block."""
    print(
        f"lora-harness: rank {rank}: {what}; another rank probably died or hung (see its log); "
        "ending this rank without a report",
        file=sys.stderr,
        flush=True,
    )
    # os._exit: a normal exit would wait on the collective backend's threads, which never finish.
    os._exit(EXIT_RANK_LOST)


class Watchdog:
    """Ends this rank with a clear message when no step completes within `timeout_s`."""

    def __init__(self, timeout_s: float, rank: int):
        self.timeout_s, self.rank = timeout_s, rank
        self.last = time.monotonic()
        self.done = threading.Event()

    def __enter__(self):
        # Armed only around the phases with collectives: a slow local phase is no hang.
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.done.set()

    def beat(self, *_):
        self.last = time.monotonic()

    def _watch(self):
        while not self.done.wait(1.0):
            if time.monotonic() - self.last > self.timeout_s:
                end_rank(self.rank, f"no progress for {self.timeout_s:.0f} s")


def train_distributed(ctx) -> TrainingOutcome:
    """Each rank trains its shard with gradients averaged; the ranks then compare notes."""
    rank = ctx.group.rank()
    with Watchdog(ctx.distributed_timeout, rank) as watchdog:
        try:
            return _train_ranks(ctx, watchdog)
        except RuntimeError as error:  # the ring backend raises when a peer's socket closes
            end_rank(rank, f"training stopped: {error}")


def _train_ranks(ctx, watchdog) -> TrainingOutcome:
    part = ctx.model
    model = part.lora_model
    rank, size = ctx.group.rank(), ctx.group.size()
    before = fingerprints(model)
    gradient_keys: set[str] = set()  # filled when the compiled step is traced
    optimizer = trainer.make_optimizer(model, part.lora, part.recipe)
    batches = [shard(part.probe_batch, rank, size)] * part.lora.iters
    metrics = trainer.train(
        model,
        optimizer,
        batches,
        part.recipe,
        distributed=True,
        callbacks=[*ctx.step_callbacks, watchdog.beat],
        gradient_keys=gradient_keys,
    )
    result = outcome(model, before, metrics, gradient_keys, optimizer)
    reference = single_process_reference(ctx, part.probe_batch)
    watchdog.beat()  # the local reference run is slow, not hung
    again = single_process_reference(ctx, part.probe_batch, reverse=True)
    watchdog.beat()
    result.ranks = _gather(part, result, (reference, again), rank, size)
    return result


def _gather(part, result, references, rank: int, size: int) -> RanksOutcome:
    """Per-rank summaries, all-gathered so every rank (and the report) sees them all."""
    reference, again = references
    ours = recipes.split_adapter_and_base(part.lora_model)[0]
    distance = numerics.tree_distance(ours, reference)
    floor = numerics.tree_distance(again, reference)
    floor = floor if math.isfinite(floor) else 0.0
    precision = numerics.precision_of_arrays(ours.values())
    # Each optimizer step rounds once more: the rounding budget grows with the steps.
    allowed = numerics.allowed_difference(precision, floor, roundings=part.lora.iters)
    changed = len(fingerprint.changed(result.base_before, result.base_after))
    return RanksOutcome(
        rank=rank,
        size=size,
        adapter_digests=all_gather_ints(digest_ints(result.adapter_after)),
        base_changed=[row[0] for row in all_gather_ints([changed])],
        trainable_arrays=[row[0] for row in all_gather_ints([len(part.trainable_keys())])],
        distance_to_single=distance,
        single_noise_floor=floor,
        allowed_distance=allowed,
    )
