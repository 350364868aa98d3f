"""Request handlers of :class:`~sciplat.hub.auth.native.SciplatNativeAuthenticator`.

They replace nativeauthenticator 1.3's handlers where those fail on JupyterHub 6 or give
vague answers:

- login: no ``statsd`` (removed in JupyterHub 6: every POST was a 500), a ``_render`` that
  accepts the error-page namespace JupyterHub 6 passes, 403 on failure, and a message that
  tells a pending user to wait for approval;
- sign-up: one precise message per refusal, with a status code (400 invalid, 409 taken), as
  the page or, for ``Accept: application/json``, as ``{"status": ..., "message": ...}``;
- approval: POST with an XSRF token from the authorization page (the upstream GET link could
  be triggered cross-site), 404 for unknown names instead of a 500;
- change password: the sign-up rules and messages, and no 500 on passwords over bcrypt's limit.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, FileSystemLoader
from nativeauthenticator import handlers as upstream
from nativeauthenticator.orm import UserInfo
from tornado import web
from tornado.escape import url_escape
from tornado.httputil import url_concat

from .errors import SignupError

__all__ = [
    "AuthorizationAreaHandler",
    "ChangePasswordAdminHandler",
    "ChangePasswordHandler",
    "DiscardHandler",
    "LoginHandler",
    "SignUpHandler",
    "ToggleAuthorizationHandler",
]

TEMPLATE_DIR = Path(__file__).parent / "templates"

ChangePasswordAdminHandler = upstream.ChangePasswordAdminHandler
_admin_only = upstream.admin_users_scope


class _Base(upstream.LocalBase):
    """Adds nativeauthenticator's and sciplat's (``sciplat-*.html``) templates to the hub's.

    Upstream registers its templates with the async environment only; error pages render
    with the sync one (``jinja2_env_sync``), so both get them here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for key in ("jinja2_env", "jinja2_env_sync"):
            env = self.settings[key]
            if not getattr(env, "sciplat_auth_templates", False):
                dirs = [str(TEMPLATE_DIR), upstream.TEMPLATE_DIR]
                env.loader = ChoiceLoader([env.loader, FileSystemLoader(dirs)])
                env.sciplat_auth_templates = True

    def wants_json(self) -> bool:
        return "application/json" in self.request.headers.get("Accept", "")


class LoginHandler(_Base, upstream.LoginHandler):
    """``/hub/login``: the native login form."""

    def _render(
        self,
        login_error: str | None = None,
        username: str | None = None,
        sync: bool = False,
        **error_namespace: Any,
    ) -> Any:
        # JupyterHub 6 renders a failed form POST's error page (an expired XSRF token, ...)
        # as the login form, through _render(sync=True, status_code=..., message=...).
        auth = self.authenticator
        return self.render_template(
            "native-login.html",
            sync=sync,
            next=url_escape(self.get_argument("next", default="")),
            username=username,
            login_error=login_error,
            custom_html=auth.custom_html,
            login_url=self.settings["login_url"],
            enable_signup=auth.enable_signup,
            two_factor_auth=auth.allow_2fa,
            authenticator_login_url=url_concat(
                auth.login_url(self.hub.base_url), {"next": self.get_argument("next", "")}
            ),
        )

    async def post(self) -> None:
        data = {
            name: self.get_argument(name, strip=name == "username")
            for name in self.request.body_arguments
            if name != "_xsrf"
        }
        user = await self.login_user(data)
        if user:
            self._jupyterhub_user = user
            self.redirect(self.get_next_url(user))
            return
        username = data.get("username", "")
        error = "Invalid username or password."
        normalized = self.authenticator.normalize_username(username)
        if normalized and await self.authenticator.is_pending(normalized, data.get("password", "")):
            error = f"Your account {normalized!r} is waiting for an administrator's approval."
        self.set_status(403)
        self.finish(await self._render(login_error=error, username=username[:32]))


class SignUpHandler(_Base, upstream.SignUpHandler):
    """``/hub/signup``: create an account that waits for approval (or not, with open sign-up)."""

    async def post(self) -> None:
        auth = self.authenticator
        raw = self.get_body_argument("username", "", strip=True)
        username = auth.normalize_username(raw)
        password = self.get_body_argument("signup_password", "", strip=False)
        confirmation = self.get_body_argument("signup_password_confirmation", None, strip=False)
        if confirmation is None:  # API clients may omit the confirmation
            confirmation = password
        try:
            auth.check_signup(username, password, confirmation)
            record = await auth.signup(
                username,
                password,
                # Only what the form offers: no 2FA or e-mail smuggled in by hand.
                email=self.get_body_argument("email", "", strip=True)
                if auth.ask_email_on_signup
                else "",
                has_2fa=auth.allow_2fa and bool(self.get_body_argument("2fa", "", strip=False)),
            )
        except SignupError as exc:
            if exc.status_code == 404:
                raise web.HTTPError(404, exc.message) from exc
            self.log.info("Sign-up of %.40r refused: %s", raw, exc.message)
            await self._reply(exc.status_code, "alert-danger", exc.message, username=raw)
            return
        if record.is_authorized:
            message = f"Your account {username!r} is ready: you can log in now."
        else:
            message = (
                f"Your account {username!r} was created and is waiting for an administrator's "
                "approval. You can log in once it is approved."
            )
        self.log.info("Sign-up of %s (approved: %s)", username, record.is_authorized)
        await self._reply(201, "alert-success", message, username=username, record=record)

    async def _reply(
        self,
        status: int,
        alert: str,
        message: str,
        *,
        username: str,
        record: UserInfo | None = None,
    ) -> None:
        self.set_status(status)
        if self.wants_json():
            body: dict[str, Any] = {"status": status, "message": message}
            if record is not None:
                body.update(username=record.username, approved=bool(record.is_authorized))
            self.set_header("Content-Type", "application/json")
            self.finish(json.dumps(body))
            return
        html = await self.render_template(
            "signup.html",
            ask_email=self.authenticator.ask_email_on_signup,
            result_message=message,
            alert=alert,
            username=username,
            two_factor_auth=self.authenticator.allow_2fa,
            two_factor_auth_user=bool(record and record.has_2fa),
            two_factor_auth_value=record.otp_secret if record else "",
            recaptcha_key=None,
            tos=self.authenticator.tos,
        )
        self.finish(html)


class ChangePasswordHandler(_Base, upstream.ChangePasswordHandler):
    """``/hub/change-password``: a user changes their own password (same rules as sign-up)."""

    @web.authenticated
    async def post(self) -> None:
        auth = self.authenticator
        name = self.current_user.name
        old = self.get_body_argument("old_password", "", strip=False)
        new = self.get_body_argument("new_password", "", strip=False)
        confirmation = self.get_body_argument("new_password_confirmation", "", strip=False)
        record = auth.get_user(name)
        status, alert, message = 400, "alert-danger", ""
        if record is None or not await auth.password_matches(record, old):
            message = "Your current password was incorrect. Please try again."
        elif new != confirmation:
            message = "The new password and its confirmation differ."
        elif problem := auth.password_problem(new, name):
            message = problem
        elif not auth.change_password(name, new):
            message = "The password could not be changed; please try again."
        else:
            status, alert, message = 200, "alert-success", "Your password has been changed."
        self.set_status(status)
        html = await self.render_template(
            "change-password.html", user_name=name, result_message=message, alert=alert
        )
        self.finish(html)


class AuthorizationAreaHandler(_Base):
    """``/hub/authorize``: the admin's list of sign-ups with approve/discard buttons."""

    @_admin_only
    async def get(self) -> None:
        html = await self.render_template(
            "sciplat-authorize.html",
            ask_email=self.authenticator.ask_email_on_signup,
            users=self.db.query(UserInfo).order_by(UserInfo.id).all(),
        )
        self.finish(html)


def _find(handler: _Base, username: str) -> UserInfo:
    record = UserInfo.find(handler.db, username)
    if record is None:
        raise web.HTTPError(404, f"Nobody signed up as {username[:40]!r}.")
    return record


class ToggleAuthorizationHandler(_Base):
    """``POST /hub/authorize/<name>``: approve a sign-up, or withdraw an approval."""

    @_admin_only
    async def post(self, username: str) -> None:
        record = _find(self, username)
        record.is_authorized = not record.is_authorized
        self.db.commit()
        self.log.info(
            "%s %s user %s",
            self.current_user.name,
            "approved" if record.is_authorized else "withdrew approval of",
            username,
        )
        self.redirect(f"{self.hub.base_url}authorize#{username}")


class DiscardHandler(_Base):
    """``POST /hub/discard/<name>``: delete a sign-up that was never approved."""

    @_admin_only
    async def post(self, username: str) -> None:
        record = _find(self, username)
        if record.is_authorized:
            raise web.HTTPError(409, f"{username!r} is approved; withdraw the approval first.")
        self.db.delete(record)
        self.db.commit()
        if self.users.get(username) is not None:
            self.users.delete(username)
        self.redirect(f"{self.hub.base_url}authorize")
