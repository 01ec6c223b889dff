"""Errors the CLI turns into one-line messages and distinct exit codes."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERNAL = 3
EXIT_HOST_FAILED = 4  # the remote runner could not run a host (unreachable, auth, host key, ...)
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT
EXIT_RANK_LOST = 5  # a distributed run lost a rank (it died or hung)
# A distributed rank failed on its own (an error of its code or of MLX there, not of a peer);
# it wrote its report with the affected checks in `error`.
EXIT_RANK_ERROR = 6


class InputError(Exception):
    """Bad input from the user: the message names the problem and what to do (exit 2)."""

    exit_code = EXIT_BAD_INPUT
