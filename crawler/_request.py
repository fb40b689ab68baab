"""The :class:`Request` value and its fingerprint."""

from __future__ import annotations

import base64
import hashlib
import json as _json
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any
from urllib.parse import urlencode

import attrs

from crawler._exceptions import InvalidURL
from crawler._url import canonicalize_url, host_key, normalize_url

__all__ = ["IDEMPOTENT_METHODS", "Request", "fingerprint", "request_from_dict", "request_to_dict"]

#: Methods that RFC 9110 §9.2.2 defines as idempotent: safe to retry without the request's consent.
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

_UNSET: Any = object()


def fingerprint(method: str, url: str, body: bytes | None = None) -> str:
    """Return the dedup key of a request: 32 hex characters of BLAKE2b over the upper-cased method, the
    canonical URL (:func:`crawler.canonicalize_url`) and the body.

    Raises :class:`crawler.InvalidURL` for a URL that cannot be canonicalized.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(method.upper().encode())
    digest.update(b" ")
    digest.update(canonicalize_url(url).encode())
    if body:
        digest.update(b"\n")
        digest.update(body)
    return digest.hexdigest()


def _callback_name(value: str | Callable[..., Any] | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    name = getattr(value, "__name__", None)
    if not isinstance(name, str) or not name.isidentifier():  # a lambda is "<lambda>": no method has that name
        raise TypeError(f"callback must be a spider method or its name, not {value!r}")
    return name


@attrs.frozen(kw_only=True, slots=False, eq=False)
class Request:
    """One HTTP request the crawl will make: a frozen value.

    ``url`` is normalized on creation (:func:`crawler.normalize_url`), so a malformed URL raises
    :class:`crawler.InvalidURL` here, where it was made.  ``params`` (a mapping of query parameters) are appended to
    the URL's query; ``json`` (any JSON-serializable value) becomes the body with ``Content-Type:
    application/json``.  ``callback`` and ``errback`` are spider method names (a bound method is accepted and
    stored by name, so requests can be persisted).  ``priority``: higher is fetched first within a host.
    ``not_before``: wall-clock time (seconds since the epoch) before which the request must not be sent; retries
    and backoff set it and the request waits in the frontier.  ``dont_filter`` skips the fingerprint dedup.

    Use :meth:`replace` to derive a changed copy.  Requests compare equal when their fingerprints do.
    """

    url: str
    method: str = "GET"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    params: Mapping[str, Any] | None = None
    body: bytes | None = None
    json: Any = _UNSET
    callback: str | None = attrs.field(default=None, converter=_callback_name)
    errback: str | None = attrs.field(default=None, converter=_callback_name)
    cb_kwargs: Mapping[str, Any] = attrs.field(factory=dict)
    meta: Mapping[str, Any] = attrs.field(factory=dict)
    priority: int = 0
    depth: int = 0
    attempt: int = 0
    not_before: float | None = None
    dont_filter: bool = False
    timeout: float | None = None
    retry_non_idempotent: bool = False

    def __attrs_post_init__(self) -> None:
        raw = self.url
        cut = raw.find("#")  # the fragment never reaches the server: one cache entry serves every fragment
        try:
            url = normalize_url(raw if cut < 0 else raw[:cut])
        except InvalidURL:
            normalize_url(raw)  # first: a malformed URL raises InvalidURL naming what the user gave
            raise
        if self.params:
            extra = urlencode(
                [(k, v) for k, vs in self.params.items() for v in (vs if isinstance(vs, list | tuple) else [vs])]
            )
            if extra:  # a normalized URL has no fragment, and "?" only where its query starts
                url = normalize_url(f"{url}&{extra}" if "?" in url else f"{url}?{extra}")
            object.__setattr__(self, "params", None)
        object.__setattr__(self, "url", url)
        object.__setattr__(self, "method", self.method.upper())
        if self.json is not _UNSET:
            body = _json.dumps(self.json, separators=(",", ":"), ensure_ascii=False).encode()
            object.__setattr__(self, "body", body)
            if not any(name.lower() == "content-type" for name in self.headers):
                object.__setattr__(self, "headers", {"Content-Type": "application/json", **self.headers})
            object.__setattr__(self, "json", _UNSET)

    @cached_property
    def fingerprint(self) -> str:
        """The dedup key: see :func:`crawler.fingerprint`."""
        return fingerprint(self.method, self.url, self.body)

    @cached_property
    def host(self) -> str:
        """The politeness key, ``host[:port]``: see :func:`crawler.host_key`."""
        return host_key(self.url)

    @property
    def idempotent(self) -> bool:
        """True for methods RFC 9110 §9.2.2 calls idempotent, or when ``retry_non_idempotent`` is set."""
        return self.method in IDEMPOTENT_METHODS or self.retry_non_idempotent

    def replace(self, **changes: Any) -> Request:
        """Return a copy with ``changes`` applied (the ``attrs.evolve`` of this request)."""
        return attrs.evolve(self, **changes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Request) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.url}>"


_PERSISTED = (
    "url",
    "method",
    "headers",
    "callback",
    "errback",
    "cb_kwargs",
    "meta",
    "priority",
    "depth",
    "attempt",
    "not_before",
    "dont_filter",
    "timeout",
    "retry_non_idempotent",
)


def _default(field: Any) -> Any:
    default = field.default
    return default.factory() if hasattr(default, "factory") else default


_DEFAULTS: dict[str, Any] = {
    f.name: _default(f) for f in attrs.fields(Request) if f.name in _PERSISTED and f.default is not attrs.NOTHING
}


def request_to_dict(request: Request) -> dict[str, Any]:
    """Turn ``request`` into a JSON-serializable dict, for frontiers that store requests outside the process.

    ``body`` is base64 in ``"body_b64"``; fields at their default value are left out.  ``meta`` and ``cb_kwargs``
    must hold JSON values.  Raises :class:`TypeError` naming the request and the field that cannot be stored.
    """
    data: dict[str, Any] = {}
    for name in _PERSISTED:
        value = getattr(request, name)
        if name in _DEFAULTS and type(value) is type(_DEFAULTS[name]) and value == _DEFAULTS[name]:
            continue
        data[name] = dict(value) if isinstance(value, Mapping) else value
    if request.body is not None:
        data["body_b64"] = base64.b64encode(request.body).decode("ascii")
    for name in ("meta", "cb_kwargs", "headers"):
        if name in data:
            try:
                _json.dumps(data[name])
            except (TypeError, ValueError) as exc:
                raise TypeError(
                    f"{request!r}: {name} cannot be stored ({exc}); a persistent frontier stores requests as JSON, "
                    f"so {name} must hold JSON values (str, numbers, lists, dicts)"
                ) from None
    return data


def request_from_dict(data: Mapping[str, Any]) -> Request:
    """Rebuild a :class:`Request` from :func:`request_to_dict`'s output.  Raises :class:`KeyError` when ``url`` is
    missing and :class:`crawler.InvalidURL` for a stored URL that no longer parses."""
    fields = {name: data[name] for name in _PERSISTED if name in data}
    if "body_b64" in data:
        fields["body"] = base64.b64decode(data["body_b64"])
    return Request(**fields)
