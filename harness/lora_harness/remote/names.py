"""Names that come from inventories, summaries and hosts, checked as data before use.

A hostname, user or port reaches ssh argv and ProxyCommand templates; a host's name and a
run id become local folder names. Each is checked here first, so a value such as
`127.0.0.1 -oProxyCommand=...` or `../../x` is refused (exit 2) instead of interpreted.
"""

from __future__ import annotations

import re

from lora_harness.core.errors import InputError

# DNS names, IPv4 and IPv6 literals (with an optional %zone); never a leading '-'.
_HOSTNAME = re.compile(r"[A-Za-z0-9_:][A-Za-z0-9._:%-]{0,252}")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,63}")
_ENV_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RUN_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")


def check_hostname(hostname, where: str) -> str:
    if not isinstance(hostname, str) or not _HOSTNAME.fullmatch(hostname):
        raise InputError(
            f"{where}: hostname {hostname!r} is not a host name or IP address "
            "(letters, digits, '.', '-', '_', ':' only)"
        )
    return hostname


def check_user(user, where: str):
    if user is not None and (not isinstance(user, str) or not _USER.fullmatch(user)):
        raise InputError(
            f"{where}: user {user!r} is not a user name (letters, digits, '.', '-', '_')"
        )
    return user


def check_port(port, where: str) -> int:
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise InputError(f"{where}: port {port!r} is not a number")
    if isinstance(port, bool) or not 1 <= number <= 65535 or str(number) != str(port).strip():
        raise InputError(f"{where}: port {port!r} is not a port number (1-65535)")
    return number


def check_env_key(key: str, flag: str) -> str:
    if not _ENV_KEY.fullmatch(key):
        raise InputError(
            f"{flag} {key!r}: an environment name is letters, digits and '_', not starting "
            "with a digit"
        )
    return key


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id) or set(run_id) <= {"."}:
        raise InputError(f"run id {run_id!r} is not a run id; pass the id printed by remote train")
    return run_id


def safe_name(name: str) -> str:
    """A host name as one folder name (inventory names may hold '/', spaces, quotes, '..')."""
    cleaned = "".join(c if c.isalnum() or c in "-_.@" else "_" for c in str(name))
    cleaned = cleaned.strip(".")[:64]
    return cleaned or "host"


def folder_names(names: list[str]) -> dict[str, str]:
    """One distinct folder per host name, even when two names sanitise alike."""
    folders: dict[str, str] = {}
    taken: set[str] = set()
    for name in names:
        base = safe_name(name)
        folder, n = base, 2
        while folder.lower() in taken:  # case-insensitive file systems (macOS) too
            folder, n = f"{base}-{n}", n + 1
        taken.add(folder.lower())
        folders[name] = folder
    return folders
