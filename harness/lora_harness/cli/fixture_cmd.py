"""`lora-harness fixture export DIR`: write the built-in model where other tools can use it.

`--name` also takes a converted model, `gguf:FILE[@dtype]` or `real:NAME[@dtype]`: its
mlx-lm folder (converted once into the cache) is printed or copied the same way."""

from __future__ import annotations

from pathlib import Path

from lora_harness.core.errors import EXIT_OK
from lora_harness.core.terminal import printable
from lora_harness.models import fixture, gguf

NAME_HELP = "fixture name (default tiny), or gguf:FILE[@bf16|@float32] or real:NAME[@...]"


def register(commands) -> None:
    parser = commands.add_parser("fixture", help="build or export the built-in fixture model")
    actions = parser.add_subparsers(dest="fixture_action", metavar="ACTION", required=True)
    export = actions.add_parser(
        "export",
        help="write fixture:NAME as an mlx-lm model folder (usable by mlx_lm.lora, mlx_lm.load)",
    )
    export.add_argument("directory", type=Path, help="destination folder")
    export.add_argument("--name", default="tiny", help=NAME_HELP)
    export.set_defaults(handler=handle_export)
    path = actions.add_parser("path", help="print the cached fixture folder, building it if needed")
    path.add_argument("--name", default="tiny", help=NAME_HELP)
    path.set_defaults(handler=handle_path)


def handle_export(args) -> int:
    if _converted(args.name):
        folder = gguf.export(_folder(args.name), args.directory)
        print(f"{printable(args.name)} written to {printable(folder)}")
        return EXIT_OK
    folder = fixture.export(args.name, args.directory)
    print(f"fixture:{printable(args.name)} written to {printable(folder)}")
    return EXIT_OK


def handle_path(args) -> int:
    print(_folder(args.name) if _converted(args.name) else fixture.fixture_path(args.name))
    return EXIT_OK


def _converted(name: str) -> bool:
    return name.startswith(("gguf:", "real:"))


def _folder(spec: str) -> Path:
    from lora_harness.models.sources import resolve

    return resolve(spec).path
