"""Data-parallel LoRA across ranks with MLX's own distributed engine (mx.distributed).

Launched by `mlx.launch` (ring over TCP/Thunderbolt, MPI, or NCCL on NVIDIA GPUs): every rank
trains the same recipe on its shard of each batch with gradients averaged across ranks.
Afterwards the ranks all-gather small summaries (fingerprints, counts) so rank 0 can report
on all. A watchdog ends a rank that makes no progress, so a dead peer never hangs the run.

Collectives name no stream: given none, each MLX backend (>= 0.29) runs them on the stream
it supports, ring, MPI and JACCL on the CPU and NCCL on the GPU. `stream=mx.cpu`, as mlx-lm's
trainer passes, fails under NCCL with "There is no Stream(gpu, N) in current thread".

Errors are classified, not guessed: only a lost connection, a collective timeout or the
watchdog means that another rank died or hung (exit 5, no report). Any other error is this
rank's own: the checks report it and the CLI exits with EXIT_RANK_ERROR.
"""

from __future__ import annotations

import math
import os
import re
import sys
import threading
import time
from functools import partial

import mlx.core as mx

from lora_harness.core import fingerprint, numerics
from lora_harness.core.errors import EXIT_RANK_LOST
from lora_harness.lora import recipe as recipes
from lora_harness.lora import trainer
from lora_harness.runs.training import RanksOutcome, TrainingOutcome, fingerprints, outcome

# Seconds without a finished step before a rank gives up on its peers.
DEFAULT_DISTRIBUTED_TIMEOUT_S = 600.0

# MLX's words when the link to another rank breaks or a collective gives up waiting on it:
# the ring backend's lost socket, NCCL's remote and network errors, a collective timeout.
PEER_LOST = re.compile(
    r"connection to a peer was lost|ncclRemoteError|remote process exited"
    r"|ncclSystemError|collective.*tim(ed|e)\s?out",
    re.IGNORECASE,
)


def group():
    return mx.distributed.init()


def rank() -> int:
    return group().rank()


def peer_lost(error: BaseException) -> bool:
    """True when `error` says another rank went away; anything else is this rank's own error."""
    return isinstance(error, RuntimeError) and bool(PEER_LOST.search(str(error)))


def _collective(operation, array: mx.array) -> mx.array:
    """One evaluated collective, on the stream its backend supports (no stream named)."""
    result = operation(array)
    mx.eval(result)
    return result


def barrier(timeout_s: float) -> None:
    """Wait until every rank gets here; a lost or silent peer ends this rank (exit 5)."""
    this = rank()
    with Watchdog(timeout_s, this):
        try:
            _collective(mx.distributed.all_sum, mx.array(1.0))
        except RuntimeError as error:
            if peer_lost(error):
                end_rank(this, f"waiting for the other ranks: {error}")
            raise


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
    return _collective(mx.distributed.all_gather, local).tolist()


def digest_ints(digests: dict) -> list[int]:
    return [v for name in sorted(digests) for v in digests[name]]


def single_process_reference(ctx, batch, reverse: bool = False) -> dict[str, mx.array]:
    """The same steps in one process: each rank's shard's gradients, averaged locally.

    Compiled like the ranks' own step, so that both round alike. An eager step rounds its
    last bits differently on a GPU, and Adam, which moves a weight by about the learning
    rate whatever the size of its gradient, turns that into visible differences in the few
    weights whose gradient is all rounding (2 H100s: 0.8-10% of the largest adapter weight
    on the fixture, against 0 for this compiled reference). `reverse` sums the shards in
    the opposite order: equal in exact arithmetic, so two references differ only by this
    backend's rounding (the noise floor).
    """
    from mlx.utils import tree_map

    from lora_harness.lora.adapters import adapter_weights

    part = ctx.model
    model, _ = part.source.load()
    trainer.prepare_lora_model(model, part.lora, part.recipe)
    optimizer = trainer.make_optimizer(model, part.lora, part.recipe)
    loss_and_grad = part.recipe.value_and_grad(model, part.recipe.loss)
    size = ctx.group.size()
    state = [model.state, optimizer.state, mx.random.state]

    @partial(mx.compile, inputs=state, outputs=state)
    def step(*shards):
        total, losses = None, []
        for tokens, lengths in zip(shards[::2], shards[1::2], strict=True):
            (loss, _), grads = loss_and_grad(model, tokens, lengths)
            total = grads if total is None else tree_map(lambda a, b: a + b, total, grads)
            losses.append(loss)
        optimizer.update(model, tree_map(lambda g: g / size, total))
        return losses

    order = reversed(range(size)) if reverse else range(size)
    flat = [array for rank in order for array in shard(batch, rank, size)]
    model.train()
    for _ in range(part.lora.iters):
        mx.eval(step(*flat), state)
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
        except RuntimeError as error:
            if peer_lost(error):
                end_rank(rank, f"training stopped: {error}")
            raise  # this rank's own error: the checks report it, the CLI exits EXIT_RANK_ERROR


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
