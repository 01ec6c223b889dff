"""The ring plan `remote run --distributed` hands to every rank, as mlx.launch would."""

from __future__ import annotations

import json

import pytest

from lora_harness.core.errors import InputError
from lora_harness.remote import ring
from lora_harness.remote.inventory import Host


def test_each_rank_listens_on_its_hosts_ip_at_port_plus_rank():
    hosts = [Host("a", "studio-1.local", ips=["10.0.0.1"]), Host("b", "127.0.0.1")]
    plan = ring.plan(hosts, starting_port=40000)
    assert json.loads(plan.hostfile) == [["10.0.0.1:40000"], ["127.0.0.1:40001"]]
    assert plan.env(hosts[1], "/runs/x") == {
        "MLX_RANK": "1",
        "MLX_HOSTFILE": "/runs/x/hostfile.json",
    }


def test_a_host_the_controller_cannot_resolve_asks_for_its_ips():
    hosts = [Host("a", "127.0.0.1"), Host("b", "no-such-host.invalid")]
    with pytest.raises(InputError, match=r"give that host `ips = \["):
        ring.plan(hosts)


def test_retry_failed_reruns_the_failed_hosts_or_the_whole_ring(tmp_path):
    from lora_harness.remote import fleet
    from lora_harness.remote.host_run import HostResult

    def summary(*statuses):
        results = [
            HostResult(f"h{i}", "127.0.0.1", status=s, host=Host(f"h{i}", "127.0.0.1").describe())
            for i, s in enumerate(statuses)
        ]
        path = tmp_path / f"{'-'.join(statuses)}.json"
        path.write_text(json.dumps(fleet.document(results, {"id": "x"})))
        return path

    mixed = summary("passed", "error")
    assert [h.name for h in fleet.hosts_to_retry(mixed)] == ["h1"]
    assert [h.name for h in fleet.hosts_to_retry(mixed, whole_ring=True)] == ["h0", "h1"]
    assert fleet.hosts_to_retry(summary("passed", "passed"), whole_ring=True) == []
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(InputError, match="not a readable fleet summary"):
        fleet.hosts_to_retry(tmp_path / "bad.json")
