"""A data-parallel run across inventory hosts, its ranks started as `mlx.launch` starts them.

`mlx.launch --backend ring` starts rank i with MLX_RANK=i and MLX_HOSTFILE naming a JSON list
of every rank's "ip:port" listener, through the system ssh client, and exits 0 whatever the
ranks did. The runner starts the ranks the same way over its own verified paramiko
connections, so host keys, deadlines, the process-group kill and collection apply to every
rank, and the fleet's exit code follows rank 0's report.
"""

from __future__ import annotations

import json
import socket
import threading
from dataclasses import dataclass

from lora_harness.core.errors import InputError
from lora_harness.remote.connection import HostFailure
from lora_harness.remote.inventory import Host

HOSTFILE = "hostfile.json"
DEFAULT_STARTING_PORT = 32323  # mlx.launch's default, +1 per rank


@dataclass
class RingPlan:
    """Which rank each host is and the ring every rank joins."""

    ranks: dict[str, int]
    hostfile: str
    barrier: threading.Barrier

    def env(self, host: Host, run_dir: str) -> dict[str, str]:
        return {"MLX_RANK": str(self.ranks[host.name]), "MLX_HOSTFILE": f"{run_dir}/{HOSTFILE}"}

    def all_deployed(self, timeout: float) -> None:
        """Wait until every host is deployed: a rank started early would give up on its peers."""
        try:
            self.barrier.wait(timeout)
        except threading.BrokenBarrierError:
            raise HostFailure(
                "error", "not started: another rank's host failed before the ring could start"
            )

    def abandon(self) -> None:
        """A host that fails before the start releases the others at once."""
        self.barrier.abort()


def plan(hosts: list[Host], starting_port: int = DEFAULT_STARTING_PORT) -> RingPlan:
    if len(hosts) < 2:
        raise InputError("--distributed needs at least two hosts (one rank per host)")
    listeners = [[f"{ring_ip(host)}:{starting_port + rank}"] for rank, host in enumerate(hosts)]
    return RingPlan(
        ranks={host.name: rank for rank, host in enumerate(hosts)},
        hostfile=json.dumps(listeners),
        barrier=threading.Barrier(len(hosts)),
    )


def ring_ip(host: Host) -> str:
    """The address the other ranks reach this host on: the inventory's `ips`, else its name."""
    if host.ips:
        return host.ips[0]
    try:
        return socket.getaddrinfo(host.hostname, None, socket.AF_INET)[0][4][0]
    except OSError:
        raise InputError(
            f"cannot resolve {host.hostname} for the ring backend; give that host "
            '`ips = ["<its address on the ranks\' network>"]` in the fleet TOML'
        )


def judge_ranks(results, ring: RingPlan) -> None:
    """Ranks other than 0 write no report: a clean exit takes rank 0's verdict."""
    by_rank = {ring.ranks[r.name]: r for r in results}
    first, size = by_rank[0], len(by_rank)
    for rank, result in sorted(by_rank.items())[1:]:
        if result.exit_status == 0 and result.report is None:
            result.status = first.status
            result.message = f"rank {rank} of {size}; report written by rank 0 ({first.name})"
