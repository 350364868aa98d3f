"""``SciplatNativeAuthenticator`` against a real hub database, without a hub process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from jupyterhub import orm
from nativeauthenticator.orm import UserInfo
from traitlets.config import Config

from sciplat.config import HubConfig, Settings
from sciplat.hub.auth import SciplatNativeAuthenticator, SignupError, configure_auth

PASSWORD = "velvet-orbit-7319"


@pytest.fixture
def db(tmp_path: Path) -> Iterator[object]:
    session = orm.new_session_factory(f"sqlite:///{tmp_path / 'jupyterhub.sqlite'}")()
    yield session
    session.close()


def native(db: object, **hub: object) -> SciplatNativeAuthenticator:
    c = Config()
    configure_auth(c, Settings(hub=HubConfig(**hub)))
    return SciplatNativeAuthenticator(config=c, _deprecated_db_session=db)


def test_concurrent_signups_for_one_name_create_one_account(db: object) -> None:
    auth = native(db)

    async def both() -> list[object]:
        return await asyncio.gather(
            auth.signup("alice", PASSWORD),
            auth.signup("alice", "other-secret-4711"),
            return_exceptions=True,
        )

    results = asyncio.run(both())
    errors = [r for r in results if isinstance(r, SignupError)]
    assert len(errors) == 1
    assert errors[0].status_code == 409
    assert auth.db.query(UserInfo).filter_by(username="alice").count() == 1


def test_approval_rules(db: object) -> None:
    auth = native(db, admin_users=["admin", "ops"])
    assert asyncio.run(auth.signup("alice", PASSWORD)).is_authorized is False
    # Bootstrap: no admin yet, so an admin name is approved at once ...
    assert asyncio.run(auth.signup("admin", PASSWORD)).is_authorized is True
    # ... but once one exists, claiming another admin name waits like anyone.
    assert asyncio.run(auth.signup("ops", PASSWORD)).is_authorized is False


def test_open_signup_approves_at_once(db: object) -> None:
    auth = native(db, open_signup=True)
    assert asyncio.run(auth.signup("alice", PASSWORD)).is_authorized is True


def test_authenticate(db: object) -> None:
    auth = native(db, open_signup=False)
    record = asyncio.run(auth.signup("alice", PASSWORD))

    def login(**data: str) -> str | None:
        return asyncio.run(auth.authenticate(None, data))

    assert login(username="alice", password=PASSWORD) is None  # not approved yet
    assert asyncio.run(auth.is_pending("alice", PASSWORD)) is True
    assert asyncio.run(auth.is_pending("alice", "wrong-password-1")) is False
    record.is_authorized = True
    auth.db.commit()
    assert login(username="alice", password=PASSWORD) == "alice"
    assert login(username="ALICE", password=PASSWORD) == "alice"
    assert login(username="alice", password="wrong-password-1") is None
    assert login(username="alice", password="x" * 200) is None
    assert login(username="alice") is None
    assert login(password=PASSWORD) is None
    assert login(username="nobody-here", password=PASSWORD) is None


def test_check_signup_messages(db: object) -> None:
    auth = native(db)
    asyncio.run(auth.signup("alice", PASSWORD))
    cases = {
        ("root", PASSWORD, PASSWORD): (400, "reserved for the system"),
        ("alice", PASSWORD, PASSWORD): (409, "already taken"),
        ("bob", PASSWORD, "x"): (400, "confirmation differ"),
        ("bob", "short", "short"): (400, "at least 10 characters"),
        ("bob", "é" * 40, "é" * 40): (400, "at most 72 bytes"),
        ("bob", "password123", "password123"): (400, "commonly used"),
        ("bob", "bob-is-great-77", "bob-is-great-77"): (400, "must not contain the username"),
    }
    for (name, password, confirmation), (status, text) in cases.items():
        with pytest.raises(SignupError) as caught:
            auth.check_signup(name, password, confirmation)
        assert caught.value.status_code == status
        assert text in caught.value.message
    auth.check_signup("bob", PASSWORD, PASSWORD)  # and a good one passes


def test_default_groups_are_added_never_removed(db: object) -> None:
    auth = native(db)
    user = orm.User(name="alice")
    db.add(user)
    staff = orm.Group(name="staff")
    db.add(staff)
    user.groups.append(staff)
    db.commit()
    auth.add_user(user)
    assert sorted(g.name for g in user.groups) == ["staff", "users"]
    auth.add_user(user)  # idempotent (called for every user at each hub start)
    assert sorted(g.name for g in user.groups) == ["staff", "users"]
    assert db.query(orm.Group).filter_by(name="users").count() == 1
