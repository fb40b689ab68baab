"""Which failed requests to retry, and when: a pure policy, a function of values.

A retry goes back to the frontier with ``not_before`` set to the time :meth:`RetryPolicy.decide` returns; it waits
there, never in a worker.  The delay is exponential backoff with *full jitter* (Marc Brooker, "Exponential Backoff
And Jitter", AWS Architecture Blog, 2015): ``sleep = uniform(0, min(cap, base * 2 ** attempt))``, which spreads
the retries of many clients instead of having them collide in waves.  A ``Retry-After`` the server sent (RFC 9110
§10.2.3, with 429 Too Many Requests, RFC 6585 §4, or 503 Service Unavailable, RFC 9110 §15.6.4) is a lower bound:
the retry never comes earlier than it.

Only requests that may be repeated are retried: those with an idempotent method (RFC 9110 §9.2.2) or whose
sender opted in (``Request.retry_non_idempotent``); the caller passes that as ``idempotent``.

Attempt numbering follows :attr:`crawler.Request.attempt`: the first try is attempt 0, its first retry attempt 1.
``decide(attempt=n)`` is asked after attempt ``n`` failed, so ``n + 1`` attempts have been made; with
``max_attempts=4`` the attempts are 0, 1, 2 and 3, and ``decide(attempt=3)`` gives up.

No clock is read here: ``now`` (seconds since the epoch) is passed in, and randomness comes from an injected
:class:`random.Random`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable

import attrs

__all__ = ["DEFAULT_RETRY_ERRORS", "DEFAULT_RETRY_STATUSES", "RetryPolicy"]

#: 408 Request Timeout, 425 Too Early (RFC 8470), 429 Too Many Requests (RFC 6585), 500, 502, 503, 504 (RFC 9110
#: §15.5.9, §15.6): the statuses that say "the same request may succeed later".
DEFAULT_RETRY_STATUSES: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

#: Names of the transport errors (:mod:`crawler._exceptions`) worth retrying: the network or the peer failed,
#: not the request.  ``BodyTooLarge`` and ``InvalidURL`` are left out: they would fail again.
DEFAULT_RETRY_ERRORS: frozenset[str] = frozenset({"ConnectError", "FetchTimeout", "RemoteProtocolError"})


def _non_negative(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"RetryPolicy.{attribute.name} must be a finite number >= 0 (seconds), not {value!r}")


def _at_least_one(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if value < 1:
        raise ValueError(f"RetryPolicy.{attribute.name} must be >= 1 (the first try counts), not {value!r}")


def _optional_non_negative(instance: object, attribute: attrs.Attribute[float | None], value: float | None) -> None:
    if value is not None and not (math.isfinite(value) and value >= 0):
        raise ValueError(f"RetryPolicy.{attribute.name} must be None or a finite number >= 0, not {value!r}")


def _statuses(value: Iterable[int]) -> frozenset[int]:
    return frozenset(value)


def _names(value: Iterable[str]) -> frozenset[str]:
    return frozenset(value)


@attrs.frozen(kw_only=True)
class RetryPolicy:
    """When to retry a failed request, and not before when.

    - ``max_attempts``: attempts in all, the first try included (4: one try and up to three retries).
    - ``statuses``: HTTP statuses that are retried (:data:`DEFAULT_RETRY_STATUSES`).
    - ``errors``: transport error class names that are retried (:data:`DEFAULT_RETRY_ERRORS`).
    - ``backoff_base``: seconds; the backoff ceiling after attempt ``n`` is ``backoff_base * 2 ** n``.
    - ``backoff_cap``: seconds; the ceiling never exceeds it.
    - ``max_retry_after``: seconds, or None; give up instead of waiting when the server's ``Retry-After`` asks
      for longer than this (None: wait however long it asks).

    Raises :class:`ValueError` naming the field for a value out of range.
    """

    max_attempts: int = attrs.field(default=4, validator=_at_least_one)
    statuses: frozenset[int] = attrs.field(default=DEFAULT_RETRY_STATUSES, converter=_statuses)
    errors: frozenset[str] = attrs.field(default=DEFAULT_RETRY_ERRORS, converter=_names)
    backoff_base: float = attrs.field(default=0.5, validator=_non_negative)
    backoff_cap: float = attrs.field(default=60.0, validator=_non_negative)
    max_retry_after: float | None = attrs.field(default=None, validator=_optional_non_negative)

    def retryable(self, *, status: int | None, error: str | None) -> bool:
        """True when this failure may succeed if repeated: ``status`` is in :attr:`statuses` or ``error`` (a
        transport error class name) in :attr:`errors`."""
        return (status is not None and status in self.statuses) or (error is not None and error in self.errors)

    def ceiling(self, attempt: int) -> float:
        """The upper bound of the backoff after attempt ``attempt`` failed, seconds:
        ``min(backoff_cap, backoff_base * 2 ** attempt)`` (no overflow for a large ``attempt``)."""
        exponent = max(attempt, 0)
        if exponent > 1023:  # 2.0 ** 1024 overflows; the cap has long been reached
            return self.backoff_cap
        return min(self.backoff_cap, self.backoff_base * 2.0**exponent)

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """Seconds to wait after attempt ``attempt`` failed: full jitter, ``uniform(0, ceiling(attempt))``."""
        return rng.uniform(0.0, self.ceiling(attempt))

    def decide(
        self,
        *,
        attempt: int,
        idempotent: bool,
        status: int | None,
        error: str | None,
        retry_after: float | None,
        now: float,
        rng: random.Random,
    ) -> float | None:
        """Return the time (seconds since the epoch) before which the next attempt must not start, or None to
        give up.

        ``attempt``: the number of the attempt that just failed, counted from 0 (``Request.attempt``); the retry
        is attempt ``attempt + 1``.  ``idempotent``: the request may be repeated (``Request.idempotent``).
        ``status``: the response status, None when the transport failed; ``error``: the transport error class
        name, if any.  ``retry_after``: seconds from ``Retry-After`` (see :func:`crawler._retry_after.
        parse_retry_after`), if sent.  ``now``: the current time.  ``rng`` draws the jitter.

        Gives up when the request is not idempotent, the failure is not :meth:`retryable`, ``attempt + 1``
        attempts already reach :attr:`max_attempts`, or ``retry_after`` exceeds :attr:`max_retry_after`.
        Otherwise returns ``now + max(backoff(attempt), retry_after or 0)``.
        """
        if not idempotent or not self.retryable(status=status, error=error):
            return None
        if attempt + 1 >= self.max_attempts:
            return None
        wait = self.backoff(attempt, rng)
        if retry_after is not None:
            if self.max_retry_after is not None and retry_after > self.max_retry_after:
                return None
            wait = max(wait, retry_after)
        return now + wait
