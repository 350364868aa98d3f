"""The embedded default's identity: sign-up with admin approval and password rules.

:class:`SciplatNativeAuthenticator` is jupyterhub-nativeauthenticator made to work on
JupyterHub 6 (its own login handler is a 500 there) with sciplat's username rule, clear
sign-up errors (on the page and as JSON), approval by POST with an XSRF token instead of a
GET link, and default groups.
"""

from __future__ import annotations

import asyncio
from typing import Any

import bcrypt
from nativeauthenticator import NativeAuthenticator
from nativeauthenticator.orm import UserInfo
from traitlets import default

from . import handlers
from .errors import SignupError
from .groups import SciplatAuthMixin, add_to_groups

__all__ = ["MAX_PASSWORD_BYTES", "SciplatNativeAuthenticator"]

#: bcrypt hashes at most 72 bytes, and bcrypt >= 5 raises on longer input (upstream turned that
#: into a 500 at sign-up and at login).
MAX_PASSWORD_BYTES = 72


class SciplatNativeAuthenticator(SciplatAuthMixin, NativeAuthenticator):
    """Local accounts with passwords: people sign up, an admin approves, then they log in.

    Every approved user joins :attr:`default_groups` when their hub account is created (first
    login, or an admin creating it) and again at every hub start, so the groups' roles reach
    them. Admins may add users to further groups on the admin page; logins never remove
    memberships.
    """

    @default("check_common_password")
    def _check_common_default(self) -> bool:
        return True

    @default("minimum_password_length")
    def _minimum_length_default(self) -> int:
        return 10

    # -- rules ----------------------------------------------------------------------------
    def password_problem(self, password: str, username: str = "") -> str | None:
        """Why *password* is not acceptable, or None."""
        if len(password) < self.minimum_password_length:
            return f"Passwords need at least {self.minimum_password_length} characters."
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            return f"Passwords can be at most {MAX_PASSWORD_BYTES} bytes long."
        if self.check_common_password and self.is_password_common(password):
            return "This password is on a list of commonly used passwords; choose another."
        if username and username.lower() in password.lower():
            return "The password must not contain the username."
        return None

    def is_password_strong(self, password: str) -> bool:
        return self.password_problem(password) is None

    def check_signup(self, username: str, password: str, confirmation: str) -> None:
        """Raise :class:`SignupError` when a sign-up must be refused (*username* normalized)."""
        if not self.enable_signup:
            raise SignupError("Sign-up is closed on this platform.", status_code=404)
        problem = self.username_problem(username)
        if problem:
            raise SignupError(problem)
        if self.user_exists(username):
            raise _taken(username)
        if password != confirmation:
            raise SignupError("The password and its confirmation differ.")
        problem = self.password_problem(password, username)
        if problem:
            raise SignupError(problem)

    def get_authed_users(self) -> set[str]:
        """Names whose sign-up is approved at once (upstream: also every name in admin_users).

        A name in ``admin_users`` is only pre-approved while no admin has an approved account
        (bootstrap); after that, claiming an admin name waits for approval like any sign-up.
        """
        approved = {info.username for info in UserInfo.all_users(self.db) if info.is_authorized}
        approved |= set(self.allowed_users)
        if approved & set(self.admin_users):
            return approved
        return approved | set(self.admin_users)

    async def signup(self, username: str, password: str, **info: Any) -> UserInfo:
        """Create the sign-up record for a request that passed :meth:`check_signup`.

        Hashes in a thread, then re-checks the name: of two concurrent sign-ups for one name,
        the second gets the 409. Approved at once with open sign-up or for a bootstrap admin
        (:meth:`get_authed_users`).
        """
        hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt())
        if self.user_exists(username):
            raise _taken(username)
        try:
            record = UserInfo(username=username, password=hashed, **info)
        except AssertionError as exc:  # UserInfo's e-mail validator
            raise SignupError(f"{info.get('email')!r} is not an e-mail address.") from exc
        record.is_authorized = self.open_signup or username in self.get_authed_users()
        self.db.add(record)
        self.db.commit()
        return record

    async def password_matches(self, record: UserInfo, password: str) -> bool:
        """Whether *password* is the one of sign-up *record*.

        bcrypt runs in a thread (it releases the GIL), so a login does not stall the hub's
        event loop for the ~0.25 s a check takes; over-long input is simply no match.
        """
        if len(password.encode()) > MAX_PASSWORD_BYTES:
            return False
        hashed = record.password  # read in the event loop: the session is not thread-safe
        return await asyncio.to_thread(bcrypt.checkpw, password.encode(), hashed)

    async def is_pending(self, username: str, password: str) -> bool:
        """True when *username* signed up with *password* but is not approved yet."""
        record = self.get_user(username)
        if record is None or record.is_authorized:
            return False
        return await self.password_matches(record, password)

    # -- JupyterHub hooks -----------------------------------------------------------------
    async def authenticate(self, handler: Any, data: dict[str, str]) -> str | None:
        """Upstream's checks (approval, failed-login lockout, 2FA), bcrypt off the loop."""
        username = self.normalize_username(data.get("username") or "")
        password = data.get("password")
        if not username or password is None:
            return None
        record = self.get_user(username)
        if record is None:
            return None
        if self.allowed_failed_logins and self.is_blocked(username):
            return None
        valid = await self.password_matches(record, password)
        if (
            valid
            and record.is_authorized
            and (not record.has_2fa or record.is_valid_token(data.get("2fa")))
        ):
            self.successful_login(username)
            return username
        self.add_login_attempt(username)
        return None

    def add_user(self, user: Any) -> None:
        super().add_user(user)
        added = add_to_groups(user, self.default_groups)
        if added:
            self.log.info("Added user %s to default group(s) %s", user.name, ", ".join(added))

    def get_handlers(self, app: Any) -> list[tuple[str, type]]:
        return [
            (r"/login", handlers.LoginHandler),
            (r"/signup", handlers.SignUpHandler),
            (r"/authorize", handlers.AuthorizationAreaHandler),
            (r"/authorize/([^/]*)", handlers.ToggleAuthorizationHandler),
            (r"/discard/([^/]*)", handlers.DiscardHandler),
            (r"/change-password", handlers.ChangePasswordHandler),
            (r"/change-password/([^/]+)", handlers.ChangePasswordAdminHandler),
        ]


def _taken(username: str) -> SignupError:
    return SignupError(
        f"The username {username!r} is already taken; please choose another.", status_code=409
    )
