"""The plan's accuracy at 7B on a GPU, one training shape at a time (issue #28).

Each row is written to $OUT/plan_grid.json as soon as it is measured, so a call that the
device machine cuts short still brings back what it measured. Run on the device machine
after the mlx[cuda] install (../shared/notes/GPU.md):

    OUT=/tmp/out python3 scripts/gpu_plan_grid.py
"""

import json
import os
import time

import mlx.core as mx

from lora_harness.bench import plan_bench
from lora_harness.lora.lora_config import LoRAConfig
from lora_harness.models.sources import resolve

# Cheapest first: a cut call keeps the shapes most users train at.
SHAPES = [(1, 512, False), (1, 2048, False), (4, 2048, False), (4, 2048, True)]
SHAPES += [(1, 512, True), (4, 512, False), (1, 2048, True), (4, 512, True)]


def main() -> None:
    out = os.environ.get("OUT", ".")
    started = time.time()
    source = resolve(os.environ.get("MODEL", "random:qwen2.5-7b"))
    rows = []
    for shape in SHAPES:
        row = plan_bench.measure(source, LoRAConfig(), [shape])["rows"][0]
        rows.append({**row, "elapsed_s": round(time.time() - started, 1)})
        document = {"device": str(mx.default_device()), "rows": rows}
        with open(os.path.join(out, "plan_grid.json"), "w") as file:
            json.dump(document, file, indent=1)
        print(shape, row.get("ratio"), row.get("miss"), flush=True)


if __name__ == "__main__":
    main()
