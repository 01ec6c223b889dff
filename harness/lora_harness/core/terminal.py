"""Text from reports, hosts and file names made safe to print on a terminal.

A report, a host's stderr or a path can carry ESC sequences (set the window title, clear
the screen, move the cursor): printed raw, they rewrite what the user sees. Every C0/C1
control but tab becomes a visible escape (`\\x1b`), so the text is still all there.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def printable(text) -> str:
    """One line of `text` with every control character (newlines too) shown as an escape."""
    return _CONTROL.sub(_escape, str(text))


def _escape(match: re.Match) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
