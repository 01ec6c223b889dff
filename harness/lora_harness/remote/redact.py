"""Keep `--remote-env` values (tokens, keys) out of everything written or printed locally.

Values reach the host's environment only. Locally they are replaced by `***` in the stored
command line, the echoed remote log, host messages and the collected reports that the
summary, HTML and JUnit are rendered from. Values shorter than MIN_LENGTH are not secrets
worth hiding, and replacing them (say `1`) everywhere would garble every message.
"""

from __future__ import annotations

import json
from pathlib import Path

from lora_harness.core.files import write_atomic
from lora_harness.reports import json_report

MASK = "***"
MIN_LENGTH = 4
ENV_FLAGS = ("--remote-env",)


class Redactor:
    def __init__(self, env: dict | None = None):
        values = {str(v) for v in (env or {}).values() if len(str(v)) >= MIN_LENGTH}
        self.values = sorted(values, key=len, reverse=True)  # longest first: no partial leak

    def text(self, text):
        if not isinstance(text, str):
            return text
        for value in self.values:
            text = text.replace(value, MASK)
        return text

    def argv(self, argv: list[str]) -> list[str]:
        """The command line with every --remote-env value masked, whatever its length."""
        out, masked_next = [], False
        for arg in argv:
            if masked_next:
                arg, masked_next = _mask_pair(arg), False
            elif arg in ENV_FLAGS:
                masked_next = True
            elif any(arg.startswith(f"{flag}=") for flag in ENV_FLAGS):
                flag, _, pair = arg.partition("=")
                arg = f"{flag}={_mask_pair(pair)}"
            out.append(self.text(arg))
        return out

    def walk(self, value):
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, list):
            return [self.walk(v) for v in value]
        if isinstance(value, dict):
            return {self.text(k): self.walk(v) for k, v in value.items()}
        return value

    def scrub_report(self, path: Path) -> dict:
        """Load a collected report; rewrite it without any secret value it holds."""
        document = json_report.load(Path(path))
        if self.values:
            clean = self.walk(document)
            if clean != document:
                write_atomic(Path(path), json.dumps(clean, indent=2) + "\n")
            document = clean
        return document


def _mask_pair(pair: str) -> str:
    key, sep, _ = pair.partition("=")
    return f"{key}={MASK}" if sep else pair
