"""First run: the first admin's account in the embedded default (NativeAuthenticator).

The password is generated, stored only as its bcrypt hash in the hub database (NativeAuthenticator's
``users_info`` table, created with the rest of the schema before the hub first starts, so nobody
can sign up as the admin first) and returned once for `sciplat up` to print.
"""

from __future__ import annotations

import logging
import secrets

from sciplat.config import Settings
from sciplat.hub.hubdb import hub_db_kwargs, hub_db_url

__all__ = ["ensure_first_admin"]


def ensure_first_admin(settings: Settings) -> tuple[str, str | None] | None:
    """Create the first admin if the hub database has none.

    Returns ``(username, password)`` when it was created now, ``(username, None)`` when it
    already existed, and None when identity is not NativeAuthenticator (OIDC: admins come from
    the provider's groups).
    """
    if settings.hub.authenticator != "native" or not settings.hub.admin_users:
        return None
    import bcrypt
    from jupyterhub import orm
    from nativeauthenticator.orm import UserInfo

    logging.getLogger("alembic").setLevel(logging.WARNING)  # schema stamping is not news
    username = settings.hub.admin_users[0]
    settings.hub_state_dir.mkdir(parents=True, exist_ok=True)
    settings.hub_state_dir.chmod(0o700)
    session = orm.new_session_factory(hub_db_url(settings), **hub_db_kwargs())()
    try:
        if UserInfo.find(session, username) is not None:
            return username, None
        password = secrets.token_urlsafe(15)
        session.add(
            UserInfo(
                username=username,
                is_authorized=True,
                password=bcrypt.hashpw(password.encode(), bcrypt.gensalt()),
            )
        )
        session.commit()
        return username, password
    finally:
        session.close()
