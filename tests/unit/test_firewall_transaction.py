"""The whole iptables-restore transaction for a host without the chain, line by line."""

from __future__ import annotations

from runbook_lib import firewall


def test_a_new_allow_list_is_one_transaction_with_the_hosts_own_traffic_first():
    (cmd,) = firewall.plan({}, ["10.0.0.0/8"], [5000, 5000])
    assert cmd.argv == ["iptables-restore", "--noflush"]
    assert cmd.stdin.splitlines() == [
        "*filter",
        ":RUNBOOK-ALLOW - [0:0]",
        "-A RUNBOOK-ALLOW -i lo -j RETURN",
        "-A RUNBOOK-ALLOW -s 10.0.0.0/8 -j RETURN",
        "-A RUNBOOK-ALLOW -j REJECT --reject-with icmp-port-unreachable",
        "-I DOCKER-USER 1 -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW",
        "-I INPUT 1 -p tcp -m multiport --dports 2377,7946 -j RUNBOOK-ALLOW",
        "-I INPUT 1 -p udp -m multiport --dports 7946,4789 -j RUNBOOK-ALLOW",
        "COMMIT",
    ]
