"""Format variants of a fixture, made offline by mlx-lm's own conversion (mlx_lm.convert).

`fixture:tiny-bf16`, `fixture:tiny-fp16`, `fixture:tiny-q4`, `fixture:tiny-q8-g32`,
`fixture:tiny-bf16-q4` (quantised over bf16 scales, as mlx-community models are),
`fixture:tiny-mxfp4`: the fixture converted exactly as a user converts a downloaded model,
cached beside it under a name that includes the base fixture's digest, so a rebuilt
fixture never reuses stale variants.
"""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import build_once, staging_folder
from lora_harness.models.manifest import discard_if_untrusted, write_manifest

DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
MODES = ("mxfp4", "nvfp4", "mxfp8")  # mlx_lm.convert --q-mode besides affine
_PATTERN = re.compile(
    r"^(?P<base>[a-z0-9]+)"
    r"(?:-(?P<dtype>fp32|fp16|bf16))?"
    r"(?:-(?:q(?P<bits>[2-8])|(?P<mode>mxfp4|nvfp4|mxfp8)))?"
    r"(?:-g(?P<group>\d+))?$"
)
FORMS = "NAME[-fp32|-fp16|-bf16][-q2..-q8|-mxfp4|-nvfp4|-mxfp8][-gGROUP]"


@dataclass(frozen=True)
class Variant:
    base: str
    dtype: str | None = None
    bits: int | None = None
    mode: str | None = None
    group_size: int | None = None

    @property
    def quantized(self) -> bool:
        return self.bits is not None or self.mode is not None

    def convert_arguments(self) -> dict:
        """mlx_lm.convert's keyword arguments for this variant."""
        arguments = {"dtype": DTYPES[self.dtype] if self.dtype else None}
        if self.quantized:
            arguments.update(
                quantize=True,
                q_bits=self.bits,
                q_group_size=self.group_size,
                q_mode=self.mode or "affine",
            )
        return arguments


def parse(name: str) -> Variant | None:
    """The variant `name` asks for, or None when it names no format change."""
    match = _PATTERN.match(name)
    if not match:
        return None
    parts = match.groupdict()
    if not any(parts[k] for k in ("dtype", "bits", "mode", "group")):
        return None
    bits = int(parts["bits"]) if parts["bits"] else None
    group = int(parts["group"]) if parts["group"] else None
    if group is not None and not (bits or parts["mode"]):
        raise InputError(f"fixture:{name}: a group size needs a quantisation (e.g. -q4-g{group})")
    return Variant(parts["base"], parts["dtype"], bits, parts["mode"], group)


def variant_path(name: str, base_folder: Path) -> Path:
    """The cached converted folder for variant `name` of the fixture at `base_folder`."""
    variant = parse(name)
    if variant is None:
        raise InputError(f"unknown fixture {name!r}; use fixture:{FORMS}, e.g. fixture:tiny-q4")
    folder = base_folder.parent / f"{base_folder.name}-{name[len(variant.base) + 1 :]}"
    discard_if_untrusted(folder, f"fixture:{name}")  # flipped weight bytes are never used
    build_once(folder, lambda: _convert_atomically(variant, base_folder, folder))
    return folder


def _convert_atomically(variant: Variant, source: Path, folder: Path) -> None:
    from mlx_lm.convert import convert

    try:
        with staging_folder(folder) as staging:
            # mlx_lm.convert prints progress on stdout, which may be carrying a JSON report.
            with contextlib.redirect_stdout(io.StringIO()):
                convert(str(source), str(staging / "model"), **variant.convert_arguments())
            write_manifest(staging / "model")  # last: a folder without it is never trusted
            (staging / "model").chmod(0o755)
            try:
                (staging / "model").rename(folder)
            except OSError:
                if not (folder / "config.json").exists():
                    raise
    except ValueError as exc:  # mlx rejects bits/group sizes it cannot quantise
        raise InputError(f"mlx_lm.convert cannot make {folder.name}: {str(exc).splitlines()[0]}")
