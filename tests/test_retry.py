"""Tests for crawler._retry: which failures are retried, how often, and exponential backoff with full jitter."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler._request import Request
from crawler._retry import DEFAULT_RETRY_ERRORS, DEFAULT_RETRY_STATUSES, RetryPolicy

NOW = 1_700_000_000.0
RNG = random.Random(0)


def decide(policy: RetryPolicy | None = None, **kwargs: object) -> float | None:
    arguments: dict[str, object] = {
        "attempt": 0,
        "idempotent": True,
        "status": None,
        "error": None,
        "retry_after": None,
        "now": NOW,
        "rng": RNG,
    }
    arguments.update(kwargs)
    return (policy or RetryPolicy()).decide(**arguments)  # type: ignore[arg-type]


@pytest.mark.parametrize("status", sorted(DEFAULT_RETRY_STATUSES))
def test_transient_statuses_are_retried(status: int) -> None:
    when = decide(status=status)
    assert when is not None and NOW <= when <= NOW + 0.5


@pytest.mark.parametrize("error", sorted(DEFAULT_RETRY_ERRORS))
def test_transport_errors_are_retried(error: str) -> None:
    assert decide(error=error) is not None


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (200, None),
        (301, None),
        (400, None),
        (401, None),
        (403, None),
        (404, None),
        (501, None),
        (None, None),
        (None, "BodyTooLarge"),
        (None, "InvalidURL"),
    ],
)
def test_other_failures_are_not_retried(status: int | None, error: str | None) -> None:
    assert decide(status=status, error=error) is None


def test_non_idempotent_requests_are_not_retried_unless_they_opted_in() -> None:
    post = Request(url="https://api.example.com/items", method="POST", json={"a": 1})
    assert decide(idempotent=post.idempotent, status=503) is None
    opted = post.replace(retry_non_idempotent=True)
    assert decide(idempotent=opted.idempotent, status=503) is not None
    assert decide(idempotent=Request(url="https://api.example.com/", method="PUT").idempotent, status=503)


def test_gives_up_after_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=4)
    results = [decide(policy, attempt=attempt, status=500) for attempt in range(6)]
    assert [result is not None for result in results] == [True, True, True, False, False, False]
    assert decide(RetryPolicy(max_attempts=1), status=500) is None  # one try, no retry


def test_the_backoff_ceiling_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(backoff_base=0.5, backoff_cap=60.0)
    assert [policy.ceiling(n) for n in range(10)] == [0.5, 1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert policy.ceiling(10**6) == 60.0
    assert RetryPolicy(backoff_base=1e308, backoff_cap=5.0).ceiling(2000) == 5.0


@given(
    attempt=st.integers(0, 200),
    base=st.floats(0.0, 100.0),
    cap=st.floats(0.0, 3600.0),
    retry_after=st.none() | st.floats(0.0, 10_000.0),
    seed=st.integers(0, 2**32),
)
def test_backoff_stays_within_zero_and_the_cap_and_never_before_retry_after(
    attempt: int, base: float, cap: float, retry_after: float | None, seed: int
) -> None:
    policy = RetryPolicy(max_attempts=1000, backoff_base=base, backoff_cap=cap)
    delay = policy.backoff(attempt, random.Random(seed))
    assert 0.0 <= delay <= cap
    assert delay <= base * 2.0**attempt
    when = decide(policy, attempt=attempt, status=429, retry_after=retry_after, rng=random.Random(seed))
    assert when is not None
    assert when >= NOW + (retry_after or 0.0)
    assert when <= NOW + max(cap, retry_after or 0.0)


def test_full_jitter_spreads_over_the_whole_range() -> None:
    policy = RetryPolicy(backoff_base=1.0, backoff_cap=60.0)
    rng = random.Random(42)
    delays = [policy.backoff(3, rng) for _ in range(5000)]  # uniform on [0, 8]
    assert min(delays) < 0.1 and max(delays) > 7.9
    assert statistics.mean(delays) == pytest.approx(4.0, abs=0.2)
    bins = [0] * 8
    for delay in delays:
        bins[min(int(delay), 7)] += 1
    assert all(525 < count < 725 for count in bins), bins  # flat: no waves of retries at the same moment


def test_retry_after_is_a_lower_bound_and_may_exceed_the_cap() -> None:
    assert decide(status=503, retry_after=120.0) == NOW + 120.0
    assert decide(status=503, retry_after=0.0) is not None


def test_max_retry_after_gives_up_on_a_too_long_wait() -> None:
    policy = RetryPolicy(max_retry_after=300.0)
    assert decide(policy, status=429, retry_after=300.0) == NOW + 300.0
    assert decide(policy, status=429, retry_after=301.0) is None


def test_the_rng_makes_decisions_reproducible() -> None:
    first = [decide(attempt=n, status=502, rng=random.Random(7)) for n in range(3)]
    second = [decide(attempt=n, status=502, rng=random.Random(7)) for n in range(3)]
    assert first == second


def test_custom_sets_and_bad_values() -> None:
    policy = RetryPolicy(statuses={418}, errors=["Boom"])
    assert policy.statuses == frozenset({418}) and policy.errors == frozenset({"Boom"})
    assert decide(policy, status=418) is not None and decide(policy, status=503) is None
    assert decide(policy, error="Boom") is not None
    for field, value in [("max_attempts", 0), ("backoff_base", -1.0), ("backoff_cap", float("inf"))]:
        with pytest.raises(ValueError, match=field):
            RetryPolicy(**{field: value})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_retry_after"):
        RetryPolicy(max_retry_after=-5.0)
