"""Whose lab is it: owner names as labels and container names can carry them, never merged."""
from __future__ import annotations

import getpass

import pytest

from labkit.errors import ModelError
from labkit.runtime import base


@pytest.mark.parametrize("user", ["root", "alice", "jo.smith", "x_y"])
def test_a_plain_user_name_is_the_owner(monkeypatch, user):
    monkeypatch.delenv(base.OWNER_ENV, raising=False)
    monkeypatch.setattr(getpass, "getuser", lambda: user)
    assert base.default_owner() == user


def test_names_that_must_be_altered_stay_distinct(monkeypatch):
    monkeypatch.delenv(base.OWNER_ENV, raising=False)
    seen = set()
    for user in ("jo+1", "jo-1", "jo 1", "x" * 80, "Ünïcode", "-lead"):
        monkeypatch.setattr(getpass, "getuser", lambda u=user: u)
        owner = base.default_owner()
        assert base.check_owner(owner) == owner and len(owner) <= 63
        seen.add(owner)
    assert len(seen) == 6


def test_labkit_owner_names_another_owner_and_is_checked(monkeypatch):
    monkeypatch.setenv(base.OWNER_ENV, "learner7")
    assert base.default_owner() == "learner7"
    monkeypatch.setenv(base.OWNER_ENV, "../evil")
    with pytest.raises(ModelError, match="not a valid owner"):
        base.default_owner()


def test_no_user_name_becomes_another_users_owner_name():
    from labkit.runtime.base import owner_for  # noqa: PLC0415
    altered = owner_for("jo+1")
    assert altered != "jo-1" and altered.startswith("jo-1-")
    assert owner_for(altered) != altered  # choosing the altered form as a name does not reach jo+1's labs
    assert owner_for("ann") == "ann" and owner_for("a" * 80) != owner_for("a" * 81)
    assert all(len(owner_for(n)) <= 63 for n in ("a" * 200, "jo+" * 40, "x-0123456789abcdef"))
