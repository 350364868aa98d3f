"""A real OpenID Connect provider on loopback, for testing the hub's OIDC login end to end.

Built on Authlib's authorization server (authorization-code grant with PKCE, OpenID Connect
ID tokens signed with a fresh RSA key) behind Flask, served by werkzeug in a thread. It has
the endpoints a provider publishes in its discovery document (authorize, token, userinfo,
JWKS). Consent is automatic: ``/authorize`` answers as the user the test made current with
:meth:`LoopbackOIDCProvider.login_as`. Users and their claims (groups) can be changed
between logins.
"""

from __future__ import annotations

import hmac
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer, ResourceProtector, current_token
from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6750 import BearerTokenValidator
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import AuthorizationCodeMixin, UserInfo
from authlib.oidc.core.grants import OpenIDCode
from flask import Flask, jsonify
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

__all__ = ["LoopbackOIDCProvider"]


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        pass


@dataclass
class _Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]
    scope: str = "openid profile email groups"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        allowed = set(self.scope.split())
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return hmac.compare_digest(client_secret.encode(), self.client_secret.encode())

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "token":
            return method in ("client_secret_basic", "client_secret_post")
        return True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


@dataclass
class _Token(TokenMixin):
    access_token: str
    client_id: str
    scope: str
    user: str
    expires_at: float

    def check_client(self, client: _Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int(self.expires_at - time.time())

    def is_expired(self) -> bool:
        return time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return False

    def get_user(self) -> str:
        return self.user


class LoopbackOIDCProvider:
    """An OIDC provider at ``http://127.0.0.1:<port>`` with one confidential client.

    >>> provider = LoopbackOIDCProvider(port, client_id="hub", client_secret="s",
    ...                                 redirect_uris=["http://127.0.0.1:8000/hub/oauth_callback"])
    >>> provider.add_user("alice", groups=["staff"]); provider.login_as("alice")
    >>> provider.start(); ...; provider.stop()
    """

    def __init__(
        self, port: int, *, client_id: str, client_secret: str, redirect_uris: list[str]
    ) -> None:
        self.port = port
        self.issuer = f"http://127.0.0.1:{port}"
        self.client = _Client(client_id, client_secret, list(redirect_uris))
        #: Seconds an authorization code stays valid (set 0 to test expired codes).
        self.code_lifetime = 60.0
        self.users: dict[str, dict[str, Any]] = {}
        self.current_user: str | None = None
        #: When set, ``/userinfo`` answers with this HTTP status (to test a misbehaving provider).
        self.userinfo_status: int | None = None
        self.codes: dict[str, _Code] = {}
        self.tokens: dict[str, _Token] = {}
        self.key = RSAKey.generate_key(2048, parameters={"kid": "loopback-1", "use": "sig"})
        self._lock = threading.Lock()
        self.app = self._create_app()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # -- what tests change ----------------------------------------------------------------
    def add_user(self, login: str, *, groups: list[str] | None = None, **claims: Any) -> None:
        """Add or replace a user; claims default to ``preferred_username=login``."""
        with self._lock:
            self.users[login] = {
                "sub": f"sub-{login}",
                "preferred_username": login,
                "name": login.title(),
                "email": f"{login}@example.org",
                "groups": list(groups or []),
                **claims,
            }

    def set_claims(self, login: str, **claims: Any) -> None:
        with self._lock:
            self.users[login].update(claims)

    def login_as(self, login: str | None) -> None:
        """The user the provider considers logged in (and consenting) at ``/authorize``."""
        self.current_user = login

    # -- server ---------------------------------------------------------------------------
    def start(self) -> LoopbackOIDCProvider:
        self._server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": self.client.scope.split(),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "claims_supported": ["sub", "iss", "preferred_username", "name", "email", "groups"],
        }

    def _claims(self, login: str, scope: str) -> dict[str, Any]:
        with self._lock:
            user = dict(self.users[login])
        scopes = set(scope.split())
        claims = {"sub": user.pop("sub")}
        if "profile" in scopes:
            claims.update({k: user[k] for k in ("preferred_username", "name") if k in user})
        if "email" in scopes and "email" in user:
            claims["email"] = user["email"]
        if "groups" in scopes or "profile" in scopes:
            claims.update({k: v for k, v in user.items() if k not in claims and k != "email"})
        return claims

    def _create_app(self) -> Flask:
        provider = self
        app = Flask("loopback-oidc")
        app.config["OAUTH2_TOKEN_EXPIRES_IN"] = {"authorization_code": 3600}

        def save_token(token: dict[str, Any], request: Any) -> None:
            provider.tokens[token["access_token"]] = _Token(
                access_token=token["access_token"],
                client_id=request.client.client_id,
                scope=token.get("scope", ""),
                user=request.user,
                expires_at=time.time() + token.get("expires_in", 3600),
            )

        server = AuthorizationServer(
            app,
            query_client=lambda cid: provider.client if cid == provider.client.client_id else None,
            save_token=save_token,
        )

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, request: Any) -> _Code:
                payload = request.payload
                item = _Code(
                    code=code,
                    client_id=request.client.client_id,
                    redirect_uri=payload.redirect_uri,
                    scope=request.client.get_allowed_scope(payload.scope),
                    user=request.user,
                    nonce=payload.data.get("nonce"),
                    code_challenge=payload.data.get("code_challenge"),
                    code_challenge_method=payload.data.get("code_challenge_method"),
                    expires_at=time.time() + provider.code_lifetime,
                )
                provider.codes[code] = item
                return item

            def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
                item = provider.codes.get(code)
                if item and item.client_id == client.client_id and time.time() < item.expires_at:
                    return item
                return None

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                provider.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> str:
                return authorization_code.user

        class IDToken(OpenIDCode):
            def exists_nonce(self, nonce: str, request: Any) -> bool:
                return any(c.nonce == nonce for c in provider.codes.values())

            def resolve_client_private_key(self, client: _Client) -> RSAKey:
                return provider.key

            def get_client_algorithm(self, client: _Client) -> str:
                return "RS256"

            def get_encode_header(self, client: _Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": provider.key.kid}

            def get_client_claims(self, client: _Client) -> dict[str, Any]:
                return {
                    "iss": provider.issuer,
                    "aud": [client.client_id],
                    "exp": int(time.time()) + 3600,
                }

            def generate_user_info(self, user: str, scope: str) -> UserInfo:
                return UserInfo(provider._claims(user, scope))

        server.register_grant(
            CodeGrant, [IDToken(require_nonce=False), CodeChallenge(required=True)]
        )

        class Validator(BearerTokenValidator):
            def authenticate_token(self, token_string: str) -> _Token | None:
                return provider.tokens.get(token_string)

        require_oauth = ResourceProtector()
        require_oauth.register_token_validator(Validator())

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(provider.discovery_document())

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(KeySet([provider.key]).as_dict(private=False))

        @app.get("/authorize")
        def authorize() -> Any:
            login = provider.current_user
            if login not in provider.users:
                return jsonify(error="login_required", error_description="nobody is logged in"), 401
            try:
                grant = server.get_consent_grant(end_user=login)
            except OAuth2Error as exc:
                return jsonify(dict(exc.get_body())), exc.status_code
            return server.create_authorization_response(grant=grant, grant_user=login)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.route("/userinfo", methods=["GET", "POST"])
        @require_oauth("openid")
        def userinfo() -> Any:
            if provider.userinfo_status is not None:
                return jsonify(error="unavailable"), provider.userinfo_status
            return jsonify(provider._claims(current_token.user, current_token.scope))

        return app
