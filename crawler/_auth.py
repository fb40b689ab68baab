"""Authentication middleware: API key, Bearer, Basic, and OAuth 2 client credentials, with secrets read from the
environment or a file, never from code or settings in clear.

Credentials are added only to requests whose host matches one of ``hosts`` (fnmatch patterns on ``host`` or
``host:port``), so a link or a redirect to another site never carries them.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import anyio
import attrs

from crawler._exceptions import CrawlerError, SettingsError
from crawler._middleware import Fetch
from crawler._request import Request
from crawler._response import Response

__all__ = ["ApiKeyAuth", "AuthError", "BasicAuth", "BearerAuth", "OAuth2ClientCredentials", "Secret"]


class AuthError(CrawlerError):
    """Credentials could not be obtained (a missing environment variable or file, a token endpoint that refused)."""


@attrs.frozen
class Secret:
    """A reference to a secret: ``env:NAME`` (an environment variable) or ``file:PATH`` (the file's content,
    stripped).  The value is read when needed and never shown: ``repr`` and ``str`` give the reference only.

    Raises :class:`crawler.SettingsError` for a reference of another form (a secret written in clear).
    """

    ref: str

    def __attrs_post_init__(self) -> None:
        if not self.ref.startswith(("env:", "file:")) or len(self.ref) < 5:
            raise SettingsError(
                "a secret must be a reference, env:NAME or file:PATH, so that it never sits in code or config"
            )

    def get(self) -> str:
        """The secret's value.  Raises :class:`AuthError` naming the variable or file when it is missing."""
        kind, _, name = self.ref.partition(":")
        if kind == "env":
            value = os.environ.get(name)
            if not value:
                raise AuthError(f"environment variable {name} is not set (needed for credentials)")
            return value
        try:
            return Path(name).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise AuthError(f"cannot read secret file {name}: {exc.strerror}") from None

    def __repr__(self) -> str:
        return f"Secret({self.ref!r})"

    __str__ = __repr__


def _matches(host: str, patterns: Sequence[str]) -> bool:
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return any(fnmatch.fnmatchcase(host, p) or fnmatch.fnmatchcase(name, p) for p in patterns)


@attrs.define(kw_only=True)
class _HostScoped:
    hosts: Sequence[str] = ()

    async def open(self, fetch: Fetch) -> None:
        return None

    def applies(self, request: Request) -> bool:
        return _matches(request.host, self.hosts)

    async def process_response(self, request: Request, response: Response) -> Response | Request:
        return response


@attrs.define(kw_only=True)
class ApiKeyAuth(_HostScoped):
    """Send an API key in a header (``header``, default ``X-API-Key``) or, with ``query_param``, in the query."""

    secret: Secret
    header: str = "X-API-Key"
    query_param: str | None = None

    async def process_request(self, request: Request) -> Request:
        if not self.applies(request):
            return request
        if self.query_param:
            return request.replace(params={self.query_param: self.secret.get()})
        return request.replace(headers={**request.headers, self.header: self.secret.get()})


@attrs.define(kw_only=True)
class BearerAuth(_HostScoped):
    """Send ``Authorization: Bearer <token>`` (RFC 6750 §2.1)."""

    secret: Secret

    async def process_request(self, request: Request) -> Request:
        if not self.applies(request):
            return request
        return request.replace(headers={**request.headers, "Authorization": f"Bearer {self.secret.get()}"})


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


@attrs.define(kw_only=True)
class BasicAuth(_HostScoped):
    """Send ``Authorization: Basic`` with ``username`` and the ``secret`` password (RFC 7617)."""

    username: str
    secret: Secret

    async def process_request(self, request: Request) -> Request:
        if not self.applies(request):
            return request
        return request.replace(headers={**request.headers, "Authorization": _basic(self.username, self.secret.get())})


@attrs.define(kw_only=True)
class OAuth2ClientCredentials(_HostScoped):
    """OAuth 2 client credentials grant (RFC 6749 §4.4): fetch an access token from ``token_url`` with
    ``client_id`` and the ``secret`` client secret (HTTP Basic, §2.3.1), send it as a Bearer token, refresh it
    ``refresh_margin`` seconds (at most half the token's life) before ``expires_in`` runs out, and on a 401
    refresh it and retry the request (once per token that failed).

    One refresh serves all concurrent workers: a lock makes the others wait for it, and a 401 for a token that was
    already replaced does not refresh again.  ``clock`` gives seconds since the epoch.
    """

    token_url: str
    client_id: str
    secret: Secret
    scope: str | None = None
    audience: str | None = None
    refresh_margin: float = 30.0
    clock: Callable[[], float] = time.time
    _fetch: Fetch | None = attrs.field(default=None, init=False)
    _token: str | None = attrs.field(default=None, init=False)
    _expires_at: float = attrs.field(default=0.0, init=False)
    _lock: anyio.Lock | None = attrs.field(default=None, init=False)
    refreshes: int = attrs.field(default=0, init=False)

    async def open(self, fetch: Fetch) -> None:
        self._fetch = fetch
        self._lock = anyio.Lock()

    async def _refresh(self, stale: str | None) -> str:
        assert self._lock is not None and self._fetch is not None, "open() was not called"
        async with self._lock:
            if self._token is not None and self._token != stale and self.clock() < self._expires_at:
                return self._token  # another worker refreshed while we waited
            form: dict[str, Any] = {"grant_type": "client_credentials"}
            if self.scope:
                form["scope"] = self.scope
            if self.audience:
                form["audience"] = self.audience
            request = Request(
                url=self.token_url,
                method="POST",
                body=urlencode(form).encode(),
                headers={
                    "Content-Type": "application/x-www-form-urlencoded",
                    "Accept": "application/json",
                    "Authorization": _basic(self.client_id, self.secret.get()),
                },
                dont_filter=True,
            )
            response = await self._fetch(request)
            try:
                data = response.json()
                token = str(data["access_token"])
                expires_in = float(data.get("expires_in", 3600))
            except (CrawlerError, KeyError, TypeError, ValueError):
                raise AuthError(
                    f"token endpoint {self.token_url} answered HTTP {response.status} without an access_token"
                ) from None
            self._token = token
            self._expires_at = self.clock() + expires_in - min(self.refresh_margin, expires_in / 2)
            self.refreshes += 1
            return token

    async def process_request(self, request: Request) -> Request:
        if not self.applies(request):
            return request
        token = self._token
        if token is None or self.clock() >= self._expires_at:
            token = await self._refresh(token)
        return request.replace(headers={**request.headers, "Authorization": f"Bearer {token}"})

    async def process_response(self, request: Request, response: Response) -> Response | Request:
        """On a 401, refresh the token and queue the request again, unless the token that failed is already a
        refreshed one that failed for this request before (then the 401 stands).  Only a digest of the failed
        token is kept in the request's meta, never the token."""
        if response.status != 401 or not self.applies(request):
            return response
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        failed = hashlib.sha256(sent.encode()).hexdigest()[:16]
        if response.request.meta.get("_auth_failed") == failed:
            return response
        await self._refresh(sent or None)
        return response.request.replace(meta={**response.request.meta, "_auth_failed": failed}, dont_filter=True)
