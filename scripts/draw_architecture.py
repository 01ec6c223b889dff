"""Redraw docs/architecture.png from the code's own imports.

    python scripts/draw_architecture.py            # writes docs/architecture.png
    python scripts/draw_architecture.py --check    # exit 1 on an import circle between folders

Each box is one folder of the `lora_harness` package (or a top-level module), sized by its
lines; each arrow is "imports", labelled with how many import statements make it. Boxes stand
on floors: a folder stands one floor above the highest folder it imports, so every arrow
points down and a circle (which has no floor) is reported instead of drawn.
"""

from __future__ import annotations

import argparse
import ast
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SOURCE_FOLDERS = ("harness", "checks", "reports")  # each holds lora_harness/... under it
PACKAGE = "lora_harness"


def source_files() -> dict[str, Path]:
    """Module name -> file, for every .py file under the three source folders."""
    modules = {}
    for folder in SOURCE_FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[0] != PACKAGE or "__pycache__" in parts:
                continue
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


def room_of(module: str) -> str:
    """The box a module is drawn in: its folder under lora_harness, or the module itself."""
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def imported_modules(module: str, path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found += [f"{base}.{alias.name}" for alias in node.names] + [base]
    return [name for name in found if name == PACKAGE or name.startswith(PACKAGE + ".")]


def import_graph(modules: dict[str, Path]) -> Counter:
    """(from room, to room) -> number of import statements between different rooms."""
    edges: Counter = Counter()
    for module, path in modules.items():
        targets = {room_of(t) for t in imported_modules(module, path) if _known(t, modules)}
        for target in targets - {room_of(module)}:
            edges[(room_of(module), target)] += 1
    return edges


def _known(name: str, modules: dict[str, Path]) -> bool:
    return name in modules and name != PACKAGE


def floors(rooms: list[str], edges: Counter) -> dict[str, int]:
    """Floor 1 imports no other room; every other room stands above what it imports."""
    needs = {room: {b for (a, b) in edges if a == room} for room in rooms}
    floor: dict[str, int] = {}
    while len(floor) < len(rooms):
        ready = [r for r in rooms if r not in floor and needs[r] <= floor.keys()]
        if not ready:
            stuck = sorted(r for r in rooms if r not in floor)
            raise SystemExit(f"import circle among: {', '.join(stuck)}")
        for room in ready:
            floor[room] = 1 + max((floor[n] for n in needs[room]), default=0)
    return floor


def draw(rooms, sizes, floor, edges, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_floor: dict[int, list[str]] = {}
    for room in sorted(rooms, key=lambda r: -sizes[r]):
        by_floor.setdefault(floor[room], []).append(room)
    top = max(by_floor)
    width = max(len(row) for row in by_floor.values())
    fig, ax = plt.subplots(figsize=(3.0 * width + 1, 1.3 * top + 1))
    place = {}
    for level, row in by_floor.items():
        for i, room in enumerate(row):
            place[room] = ((i + 0.5) * width / len(row), level)
    for (a, b), count in edges.items():
        (x0, y0), (x1, y1) = place[a], place[b]
        ax.annotate(
            "",
            xy=(x1, y1 + 0.22),
            xytext=(x0, y0 - 0.22),
            arrowprops={"arrowstyle": "->", "color": "#8899aa", "lw": 0.6 + 0.15 * count},
        )
    for room, (x, y) in place.items():
        name = "__init__" if room == PACKAGE else room.removeprefix(PACKAGE + ".")
        label = f"{name}\n{sizes[room]:,} lines"
        ax.text(
            x,
            y,
            label,
            ha="center",
            va="center",
            fontsize=9,
            bbox={"boxstyle": "round", "facecolor": "#eef3f8", "edgecolor": "#335577"},
        )
    ax.set_xlim(-0.2, width + 0.2)
    ax.set_ylim(0.4, top + 0.6)
    ax.axis("off")
    ax.set_title(f"{PACKAGE}: folders by floor, arrows = imports (every arrow points down)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify: no circle, no drawing")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "architecture.png")
    args = parser.parse_args(argv)
    modules = source_files()
    rooms = sorted({room_of(m) for m in modules if m != PACKAGE} | {PACKAGE})
    sizes = Counter()
    for module, path in modules.items():
        sizes[room_of(module)] += len(path.read_text(encoding="utf-8").splitlines())
    edges = import_graph(modules)
    floor = floors(rooms, edges)
    for room in sorted(rooms, key=lambda r: (-floor[r], r)):
        print(f"floor {floor[room]:2d}  {room}  ({sizes[room]} lines)")
    print(f"{len(rooms)} folders, {len(edges)} arrows, 0 circles")
    if not args.check:
        draw(rooms, sizes, floor, edges, args.out)
        print(f"wrote {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
