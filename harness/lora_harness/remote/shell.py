"""Run commands on a host without hanging: both streams drained while waiting.

`recv_exit_status()` blocks forever when stdout or stderr fill the channel window unread
(paramiko #448, #563, #1778); this loop reads both as data arrives and keeps only a tail.
"""

from __future__ import annotations

import shlex
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Completed:
    exit_status: int | None  # None: the deadline passed or the connection died first
    stdout_tail: str
    stderr_tail: str
    bytes_read: int
    timed_out: bool = False
    interrupted: bool = False  # Ctrl-C stopped it (not its deadline)


def quote(parts: list[str]) -> str:
    return " ".join(shlex.quote(str(p)) for p in parts)


# A login shell may print a banner (an rc file's echo, a motd) on stdout before and after
# the command: whatever is parsed from stdout is read between these two lines only.
MARK = "__lora_harness_output_7c1f__"


def signal_group(signal: str, pgid: str = "$pgid") -> str:
    """Shell that sends `signal` (0, TERM, KILL) to the process group `pgid`; true if sent.

    POSIX writes it `kill -SIG -- -PGID`, but dash (Debian's /bin/sh, what a ForceCommand or
    wrapper shell often runs commands with) takes the `--` for a pid and fails, which made a
    live run read as stopped and a timed-out run go unkilled. The second form is dash's."""
    return f"{{ kill -{signal} -- -{pgid} || kill -{signal} -{pgid}; }} 2>/dev/null"


def marked(command: str) -> str:
    """`command` with its stdout framed by MARK lines, its exit status kept."""
    return f"printf '%s\\n' {MARK}; {{ {command}\n}}; s=$?; printf '%s\\n' {MARK}; exit $s"


def between_marks(text: str) -> str:
    """The command's own stdout from a marked() run: nothing a banner printed around it."""
    start = text.find(MARK + "\n")
    if start < 0:
        return text
    body = text[start + len(MARK) + 1 :]
    end = body.rfind(MARK + "\n")
    return body if end < 0 else body[:end]


def run(
    client,
    command: str,
    timeout: float | None = None,
    on_line: Callable[[str], None] | None = None,
    tail_bytes: int = 64 * 1024,
    is_dead: Callable[[], bool] = lambda: False,
    parse: bool = False,
) -> Completed:
    """Run `command`; with `parse`, stdout_tail is the command's own output, no banner."""
    channel = client.get_transport().open_session()
    channel.exec_command(marked(command) if parse else command)
    deadline = None if timeout is None else time.monotonic() + timeout
    tails = {"out": deque(), "err": deque()}
    sizes = {"out": 0, "err": 0}
    partial = ""
    total = 0
    while True:
        progressed = False
        for stream, ready, receive in (
            ("out", channel.recv_ready, channel.recv),
            ("err", channel.recv_stderr_ready, channel.recv_stderr),
        ):
            while ready():
                chunk = receive(65536)
                if not chunk:
                    break
                progressed = True
                total += len(chunk)
                _keep_tail(tails[stream], sizes, stream, chunk, tail_bytes)
                if on_line and stream == "err":
                    partial = _emit_lines(partial + chunk.decode(errors="replace"), on_line)
        # The exit status is not flow-controlled but data is: it can arrive while output is
        # still in flight (43 kB of 18 MB were lost under load). Done means EOF seen too.
        drained = not channel.recv_ready() and not channel.recv_stderr_ready()
        ended = channel.eof_received or channel.closed
        if channel.exit_status_ready() and drained and ended:
            break
        if channel.closed or is_dead() or not client.get_transport().is_active():
            return _completed(None, tails, total)
        if deadline is not None and time.monotonic() > deadline:
            channel.close()
            return _completed(None, tails, total, timed_out=True)
        if not progressed:
            time.sleep(0.02)
    status = channel.recv_exit_status()
    channel.close()
    done = _completed(status, tails, total)
    if parse:
        done.stdout_tail = between_marks(done.stdout_tail)
    return done


def _keep_tail(tail: deque, sizes: dict, stream: str, chunk: bytes, limit: int) -> None:
    tail.append(chunk)
    sizes[stream] += len(chunk)
    while sizes[stream] > limit and len(tail) > 1:
        sizes[stream] -= len(tail.popleft())


def _emit_lines(text: str, on_line) -> str:
    *lines, rest = text.split("\n")
    for line in lines:
        on_line(line.rstrip("\r"))
    return rest


def _completed(status, tails, total, timed_out=False) -> Completed:
    join = lambda parts: b"".join(parts).decode(errors="replace")  # noqa: E731
    return Completed(status, join(tails["out"]), join(tails["err"]), total, timed_out)
