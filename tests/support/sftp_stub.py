"""A hostile SFTP server (real paramiko server classes) that lists what no real disk holds.

It serves names such as `../escape` and `/abs`, a symlink, a FIFO, a file that claims 4
bytes and never ends, a file that trickles, and a folder that contains itself forever.
"""

from __future__ import annotations

import os
import socket
import stat
import threading
import time

import paramiko

ENDLESS = b"\0" * 65536


def _attrs(name: str, mode: int, size: int = 0) -> paramiko.SFTPAttributes:
    attrs = paramiko.SFTPAttributes()
    attrs.filename, attrs.st_mode, attrs.st_size = name, mode, size
    attrs.st_uid = attrs.st_gid = 0
    attrs.st_atime = attrs.st_mtime = int(time.time())
    return attrs


REG, DIR = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755
ENTRIES = {
    "ok.txt": (REG, b"fine"),
    "../escape.txt": (REG, b"escaped"),
    "/tmp/lora-harness-abs-escape.txt": (REG, b"escaped"),
    "..": (DIR, None),
    "zero": (stat.S_IFLNK | 0o777, None),
    "fifo": (stat.S_IFIFO | 0o644, None),
    "liar": (REG, "endless"),
    "slow": (REG, "slow"),
    "deep": (DIR, None),
}


class _Handle(paramiko.SFTPHandle):
    def __init__(self, content):
        super().__init__()
        self.content = content

    def read(self, offset, length):
        if self.content == "endless":
            return ENDLESS[:length]
        if self.content == "slow":
            time.sleep(0.5)
            return b"s"
        return self.content[offset : offset + length]

    def stat(self):
        size = len(self.content) if isinstance(self.content, bytes) else 4
        return _attrs("x", REG, size)


class HostileSFTP(paramiko.SFTPServerInterface):
    def list_folder(self, path):
        if path.rstrip("/").endswith("deep"):
            return [_attrs("deep", DIR)]  # a folder that contains itself, forever
        return [
            _attrs(n, m, len(c) if isinstance(c, bytes) else 4) for n, (m, c) in ENTRIES.items()
        ]

    def _entry(self, path):
        name = path.rsplit("/", 1)[-1]
        return next(((n, v) for n, v in ENTRIES.items() if n.rsplit("/", 1)[-1] == name), None)

    def stat(self, path):
        found = self._entry(path)
        return _attrs(path, found[1][0] if found else DIR)

    lstat = stat

    def open(self, path, flags, attr):
        found = self._entry(path)
        if not found or found[1][1] is None:
            return paramiko.SFTP_NO_SUCH_FILE
        return _Handle(found[1][1])

    def canonicalize(self, path):
        return path


class _Server(paramiko.ServerInterface):
    def get_allowed_auths(self, username):
        return "none"

    def check_auth_none(self, username):
        return paramiko.AUTH_SUCCESSFUL

    def check_channel_request(self, kind, chanid):
        return paramiko.OPEN_SUCCEEDED


def serve(host_key_path: str):
    """Start the server on loopback; returns a connected SFTPClient and a stop function."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    transports = []

    def accept():
        conn, _ = listener.accept()
        transport = paramiko.Transport(conn)
        transport.add_server_key(paramiko.Ed25519Key.from_private_key_file(host_key_path))
        transport.set_subsystem_handler("sftp", paramiko.SFTPServer, HostileSFTP)
        transport.start_server(server=_Server())
        transports.append(transport)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    client = paramiko.Transport(socket.create_connection(listener.getsockname()))
    client.start_client(timeout=10)
    client.auth_none("u")
    sftp = paramiko.SFTPClient.from_transport(client)

    def stop():
        sftp.close()
        client.close()
        for transport in transports:
            transport.close()
        listener.close()
        if os.path.exists("/tmp/lora-harness-abs-escape.txt"):
            os.unlink("/tmp/lora-harness-abs-escape.txt")

    return sftp, stop
