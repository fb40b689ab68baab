"""Tests for crawler._retry_after: Retry-After (RFC 9110 §10.2.3) and HTTP-dates (RFC 9110 §5.6.7)."""

from __future__ import annotations

import calendar
import email.utils
import math
import time
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler._retry_after import parse_http_date, parse_retry_after

# 1994-11-06T08:49:37Z, the example of RFC 9110 §5.6.7
EXAMPLE = 784111777.0
NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z

WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def rfc850(moment: datetime) -> str:
    return (
        f"{WEEKDAYS[moment.weekday()]}, {moment.day:02d}-{MONTHS[moment.month - 1]}-{moment.year % 100:02d} "
        f"{moment:%H:%M:%S} GMT"
    )


def asctime(moment: datetime) -> str:
    return time.asctime(moment.utctimetuple())


# -- delay-seconds -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("  5\t", 5.0),  # surrounding OWS
        ("007", 7.0),
        ("1.5", 1.5),  # a fraction: not RFC 9110 syntax, accepted
        ("120, 120", 120.0),  # a list folded by a proxy: the first member counts
        ("86400", 86400.0),
    ],
)
def test_delay_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value, NOW) == expected


@pytest.mark.parametrize(
    "value",
    ["", "   ", "-1", "+5", "1e3", "soon", "5 seconds", "0x10", "inf", "nan", "1.", ".5", "9" * 400, "١٢"],
)
def test_malformed_gives_none(value: str) -> None:
    assert parse_retry_after(value, NOW) is None


# -- HTTP-dates ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 06 Nov 1994 08:49:37 GMT",  # IMF-fixdate
        "Sunday, 06-Nov-94 08:49:37 GMT",  # obsolete RFC 850
        "Sun Nov  6 08:49:37 1994",  # obsolete asctime, no zone: UTC
        "sun, 06 nov 1994 08:49:37 gmt",  # case-insensitive
        "Sun,  6 Nov 1994   08:49:37 GMT",  # lenient whitespace, one-digit day
        "Sun Nov 6 08:49:37 1994",
        "Sun, 06 Nov 1994 10:49:37 +0200",  # RFC 5322 numeric zone, via email.utils
    ],
)
def test_http_date_forms(value: str) -> None:
    assert parse_http_date(value, NOW) == EXAMPLE


@pytest.mark.parametrize(
    "value",
    [
        "Sun, 32 Nov 1994 08:49:37 GMT",
        "Sun, 29 Feb 2023 08:49:37 GMT",
        "Sun, 06 Foo 1994 08:49:37 GMT",
        "Sun, 06 Nov 1994 24:00:00 GMT",
        "Sun, 06 Nov 0000 08:49:37 GMT",
        "06/11/1994",
        "1 2 3 4 5",
        "Sun, 06 Nov 1994",
    ],
)
def test_not_a_date(value: str) -> None:
    assert parse_http_date(value, NOW) is None
    assert parse_retry_after(value, NOW) is None


def test_date_in_the_future_is_the_difference() -> None:
    assert parse_retry_after("Tue, 14 Nov 2023 22:15:20 GMT", NOW) == 120.0
    assert parse_retry_after("Tuesday, 14-Nov-23 22:15:20 GMT", NOW) == 120.0
    assert parse_retry_after("Tue Nov 14 22:15:20 2023", NOW) == 120.0


def test_date_in_the_past_means_now() -> None:
    assert parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", NOW) == 0.0
    assert parse_retry_after("Tue, 14 Nov 2023 22:13:20 GMT", NOW) == 0.0  # exactly now


def test_leap_second_is_the_next_minute() -> None:
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT", NOW) == calendar.timegm((2017, 1, 1, 0, 0, 0))


@pytest.mark.parametrize(
    ("two_digits", "now_year", "year"),
    [
        ("94", 2023, 1994),  # 2094 is more than 50 years ahead
        ("73", 2023, 2073),  # 50 years ahead: still the future
        ("74", 2023, 1974),  # 51 years ahead: the past
        ("23", 2023, 2023),
        ("99", 2001, 1999),
        ("05", 2060, 2105),  # 2005 is more than 50 years back; 2105 is 45 years ahead
    ],
)
def test_rfc850_two_digit_year(two_digits: str, now_year: int, year: int) -> None:
    now = float(calendar.timegm((now_year, 6, 1, 0, 0, 0)))
    stamp = parse_http_date(f"Monday, 01-Jan-{two_digits} 00:00:00 GMT", now)
    assert stamp == calendar.timegm((year, 1, 1, 0, 0, 0))


# -- properties ---------------------------------------------------------------------------------------------

nows = st.floats(min_value=0, max_value=4e9, allow_nan=False)
moments = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(9999, 12, 31), timezones=st.just(UTC))


@given(st.text(), nows)
def test_never_raises_never_negative(value: str, now: float) -> None:
    result = parse_retry_after(value, now)
    assert result is None or (math.isfinite(result) and result >= 0)


@given(st.from_regex(r"\s*[0-9A-Za-z ,:+-]{0,40}\s*", fullmatch=True), nows)
def test_date_like_text_never_raises(value: str, now: float) -> None:
    result = parse_retry_after(value, now)
    assert result is None or result >= 0


@given(st.integers(min_value=0, max_value=10**15), nows)
def test_delay_seconds_round_trip(seconds: int, now: float) -> None:
    assert parse_retry_after(str(seconds), now) == float(seconds)


@given(moments, nows)
def test_imf_fixdate_round_trip(moment: datetime, now: float) -> None:
    moment = moment.replace(microsecond=0)
    value = email.utils.format_datetime(moment, usegmt=True)
    assert parse_http_date(value, now) == moment.timestamp()
    assert parse_retry_after(value, now) == max(0.0, moment.timestamp() - now)


@given(moments, nows)
def test_asctime_round_trip(moment: datetime, now: float) -> None:
    moment = moment.replace(microsecond=0)
    assert parse_http_date(asctime(moment), now) == moment.timestamp()
    assert parse_retry_after(asctime(moment), now) == max(0.0, moment.timestamp() - now)


@given(st.integers(min_value=-49, max_value=50), st.datetimes(timezones=st.just(UTC)), nows)
def test_rfc850_round_trip_within_fifty_years(offset: int, moment: datetime, now: float) -> None:
    now_year = time.gmtime(now).tm_year
    moment = moment.replace(year=now_year + offset, month=1 if moment.month == 2 else moment.month, microsecond=0)
    assert parse_http_date(rfc850(moment), now) == moment.timestamp()
