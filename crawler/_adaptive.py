"""Adaptive per-host politeness: a :class:`~crawler._politeness.HostPolicy` that learns from every outcome.

Pure: ``now`` (seconds since the epoch) is passed in, randomness comes from the caller's :class:`random.Random`.
The engine feeds :meth:`AdaptiveHostPolicy.observe`; the frontier reads ``limit`` and ``pause_until`` and calls
:meth:`~AdaptiveHostPolicy.on_claim` then :meth:`~AdaptiveHostPolicy.next_interval` as a request starts.
``pause_until`` never moves back, so a host in the frontier's ready heap is never scheduled too late.

- **Declared limits** (every dialect of :func:`crawler._ratelimit_headers.parse_rate_limit`): ``Retry-After``
  (RFC 9110 §10.2.3) pauses the host and wins over the rest (draft-ietf-httpapi-ratelimit-headers-10 §7); an
  exhausted quota pauses it until the reset; ``r`` requests left for ``t`` seconds are spread (interval ``t / r``).
  A quota ``q`` per ``w`` seconds (``RateLimit-Policy``, a ``;w=`` parameter, a configured ``rate``, or learned
  from the jump of ``X-RateLimit-Reset`` at a window roll-over) is enforced on a log of request starts: one
  starts only when fewer than ``q`` started in the ``w`` seconds before, and ``w / q`` after the previous one at
  the soonest; so no ``w`` seconds hold more than ``q`` starts, those made before the quota was known included.
  Omitted headers are not forgotten: the remaining quota holds until its reset, a policy until replaced.
- **AIMD**: 429 or 503 halves ``limit`` and doubles the adaptive delay (>= 0.25 s, <= ``max_delay``);
  ``recover_after`` successes in a row add 1 to ``limit`` (up to ``max_limit``), take ``delay_step`` off the delay.
- **Latency feedback** (Scrapy docs, "AutoThrottle extension"): the delay moves halfway to ``latency /
  target_concurrency`` on each outcome, never below the floor (``delay``, robots.txt ``crawl_delay``), never
  down on an error response.
- **Circuit breaker**: ``failure_threshold`` failures in a row (a transport error in ``failure_errors``, or a 5xx)
  open it: the host pauses ``cooldown`` seconds (doubled on each re-open, up to ``max_cooldown``), ``limit`` drops
  to 1.  The first request claimed after the cooldown is the probe (``half-open``); ``limit`` 1 and the frontier's
  in-flight count start no other before its outcome.  Success closes the circuit, restoring ``limit``; failure
  opens it again.
"""

from __future__ import annotations

import fnmatch
import math
import random
import re
from collections import deque
from collections.abc import Collection, Sequence
from typing import Literal, TypeAlias

import attrs

from crawler._politeness import HostPolicy, Outcome, Politeness
from crawler._ratelimit_headers import RateLimitInfo, parse_rate_limit

__all__ = [
    "DEFAULT_FAILURE_ERRORS",
    "AdaptiveHostPolicy",
    "AdaptivePoliteness",
    "CircuitState",
    "HostOverride",
    "parse_rate",
]

CircuitState: TypeAlias = Literal["closed", "open", "half-open"]

#: Transport error class names (:mod:`crawler._exceptions`) that count as host failures for the circuit breaker.
DEFAULT_FAILURE_ERRORS: frozenset[str] = frozenset({"ConnectError", "FetchTimeout", "RemoteProtocolError"})

_THROTTLED = frozenset({429, 503})  # RFC 6585 §4 Too Many Requests, RFC 9110 §15.6.4 Service Unavailable
_HARMLESS_CLIENT_ERRORS = frozenset({404, 410})  # the host answered well: the resource is missing, not the host
_MIN_BACKOFF = 0.25  # seconds: the first multiplicative step from a zero delay
_LOG_CAP = 10_000  # request starts kept per host at most; a larger quota relies on the w / q spacing alone
_RESET_ROUNDING = 1.0  # seconds: resets are usually sent in whole seconds (a learned window is an upper bound)

_RATE = re.compile(r"\s*([0-9]+)\s*/\s*([0-9]*\.?[0-9]*)\s*([a-z]*)\s*", re.IGNORECASE)
_UNITS = {"": 1.0, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "hour": 3600.0, "d": 86400.0}


def parse_rate(text: str) -> tuple[int, float]:
    """Parse a rate ``"<requests>/<interval>"`` into ``(quota, window seconds)``: ``"10/60"`` and ``"10/1m"`` are
    ``(10, 60.0)``, ``"5000/h"`` is ``(5000, 3600.0)``, ``"2/1.5s"`` is ``(2, 1.5)``.  Units: s, m (min), h, d.

    Raises :class:`ValueError` naming ``text`` when it is not such a rate or the quota or interval is zero.
    """
    match = _RATE.fullmatch(text) if isinstance(text, str) else None
    unit = _UNITS.get(match[3].lower()) if match else None
    number = match[2] if match else ""
    if match is None or unit is None or number == "." or not (number or match[3]):
        raise ValueError(f"invalid rate {text!r}: expected '<requests>/<interval>' such as '10/60', '10/1m', '5000/h'")
    quota, window = int(match[1]), (float(number) if number else 1.0) * unit
    if quota < 1 or not (math.isfinite(window) and window > 0):
        raise ValueError(f"invalid rate {text!r}: the number of requests and the interval must be > 0")
    return quota, window


def _check_rate(instance: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None:
        parse_rate(value)


def _host_name(host: str) -> str:
    """``host[:port]`` without the port: ``"[::1]:8080"`` -> ``"[::1]"``, ``"a.com:81"`` -> ``"a.com"``."""
    name, sep, port = host.rpartition(":")
    return name if sep and port.isdigit() and (not name.startswith("[") or name.endswith("]")) else host


@attrs.frozen(kw_only=True)
class HostOverride:
    """Settings for the hosts whose key matches ``pattern`` (fnmatch-style, case-insensitive), whole ``host[:port]``
    or host name alone: ``"*.example.com"``, ``"api.github.com"``, ``"127.0.0.1:8080"``.  ``per_host``: concurrency
    limit; ``delay``: seconds between request starts; ``rate``: a quota such as ``"10/60"`` or ``"10/1m"`` (see
    :func:`parse_rate`); None keeps the crawl-wide value.  Raises :class:`ValueError` naming a bad value.
    """

    pattern: str
    per_host: int | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(1)))
    delay: float | None = attrs.field(default=None, validator=attrs.validators.optional(attrs.validators.ge(0)))
    rate: str | None = attrs.field(default=None, validator=_check_rate)

    def matches(self, host: str) -> bool:
        """True when ``host`` (a ``host[:port]`` key) or its host name matches :attr:`pattern`."""
        key, pattern = host.lower(), self.pattern.lower()
        return fnmatch.fnmatchcase(key, pattern) or fnmatch.fnmatchcase(_host_name(key), pattern)


@attrs.define(kw_only=True)
class AdaptiveHostPolicy(HostPolicy):
    """The adaptive politeness state of one host (see the module docstring).  Seconds where a time:
    ``max_limit`` (the configured limit, which recovery restores; default ``limit``), ``max_delay`` 60,
    ``delay_step`` 0.5, ``target_concurrency`` (None: ``max_limit``), ``recover_after`` 10 successes,
    ``failure_threshold`` 5 failures, ``failure_errors``, ``cooldown`` 30, ``max_cooldown`` 600, ``rate`` (a
    configured ``(quota, window)``).  ``delay`` and ``crawl_delay`` are floors; ``jitter`` scales the adaptive
    delay.  State: ``state`` (:data:`CircuitState`), ``backoff_delay`` (AIMD), ``latency_delay`` (AutoThrottle).
    """

    max_limit: int = attrs.field(default=attrs.Factory(lambda self: self.limit, takes_self=True))
    max_delay: float = 60.0
    delay_step: float = 0.5
    target_concurrency: float | None = None
    recover_after: int = 10
    failure_threshold: int = 5
    failure_errors: Collection[str] = DEFAULT_FAILURE_ERRORS
    cooldown: float = 30.0
    max_cooldown: float = 600.0
    rate: tuple[int, float] | None = None

    state: CircuitState = attrs.field(default="closed", init=False)
    backoff_delay: float = attrs.field(default=0.0, init=False)
    latency_delay: float = attrs.field(default=0.0, init=False)
    _successes: int = attrs.field(default=0, init=False)
    _failures: int = attrs.field(default=0, init=False)
    _open_until: float = attrs.field(default=0.0, init=False)
    _cooldown_now: float = attrs.field(default=0.0, init=False)
    _saved_limit: int = attrs.field(default=1, init=False)
    _declared: tuple[tuple[int, float], ...] = attrs.field(default=(), init=False)  # (quota, window) from headers
    _quota: float | None = attrs.field(default=None, init=False)  # a limit sent without a window
    _learned_window: float | None = attrs.field(default=None, init=False)
    _last_reset: tuple[float, float] | None = attrs.field(default=None, init=False)  # (reset time, its latency)
    _remaining: float | None = attrs.field(default=None, init=False)
    _reset_at: float | None = attrs.field(default=None, init=False)
    _claims_since: int = attrs.field(default=0, init=False)  # starts since ``_remaining`` was read
    _starts: deque[float] = attrs.field(factory=deque, init=False)
    _last_claim: float | None = attrs.field(default=None, init=False)
    _last_seen: float = attrs.field(default=0.0, init=False)

    @property
    def adaptive_delay(self) -> float:
        """Seconds: the larger of the AIMD backoff delay and the latency-feedback delay."""
        return max(self.backoff_delay, self.latency_delay)

    @property
    def floor(self) -> float:
        """Seconds no interval goes below: the configured ``delay`` or robots.txt ``crawl_delay``."""
        return max(self.delay, self.crawl_delay)

    def quotas(self) -> tuple[tuple[int, float], ...]:
        """Every quota in force, as ``(requests, window seconds)``: configured, declared, or learned."""
        found = list(self._declared)
        if self.rate is not None:
            found.append(self.rate)
        if not self._declared and self._quota is not None and self._learned_window is not None:
            found.append((int(self._quota), self._learned_window))
        return tuple(found)

    # -- the frontier's side -----------------------------------------------------------------------------------
    def on_claim(self, now: float) -> None:
        """Record a request start at ``now``; after a cooldown, the first one is the circuit's probe."""
        self._expire(now)
        self._last_claim = now
        self._claims_since += 1
        self._log_start(now)
        if self.state == "open" and now >= self._open_until:
            self.state = "half-open"

    def next_interval(self, rng: random.Random) -> float:
        """Seconds from the last request start until the next may start: the largest of the floor, the adaptive
        delay (jittered by ``jitter``) and the quota pacing (never jittered)."""
        adaptive = self.adaptive_delay
        if adaptive > 0.0 and self.jitter > 0.0:
            adaptive *= rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)
        since = self._last_claim if self._last_claim is not None else self._last_seen
        return max(self.floor, adaptive, self._earliest(since) - since, 0.0)

    # -- the engine's side -------------------------------------------------------------------------------------
    def observe(self, outcome: Outcome, now: float) -> None:
        """Feed the outcome of one request finished at ``now`` (seconds since the epoch)."""
        self._last_seen = now
        self._expire(now)
        info = parse_rate_limit(outcome.headers, now)
        if info is not None:
            self._read_limits(info, outcome.latency, now)
        status, error = outcome.status, outcome.error
        failure = (error is not None and error in self.failure_errors) or (status is not None and status >= 500)
        answered = status is not None and status < 500  # the host works, whatever it thinks of the request
        ok = status is not None and (status < 400 or status in _HARMLESS_CLIENT_ERRORS) and error is None
        self._breaker(failure, answered, now)
        self._aimd(throttled=status in _THROTTLED, ok=ok)
        self._feedback(outcome.latency, ok)
        if self._last_claim is not None:
            self.pause_until = max(self.pause_until, self._earliest(self._last_claim))

    def snapshot(self) -> dict[str, float | str]:
        """The state as plain values: limit, delay (the interval floor and adaptive delay), pause_until, state,
        consecutive failures, and the strictest quota in force (``quota`` requests per ``window`` seconds)."""
        found: dict[str, float | str] = {"limit": self.limit, "max_limit": self.max_limit, "state": self.state}
        found |= {"delay": max(self.floor, self.adaptive_delay), "pause_until": self.pause_until}
        found["failures"] = self._failures
        quotas = self.quotas()
        if quotas:
            found["quota"], found["window"] = min(quotas, key=lambda qw: qw[0] / qw[1])
        if self._remaining is not None and self._reset_at is not None:
            found["remaining"], found["reset_at"] = self._remaining, self._reset_at
        return found

    # -- declared limits ---------------------------------------------------------------------------------------
    def _read_limits(self, info: RateLimitInfo, latency: float, now: float) -> None:
        declared = tuple(
            (math.floor(p.quota), p.window)
            for p in info.policies
            if p.quota_unit == "requests" and p.quota is not None and p.quota >= 1 and p.window
        )
        if not declared and info.limit is not None and info.limit >= 1 and info.window:
            declared = ((math.floor(info.limit), info.window),)
        if declared:
            self._declared = declared
        if info.limit is not None and info.limit >= 1:
            self._quota = info.limit
        if info.retry_after is not None:  # it takes precedence over any reset time (draft -10 §7)
            self.pause_until = max(self.pause_until, now + info.retry_after)
            return
        if info.reset_after is None:
            return
        reset_at = now + info.reset_after
        if not declared and info.limit is not None:
            self._learn_window(reset_at, latency, now)
        if info.remaining is not None:
            sent = now - latency + 1e-6  # starts after this request's were not counted in its ``remaining``
            self._remaining, self._reset_at = info.remaining, reset_at
            self._claims_since = next((n for n, t in enumerate(reversed(self._starts)) if t <= sent), len(self._starts))
            if info.remaining < 1:
                self.pause_until = max(self.pause_until, self._spent_until(now))

    def _learn_window(self, reset_at: float, latency: float, now: float) -> None:
        """A fixed window's length, from the jump of its reset time when a request sent after the previous reset
        sees a later one.  Adding the earlier latency and the rounding of resets to whole seconds makes it an
        upper bound whether resets come as timestamps or as delays; the smallest such bound is kept."""
        if self._last_reset is not None:
            previous, previous_latency = self._last_reset
            if now - latency >= previous and reset_at > previous:
                bound = reset_at - previous + previous_latency + _RESET_ROUNDING
                self._learned_window = min(bound, self._learned_window or math.inf)
        self._last_reset = (reset_at, latency)

    def _expire(self, now: float) -> None:
        if self._reset_at is not None and self._reset_at <= now:
            self._remaining = self._reset_at = None
            self._claims_since = 0

    def _log_start(self, now: float) -> None:
        quotas = self.quotas()
        known = [q for q, _ in quotas] + ([math.ceil(self._quota)] if self._quota is not None else [])
        size = min(max(known), _LOG_CAP) if known else max(2 * self.max_limit, 8)
        if self._starts.maxlen != size:
            self._starts = deque(self._starts, maxlen=size)
        self._starts.append(now)
        if quotas:
            horizon = max(w for _, w in quotas)
            while self._starts[0] + horizon <= now:
                self._starts.popleft()

    def _earliest(self, since: float) -> float:
        """The earliest time the next request may start by the quotas, the last start being at ``since``.

        A declared quota (q per w seconds) spaces starts w/q apart and never lets more than q start in any w
        seconds, by the log of this host's own starts.  The ``r`` requests left until the reset ``t`` are spread
        over the time left when no quota is declared, or when ``r`` is lower than this client's own starts explain
        (another client shares the quota).  When the quota is spent (``r`` = 0) the host waits for the reset; with
        a declared quota whose spending the log explains, one second earlier, because servers round ``t`` up to
        whole seconds and the log already holds the next start back."""
        earliest = since
        starts = self._starts
        for quota, window in self.quotas():
            earliest = max(earliest, since + window / quota)
            if len(starts) >= quota:
                earliest = max(earliest, starts[-quota] + window)
        if self._remaining is not None and self._reset_at is not None and self._reset_at > since:
            left = 1 + self._remaining - self._claims_since  # the last start and the quota left after it
            if left < 1:
                earliest = max(earliest, self._spent_until(since))
            elif self._shared(since):
                earliest = max(earliest, since + (self._reset_at - since) / left)
        return earliest

    def _shared(self, now: float) -> bool:
        """True when no quota is declared, or when the server counted more requests in its current window than
        this host started (another client shares the quota): then ``remaining`` and the reset are the only guide.

        The server's window began ``window`` seconds before its reset, which may be rounded up by a second: own
        starts are counted from a second earlier, and those it had not seen yet (``_claims_since``) are left out."""
        assert self._remaining is not None and self._reset_at is not None
        quotas = self.quotas()
        if not quotas:
            return True
        for quota, window in quotas:
            began = self._reset_at - window - _RESET_ROUNDING
            own = sum(1 for s in self._starts if s > began) - self._claims_since
            if quota - self._remaining > own:
                return True
        return False

    def _spent_until(self, now: float) -> float:
        """When a spent quota comes back: the reset, or one second before it when a declared quota's spending is
        this host's own (servers round the reset up to whole seconds, and the start log holds the next start
        back by itself)."""
        assert self._reset_at is not None
        return self._reset_at - (0.0 if self._shared(now) else _RESET_ROUNDING)

    # -- circuit breaker ---------------------------------------------------------------------------------------
    def _breaker(self, failure: bool, answered: bool, now: float) -> None:
        if self.state == "closed":
            if failure:
                self._failures += 1
                if self._failures >= self.failure_threshold:
                    self._open(now)
            elif answered:
                self._failures = 0
            return
        # Not closed: only the probe's outcome counts.  Without on_claim calls, the first outcome after the
        # cooldown is taken for it; with them, outcomes before the probe was claimed are of older requests.
        if self.state == "open" and (self._last_claim is not None or now < self._open_until):
            return
        if failure:
            self._open(now)
        elif answered:
            self.state, self.limit, self._failures = "closed", self._saved_limit, 0
            self._cooldown_now = 0.0

    def _open(self, now: float) -> None:
        if self.state == "closed":
            self._saved_limit, self._cooldown_now = self.limit, self.cooldown
        else:
            self._cooldown_now = min(self.max_cooldown, self._cooldown_now * 2.0)
        self.state, self.limit, self._failures = "open", 1, 0
        self._open_until = now + self._cooldown_now
        self.pause_until = max(self.pause_until, self._open_until)

    # -- AIMD and latency feedback -----------------------------------------------------------------------------
    def _aimd(self, *, throttled: bool, ok: bool) -> None:
        if throttled:
            self._successes = 0
            if self.state == "closed":
                self.limit = max(1, self.limit // 2)
            self.backoff_delay = min(self.max_delay, max(self.adaptive_delay * 2.0, _MIN_BACKOFF))
        elif ok:
            self._successes += 1
            if self._successes >= self.recover_after:
                self._successes = 0
                if self.state == "closed":
                    self.limit = min(self.max_limit, self.limit + 1)
                self.backoff_delay = max(0.0, self.backoff_delay - self.delay_step)
        else:
            self._successes = 0

    def _feedback(self, latency: float, ok: bool) -> None:
        """AutoThrottle: move halfway to ``latency / target_concurrency``; an error response never lowers it."""
        if not (math.isfinite(latency) and latency >= 0.0):
            return
        target = latency / (self.target_concurrency or self.max_limit)
        smoothed = (self.latency_delay + target) / 2.0
        if not ok and smoothed < self.latency_delay:
            return
        self.latency_delay = min(self.max_delay, max(self.floor, smoothed))


_optional_positive = attrs.validators.optional(attrs.validators.gt(0))


_KNOBS = "max_delay delay_step target_concurrency recover_after failure_threshold failure_errors cooldown max_cooldown"


@attrs.define(kw_only=True)
class AdaptivePoliteness(Politeness):
    """The registry of :class:`AdaptiveHostPolicy` objects, one per host key, built with the crawl's
    ``per_host``, ``delay`` and ``jitter`` and the first of ``overrides`` whose pattern matches the host.

    The other fields are passed to every policy (seconds where a time; see :class:`AdaptiveHostPolicy`).
    Raises :class:`ValueError` naming the field for a value out of range.
    """

    overrides: Sequence[HostOverride] = ()
    max_delay: float = attrs.field(default=60.0, validator=attrs.validators.gt(0))
    delay_step: float = attrs.field(default=0.5, validator=attrs.validators.gt(0))
    target_concurrency: float | None = attrs.field(default=None, validator=_optional_positive)
    recover_after: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    failure_threshold: int = attrs.field(default=5, validator=attrs.validators.ge(1))
    failure_errors: Collection[str] = DEFAULT_FAILURE_ERRORS
    cooldown: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    max_cooldown: float = attrs.field(default=600.0, validator=attrs.validators.gt(0))

    def __attrs_post_init__(self) -> None:
        if self.max_cooldown < self.cooldown:
            raise ValueError(f"max_cooldown ({self.max_cooldown!r} s) must be >= cooldown ({self.cooldown!r} s)")

    def get(self, host: str) -> AdaptiveHostPolicy:
        """Return the policy of ``host``, creating it if needed."""
        policy = super().get(host)
        assert isinstance(policy, AdaptiveHostPolicy)
        return policy

    def override_for(self, host: str) -> HostOverride | None:
        """The first override whose pattern matches ``host`` (a ``host[:port]`` key), or None."""
        return next((override for override in self.overrides if override.matches(host)), None)

    def create(self, host: str) -> AdaptiveHostPolicy:
        """Build the policy of a host seen for the first time, with its override applied."""
        override = self.override_for(host)
        per_host = self.per_host if override is None or override.per_host is None else override.per_host
        delay = self.delay if override is None or override.delay is None else override.delay
        rate = None if override is None or override.rate is None else parse_rate(override.rate)
        knobs = {name: getattr(self, name) for name in _KNOBS.split()}  # passed on as they are
        return AdaptiveHostPolicy(
            limit=per_host, max_limit=per_host, delay=delay, jitter=self.jitter, rate=rate, **knobs
        )
