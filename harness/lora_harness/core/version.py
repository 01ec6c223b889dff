"""The installed distribution's version (`lora-harness --version`, report provenance)."""

from importlib import metadata

try:
    __version__ = metadata.version("mlx-lora-harness")
except metadata.PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"
