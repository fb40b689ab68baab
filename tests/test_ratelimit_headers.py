"""Tests for crawler._ratelimit_headers and crawler._headers: every rate-limit dialect in the reference file."""

from __future__ import annotations

import math

import attrs
import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict

from crawler._headers import header_map, header_values
from crawler._ratelimit_headers import RateLimitInfo, RateLimitPolicy, parse_rate_limit

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def parse(headers: dict[str, str] | list[tuple[str, str]]) -> RateLimitInfo:
    info = parse_rate_limit(headers, NOW)
    assert info is not None
    return info


# -- header containers --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Link": "a", "content-type": "text/html"},
        [("LINK", "a"), ("Content-Type", "text/html")],
        [(b"link", b"a")],
        httpx.Headers({"link": "a"}),
        CIMultiDict({"LiNk": "a"}),
        CIMultiDictProxy(CIMultiDict({"link": "a"})),
        MultiDict({"Link": "a"}),
    ],
)
def test_header_values_is_case_insensitive_for_every_container(headers: object) -> None:
    assert header_values(headers, "link") == ["a"]  # type: ignore[arg-type]
    assert header_values(headers, "LINK") == ["a"]  # type: ignore[arg-type]
    assert header_values(headers, "missing") == []  # type: ignore[arg-type]


def test_repeated_fields_stay_separate() -> None:
    pairs = [("Link", "<a>"), ("X", "1"), ("link", "<b>")]
    assert header_values(pairs, "link") == ["<a>", "<b>"]
    assert header_values(httpx.Headers(pairs), "link") == ["<a>", "<b>"]
    assert header_values(CIMultiDict(pairs), "link") == ["<a>", "<b>"]
    assert header_map(httpx.Headers(pairs)) == {"link": ["<a>", "<b>"], "x": ["1"]}


def test_odd_containers_give_nothing() -> None:
    assert header_map([("a", "1"), ("too", "many", "items"), "xy"]) == {"a": ["1"]}  # type: ignore[list-item]
    assert header_map(42) == {}  # type: ignore[arg-type]


# -- draft -08 and later: Structured Fields -----------------------------------------------------------------


def test_draft08_single_policy() -> None:
    info = parse({"RateLimit-Policy": '"default";q=100;w=10', "RateLimit": '"default";r=50;t=30'})
    assert info.source == "ietf-draft-08"
    assert (info.limit, info.remaining, info.reset_after, info.window) == (100, 50, 30, 10)
    assert info.policies == (RateLimitPolicy(name="default", quota=100, window=10, remaining=50, reset_after=30),)


def test_draft08_picks_the_exhausted_policy_that_resets_last() -> None:
    info = parse(
        {
            "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
            "RateLimit": '"burst";r=0;t=30, "daily";r=0;t=3600',
        }
    )
    assert (info.limit, info.remaining, info.reset_after, info.window) == (1000, 0, 3600, 86400)
    assert [policy.name for policy in info.policies] == ["burst", "daily"]
    assert info.exhausted
    assert info.delay == 3600


def test_draft08_otherwise_picks_the_lowest_remaining() -> None:
    info = parse(
        {
            "RateLimit-Policy": '"burst";q=100;w=60, "daily";q=1000;w=86400',
            "RateLimit": '"burst";r=80;t=30, "daily";r=7;t=3600',
        }
    )
    assert (info.limit, info.remaining, info.reset_after) == (1000, 7, 3600)
    assert not info.exhausted
    assert info.delay == 0.0


def test_draft08_lists_split_over_several_lines() -> None:
    info = parse(
        [
            ("RateLimit-Policy", '"burst";q=100;w=60'),
            ("ratelimit-policy", '"daily";q=1000;w=86400'),
            ("RateLimit", '"burst";r=5;t=2'),
            ("RATELIMIT", '"daily";r=900;t=600'),
        ]
    )
    assert (info.limit, info.remaining, info.reset_after, info.window) == (100, 5, 2, 60)
    assert len(info.policies) == 2


def test_draft08_policy_units_and_partition_keys() -> None:
    info = parse(
        {
            "RateLimit-Policy": '"peruser";q=65535;qu="content-bytes";w=10;pk=:cHsdsRa894==:, "req";q=10;w=1',
            "RateLimit": '"peruser";r=1000;t=5, "req";r=9;t=1',
        }
    )
    assert info.policies[0].quota_unit == "content-bytes"
    assert info.policies[0].partition_key == b"p{\x1d\xb1\x16\xbc\xf7"
    assert (info.limit, info.remaining) == (10, 9)  # counted in requests: preferred over bytes


def test_draft08_token_names_as_in_draft_08() -> None:
    info = parse({"RateLimit-Policy": "burst;q=100;w=60", "RateLimit": "burst;r=3;t=9"})
    assert (info.source, info.limit, info.remaining, info.reset_after) == ("ietf-draft-08", 100, 3, 9)


def test_cloudflare_names_need_not_match_when_there_is_one_of_each() -> None:
    # Cloudflare API changelog (2025): "Ratelimit" and "Ratelimit-Policy" in the draft form.
    info = parse({"Ratelimit": '"default";r=50;t=30', "Ratelimit-Policy": '"burst";q=100;w=60'})
    assert (info.source, info.limit, info.remaining, info.reset_after, info.window) == (
        "ietf-draft-08",
        100,
        50,
        30,
        60,
    )


def test_draft08_limit_for_an_unadvertised_policy() -> None:
    info = parse({"RateLimit": '"default";r=999;pk=:dHJpYWwxMjEzMjM=:'})
    assert (info.limit, info.remaining, info.reset_after) == (None, 999, None)
    assert info.policies[0].partition_key == b"trial121323"


def test_draft08_policy_alone() -> None:
    info = parse({"RateLimit-Policy": '"permin";q=50;w=60, "perhr";q=1000;w=3600'})
    assert (info.source, info.limit, info.window, info.remaining) == ("ietf-draft-08", 1000, 3600, None)


@pytest.mark.parametrize(
    "ratelimit",
    [
        '"default";r=-5;t=30',  # negative
        '"default";r=?1',  # a Boolean is not a number
        '"default";t=30',  # r is required
        '"default";r=50;t=30, (',  # malformed list: the whole field is ignored
        '"défault";r=5',  # not ASCII
    ],
)
def test_draft08_malformed_fields_are_ignored(ratelimit: str) -> None:
    info = parse_rate_limit({"RateLimit": ratelimit, "X-RateLimit-Remaining": "7"}, NOW)
    assert info is not None
    assert (info.source, info.remaining) == ("x-ratelimit", 7)


def test_draft08_malformed_items_are_skipped() -> None:
    info = parse({"RateLimit": '"a";t=5, ("inner");r=1, "b";r=4;t=2.5'})
    assert (info.remaining, info.reset_after) == (4, 2.5)
    assert [policy.name for policy in info.policies] == ["b"]


def test_retry_after_takes_precedence() -> None:
    info = parse({"RateLimit": '"default";r=0;t=30', "Retry-After": "90"})
    assert (info.source, info.reset_after, info.retry_after, info.delay) == ("ietf-draft-08", 30, 90, 90)


# -- draft -07 and drafts up to -06 -------------------------------------------------------------------------


def test_draft07_dictionary() -> None:
    info = parse({"RateLimit": "limit=100, remaining=50, reset=5", "RateLimit-Policy": "100;w=10"})
    assert info.source == "ietf-draft-07"
    assert (info.limit, info.remaining, info.reset_after, info.window) == (100, 50, 5, 10)
    assert info.policies == (RateLimitPolicy(quota=100, window=10),)


def test_draft07_window_of_the_matching_policy() -> None:
    info = parse({"RateLimit": "limit=1000, remaining=0, reset=200", "RateLimit-Policy": "100;w=60, 1000;w=86400"})
    assert (info.limit, info.window, info.delay) == (1000, 86400, 200)


def test_draft06_separate_fields() -> None:
    info = parse(
        {"RateLimit-Limit": "100", "RateLimit-Remaining": "50", "RateLimit-Reset": "5", "RateLimit-Policy": "100;w=10"}
    )
    assert info.source == "ietf-draft-06"
    assert (info.limit, info.remaining, info.reset_after, info.window) == (100, 50, 5, 10)


def test_early_draft_limit_with_policies_inline() -> None:
    info = parse({"RateLimit-Limit": "10, 10;window=1, 50;window=60", "RateLimit-Remaining": "9"})
    assert (info.limit, info.window, info.remaining) == (10, 1, 9)


def test_gitlab_reset_is_an_epoch() -> None:
    # GitLab docs, "Rate limits on ... : response headers".
    info = parse(
        {
            "RateLimit-Name": "throttle_authenticated_web",
            "RateLimit-Limit": "60",
            "RateLimit-Observed": "67",
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": "1700000030",
            "RateLimit-ResetTime": "Tue, 14 Nov 2023 22:13:50 GMT",
            "Retry-After": "30",
        }
    )
    assert (info.source, info.limit, info.remaining, info.reset_after, info.retry_after) == (
        "ietf-draft-06",
        60,
        0,
        30,
        30,
    )


def test_gitlab_reset_time_alone() -> None:
    info = parse({"RateLimit-Remaining": "0", "RateLimit-ResetTime": "Tue, 14 Nov 2023 22:14:20 GMT"})
    assert info.reset_after == 60


# -- de-facto dialects ------------------------------------------------------------------------------------


def test_github() -> None:
    # GitHub REST docs, "Rate limits for the REST API": reset in UTC epoch seconds.
    info = parse(
        {
            "x-ratelimit-limit": "5000",
            "x-ratelimit-remaining": "4999",
            "x-ratelimit-used": "1",
            "x-ratelimit-reset": "1700003600",
            "x-ratelimit-resource": "core",
        }
    )
    assert (info.source, info.limit, info.remaining, info.reset_after) == ("x-ratelimit", 5000, 4999, 3600)


def test_github_secondary_limit_sends_retry_after() -> None:
    info = parse({"x-ratelimit-limit": "5000", "x-ratelimit-remaining": "4000", "retry-after": "60"})
    assert (info.delay, info.remaining) == (60, 4000)


def test_reddit_fractional_remaining_and_seconds_until_reset() -> None:
    info = parse({"X-Ratelimit-Used": "4", "X-Ratelimit-Remaining": "595.0", "X-Ratelimit-Reset": "345"})
    assert (info.limit, info.remaining, info.reset_after) == (599, 595, 345)
    info = parse({"X-Ratelimit-Used": "600", "X-Ratelimit-Remaining": "0.5", "X-Ratelimit-Reset": "12"})
    assert info.exhausted
    assert info.delay == 12


def test_x_twitter() -> None:
    # X API v2 docs, "Rate limits": x-rate-limit-* with an extra hyphen, reset in epoch seconds.
    info = parse({"x-rate-limit-limit": "900", "x-rate-limit-remaining": "0", "x-rate-limit-reset": "1700000900"})
    assert (info.source, info.limit, info.remaining, info.reset_after, info.delay) == ("x-rate-limit", 900, 0, 900, 900)


def test_discord_reset_after_wins_over_reset() -> None:
    # Discord developer docs, "Rate Limits": Reset is epoch seconds with a fraction, Reset-After seconds.
    info = parse(
        {
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "1700000002.5",
            "X-RateLimit-Reset-After": "1.234",
            "X-RateLimit-Bucket": "abcd1234",
            "X-RateLimit-Scope": "user",
        }
    )
    assert (info.limit, info.remaining, info.reset_after) == (5, 0, 1.234)
    info = parse({"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1700000002.5"})
    assert info.reset_after == 2.5


def test_cloudflare_before_2025_sends_a_date() -> None:
    info = parse(
        {
            "X-RateLimit-Limit": "1200",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset": "Tue, 14 Nov 2023 22:18:20 GMT",
            "Retry-After": "300",
        }
    )
    assert (info.limit, info.reset_after, info.delay) == (1200, 300, 300)


@pytest.mark.parametrize(
    ("reset", "expected"),
    [
        ("0", 0.0),
        ("59", 59.0),
        ("999999999", 999999999.0),  # below 10**9: a delay
        ("1000000000", 0.0),  # 2001 as a timestamp: in the past
        ("1700000010", 10.0),
        ("1699990000", 0.0),  # a past timestamp means now
        ("1700000010500", 10.5),  # milliseconds
        ("soon", None),
        ("-5", None),
    ],
)
def test_epoch_or_delta(reset: str, expected: float | None) -> None:
    info = parse({"X-RateLimit-Remaining": "1", "X-RateLimit-Reset": reset})
    assert info.reset_after == expected


def test_precedence_ietf_before_de_facto() -> None:
    info = parse({"RateLimit": '"default";r=5;t=1', "X-RateLimit-Remaining": "100", "X-Rate-Limit-Remaining": "9"})
    assert info.source == "ietf-draft-08"
    info = parse({"X-RateLimit-Remaining": "100", "X-Rate-Limit-Remaining": "9"})
    assert info.source == "x-ratelimit"


def test_a_remaining_count_beats_a_policy_alone() -> None:
    info = parse({"RateLimit-Policy": '"burst";q=100;w=60', "X-RateLimit-Remaining": "3"})
    assert (info.source, info.remaining) == ("x-ratelimit", 3)


def test_retry_after_alone_and_nothing_at_all() -> None:
    info = parse({"Retry-After": "Tue, 14 Nov 2023 22:15:20 GMT"})
    assert info == RateLimitInfo(source="retry-after", retry_after=120)
    assert parse_rate_limit({"Content-Type": "text/html", "Retry-After": "later"}, NOW) is None
    assert parse_rate_limit({}, NOW) is None
    assert parse_rate_limit([], NOW) is None


def test_info_is_frozen() -> None:
    info = parse({"X-RateLimit-Remaining": "1"})
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        info.remaining = 5  # type: ignore[misc]


# -- properties ---------------------------------------------------------------------------------------------

NAMES = [
    "Retry-After", "RateLimit", "RateLimit-Policy", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset",
    "RateLimit-ResetTime", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Used", "X-RateLimit-Reset",
    "X-RateLimit-Reset-After", "X-Rate-Limit-Limit", "X-Rate-Limit-Remaining", "X-Rate-Limit-Reset",
]  # fmt: skip
names = st.sampled_from(NAMES).flatmap(lambda name: st.sampled_from([name, name.lower(), name.upper()])) | st.text(
    max_size=20
)
numbers = st.one_of(
    st.integers(-(10**15), 10**15).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
    st.sampled_from(["", " 5 ", "1e9", "٣", "9" * 400, "Tue, 14 Nov 2023 22:15:20 GMT", "5;w=-1", "5;w=0"]),
)
sf_names = st.sampled_from(['"default"', '"burst"', "daily", "100", "-5", "?1", "(a b)", '"x'])
sf_params = st.tuples(
    st.sampled_from(["q", "w", "r", "t", "qu", "pk", "limit", "Q"]),
    st.one_of(
        st.integers(-(10**16), 10**16).map(str),
        st.sampled_from(["1.5", "?0", "?1", '"requests"', '"content-bytes"', ":cHsdsRa894==:", "tok", "@1", ""]),
    ),
).map("=".join)
sf_values = st.builds(lambda name, params: ";".join([name, *params]), sf_names, st.lists(sf_params, max_size=4))
sf_lists = st.lists(sf_values, min_size=1, max_size=4).map(", ".join)
values = st.one_of(numbers, sf_lists, st.text(max_size=40))
nows = st.floats(min_value=0, max_value=4e9)


def check(info: RateLimitInfo | None) -> None:
    if info is None:
        return
    for number in (info.limit, info.remaining, info.reset_after, info.window, info.retry_after):
        assert number is None or (math.isfinite(number) and number >= 0)
    for policy in info.policies:
        for number in (policy.quota, policy.window, policy.remaining, policy.reset_after):
            assert number is None or (math.isfinite(number) and number >= 0)
    assert math.isfinite(info.delay) and info.delay >= 0


@given(st.dictionaries(names, values, max_size=8), nows)
def test_never_raises_on_arbitrary_header_dicts(headers: dict[str, str], now: float) -> None:
    check(parse_rate_limit(headers, now))


@given(st.lists(st.tuples(names, values), max_size=10), nows)
def test_never_raises_on_arbitrary_pair_lists(headers: list[tuple[str, str]], now: float) -> None:
    check(parse_rate_limit(headers, now))


@given(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6), st.sampled_from(["", "x-", "X-Rate-"]))
def test_de_facto_numbers_read_back(remaining: int, delay: int, limit: int, prefix: str) -> None:
    name = f"{prefix}RateLimit-" if prefix != "X-Rate-" else "X-Rate-Limit-"
    headers = {f"{name}Limit": str(limit), f"{name}Remaining": str(remaining), f"{name}Reset": str(delay)}
    info = parse(headers)
    assert (info.limit, info.remaining, info.reset_after) == (limit, remaining, delay)


@given(
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 10**6), st.integers(1, 10**6), st.integers(0, 10**5)),
        min_size=1,
        max_size=5,
    ),
    st.booleans(),
)
def test_draft08_binding_policy(limits: list[tuple[int, int, int, int]], split: bool) -> None:
    policy_items = [
        f'"p{i}";q={remaining + extra};w={window}' for i, (remaining, extra, window, _) in enumerate(limits)
    ]
    limit_items = [f'"p{i}";r={remaining};t={reset}' for i, (remaining, _, _, reset) in enumerate(limits)]
    if split:
        headers = [("RateLimit-Policy", item) for item in policy_items] + [("RateLimit", i) for i in limit_items]
    else:
        headers = [("RateLimit-Policy", ", ".join(policy_items)), ("RateLimit", ", ".join(limit_items))]
    info = parse(headers)
    assert info.source == "ietf-draft-08"
    assert len(info.policies) == len(limits)
    exhausted = [reset for remaining, _, _, reset in limits if remaining == 0]
    if exhausted:
        assert (info.remaining, info.reset_after, info.delay) == (0, max(exhausted), max(exhausted))
    else:
        assert info.remaining == min(remaining for remaining, _, _, _ in limits)
        assert info.delay == 0
    candidates = [p for p in info.policies if (p.remaining, p.reset_after) == (info.remaining, info.reset_after)]
    assert (info.limit, info.window) in [(p.quota, p.window) for p in candidates]
