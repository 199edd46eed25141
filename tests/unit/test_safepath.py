"""Which paths root may trust: pure checks of ``stat`` output."""

from __future__ import annotations

from runbook_lib.safepath import ancestors, parse, problems


def test_ancestors_from_the_root_down_each_once():
    assert ancestors("/home/docker/certs/a.key", "/home/docker/auth/htpasswd") == [
        "/",
        "/home",
        "/home/docker",
        "/home/docker/certs",
        "/home/docker/certs/a.key",
        "/home/docker/auth",
        "/home/docker/auth/htpasswd",
    ]


def test_root_only_paths_have_no_problem():
    out = "0|root|755|directory|/\n0|root|700|directory|/home/docker/certs\n"
    assert problems(parse(out)) == []


def test_a_sticky_world_writable_folder_is_fine():
    assert problems(parse("0|root|1777|directory|/tmp\n")) == []


def test_foreign_owner_writable_folder_and_link_are_named():
    out = (
        "1000|docker|755|directory|/home/docker\n"
        "0|root|775|directory|/srv\n"
        "0|root|777|symbolic link|/home/docker/certs\n"
        "0|root|757|directory|/opt\n"
    )
    assert problems(parse(out)) == [
        "/home/docker is owned by docker (uid 1000)",
        "/srv is writable by its group (mode 775)",
        "/home/docker/certs is a symbolic link",
        "/opt is writable by others (mode 757)",
    ]


def test_a_path_with_a_bar_is_read_whole():
    assert parse("0|root|755|directory|/a|b\n")[0].path == "/a|b"
