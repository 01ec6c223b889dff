"""`lora-harness train`: train a LoRA adapter with the checked recipe (mlx-lm's format)."""

from __future__ import annotations

from pathlib import Path

from lora_harness.cli import progress
from lora_harness.core.errors import EXIT_OK
from lora_harness.runs import options
from lora_harness.runs.given import Given
from lora_harness.runs.long_train import METRICS_FILE, train_to_folder
from lora_harness.runs.run import settings_from


def register(commands) -> None:
    parser = commands.add_parser(
        "train",
        help="train a LoRA adapter with the working recipe; writes adapters and metrics.jsonl",
        description=(
            "Trains --iters steps over --data and writes adapter_config.json, adapters.safetensors, "
            f"checkpoints and {METRICS_FILE} (one line per step) to --adapter-path."
        ),
    )
    options.add_to_argparse(parser, options.TRAIN_OPTIONS)
    parser.add_argument(
        "--adapter-path",
        type=Path,
        default=Path("adapters"),
        help="output folder (default adapters)",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress output")
    parser.set_defaults(handler=handle)


def handle(args) -> int:
    settings = settings_from(Given.of(args))
    show = progress.Progress(
        settings.lora.iters, enabled=not args.quiet, lines_every=max(1, settings.lora.iters // 10)
    )
    result = train_to_folder(settings, args.adapter_path, args.save_every, on_step=show.on_step)
    show.note(
        f"trained {result['steps']} steps, last loss {result['last_loss']:.4f}; adapter: {args.adapter_path}"
    )
    return EXIT_OK
