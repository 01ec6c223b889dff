"""The guard's overhead: `lora-harness guard` / the same mlx_lm.lora run unguarded.

Both sides are a whole mlx_lm.lora run from the same flags, data and seed: the plain side
calls mlx-lm's own `load`, `load_dataset` and `train_model`; the guarded side is the
guard's `GuardedRun` at the default check interval, its checkpoints checked at every save.
Timed in interleaved pairs, so drift on a shared machine falls on both sides alike.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import statistics
import tempfile
import time
from pathlib import Path

from lora_harness.bench import spread


def guard_overhead(source, lora, steps: int, pairs: int, check_every: int) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        data = _data(Path(folder) / "data")
        flags = {
            "model": str(source.path),
            "data": str(data),
            "num_layers": lora.num_layers,
            "iters": steps,
            "batch_size": lora.batch_size,
            "learning_rate": lora.learning_rate,
            "save_every": check_every,
            "steps_per_report": 10,
            "steps_per_eval": 10**9,
            "val_batches": 1,
            "seed": lora.seed,
        }
        _pair(flags, folder, check_every)  # warm-up: imports and kernels once per process
        samples = [_pair(flags, folder, check_every) for _ in range(pairs)]
    ratios = [s["guarded_s"] / s["plain_s"] for s in samples]
    return {
        "ratio": statistics.median(ratios),
        "spread": spread.summarise(ratios),
        "seconds": {k: statistics.median(s[k] for s in samples) for k in samples[0]},
        "goal": "<= 1.02 at the default interval",
        "samples": samples,
        "settings": {
            "steps": steps,
            "pairs": pairs,
            "check_every": check_every,
            "save_every": check_every,
        },
    }


def _pair(flags: dict, folder: str, check_every: int) -> dict:
    plain = _timed(lambda: _plain(flags, folder))
    gc.collect()
    guarded, checks = _timed(lambda: _guarded(flags, folder, check_every))
    gc.collect()
    return {"plain_s": plain[0], "guarded_s": guarded, "checks_s": checks}


def _timed(function):
    tic = time.perf_counter()
    value = function()
    return time.perf_counter() - tic, value


def _plain(flags: dict, folder: str) -> None:
    import numpy as np
    from mlx_lm import lora
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load

    from lora_harness.runs.guard_args import namespace

    args = namespace({**flags, "adapter_path": f"{folder}/plain"})
    with _quiet():
        np.random.seed(args.seed)
        model, tokenizer = load(args.model)
        train_set, valid_set, _ = load_dataset(args, tokenizer)
        lora.train_model(args, model, train_set, valid_set)


def _guarded(flags: dict, folder: str, check_every: int) -> float:
    from lora_harness.runs.guard_args import namespace
    from lora_harness.runs.guard_mlx_lm import GuardedRun

    args = namespace({**flags, "adapter_path": f"{folder}/guarded"})
    run = GuardedRun(args, check_every, inference_format="text")
    with _quiet():
        run.run()
    if run.monitor.stopped:
        raise RuntimeError(f"the guarded bench run stopped: {run.monitor.stopped}")
    return run.monitor.checks_seconds


def _data(folder: Path) -> Path:
    from lora_harness.text.data import default_rows

    folder.mkdir(parents=True, exist_ok=True)
    for split, count, seed in (("train", 64, 0), ("valid", 8, 7)):
        rows = "".join(json.dumps(r) + "\n" for r in default_rows(count, seed=seed))
        (folder / f"{split}.jsonl").write_text(rows)
    return folder


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield
