"""One phase's deadline and the fleet's Ctrl-C, checked by every remote step of that phase."""

from __future__ import annotations

import threading
import time

from lora_harness.remote import shell
from lora_harness.remote.connection import HostFailure


class Phase:
    """`remaining()` raises HostFailure `timeout` past the deadline, `interrupted` on Ctrl-C."""

    def __init__(self, name: str, seconds: float, cancel: threading.Event | None = None):
        self.name, self.seconds = name, seconds
        self.cancel = cancel or threading.Event()
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        if self.cancel.is_set():
            raise HostFailure("interrupted", f"interrupted (Ctrl-C) during {self.name}")
        left = self.end - time.monotonic()
        if left <= 0:
            raise HostFailure("timeout", f"{self.name} passed its {self.seconds:g} s deadline")
        return left

    def run(
        self, client, command: str, limit: float | None = None, parse: bool = False
    ) -> shell.Completed:
        """Run a command within what is left of the phase (and `limit`, if shorter)."""
        left = self.remaining()
        result = shell.run(
            client,
            command,
            timeout=min(left, limit or left),
            is_dead=self.cancel.is_set,
            parse=parse,
        )
        if result.exit_status is None:
            self.remaining()  # raises timeout / interrupted when that is why it stopped
            if result.timed_out:
                raise HostFailure("timeout", f"a step of {self.name} passed its deadline")
            raise HostFailure("error", f"the connection was lost during {self.name}")
        return result
