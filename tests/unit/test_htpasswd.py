from __future__ import annotations

import bcrypt
import pytest

from runbook_lib import htpasswd
from runbook_lib.errors import ParameterError

COST = 4  # the lowest bcrypt cost keeps the tests fast
ALICE_PW = "alice-secret-1"
BOB_PW = "bob-secret-22"


@pytest.fixture(scope="module")
def alice_hash():
    return htpasswd.hash_password(ALICE_PW, COST)


# --- names and passwords ----------------------------------------------------------------


@pytest.mark.parametrize("name", ["alice", "ci-bot_2", "a.b@example.com", "x" * 255, "Ünïcode"])
def test_validate_username_accepts(name):
    htpasswd.validate_username(name)


@pytest.mark.parametrize(
    "name", ["", "a:b", "a b", "a\tb", " alice", "alice\n", "a\x00b", "x" * 256, None]
)
def test_validate_username_rejects(name):
    with pytest.raises(ParameterError) as err:
        htpasswd.validate_username(name)
    assert err.value.name == "registry_users"


@pytest.mark.parametrize(
    "password, problem",
    [
        ("", "is empty"),
        ("Sh0rt!-pass", "shorter than 12"),
        ("secret-line\nbreak", "line break"),
        ("secret-line\rbreak", "line break"),
        ("ü" * 37, "longer than 72 bytes"),
        (None, "is empty"),
    ],
)
def test_validate_password_rejects_without_showing_it(password, problem):
    with pytest.raises(ParameterError) as err:
        htpasswd.validate_password("alice", password)
    assert err.value.name == "registry_users"
    assert err.value.value == "<hidden>"
    assert problem in str(err.value)
    assert "'alice'" in str(err.value)
    if password:
        assert password not in str(err.value)
        assert password not in repr(err.value)


def test_validate_password_accepts_and_honours_min_length():
    htpasswd.validate_password("alice", "123456789012")
    htpasswd.validate_password("alice", "ü" * 36)  # 72 bytes
    htpasswd.validate_password("alice", "1234", min_length=4)
    with pytest.raises(ParameterError):
        htpasswd.validate_password("alice", "12345678", min_length=12)


# --- hashing ----------------------------------------------------------------------------


def test_hash_password_is_bcrypt_with_2y_prefix(alice_hash):
    assert alice_hash.startswith("$2y$04$")
    assert len(alice_hash) == 60
    assert bcrypt.checkpw(ALICE_PW.encode(), alice_hash.encode())
    assert htpasswd.hash_password(ALICE_PW, COST) != alice_hash  # salted


@pytest.mark.parametrize(
    "password, hashed, expected",
    [
        (ALICE_PW, None, True),
        ("wrong-password", None, False),
        (ALICE_PW, bcrypt.hashpw(ALICE_PW.encode(), bcrypt.gensalt(4)).decode(), True),  # $2b$
        (ALICE_PW, "$apr1$abcdefgh$0123456789abcdefghijkl", False),
        (ALICE_PW, "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", False),
        (ALICE_PW, "", False),
    ],
)
def test_verify(alice_hash, password, hashed, expected):
    assert htpasswd.verify(password, alice_hash if hashed is None else hashed) is expected


@pytest.mark.parametrize("cost", [3, 17, 0, "10", 10.0, True, None])
def test_cost_is_validated(cost):
    with pytest.raises(ParameterError) as err:
        htpasswd.hash_password(ALICE_PW, cost)
    assert err.value.name == "registry_bcrypt_cost"
    with pytest.raises(ParameterError):
        htpasswd.plan_users({}, {"alice": ALICE_PW}, cost=cost)


def test_default_cost():
    assert htpasswd.DEFAULT_COST == 10


# --- the file ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", {}),
        ("alice:$2y$04$a\n", {"alice": "$2y$04$a"}),
        ("alice:$2y$04$a", {"alice": "$2y$04$a"}),
        ("# users\n\nbob:h2\r\n  alice:h1  \n", {"bob": "h2", "alice": "h1"}),
        ("alice:h1\nbob:h2\nalice:h3\n", {"bob": "h2", "alice": "h3"}),  # the last one wins
        ("alice:has:colons\n", {"alice": "has:colons"}),
    ],
)
def test_parse(text, expected):
    got = htpasswd.parse(text)
    assert got == expected
    assert list(got) == list(expected)


@pytest.mark.parametrize(
    "text, line",
    [
        ("alice\n", 1),
        ("# ok\nalice:h1\nmy-password-by-mistake\n", 3),
        (":h1\n", 1),
        ("alice:\n", 1),
    ],
)
def test_parse_names_the_bad_line_but_not_its_content(text, line):
    with pytest.raises(htpasswd.HtpasswdError) as err:
        htpasswd.parse(text)
    assert f"line {line}:" in str(err.value)
    assert "my-password-by-mistake" not in str(err.value)


@pytest.mark.parametrize(
    "entries, text",
    [
        ({}, ""),
        ({"bob": "h2", "alice": "h1"}, "bob:h2\nalice:h1\n"),
    ],
)
def test_render_keeps_order_and_round_trips(entries, text):
    assert htpasswd.render(entries) == text
    assert htpasswd.parse(text) == entries


# --- the plan ---------------------------------------------------------------------------


def test_plan_adds_then_changes_nothing():
    entries, changes = htpasswd.plan_users({}, {"alice": ALICE_PW, "bob": BOB_PW}, cost=COST)
    assert changes == ["added alice", "added bob"]
    assert htpasswd.verify(ALICE_PW, entries["alice"])
    assert bcrypt.checkpw(BOB_PW.encode(), entries["bob"].encode())

    text = htpasswd.render(entries)
    again, changes = htpasswd.plan_users(
        htpasswd.parse(text), {"alice": ALICE_PW, "bob": BOB_PW}, cost=COST
    )
    assert changes == []
    assert htpasswd.render(again) == text


def test_plan_cases(alice_hash):
    bob_hash = htpasswd.hash_password("old-bob-password", COST)
    carol_hash = htpasswd.hash_password("carol-password", COST)
    current = {"alice": alice_hash, "bob": bob_hash, "carol": carol_hash, "dave": "$apr1$x$y"}
    cases = [
        # (wanted, remove, expected changes)
        ({}, [], []),
        ({"alice": ALICE_PW}, [], []),
        ({"bob": BOB_PW}, [], ["changed password of bob"]),
        ({}, ["carol"], ["removed carol"]),
        ({}, ["nobody"], []),
        ({"erin": "erin-password"}, [], ["added erin"]),
        ({"dave": "dave-password"}, [], ["changed password of dave"]),
        (
            {"alice": ALICE_PW, "bob": BOB_PW, "erin": "erin-password"},
            ["carol", "dave"],
            ["removed carol", "removed dave", "changed password of bob", "added erin"],
        ),
    ]
    for wanted, remove, expected in cases:
        entries, changes = htpasswd.plan_users(current, wanted, remove, cost=COST)
        assert changes == expected, (wanted, remove)
        for user, password in wanted.items():
            assert htpasswd.verify(password, entries[user])
        for user in remove:
            assert user not in entries
        for user in set(current) - set(wanted) - set(remove):
            assert entries[user] == current[user]  # untouched
        assert entries["alice"] == alice_hash  # a matching hash is never redone
        for change in changes:
            assert not any(p in change for p in wanted.values())
    assert current["bob"] == bob_hash  # the input is not modified


def test_plan_keeps_order_and_appends_new_users(alice_hash):
    current = {"zed": alice_hash, "alice": alice_hash}
    entries, _ = htpasswd.plan_users(current, {"bob": BOB_PW, "alice": ALICE_PW}, cost=COST)
    assert list(entries) == ["zed", "alice", "bob"]


def test_plan_does_not_rehash_for_cost(alice_hash):
    entries, changes = htpasswd.plan_users({"alice": alice_hash}, {"alice": ALICE_PW}, cost=5)
    assert changes == []
    assert entries["alice"] == alice_hash


@pytest.mark.parametrize(
    "wanted, remove",
    [
        ({"alice": "Xq9#z"}, []),
        ({"alice": "line\nbreak-secret"}, []),
        ({"bad:name": ALICE_PW}, []),
        ({"alice": ALICE_PW}, ["alice"]),
        ({}, ["bad name"]),
    ],
)
def test_plan_rejects_bad_input_without_showing_passwords(wanted, remove):
    with pytest.raises(ParameterError) as err:
        htpasswd.plan_users({}, wanted, remove, cost=COST)
    assert err.value.name == "registry_users"
    for password in wanted.values():
        assert password not in str(err.value)


def test_a_damaged_file_is_salvaged_line_by_line():
    raw = b"alice:$2y$10$abc\n\xff\xfe junk\nno-colon-here\n# comment\nbob:$2y$10$def\n"
    entries, problems = htpasswd.salvage(raw)
    assert entries == {"alice": "$2y$10$abc", "bob": "$2y$10$def"}
    assert problems == ["line 2 is not UTF-8 text", "line 3 is not 'user:hash'"]
    assert htpasswd.salvage(b"alice:$2y$10$abc\n") == ({"alice": "$2y$10$abc"}, [])


def test_login_plan_wants_listed_users_in_and_removed_users_out():
    from runbook_lib.users import login_plan

    table, problems = login_plan({"admin": 200, "ci": 200}, {"old": False})
    assert table == {"admin": "logs in (200)", "ci": "logs in (200)", "old (removed)": "gone"}
    assert problems == []
    table, problems = login_plan({"admin": 401}, {"old": True})
    assert table == {"admin": "refused (401)", "old (removed)": "still in the password file"}
    assert problems == [
        "'admin' is refused (401) with the password it was given",
        "'old' was removed but is still in the password file",
    ]
