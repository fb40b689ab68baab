"""Building the middleware list of a crawl from its settings and its spider."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from crawler._auth import ApiKeyAuth, BasicAuth, BearerAuth, OAuth2ClientCredentials, Secret
from crawler._exceptions import SettingsError
from crawler._middleware import Middleware
from crawler._settings import AuthSettings, Settings
from crawler._spider import Spider
from crawler._url import host_key

__all__ = ["auth_hosts", "build_auth", "build_middleware", "load_middleware"]


def auth_hosts(spider: Spider, auth: AuthSettings) -> tuple[str, ...]:
    """The hosts that get credentials: ``auth.hosts``, else the spider's ``allowed_domains`` (and their
    subdomains), else the hosts of its ``start_urls``.  Raises :class:`crawler.SettingsError` when none is known."""
    if auth.hosts:
        return auth.hosts
    if spider.allowed_domains:
        return tuple(p for d in spider.allowed_domains for p in (d, f"*.{d}"))
    hosts = tuple(sorted({host_key(url) for url in spider.start_urls}))
    if not hosts:
        raise SettingsError(
            "invalid settings: auth.hosts is empty and the spider has no allowed_domains or start_urls; "
            "name the hosts that may receive credentials"
        )
    return hosts


def _need(auth: AuthSettings, *names: str) -> None:
    for name in names:
        if not getattr(auth, name):
            raise SettingsError(f"invalid settings: auth.{name} is required for auth.kind = {auth.kind!r}")


def build_auth(spider: Spider, auth: AuthSettings) -> Middleware | None:
    """The auth middleware that ``auth`` describes, or None for ``kind = "none"``.  Raises
    :class:`crawler.SettingsError` for a missing field or a secret given in clear, and :class:`crawler.AuthError`
    when the secret's variable or file is missing."""
    if auth.kind == "none":
        return None
    _need(auth, "secret")
    assert auth.secret is not None
    secret = Secret(auth.secret)
    secret.get()  # fail now, naming the variable or file, rather than on every request
    hosts = auth_hosts(spider, auth)
    if auth.kind == "api_key":
        return ApiKeyAuth(secret=secret, header=auth.header, query_param=auth.query_param, hosts=hosts)
    if auth.kind == "bearer":
        return BearerAuth(secret=secret, hosts=hosts)
    if auth.kind == "basic":
        _need(auth, "username")
        assert auth.username is not None
        return BasicAuth(username=auth.username, secret=secret, hosts=hosts)
    _need(auth, "token_url", "client_id")
    assert auth.token_url is not None and auth.client_id is not None
    return OAuth2ClientCredentials(
        token_url=auth.token_url, client_id=auth.client_id, secret=secret, scope=auth.scope, hosts=hosts
    )


def load_middleware(name: str, settings: Settings) -> Middleware:
    """Make the middleware ``name``: an entry point of the ``crawler.middleware`` group, or a
    ``module:attribute`` path; the object found is called with ``settings`` and returns the middleware.  Raises
    :class:`crawler.SettingsError` naming it when it cannot be found, loaded or built."""
    try:
        if ":" in name:
            module, _, attribute = name.partition(":")
            factory = getattr(importlib.import_module(module), attribute)
        else:
            found = [ep for ep in entry_points(group="crawler.middleware") if ep.name == name]
            if not found:
                known = ", ".join(sorted(ep.name for ep in entry_points(group="crawler.middleware"))) or "none"
                raise SettingsError(
                    f"invalid settings: crawl.middleware: no middleware named {name!r} is installed "
                    f"(installed: {known}; or give module:attribute)"
                )
            factory = found[0].load()
        middleware: Middleware = factory(settings)
    except SettingsError:
        raise
    except Exception as exc:
        raise SettingsError(
            f"invalid settings: crawl.middleware: cannot load {name!r}: {type(exc).__name__}: {exc}"
        ) from None
    return middleware


def build_middleware(spider: Spider, settings: Settings) -> list[Middleware]:
    """Auth from ``settings.auth`` first, then ``settings.crawl.middleware`` (see :func:`load_middleware`), then
    the spider's own ``middleware`` list."""
    chain: list[Middleware] = []
    auth = build_auth(spider, settings.auth)
    if auth is not None:
        chain.append(auth)
    chain.extend(load_middleware(name, settings) for name in settings.crawl.middleware)
    chain.extend(getattr(spider, "middleware", ()))
    return chain
