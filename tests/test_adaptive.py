"""Tests for crawler._adaptive: the adaptive host policy (rate-limit headers, AIMD, latency feedback, circuit
breaker), per-host overrides, and the property that no window ever holds more starts than the declared quota."""

from __future__ import annotations

import heapq
import math
import random
import re

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crawler._adaptive import AdaptiveHostPolicy, AdaptivePoliteness, HostOverride, parse_rate
from crawler._frontier import MemoryFrontier
from crawler._politeness import HostPolicy, Outcome
from crawler._request import Request

NOW = 1_700_000_000.0


def ok(headers: dict[str, str] | None = None, latency: float = 0.0, status: int = 200) -> Outcome:
    return Outcome(status=status, headers=headers or {}, latency=latency)


def policy(**kwargs: object) -> AdaptiveHostPolicy:
    return AdaptivePoliteness(**kwargs).create("api.example.com")  # type: ignore[arg-type]


# -- declared limits, every dialect -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit-Policy": '"burst";q=100;w=60', "RateLimit": '"burst";r=0;t=30'},  # draft -08
        {"RateLimit": "limit=100, remaining=0, reset=30", "RateLimit-Policy": "100;w=60"},  # draft -07
        {"RateLimit-Limit": "100", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"},  # draft -06
        {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(NOW) + 30)},
        {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset-After": "30.0"},  # Discord
        {"x-rate-limit-limit": "15", "x-rate-limit-remaining": "0", "x-rate-limit-reset": str(int(NOW) + 30)},
    ],
)
def test_an_exhausted_quota_pauses_until_its_reset(headers: dict[str, str]) -> None:
    host = policy()
    host.observe(ok(headers), NOW)
    assert host.pause_until == pytest.approx(NOW + 30)


@pytest.mark.parametrize(
    ("headers", "interval"),
    [
        ({"RateLimit-Policy": '"default";q=100;w=60', "RateLimit": '"default";r=10;t=20'}, 2.0),  # t / r
        ({"RateLimit-Policy": '"default";q=10;w=60', "RateLimit": '"default";r=10;t=20'}, 6.0),  # w / q
        ({"RateLimit-Limit": "100", "RateLimit-Remaining": "5", "RateLimit-Reset": "20"}, 4.0),
        ({"X-RateLimit-Limit": "60", "X-RateLimit-Remaining": "30", "X-RateLimit-Reset": str(int(NOW) + 60)}, 2.0),
        ({"RateLimit-Limit": "10;w=30", "RateLimit-Remaining": "10", "RateLimit-Reset": "1"}, 3.0),
    ],
)
def test_the_quota_left_is_spread_never_faster_than_the_policy(headers: dict[str, str], interval: float) -> None:
    host = policy()
    host.observe(ok(headers), NOW)
    host.on_claim(NOW)
    assert host.next_interval(random.Random(0)) == pytest.approx(interval)


def test_pacing_is_not_jittered_below_its_value_but_the_adaptive_delay_is() -> None:
    host = policy(jitter=0.5)
    host.observe(ok({"RateLimit-Policy": '"p";q=10;w=10', "RateLimit": '"p";r=10;t=10'}), NOW)
    host.on_claim(NOW)
    rng = random.Random(1)
    assert min(host.next_interval(rng) for _ in range(200)) == 1.0
    host.backoff_delay = 4.0
    intervals = [host.next_interval(rng) for _ in range(200)]
    assert 2.0 <= min(intervals) < 2.5 and 5.5 < max(intervals) <= 6.0


def test_retry_after_wins_over_the_reset_time() -> None:
    host = policy()
    host.observe(
        ok(
            {"Retry-After": "5", "RateLimit-Limit": "9", "RateLimit-Remaining": "0", "RateLimit-Reset": "30"},
            status=429,
        ),
        NOW,
    )
    assert host.pause_until == NOW + 5
    assert host.snapshot().get("remaining") is None


def test_retry_after_as_a_date_and_never_moving_the_pause_back() -> None:
    host = policy()
    host.observe(ok({"Retry-After": "Tue, 14 Nov 2023 22:14:20 GMT"}, status=503), NOW)  # NOW + 60 s
    assert host.pause_until == NOW + 60
    host.observe(ok({"Retry-After": "1"}, status=429), NOW + 1)
    assert host.pause_until == NOW + 60


def test_omitted_headers_keep_the_quota_until_its_reset() -> None:
    host = policy(per_host=1)
    host.observe(ok({"RateLimit-Limit": "100", "RateLimit-Remaining": "2", "RateLimit-Reset": "10"}), NOW)
    host.on_claim(NOW)
    host.on_claim(NOW + 5)
    host.observe(ok(), NOW + 5.5)  # no headers: the two requests left are spent, so wait for the reset
    assert host.pause_until == NOW + 10
    host.on_claim(NOW + 10)  # the reset passed: the quota is unknown again
    assert host.next_interval(random.Random(0)) == 0.0


def test_a_declared_policy_stays_when_later_responses_omit_it() -> None:
    host = policy(per_host=1)
    host.observe(ok({"RateLimit-Policy": '"p";q=2;w=10', "RateLimit": '"p";r=1;t=10'}), NOW)
    host.observe(ok(), NOW + 20)
    assert (host.snapshot()["quota"], host.snapshot()["window"]) == (2, 10)


@pytest.mark.parametrize(
    "headers",
    [
        {"RateLimit": "garbage;;", "RateLimit-Policy": "(("},
        {"RateLimit-Remaining": "-1", "RateLimit-Reset": "soon"},
        {"X-RateLimit-Remaining": "many", "X-RateLimit-Reset": "nan"},
        {"Retry-After": "in a while"},
        {"RateLimit-Policy": '"p";q=0;w=10', "RateLimit": '"p";r=-3;t=10'},
    ],
)
def test_malformed_headers_are_ignored(headers: dict[str, str]) -> None:
    host = policy()
    before = host.snapshot()
    host.observe(ok(headers), NOW)
    host.on_claim(NOW)
    assert host.snapshot() == before
    assert host.next_interval(random.Random(0)) == 0.0


def test_the_window_of_x_ratelimit_is_learned_at_a_roll_over() -> None:
    host = policy(per_host=1)
    reset = int(NOW) + 60

    def headers(remaining: int, reset: int) -> dict[str, str]:
        return {"X-RateLimit-Limit": "6", "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": str(reset)}

    host.on_claim(NOW)
    host.observe(ok(headers(5, reset), latency=0.5), NOW + 0.5)
    assert "window" not in host.snapshot()
    host.on_claim(reset + 1)
    host.observe(ok(headers(5, reset + 60), latency=0.5), reset + 1.5)
    assert host.snapshot()["window"] == pytest.approx(60 + 0.5 + 1.0)  # an upper bound
    assert host.snapshot()["quota"] == 6


# -- AIMD and latency feedback ------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_halves_the_limit_and_doubles_the_delay_within_bounds(status: int) -> None:
    host = policy(per_host=8, max_delay=3.0)
    limits, delays = [], []
    for _ in range(7):
        host.observe(ok(status=status), NOW)
        limits.append(host.limit)
        delays.append(host.adaptive_delay)
    assert limits == [4, 2, 1, 1, 1, 1, 1]
    assert delays == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert host.snapshot()["delay"] == 3.0


def test_successes_recover_additively() -> None:
    host = policy(per_host=4, recover_after=10, delay_step=0.5)
    for _ in range(3):
        host.observe(ok(status=429), NOW)
    assert (host.limit, host.backoff_delay) == (1, 1.0)
    for _ in range(9):
        host.observe(ok(status=200), NOW)
    assert host.limit == 1
    host.observe(ok(status=404), NOW)  # a missing page is no trouble with the host
    assert (host.limit, host.backoff_delay) == (2, 0.5)
    for _ in range(9):
        host.observe(ok(), NOW)
    host.observe(ok(status=403), NOW)  # breaks the streak
    for _ in range(50):
        host.observe(ok(), NOW)
    assert (host.limit, host.backoff_delay) == (4, 0.0)  # never above the configured limit


def test_latency_feedback_moves_halfway_to_latency_over_target_concurrency() -> None:
    host = policy(per_host=2)
    host.observe(ok(latency=4.0), NOW)  # target 4 / 2 = 2: halfway from 0
    assert host.latency_delay == 1.0
    host.observe(ok(latency=4.0), NOW)
    assert host.latency_delay == 1.5
    host.observe(ok(latency=0.0, status=500), NOW)  # an error never lowers it
    assert host.latency_delay == 1.5
    host.observe(Outcome(error="FetchTimeout", latency=30.0), NOW)  # but may raise it
    assert host.latency_delay == pytest.approx((1.5 + 15.0) / 2)
    host.observe(ok(latency=0.0), NOW)
    assert host.latency_delay == pytest.approx((1.5 + 15.0) / 4)


def test_latency_feedback_never_goes_below_the_floor_nor_above_max_delay() -> None:
    host = policy(per_host=1, delay=0.5, max_delay=10.0, target_concurrency=0.5)
    for _ in range(5):
        host.observe(ok(latency=0.01), NOW)
    assert host.latency_delay == 0.5
    host.crawl_delay = 2.0
    host.observe(ok(latency=0.01), NOW)
    assert host.latency_delay == 2.0
    for _ in range(20):
        host.observe(ok(latency=100.0), NOW)
    assert host.latency_delay == 10.0
    assert host.next_interval(random.Random(0)) == 10.0


# -- circuit breaker ----------------------------------------------------------------------------------------


def state(host: AdaptiveHostPolicy) -> str:
    return host.state  # a function, so that mypy does not keep the state narrowed across transitions


def fail(host: AdaptiveHostPolicy, now: float, times: int = 1) -> None:
    for _ in range(times):
        host.observe(Outcome(error="ConnectError"), now)


def test_the_circuit_opens_after_k_failures_then_probes_once_and_closes() -> None:
    host = policy(per_host=6, failure_threshold=5, cooldown=30.0)
    fail(host, NOW, 4)
    host.observe(ok(status=502), NOW)
    assert state(host) == "open" and host.snapshot()["state"] == "open"
    assert (host.limit, host.pause_until) == (1, NOW + 30)
    host.observe(ok(), NOW + 1)  # a request started before the circuit opened: not the probe
    assert state(host) == "open"
    host.on_claim(NOW + 30)
    assert state(host) == "half-open" and host.limit == 1
    host.observe(ok(), NOW + 31)
    assert (state(host), host.limit) == ("closed", 6)


def test_a_failed_probe_reopens_with_a_doubled_capped_cooldown() -> None:
    host = policy(failure_threshold=2, cooldown=30.0, max_cooldown=100.0)
    fail(host, NOW, 2)
    now, cooldowns = NOW, list[float]()
    for _ in range(4):
        now = host.pause_until
        host.on_claim(now)
        assert state(host) == "half-open"
        fail(host, now + 1)
        assert state(host) == "open"
        cooldowns.append(host.pause_until - (now + 1))
    assert cooldowns == [60.0, 100.0, 100.0, 100.0]
    host.on_claim(host.pause_until)
    host.observe(ok(status=404), host.pause_until)
    assert state(host) == "closed"
    fail(host, host.pause_until + 1, 2)  # a fresh opening starts from the base cooldown again
    assert host.pause_until == NOW + 30 + 61 + 101 * 3 + 1 + 30


def test_answers_reset_the_failure_count_and_other_errors_are_neutral() -> None:
    host = policy(failure_threshold=3)
    fail(host, NOW, 2)
    host.observe(ok(status=429), NOW)
    fail(host, NOW, 2)
    host.observe(Outcome(error="BodyTooLarge"), NOW)
    host.observe(Outcome(error="InvalidURL"), NOW)
    assert state(host) == "closed"
    fail(host, NOW)
    assert state(host) == "open"


def test_without_on_claim_the_first_outcome_after_the_cooldown_is_the_probe() -> None:
    host = policy(per_host=3, failure_threshold=1, cooldown=10.0)
    fail(host, NOW)
    fail(host, NOW + 5)  # during the cooldown: ignored
    assert host.pause_until == NOW + 10
    fail(host, NOW + 11)
    assert (state(host), host.pause_until) == ("open", NOW + 31)
    host.observe(ok(), NOW + 32)
    assert (state(host), host.limit) == ("closed", 3)


@pytest.mark.anyio
async def test_the_memory_frontier_lets_exactly_one_probe_through() -> None:
    politeness = AdaptivePoliteness(per_host=4, failure_threshold=2, cooldown=10.0)
    frontier = MemoryFrontier(politeness)
    await frontier.add(Request(url=f"https://api.example.com/{i}") for i in range(10))
    first = [await frontier.claim(NOW) for _ in range(2)]
    host = politeness.get("api.example.com")
    for request in first:
        assert request is not None
        fail(host, NOW + 1)  # the engine observes, then completes
        await frontier.complete(request, NOW + 1)
    assert state(host) == "open"
    assert await frontier.claim(NOW + 5) is None
    probe = await frontier.claim(NOW + 11)
    assert probe is not None
    host.on_claim(NOW + 11)  # what the frontier's claim will do
    assert state(host) == "half-open"
    assert await frontier.claim(NOW + 12) is None  # exactly one probe
    host.observe(ok(), NOW + 13)
    await frontier.complete(probe, NOW + 13)
    assert host.limit == 4
    assert [await frontier.claim(NOW + 13) for _ in range(5)].count(None) == 1


# -- per-host overrides ---------------------------------------------------------------------------------------


def test_overrides_by_pattern_first_match_wins() -> None:
    politeness = AdaptivePoliteness(
        per_host=4,
        delay=0.1,
        overrides=[
            HostOverride(pattern="api.github.com", per_host=1, rate="5000/1h"),
            HostOverride(pattern="*.GitHub.com", per_host=2, delay=1.0),
            HostOverride(pattern="127.0.0.1:8080", rate="10/1m"),
            HostOverride(pattern="localhost", delay=0.0),
        ],
    )
    github = politeness.get("api.github.com")
    assert (github.limit, github.max_limit, github.delay, github.rate) == (1, 1, 0.1, (5000, 3600.0))
    gist = politeness.get("gist.github.com:8443")
    assert (gist.limit, gist.delay, gist.rate) == (2, 1.0, None)
    assert politeness.get("127.0.0.1:8080").rate == (10, 60.0)
    assert politeness.get("127.0.0.1:9090").rate is None
    assert politeness.get("localhost:3000").delay == 0.0
    plain = politeness.get("example.org")
    assert (plain.limit, plain.delay, plain.rate) == (4, 0.1, None)
    assert isinstance(plain, HostPolicy)


def test_a_configured_rate_paces_the_host() -> None:
    host = AdaptivePoliteness(overrides=[HostOverride(pattern="*", rate="3/6s")]).get("a.test")
    host.on_claim(NOW)
    assert host.next_interval(random.Random(0)) == 2.0
    assert (host.snapshot()["quota"], host.snapshot()["window"]) == (3, 6.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10/60", (10, 60.0)),
        ("10/1m", (10, 60.0)),
        ("10 / 1 min", (10, 60.0)),
        ("5000/h", (5000, 3600.0)),
        ("2/1.5s", (2, 1.5)),
        ("1/d", (1, 86400.0)),
        ("7/.5", (7, 0.5)),
    ],
)
def test_parse_rate(text: str, expected: tuple[int, float]) -> None:
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["", "10", "10/", "/60", "0/60", "10/0", "10/1ms", "ten/60", "10/1x", "-1/60", "1/."])
def test_a_bad_rate_is_a_value_error_naming_it(text: str) -> None:
    with pytest.raises(ValueError, match=re.escape(f"invalid rate {text!r}")):
        HostOverride(pattern="*", rate=text)


def test_bad_settings_are_value_errors() -> None:
    with pytest.raises(ValueError, match="per_host"):
        HostOverride(pattern="*", per_host=0)
    with pytest.raises(ValueError, match="cooldown"):
        AdaptivePoliteness(cooldown=60.0, max_cooldown=30.0)
    with pytest.raises(ValueError, match="failure_threshold"):
        AdaptivePoliteness(failure_threshold=0)


# -- the property: no window of w seconds holds more than q starts ------------------------------------------


@attrs.define
class FakeServer:
    """A quota of ``quota`` requests per ``window`` seconds, fixed (aligned on ``phase``) or sliding, announced
    in the headers of one dialect.  Rejected requests (429) do not count."""

    dialect: str
    quota: int
    window: int
    sliding: bool
    phase: float
    counted: list[float] = attrs.field(factory=list)
    rejected: int = 0

    def arrive(self, at: float) -> tuple[int, dict[str, str]]:
        if self.sliding:
            self.counted = [s for s in self.counted if s + self.window > at]
        else:
            start = self.phase + math.floor((at - self.phase) / self.window) * self.window
            self.counted = [s for s in self.counted if s >= start]
        accepted = len(self.counted) < self.quota
        if accepted:
            self.counted.append(at)
        else:
            self.rejected += 1
        # sliding: a unit comes back when the oldest counted request leaves the window
        reset_at = self.counted[0] + self.window if self.sliding else start + self.window
        remaining, delta = self.quota - len(self.counted), math.ceil(reset_at - at)
        headers = self.headers(remaining, delta, math.ceil(reset_at))
        if not accepted:
            headers["Retry-After"] = str(delta)
        return (200 if accepted else 429), headers

    def headers(self, remaining: int, delta: int, epoch: int) -> dict[str, str]:
        q, w = self.quota, self.window
        if self.dialect == "draft-08":
            return {"RateLimit-Policy": f'"default";q={q};w={w}', "RateLimit": f'"default";r={remaining};t={delta}'}
        if self.dialect == "draft-06":
            return {
                "RateLimit-Limit": str(q),
                "RateLimit-Remaining": str(remaining),
                "RateLimit-Reset": str(delta),
                "RateLimit-Policy": f"{q};w={w}",
            }
        reset = str(epoch) if self.dialect == "x-epoch" else str(delta)
        return {"X-RateLimit-Limit": str(q), "X-RateLimit-Remaining": str(remaining), "X-RateLimit-Reset": reset}


def crawl(
    server: FakeServer, host: AdaptiveHostPolicy, latencies: list[float], keep: list[bool], count: int
) -> tuple[list[float], float | None]:
    """Start ``count`` requests as the memory frontier would (limit, pause_until, on_claim, next_interval),
    feeding every response back.  Returns the start times and when the policy first knew a window."""
    rng = random.Random(0)
    now, next_at = NOW, -math.inf
    in_flight: list[tuple[float, int, int, dict[str, str], float]] = []
    starts: list[float] = []
    known: float | None = None
    finished = 0
    for _ in range(20 * count):
        if len(starts) == count:
            break
        ready = max(next_at, host.pause_until)
        if len(in_flight) < host.limit and ready <= now:
            host.on_claim(now)
            next_at = now + host.next_interval(rng)
            status, headers = server.arrive(now)
            latency = latencies[len(starts) % len(latencies)]
            heapq.heappush(in_flight, (now + latency, len(starts), status, headers, latency))
            starts.append(now)
            continue
        times = [in_flight[0][0]] if in_flight else []
        if len(in_flight) < host.limit:
            times.append(ready)
        now = max(now, min(times))
        while in_flight and in_flight[0][0] <= now:
            done, _, status, headers, latency = heapq.heappop(in_flight)
            if finished and not keep[finished % len(keep)]:
                headers = {}  # later responses may omit the headers
            finished += 1
            host.observe(Outcome(status=status, headers=headers, latency=latency), done)
            if known is None and "window" in host.snapshot():
                known = done
    assert len(starts) == count, "the simulated crawl stalled"
    return starts, known


@settings(max_examples=300, deadline=None)
@given(
    dialect=st.sampled_from(["draft-08", "draft-06", "x-epoch", "x-delta"]),
    quota=st.integers(1, 12),
    window=st.integers(1, 30),
    sliding=st.booleans(),
    phase=st.floats(0.0, 1.0),
    per_host=st.integers(1, 6),
    latencies=st.lists(st.floats(0.01, 5.0), min_size=1, max_size=12),
    keep=st.lists(st.booleans(), min_size=1, max_size=8),
    count=st.integers(1, 60),
)
def test_no_window_ever_holds_more_starts_than_the_declared_quota(
    dialect: str,
    quota: int,
    window: int,
    sliding: bool,
    phase: float,
    per_host: int,
    latencies: list[float],
    keep: list[bool],
    count: int,
) -> None:
    """Before its first response the host declared nothing, so the precondition is that the configured limit
    fits in the quota.  X-RateLimit-* declares no window: it is learned at the first roll-over (fixed windows, as
    GitHub's), and only windows that end after it was learned are checked."""
    per_host = min(per_host, quota)
    sliding = sliding and dialect.startswith("draft")  # an X-RateLimit-Reset roll-over means a fixed window
    server = FakeServer(dialect, quota, window, sliding, NOW + phase * window)
    host = AdaptivePoliteness(per_host=per_host).create("api.example.com")
    starts, known = crawl(server, host, latencies, keep, count)
    check_from = -math.inf if dialect.startswith("draft") else (math.inf if known is None else known)
    for last, at in enumerate(starts):
        if at >= check_from:
            in_window = [s for s in starts[: last + 1] if s + window > at]  # the w seconds up to this start
            assert len(in_window) <= quota, (at, in_window)
    if sliding:
        assert server.rejected == 0
