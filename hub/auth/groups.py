"""Default-group membership shared by both authenticators."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jupyterhub import orm
from sqlalchemy.orm import object_session
from traitlets import List, Set, Unicode
from traitlets.config import LoggingConfigurable

from .usernames import username_problem

__all__ = ["SciplatAuthMixin", "add_to_groups"]


def add_to_groups(user: Any, names: Iterable[str]) -> list[str]:
    """Add a hub user (``User`` wrapper or ``orm.User``) to groups, creating missing ones.

    Additive: other memberships stay. Returns the names of the groups the user was added to.
    """
    orm_user = getattr(user, "orm_user", user)
    db = object_session(orm_user)
    current = {group.name for group in orm_user.groups}
    added = []
    for name in names:
        if name in current:
            continue
        group = orm.Group.find(db, name)
        if group is None:
            group = orm.Group(name=name)
            db.add(group)
        orm_user.groups.append(group)
        added.append(name)
    if added:
        db.commit()
    return added


class SciplatAuthMixin(LoggingConfigurable):
    """What every sciplat authenticator adds: the username rule and default groups."""

    default_groups = List(
        Unicode(),
        help="""Hub groups every user who gets in joins (and so holds the groups' roles).

        Example::

            c.SciplatNativeAuthenticator.default_groups = ["users"]
        """,
    ).tag(config=True)

    reserved_usernames = Set(
        Unicode(),
        help="""Usernames refused in addition to the system's accounts and groups.

        Example::

            c.SciplatNativeAuthenticator.reserved_usernames = {"guest", "test"}
        """,
    ).tag(config=True)

    def username_problem(self, username: str) -> str | None:
        """Why *username* (already normalized) cannot be used, or None."""
        return username_problem(username, extra_reserved=self.reserved_usernames)

    def validate_username(self, username: str) -> bool:
        """A username is valid when it is a safe Unix login name that is not reserved."""
        problem = self.username_problem(username)
        if problem:
            self.log.info("Refusing username %.40r: %s", username, problem)
        return problem is None
