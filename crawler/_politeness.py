"""Per-host politeness: the :class:`HostPolicy` seam and the registry that creates one per host.

A host policy is a pure object: it holds a host's concurrency limit, its delay between request starts and the
time until which the host is paused, and it is fed every outcome.  The frontier asks it when the host may be
fetched next and how many requests may be in flight there; the engine feeds it.  No I/O, no clock: ``now``
(seconds since the epoch) is always passed in.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

import attrs

__all__ = ["HostPolicy", "Outcome", "Politeness"]


@attrs.frozen(kw_only=True)
class Outcome:
    """What happened to one request, as the host policy sees it.

    ``status`` is the HTTP status (None when the transport failed); ``headers`` the response headers (a
    case-insensitive mapping); ``latency`` seconds from sending to the last body byte; ``error`` the name of the
    transport error class, if any.
    """

    status: int | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    latency: float = 0.0
    error: str | None = None


@attrs.define(kw_only=True)
class HostPolicy:
    """Politeness state of one host: concurrency ``limit``, ``delay`` (seconds between request starts, jittered by
    ``jitter`` as a fraction, so 0.5 gives 0.5x to 1.5x), a robots.txt ``crawl_delay`` (seconds; the larger of the
    two applies) and ``pause_until`` (seconds since the epoch; no request starts before it).

    Subclasses adapt these from outcomes (see :meth:`observe`); this base keeps them fixed.
    """

    limit: int = 2
    delay: float = 0.0
    jitter: float = 0.0
    crawl_delay: float = 0.0
    pause_until: float = 0.0

    def next_interval(self, rng: random.Random) -> float:
        """Seconds to wait after a request starts before the next one to this host may start."""
        base = max(self.delay, self.crawl_delay)
        if base <= 0.0:
            return 0.0
        if self.jitter <= 0.0:
            return base
        return base * rng.uniform(1.0 - self.jitter, 1.0 + self.jitter)

    def on_claim(self, now: float) -> None:
        """A request to this host was claimed at ``now`` and starts now.  The frontier calls it in ``claim``,
        after counting the request in flight and before :meth:`next_interval`.  The base policy ignores it."""

    def observe(self, outcome: Outcome, now: float) -> None:
        """Feed the outcome of one request finished at ``now``.  The base policy ignores it."""

    def snapshot(self) -> dict[str, float | str]:
        """The policy's state as plain values (numbers, and strings such as a circuit state), for stats."""
        return {"limit": self.limit, "delay": max(self.delay, self.crawl_delay), "pause_until": self.pause_until}


@attrs.define
class Politeness:
    """The registry of host policies: one :class:`HostPolicy` per host key (``host[:port]``), created on first use
    with the crawl's ``per_host`` limit, ``delay`` and ``jitter``.
    """

    per_host: int = 2
    delay: float = 0.0
    jitter: float = 0.0
    rng: random.Random = attrs.field(factory=random.Random)
    _hosts: dict[str, HostPolicy] = attrs.field(factory=dict, init=False)

    def get(self, host: str) -> HostPolicy:
        """Return the policy of ``host``, creating it if needed."""
        policy = self._hosts.get(host)
        if policy is None:
            policy = self._hosts[host] = self.create(host)
        return policy

    def create(self, host: str) -> HostPolicy:
        """Make the policy for a host seen for the first time.  Override to plug in another policy class."""
        return HostPolicy(limit=self.per_host, delay=self.delay, jitter=self.jitter)

    def observe(self, host: str, outcome: Outcome, now: float) -> None:
        """Feed one outcome to the host's policy."""
        self.get(host).observe(outcome, now)

    def hosts(self) -> dict[str, HostPolicy]:
        """All policies created so far, by host key."""
        return dict(self._hosts)
