"""The swarm's other hosts as parameters: each once, none the first manager again, every
field checked before anything on a host changes, and what a node leaves out taken from the
top-level values."""

from __future__ import annotations

import pytest
import yaml

from runbook_lib import form, params
from runbook_lib.errors import ParameterError

BASE = {"host": "10.0.0.1", "registry_host": "10.0.0.1", "registry_users": {"admin": "env:X"}}


def load(**values):
    return params.load({**BASE, **values})


def refusal(**values) -> ParameterError:
    with pytest.raises(ParameterError) as e:
        load(**values)
    return e.value


def test_a_single_host_file_has_no_nodes_and_one_manager():
    p = load()
    assert p.nodes == [] and p.managers == 1 and p.warnings == []


def test_nodes_with_roles_labels_and_their_own_ssh_values():
    p = load(
        nodes=[
            {"address": "10.0.0.2"},
            {"address": "node3.example", "role": "manager", "labels": {"disk": "ssd"}},
            {"address": "10.0.0.4", "ssh_user": "deploy", "ssh_port": 2222},
        ]
    )
    assert [n.role for n in p.nodes] == ["worker", "manager", "worker"]
    assert p.nodes[1].labels == {"disk": "ssd"}
    assert (p.nodes[2].ssh_user, p.nodes[2].ssh_port) == ("deploy", 2222)
    assert p.managers == 2


@pytest.mark.parametrize(
    ("nodes", "where", "said"),
    [
        ([{"address": "10.0.0.2"}, {"address": "10.0.0.2"}], "nodes[1].address", "nodes[0] again"),
        ([{"address": "10.0.0.1"}], "nodes[0].address", "first manager"),
        # The same host spelled another way is still the same host.
        (
            [{"address": "NODE2.example."}, {"address": "node2.example"}],
            "nodes[1].address",
            "again",
        ),
        ([{"address": "::1"}, {"address": "0:0::1"}], "nodes[1].address", "again"),
        ([{"address": "10.0.0.2", "role": "leader"}], "nodes[0].role", "manager"),
        ([{"address": "not a host"}], "nodes[0].address", "host name"),
        ([{"address": "10.0.0.2", "ssh_port": 70000}], "nodes[0].ssh_port", "65535"),
        ([{"address": "10.0.0.2", "ssh_user": "bad:user"}], "nodes[0].ssh_user", "user name"),
        ([{"address": "10.0.0.2", "labels": {"-x": "y"}}], "nodes[0].labels", "label"),
        (
            [{"address": "10.0.0.2", "ssh_key_file": "/nonexistent/key"}],
            "nodes[0].ssh_key_file",
            "no such file",
        ),
        ([{"address": "10.0.0.2", "color": "blue"}], "nodes[0].color", "unknown parameter"),
        (
            [{"address": "10.0.0.2", "sudo_password": "hunter2-plain"}],
            "nodes[0].sudo_password",
            "env:",
        ),
    ],
)
def test_bad_nodes_are_refused_naming_the_field(nodes, where, said):
    err = refusal(nodes=nodes)
    assert err.name == where, str(err)
    assert said in str(err), str(err)
    assert "hunter2-plain" not in str(err)


def test_the_same_address_on_another_ssh_port_is_another_host():
    p = load(
        nodes=[{"address": "10.0.0.1", "ssh_port": 2201}, {"address": "10.0.0.1", "ssh_port": 2202}]
    )
    assert len(p.nodes) == 2


def test_an_even_number_of_managers_is_warned_about_with_the_reason():
    (warning,) = load(nodes=[{"address": "10.0.0.2", "role": "manager"}]).warnings
    assert "2 managers" in warning and "majority" in warning and "use 1 or 3" in warning
    assert (
        load(nodes=[{"address": f"10.0.0.{i}", "role": "manager"} for i in (2, 3)]).warnings == []
    )


def test_the_form_writes_nodes_as_yaml_and_reads_them_back():
    p = load(
        nodes=[
            {"address": "10.0.0.2", "role": "manager", "labels": {"a": "b"}},
            {"address": "10.0.0.3"},
        ]
    )
    text = form._yaml_text(p.nodes)
    assert text.splitlines() == [
        "- {address: 10.0.0.2, role: manager, labels: {a: b}}",
        "- {address: 10.0.0.3}",
    ]
    assert load(nodes=yaml.safe_load(text)).nodes == p.nodes


def test_an_unknown_field_of_a_node_lists_a_node_s_fields():
    err = refusal(nodes=[{"address": "10.0.0.2", "adress": "x"}])
    assert "address, role, labels" in str(err) and "registry_host" not in str(err)


@pytest.mark.parametrize(
    ("values", "said"),
    [
        ({"remove_nodes": ["10.0.0.1"]}, "first manager"),
        ({"remove_nodes": ["10.0.0.2"], "nodes": [{"address": "10.0.0.2"}]}, "also in nodes"),
        ({"remove_nodes": ["not a host"]}, "host name"),
    ],
)
def test_a_node_to_remove_is_checked(values, said):
    err = refusal(**values)
    assert err.name == "remove_nodes[0]" and said in str(err), str(err)


def test_nodes_to_remove_are_reached_with_the_top_level_values():
    from runbook_lib.session import Session

    p = load(remove_nodes=["10.0.0.9"], ssh_user="deploy")
    (leaving,) = Session(p).leaving
    assert (leaving.address, leaving.ssh_user, leaving.first) == ("10.0.0.9", "deploy", False)
