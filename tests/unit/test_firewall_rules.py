"""The allow-list's rules: planned from what iptables prints, idempotent, removable."""

from __future__ import annotations

from runbook_lib import firewall


def state_after(allow, ports):
    """What ``iptables -S`` prints once the wanted rules are in place."""
    j = firewall.jumps(allow, ports)
    return {
        firewall.CHAIN: firewall.chain_rules(allow),
        "DOCKER-USER": ["-N DOCKER-USER", *reversed(j["DOCKER-USER"]), "-A DOCKER-USER -j RETURN"],
        "INPUT": ["-P INPUT ACCEPT", *reversed(j["INPUT"]), "-A INPUT -j ACCEPT"],
    }


EMPTY = {
    "DOCKER-USER": ["-N DOCKER-USER", "-A DOCKER-USER -j RETURN"],
    "INPUT": ["-P INPUT ACCEPT"],
}


def test_nothing_to_do_without_allow_list_or_rules():
    assert firewall.plan(EMPTY, [], [5000]) == []


def test_an_allow_list_is_put_in_one_transaction():
    (cmd,) = firewall.plan(EMPTY, ["192.0.2.0/24"], [5000])
    assert cmd.argv == ["iptables-restore", "--noflush"]
    lines = cmd.stdin.splitlines()
    assert lines[0] == "*filter" and lines[-1] == "COMMIT"
    assert ":RUNBOOK-ALLOW - [0:0]" in lines
    assert "-A RUNBOOK-ALLOW -s 192.0.2.0/24 -j RETURN" in lines
    assert "-A RUNBOOK-ALLOW -i lo -j RETURN" in lines  # the host's own traffic
    assert lines.index(
        "-A RUNBOOK-ALLOW -j REJECT --reject-with icmp-port-unreachable"
    ) > lines.index("-A RUNBOOK-ALLOW -s 192.0.2.0/24 -j RETURN")
    assert (
        "-I DOCKER-USER 1 -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW"
        in lines
    )
    assert "-I INPUT 1 -p udp -m multiport --dports 7946,4789 -j RUNBOOK-ALLOW" in lines


# What firewall.READ prints (``iptables -S`` of each chain) on a host whose allow-list for
# 192.0.2.0/24 is in place, for the registry on 5000 and Portainer on 9443: written out,
# not derived from the module, so that a rule the module no longer wants (the host's own
# traffic, say) is noticed. The jumps were inserted at the top, so they read in any order.
IN_PLACE = """\
== RUNBOOK-ALLOW
-N RUNBOOK-ALLOW
-A RUNBOOK-ALLOW -i lo -j RETURN
-A RUNBOOK-ALLOW -s 192.0.2.0/24 -j RETURN
-A RUNBOOK-ALLOW -j REJECT --reject-with icmp-port-unreachable
== DOCKER-USER
-N DOCKER-USER
-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 9443 --ctdir ORIGINAL -j RUNBOOK-ALLOW
-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW
-A DOCKER-USER -j RETURN
== INPUT
-P INPUT ACCEPT
-A INPUT -p udp -m multiport --dports 7946,4789 -j RUNBOOK-ALLOW
-A INPUT -p tcp -m multiport --dports 2377,7946 -j RUNBOOK-ALLOW
-A INPUT -j ACCEPT
"""


def test_rules_in_place_in_any_order_are_kept():
    assert firewall.plan(firewall.parse(IN_PLACE), ["192.0.2.0/24"], [5000, 9443]) == []
    assert firewall.plan(firewall.parse(IN_PLACE), ["192.0.2.0/24"], [9443, 5000, 5000]) == []


def test_a_changed_port_moves_its_jump():
    (cmd,) = firewall.plan(state_after(["192.0.2.0/24"], [5000]), ["192.0.2.0/24"], [5001])
    lines = cmd.stdin.splitlines()
    assert (
        "-D DOCKER-USER -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW"
        in lines
    )
    assert any("--ctorigdstport 5001" in line and line.startswith("-I") for line in lines)
    assert not any(line.startswith("-I INPUT") for line in lines)  # those are in place


def test_an_emptied_list_removes_jumps_then_the_chain():
    (cmd,) = firewall.plan(state_after(["192.0.2.0/24"], [5000]), [], [5000])
    lines = cmd.stdin.splitlines()
    assert lines.index("-F RUNBOOK-ALLOW") > max(
        i for i, x in enumerate(lines) if x.startswith("-D")
    )
    assert lines[-2:] == ["-X RUNBOOK-ALLOW", "COMMIT"]


def test_the_diff_shows_what_changes():
    text = firewall.diff(EMPTY, ["192.0.2.0/24"], [5000])
    assert "+-A RUNBOOK-ALLOW -s 192.0.2.0/24 -j RETURN" in text
