"""Read a response's rate-limit header fields, in every dialect met in the wild: pure functions of values.

Dialects, in the order they are tried; ``source`` names the one read.  "Reset" is converted to ``reset_after``,
seconds from ``now``:

- ``ietf-draft-08``: draft-ietf-httpapi-ratelimit-headers-08 to -10 §3-4 (and Cloudflare's API since 2025),
  Structured Field Lists (RFC 9651) ``RateLimit-Policy: "burst";q=100;w=60, "daily";q=1000;w=86400`` (``q``
  quota, ``w`` window in seconds, ``qu`` quota unit, ``pk`` partition key) and ``RateLimit: "default";r=50;t=30``
  (``r`` remaining, ``t`` seconds until quota is restored).  Token names (``burst;q=100``, draft -08) too.
- ``ietf-draft-07``: ``RateLimit: limit=100, remaining=50, reset=5`` (an SF Dictionary; reset in seconds) with
  ``RateLimit-Policy: 100;w=10``.
- ``ietf-draft-06``: drafts up to -06, ``RateLimit-Limit: 100``, ``RateLimit-Remaining: 50``, ``RateLimit-Reset:
  5`` (seconds), ``RateLimit-Policy: 100;w=10``; also GitLab ("Rate limits" docs), whose ``RateLimit-Reset`` is
  a Unix timestamp (told apart by size, :data:`EPOCH_THRESHOLD`) and ``RateLimit-ResetTime`` an HTTP-date.
- ``x-ratelimit``: ``X-RateLimit-Limit``, ``-Remaining``, ``-Used``, ``-Reset``, ``-Reset-After``.  Reset is a
  Unix timestamp for GitHub REST and Discord (with a fraction), seconds for Reddit, an HTTP-date for Cloudflare
  before 2025; Discord's ``-Reset-After`` is seconds (with a fraction).  Reddit sends no limit, and a
  fractional remaining (API rules).
- ``x-rate-limit``: X (Twitter) API v2, ``x-rate-limit-limit``, ``-remaining``, ``-reset`` (a Unix timestamp).
- ``retry-after``: only ``Retry-After`` (RFC 9110 §10.2.3, :func:`crawler._retry_after.parse_retry_after`).

The first dialect that gives a remaining quota or a reset time is returned; failing that, the first that gives
anything (a policy alone).  Dialects are not mixed.  ``Retry-After`` is read in every case, into
``retry_after``, and it takes precedence over any reset time (draft -10 §7): see :attr:`RateLimitInfo.delay`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, TypeAlias

import attrs
import http_sf
from multidict import CIMultiDict, CIMultiDictProxy

from crawler._headers import HeadersLike, header_map
from crawler._retry_after import parse_http_date, parse_retry_after

__all__ = ["EPOCH_THRESHOLD", "RateLimitInfo", "RateLimitPolicy", "RateLimitSource", "parse_rate_limit"]

RateLimitSource: TypeAlias = Literal[
    "ietf-draft-08", "ietf-draft-07", "ietf-draft-06", "x-ratelimit", "x-rate-limit", "retry-after"
]

#: A reset value at or above this is a Unix timestamp, below it a number of seconds: 10**9 s is 2001-09-09 as a
#: timestamp and 31 years as a delay, which no API means.  At or above 10**12 it is a timestamp in milliseconds.
EPOCH_THRESHOLD = 1e9
_EPOCH_MS_THRESHOLD = 1e12
# Lower-case prefixes of every field name this module reads.
_FIELD_PREFIXES = ("retry-after", "ratelimit", "x-ratelimit-", "x-rate-limit-")

# A de-facto numeric field: a non-negative decimal, optionally with draft-style parameters (``100;w=60``).
_NUMBER = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(;.*)?", re.DOTALL)
_WINDOW_PARAM = re.compile(r";\s*(?:w|window)\s*=\s*([0-9]+(?:\.[0-9]*)?)", re.IGNORECASE)


@attrs.frozen(kw_only=True)
class RateLimitPolicy:
    """One quota policy (``RateLimit-Policy`` item) and its current service limit (``RateLimit`` item).

    ``name``: the policy's identifier (``"burst"``), ``None`` in draft -06/-07 where policies have none.
    ``quota``: ``q``, in ``quota_unit`` (``"requests"``, ``"content-bytes"``, ``"concurrent-requests"``).
    ``window``: ``w``, seconds.  ``partition_key``: ``pk``, bytes.  ``remaining`` (``r``, quota units) and
    ``reset_after`` (``t``, seconds from the response) come from the ``RateLimit`` item of the same name.
    Any of them is ``None`` when not sent; numbers are finite and >= 0.
    """

    name: str | None = None
    quota: float | None = None
    window: float | None = None
    quota_unit: str = "requests"
    partition_key: bytes | None = None
    remaining: float | None = None
    reset_after: float | None = None


@attrs.frozen(kw_only=True)
class RateLimitInfo:
    """What a response's headers say about the client's quota on that host: a frozen value.

    - ``source``: the dialect read (see the module docstring).
    - ``limit``: the quota of the current window, in requests (or the policy's quota unit).
    - ``remaining``: quota left (may be fractional: Reddit).
    - ``reset_after``: seconds from ``now`` until the quota is restored; 0.0 for a reset time already past.
    - ``window``: the length of the quota's time window, seconds.
    - ``retry_after``: seconds from ``Retry-After``, whatever the dialect.
    - ``policies``: every quota policy advertised (IETF dialects), the chosen one among them.

    Every number is ``None`` when not sent, else finite and >= 0.
    """

    source: RateLimitSource
    limit: float | None = None
    remaining: float | None = None
    reset_after: float | None = None
    window: float | None = None
    retry_after: float | None = None
    policies: tuple[RateLimitPolicy, ...] = ()

    @property
    def exhausted(self) -> bool:
        """True when no whole request is left: ``remaining`` < 1."""
        return self.remaining is not None and self.remaining < 1

    @property
    def delay(self) -> float:
        """Seconds to wait before the next request: ``retry_after`` if sent (it takes precedence, draft -10 §7),
        else ``reset_after`` if :attr:`exhausted`, else 0.0 (also when exhausted with no reset time known)."""
        if self.retry_after is not None:
            return self.retry_after
        if self.exhausted and self.reset_after is not None:
            return self.reset_after
        return 0.0


def parse_rate_limit(headers: HeadersLike, now: float) -> RateLimitInfo | None:
    """Return the rate-limit state a response announces, or ``None`` if it announces none.

    ``headers``: a case-insensitive container or pairs, as :data:`crawler._headers.HeadersLike` describes (a
    ``dict`` is scanned case-insensitively; repeated field lines are kept apart and joined with ``", "`` for
    Structured Fields, RFC 9651 §4.2).  ``now``: the current time, seconds since the epoch, for timestamps
    and HTTP-dates.

    Raises nothing: a malformed field is ignored (draft -10 §7), as is a negative or non-numeric value.
    """
    if isinstance(headers, CIMultiDictProxy | CIMultiDict) and not any(
        name.lower().startswith(_FIELD_PREFIXES)
        for name in headers.keys()  # noqa: SIM118 (names, repeated)
    ):
        return None  # the common case, checked cheaply: a response that says nothing about rate limits
    fields = header_map(headers)
    retry_after = _first(fields.get("retry-after", ()), lambda value: parse_retry_after(value, now))
    found: RateLimitInfo | None = None
    for reader in (_read_ietf, _read_x_ratelimit, _read_x_rate_limit):
        info = reader(fields, now)
        if info is None:
            continue
        if info.remaining is not None or info.reset_after is not None:
            found = info
            break
        found = found or info
    if found is not None:
        return attrs.evolve(found, retry_after=retry_after)
    if retry_after is not None:
        return RateLimitInfo(source="retry-after", retry_after=retry_after)
    return None


# -- the IETF dialects --------------------------------------------------------------------------------------


def _read_ietf(fields: Mapping[str, list[str]], now: float) -> RateLimitInfo | None:
    policies = _read_policies(_sf_parse(fields.get("ratelimit-policy"), "list"))
    structured = _read_service_limits(fields, policies)
    if structured is not None:
        return structured
    draft07 = _read_draft07(_sf_parse(fields.get("ratelimit"), "dictionary"), policies)
    if draft07 is not None:
        return draft07
    draft06 = _read_prefixed(fields, "ratelimit-", "ietf-draft-06", now)
    if draft06 is not None:
        return _with_policies(draft06, policies)
    if policies:  # a RateLimit-Policy alone
        named = any(policy.name is not None for policy in policies)
        chosen = _slowest(policies)
        return RateLimitInfo(
            source="ietf-draft-08" if named else "ietf-draft-07",
            limit=chosen.quota,
            window=chosen.window,
            policies=tuple(policies),
        )
    return None


def _sf_parse(values: list[str] | None, tltype: str) -> Any:
    """Parse the field lines ``values`` as one Structured Field (RFC 9651 §4.2); ``None`` if absent or malformed."""
    if not values:
        return None
    try:
        return http_sf.parse(", ".join(values).encode("ascii"), tltype=tltype)
    except Exception:  # a third-party parser on untrusted input: any failure means "malformed", to be ignored
        return None


def _sf_number(value: object) -> float | None:
    """A non-negative SF Integer or Decimal as a float; ``None`` for anything else (Booleans included)."""
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        return None
    number = float(value)
    return number if math.isfinite(number) and number >= 0 else None


def _sf_text(value: object) -> str | None:
    return str(value) if isinstance(value, str | http_sf.Token) else None


def _members(parsed: Any) -> list[tuple[Any, dict[str, Any]]]:
    """The (bare item, parameters) members of an SF List, Inner Lists left out."""
    if not isinstance(parsed, list):
        return []
    return [
        (member[0], member[1])
        for member in parsed
        if isinstance(member, tuple) and len(member) == 2 and not isinstance(member[0], list)
    ]


def _read_policies(parsed: Any) -> list[RateLimitPolicy]:
    """Quota policies: ``"name";q=100;w=60`` (draft -08+) or ``100;w=60`` (drafts -06/-07); a member with no
    quota, or an invalid one, is left out."""
    policies = []
    for value, params in _members(parsed):
        if isinstance(value, int) and not isinstance(value, bool) and "q" not in params:
            name, quota = None, _sf_number(value)
        else:
            name, quota = _sf_text(value), _sf_number(params.get("q"))
        if quota is None:
            continue
        window = _sf_number(params.get("w"))
        unit = _sf_text(params.get("qu"))
        key = params.get("pk")
        policies.append(
            RateLimitPolicy(
                name=name,
                quota=quota,
                window=window if window else None,  # w must be > 0
                quota_unit=unit or "requests",
                partition_key=key if isinstance(key, bytes) else None,
            )
        )
    return policies


def _read_service_limits(fields: Mapping[str, list[str]], policies: list[RateLimitPolicy]) -> RateLimitInfo | None:
    """Draft -08+ ``RateLimit`` List: each member names a policy and carries ``r`` (required) and ``t``."""
    items = []
    for value, params in _members(_sf_parse(fields.get("ratelimit"), "list")):
        remaining = _sf_number(params.get("r"))
        if remaining is not None:
            items.append((_sf_text(value), remaining, _sf_number(params.get("t")), params.get("pk")))
    if not items:
        return None
    combined = list(policies)
    for name, remaining, reset, key in items:
        index = next((i for i, policy in enumerate(policies) if policy.name == name and name is not None), None)
        if index is None and len(items) == 1 and len(policies) == 1:
            index = 0  # one limit, one policy: they go together even if named differently
        if index is None:
            combined.append(
                RateLimitPolicy(
                    name=name,
                    remaining=remaining,
                    reset_after=reset,
                    partition_key=key if isinstance(key, bytes) else None,
                )
            )
        elif combined[index].remaining is None:  # of two items for one policy, the first counts
            combined[index] = attrs.evolve(combined[index], remaining=remaining, reset_after=reset)
    chosen = _most_restrictive([policy for policy in combined if policy.remaining is not None])
    return RateLimitInfo(
        source="ietf-draft-08",
        limit=chosen.quota,
        remaining=chosen.remaining,
        reset_after=chosen.reset_after,
        window=chosen.window,
        policies=tuple(combined),
    )


def _most_restrictive(limits: list[RateLimitPolicy]) -> RateLimitPolicy:
    """Among service limits (``remaining`` set), the one that binds: of the exhausted ones (``remaining`` < 1),
    the one that resets last; otherwise the lowest ``remaining``, preferring policies counted in requests."""
    exhausted = [limit for limit in limits if (limit.remaining or 0) < 1]
    if exhausted:
        return max(exhausted, key=lambda limit: limit.reset_after or 0.0)
    pool = [limit for limit in limits if limit.quota_unit == "requests"] or limits
    return min(pool, key=lambda limit: (limit.remaining or 0.0, -(limit.reset_after or 0.0)))


def _slowest(policies: list[RateLimitPolicy]) -> RateLimitPolicy:
    """Among policies alone (no ``RateLimit``), the lowest rate ``quota / window``, preferring ones counted in
    requests and with a window; without windows, the lowest quota."""
    pool = [policy for policy in policies if policy.quota_unit == "requests"] or policies
    timed = [policy for policy in pool if policy.window]
    if timed:
        return min(timed, key=lambda policy: (policy.quota or 0.0) / (policy.window or 1.0))
    return min(pool, key=lambda policy: policy.quota or 0.0)


def _read_draft07(parsed: Any, policies: list[RateLimitPolicy]) -> RateLimitInfo | None:
    """Draft -07 ``RateLimit`` Dictionary: ``limit``, ``remaining``, ``reset`` (seconds)."""
    if not isinstance(parsed, dict):
        return None

    def member(key: str) -> float | None:
        value = parsed.get(key)
        return _sf_number(value[0] if isinstance(value, tuple) else value)

    limit, remaining, reset = member("limit"), member("remaining"), member("reset")
    if limit is None and remaining is None and reset is None:
        return None
    info = RateLimitInfo(source="ietf-draft-07", limit=limit, remaining=remaining, reset_after=reset)
    return _with_policies(info, policies)


def _with_policies(info: RateLimitInfo, policies: list[RateLimitPolicy]) -> RateLimitInfo:
    """Drafts -06/-07: the window is that of the policy whose quota is the current limit (or of the only one)."""
    if not policies:
        return info
    match = [policy for policy in policies if info.limit is not None and policy.quota == info.limit]
    if not match and len(policies) == 1:
        match = policies
    window = info.window
    if window is None and match:
        window = match[0].window
    return attrs.evolve(info, window=window, policies=tuple(policies))


# -- separate numeric fields: drafts up to -06, GitLab, X-RateLimit-*, X-Rate-Limit-* ------------------------


def _read_x_ratelimit(fields: Mapping[str, list[str]], now: float) -> RateLimitInfo | None:
    return _read_prefixed(fields, "x-ratelimit-", "x-ratelimit", now)


def _read_x_rate_limit(fields: Mapping[str, list[str]], now: float) -> RateLimitInfo | None:
    return _read_prefixed(fields, "x-rate-limit-", "x-rate-limit", now)


def _read_prefixed(
    fields: Mapping[str, list[str]], prefix: str, source: RateLimitSource, now: float
) -> RateLimitInfo | None:
    """``<prefix>limit``, ``-remaining``, ``-used``, ``-reset-after``, ``-reset``, ``-resettime``.

    ``limit`` may carry a window (``100;w=60``, ``100, 100;window=60`` in early drafts); a missing ``limit`` is
    ``used + remaining`` when both are sent (Reddit).  ``reset-after`` (Discord) wins over ``reset``, which is
    read with :func:`_reset_seconds`; ``resettime`` (GitLab, an HTTP-date) is the last resort.
    """

    def get(name: str) -> list[str]:
        return fields.get(prefix + name, [])

    limit = _first(get("limit"), _number)
    remaining = _first(get("remaining"), _number)
    used = _first(get("used"), _number)
    if limit is None and used is not None and remaining is not None:
        limit = used + remaining
    reset = _first(get("reset-after"), _number)
    if reset is None:
        reset = _first(get("reset"), lambda value: _reset_seconds(value, now))
    if reset is None:
        reset = _first(get("resettime"), lambda value: _until(parse_http_date(value, now), now))
    if limit is None and remaining is None and reset is None:
        return None
    window = _first(get("limit"), _window)
    return RateLimitInfo(source=source, limit=limit, remaining=remaining, reset_after=reset, window=window)


def _first(values: Sequence[str], read: Callable[[str], float | None]) -> float | None:
    """The first of ``values`` that ``read`` can read (a field sent twice: the first line counts)."""
    for value in values:
        result = read(value)
        if result is not None:
            return result
    return None


def _number(value: str) -> float | None:
    """A de-facto numeric field: a non-negative decimal; of a list (``100, 100;w=10``) the first member."""
    match = _NUMBER.fullmatch(value.split(",", 1)[0])
    if match is None:
        return None
    number = float(match[1])
    return number if math.isfinite(number) else None


def _window(value: str) -> float | None:
    match = _WINDOW_PARAM.search(value)
    if match is None:
        return None
    window = float(match[1])
    return window if math.isfinite(window) and window > 0 else None


def _until(stamp: float | None, now: float) -> float | None:
    if stamp is None:
        return None
    return max(0.0, stamp - now)


def _reset_seconds(value: str, now: float) -> float | None:
    """A reset field as seconds from ``now``: a number below :data:`EPOCH_THRESHOLD` is a delay (drafts, Reddit),
    one above it a Unix timestamp in seconds (GitHub, X, Discord, GitLab) or, above 10**12, in milliseconds; a
    past timestamp gives 0.0.  Else an HTTP-date (Cloudflare, before 2025)."""
    number = _number(value)
    if number is None:
        return _until(parse_http_date(value, now), now)
    if number >= _EPOCH_MS_THRESHOLD:
        return _until(number / 1000.0, now)
    if number >= EPOCH_THRESHOLD:
        return _until(number, now)
    return number
