"""Notebook 17's pure parts: the confirmation, and what it reads and plans on a host, from
output Docker 20.10, ls and iptables printed on the lab's nodes."""

from __future__ import annotations

import pytest

from runbook_lib import firewall, names, params, teardown
from runbook_lib.errors import ParameterError

BASE = {
    "host": "docker.example.com",
    "registry_host": "docker.example.com",
    "registry_users": {"admin": "env:REGISTRY_PASSWORD"},
}


@pytest.mark.parametrize(
    ("confirm", "check_mode", "refused"),
    [
        ("docker.example.com", False, None),
        ("Docker.Example.com.", False, None),  # the same name, as params spells hosts
        (" docker.example.com ", False, None),
        (None, True, None),  # check mode: the plan changes nothing
        ("docker.example.com", True, None),
        (None, False, "is not set"),
        ("yes", False, "is not the value of host ('docker.example.com')"),
        ("docker.example.org", True, "is not the value of host"),  # a wrong value, always
        ("", False, "is not the value of host"),
    ],
)
def test_the_teardown_goes_on_only_when_host_is_typed_again(confirm, check_mode, refused):
    problem = teardown.confirmation_problem("docker.example.com", confirm, check_mode)
    if refused is None:
        assert problem is None
    else:
        assert problem.startswith(refused) and "nothing was changed" in problem


def test_an_address_must_be_the_same_address():
    assert teardown.confirmation_problem("10.203.0.11", "10.203.0.11", False) is None
    assert teardown.confirmation_problem("10.203.0.11", "10.203.0.12", False)
    assert teardown.confirmation_problem("2001:db8::1", "2001:DB8:0::1", False) is None


def test_the_refusal_names_the_parameter_and_the_fix():
    p = params.load({**BASE, "teardown_confirm": "docker.example.org"})
    with pytest.raises(ParameterError) as caught:
        teardown.require_confirmation(p)
    assert caught.value.name == "teardown_confirm"
    assert str(caught.value).startswith("parameter 'teardown_confirm' = 'docker.example.org': ")
    assert str(caught.value).endswith("(for example: teardown_confirm: docker.example.com)")
    teardown.require_confirmation(params.load({**BASE, "teardown_confirm": "docker.example.com"}))
    with pytest.raises(ParameterError, match="is not set"):
        teardown.require_confirmation(params.load(BASE))
    teardown.require_confirmation(params.load({**BASE, "check_mode": True}))


def test_what_is_left_of_a_stack():
    text = (
        "== services\nportainer_agent\nportainer_portainer\n== networks\n"
        "portainer_agent_network\n== secrets\n== configs\n"
    )
    left = teardown.parse_stack(text)
    assert left.services == ("portainer_agent", "portainer_portainer")
    assert left.networks == ("portainer_agent_network",) and not left.secrets
    assert not left.empty
    assert left.describe() == (
        "services portainer_agent, portainer_portainer; networks portainer_agent_network"
    )
    gone = teardown.parse_stack("== services\n== networks\n== secrets\n== configs\n")
    assert gone.empty and gone.describe() == "nothing"
    assert teardown.parse_stack("").empty  # no engine answered


def test_only_the_registry_s_secrets_are_the_runbook_s():
    listed = [
        "registry_key_c1a73ded63a7",
        "registry_cert_b211be4073e6",
        "registry_htpasswd_44135eeb74cf",
        "registry_cert_b211be4073e",  # too short: not a content hash
        "registry_token_b211be4073e6",
        "myapp_db_password",
    ]
    assert teardown.our_secrets(listed) == [
        "registry_cert_b211be4073e6",
        "registry_htpasswd_44135eeb74cf",
        "registry_key_c1a73ded63a7",
    ]
    assert teardown.our_secrets([]) == []


D = "/etc/docker/certs.d/docker.example.com:5000"
E = "/etc/docker/certs.d/registry.example.com:5000"


def argv(plan):
    return [list(c.argv) for c in plan]


def test_the_trust_folders_go_with_their_certificates():
    found = teardown.parse_trust_dirs(f"== {D}\nca.crt\nprevious-ca.crt\n== {E}\nca.crt\n")
    plan, kept = teardown.plan_untrust(found)
    assert argv(plan) == [
        ["rm", "-f", "--", f"{D}/ca.crt", f"{D}/previous-ca.crt"],
        ["rmdir", "--", D],
        ["rm", "-f", "--", f"{E}/ca.crt"],
        ["rmdir", "--", E],
    ]
    assert kept == []


def test_a_trust_folder_with_other_files_is_kept_without_ca_crt():
    found = teardown.parse_trust_dirs(f"== {D}\nca.crt\nclient.cert\nclient.key\n")
    plan, kept = teardown.plan_untrust(found)
    assert argv(plan) == [["rm", "-f", "--", f"{D}/ca.crt"]] and kept == [D]


def test_trust_already_removed():
    assert teardown.plan_untrust(teardown.parse_trust_dirs("")) == ([], [])
    # An empty folder left behind goes too.
    assert argv(teardown.plan_untrust({D: []})[0]) == [["rmdir", "--", D]]


OURS = {"certs", "auth", "docker-compose.yml", "portainer-agent-stack.yml"}


def test_a_work_directory_of_the_runbook_s_alone_is_removed_whole():
    plan, others = teardown.plan_work_dir(
        "/home/docker", ["auth", "certs", "docker-compose.yml"], OURS
    )
    assert argv(plan) == [["rm", "-rf", "--one-file-system", "--", "/home/docker"]]
    assert others == []
    # Empty: nothing of anyone's in it.
    assert argv(teardown.plan_work_dir("/home/docker", [], OURS)[0]) == [
        ["rm", "-rf", "--one-file-system", "--", "/home/docker"]
    ]


def test_a_work_directory_holding_other_things_keeps_them():
    plan, others = teardown.plan_work_dir("/srv/reg", ["certs", "notes.txt", "auth", ".ssh"], OURS)
    assert argv(plan) == [
        ["rm", "-rf", "--one-file-system", "--", "/srv/reg/auth", "/srv/reg/certs"]
    ]
    assert others == [".ssh", "notes.txt"]
    assert teardown.plan_work_dir("/srv/reg", ["notes.txt"], OURS) == ([], ["notes.txt"])


def test_no_work_directory():
    assert teardown.plan_work_dir("/home/docker", None, OURS) == ([], [])


def test_volumes_by_name_and_where_they_are():
    text = "manager_registry /var/lib/docker/volumes/manager_registry/_data\n"
    assert teardown.parse_volumes(text) == {
        "manager_registry": "/var/lib/docker/volumes/manager_registry/_data"
    }
    assert teardown.parse_volumes("") == {}


def test_the_volumes_are_named_after_their_stack():
    lay = names.Names.of("/home/docker", "docker.example.com", "registry")
    assert lay.registry_volume == "registry_registry"
    assert lay.portainer_volume == "portainer_portainer_data"
    assert names.of(params.load(BASE)).registry_volume == "manager_registry"


def test_the_firewall_rules_come_out_in_one_transaction():
    """As notebook 04 left them with allow_from: [10.203.0.0/24] (``iptables -S``)."""
    state = firewall.parse(
        "== RUNBOOK-ALLOW\n-N RUNBOOK-ALLOW\n-A RUNBOOK-ALLOW -i lo -j RETURN\n"
        "-A RUNBOOK-ALLOW -s 10.203.0.0/24 -j RETURN\n"
        "-A RUNBOOK-ALLOW -j REJECT --reject-with icmp-port-unreachable\n"
        "== DOCKER-USER\n-N DOCKER-USER\n"
        "-A DOCKER-USER -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW\n"
        "-A DOCKER-USER -j RETURN\n"
        "== INPUT\n-P INPUT ACCEPT\n"
        "-A INPUT -p udp -m multiport --dports 7946,4789 -j RUNBOOK-ALLOW\n"
        "-A INPUT -p tcp -m multiport --dports 2377,7946 -j RUNBOOK-ALLOW\n"
    )
    (cmd,) = firewall.plan(state, [], [])
    assert cmd.stdin.splitlines() == [
        "*filter",
        "-D DOCKER-USER -p tcp -m conntrack --ctorigdstport 5000 --ctdir ORIGINAL -j RUNBOOK-ALLOW",
        "-D INPUT -p udp -m multiport --dports 7946,4789 -j RUNBOOK-ALLOW",
        "-D INPUT -p tcp -m multiport --dports 2377,7946 -j RUNBOOK-ALLOW",
        "-F RUNBOOK-ALLOW",
        "-X RUNBOOK-ALLOW",
        "COMMIT",
    ]
    assert firewall.plan(firewall.parse("== DOCKER-USER\n-N DOCKER-USER\n"), [], []) == []


def test_a_host_still_in_the_ended_swarm_names_its_first_manager():
    assert teardown.ours_gone(("10.203.0.11:2377",), "10.203.0.11", None)
    assert teardown.ours_gone(("10.0.0.5:2377", "10.203.0.11:2377"), "node1.example", "10.203.0.11")
    assert teardown.ours_gone(("[2001:db8::1]:2377",), "2001:db8::1", None)
    assert not teardown.ours_gone(("10.203.0.12:2377",), "10.203.0.11", None)
    assert not teardown.ours_gone((), "10.203.0.11", None)


def test_the_cache_leaves_daemon_json_and_everything_else_stays():
    from runbook_lib.teardown import without_mirror

    doc = {"log-driver": "journald", "registry-mirrors": ["https://h:5002/", "http://up:5001"]}
    assert without_mirror(doc, "https://h:5002") == {
        "log-driver": "journald",
        "registry-mirrors": ["http://up:5001"],
    }
    assert without_mirror({"registry-mirrors": ["https://h:5002"]}, "https://h:5002") == {}
    assert without_mirror({"debug": True}, "https://h:5002") == {"debug": True}


def test_the_runbooks_secrets_include_the_caches_and_portainers():
    from runbook_lib.teardown import our_secrets

    names = [
        "registry_cert_0123456789ab",
        "mirror_config_0123456789ab",
        "mirror_key_0123456789ab",
        "portainer_admin_password",
        "mirror_notes",
        "someone_elses",
    ]
    assert our_secrets(names) == [
        "mirror_config_0123456789ab",
        "mirror_key_0123456789ab",
        "portainer_admin_password",
        "registry_cert_0123456789ab",
    ]
