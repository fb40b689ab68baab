"""Parse ``Retry-After`` (RFC 9110 §10.2.3) and HTTP-dates (RFC 9110 §5.6.7): pure functions of values.

``Retry-After = HTTP-date / delay-seconds``.  An HTTP-date comes in three forms, all accepted::

    Sun, 06 Nov 1994 08:49:37 GMT    ; IMF-fixdate, the one senders must use
    Sunday, 06-Nov-94 08:49:37 GMT   ; obsolete RFC 850 form, two-digit year
    Sun Nov  6 08:49:37 1994         ; obsolete ANSI C asctime() form, no zone: UTC

Nothing here reads the clock: the current time is passed in as ``now``, float seconds since the epoch.
Nothing here raises on bad input: a value that cannot be read gives ``None``.
"""

from __future__ import annotations

import calendar
import email.utils
import math
import re
import time

__all__ = ["parse_http_date", "parse_retry_after"]

_MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_abbr) if name}
_MONTH = r"(?P<month>[A-Za-z]{3})"
_TIME = r"(?P<hour>\d{1,2}):(?P<minute>\d{2}):(?P<second>\d{2})"

# RFC 9110 §5.6.7; day names are not checked against the date (recipients need not), whitespace is lenient.
_IMF_FIXDATE = re.compile(
    rf"[A-Za-z]{{3}},\s*(?P<day>\d{{1,2}})\s+{_MONTH}\s+(?P<year>\d{{4}})\s+{_TIME}\s+(?:GMT|UTC|UT|Z)",
    re.IGNORECASE | re.ASCII,
)
_RFC850_DATE = re.compile(
    rf"[A-Za-z]{{6,9}},\s*(?P<day>\d{{1,2}})-{_MONTH}-(?P<year>\d{{2}})\s+{_TIME}\s+(?:GMT|UTC|UT|Z)",
    re.IGNORECASE | re.ASCII,
)
_ASCTIME_DATE = re.compile(
    rf"[A-Za-z]{{3}}\s+{_MONTH}\s+(?P<day>\d{{1,2}})\s+{_TIME}\s+(?P<year>\d{{4}})",
    re.IGNORECASE | re.ASCII,
)
# delay-seconds is 1*DIGIT; a decimal fraction is accepted too, as some servers send one.
_DELAY_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _utc_year(now: float) -> int | None:
    try:
        return time.gmtime(now).tm_year
    except (OverflowError, OSError, ValueError):
        return None


def _timestamp(year: int, month: int, day: int, hour: int, minute: int, second: int) -> float | None:
    """Seconds since the epoch of a UTC calendar time, or ``None`` if no such time exists."""
    if not (0 <= hour <= 23 and 0 <= minute <= 59 and 0 <= second <= 60):
        return None
    try:
        if not 1 <= day <= calendar.monthrange(year, month)[1]:
            return None
        # second 60 is a leap second: it names the same instant as :00 of the next minute.
        return float(calendar.timegm((year, month, day, hour, minute, second, 0, 0, 0)))
    except (ValueError, OverflowError, calendar.IllegalMonthError):
        return None


def _two_digit_year(year: int, now: float) -> int:
    """RFC 9110 §5.6.7: a two-digit year more than 50 years in the future means the most recent past one."""
    current = _utc_year(now) or 1970
    full = current - current % 100 + year  # then slide into the window (current - 50, current + 50]
    if full > current + 50:
        full -= 100
    elif full <= current - 50:
        full += 100
    return full


def parse_http_date(value: str, now: float) -> float | None:
    """Return the time an HTTP-date names, in seconds since the epoch (UTC), or ``None`` if ``value`` is not one.

    Accepts the three forms of RFC 9110 §5.6.7 (IMF-fixdate, RFC 850, asctime), case-insensitively and with
    lenient whitespace.  asctime carries no zone and is read as UTC, as HTTP requires.  A two-digit RFC 850
    year is resolved against ``now`` (seconds since the epoch) as RFC 9110 §5.6.7 requires: a year more than
    50 years in the future means the most recent past year with the same last two digits.  Other dates that
    RFC 5322 allows (a numeric zone such as ``+0200``) are read with :func:`email.utils.parsedate_tz`, zoneless
    ones as UTC.  Raises nothing.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    for pattern in (_IMF_FIXDATE, _RFC850_DATE, _ASCTIME_DATE):
        match = pattern.fullmatch(text)
        if match is None:
            continue
        month = _MONTHS.get(match["month"].lower())
        if month is None:
            return None
        year = int(match["year"])
        if pattern is _RFC850_DATE:
            year = _two_digit_year(year, now)
        return _timestamp(
            year, month, int(match["day"]), int(match["hour"]), int(match["minute"]), int(match["second"])
        )
    return _parse_rfc5322_date(text)


def _parse_rfc5322_date(text: str) -> float | None:
    if not any(c.isalpha() for c in text):  # parsedate_tz reads "1 2 3 4 5" as a date; we do not
        return None
    try:
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        year, month, day, hour, minute, second = parsed[:6]
        stamp = _timestamp(year, month, day, hour, minute, second)
    except (TypeError, ValueError, OverflowError, IndexError):
        return None
    if stamp is None:
        return None
    return stamp - (parsed[9] or 0)


def parse_retry_after(value: str, now: float) -> float | None:
    """Return how many seconds to wait (a finite float >= 0) before the next request, per ``Retry-After``.

    ``value`` is one field value (surrounding whitespace is ignored); ``now`` is the current time in
    seconds since the epoch.  Per RFC 9110 §10.2.3 the value is either delay-seconds (``120`` means 120.0) or an
    HTTP-date (see :func:`parse_http_date`), for which the result is the date minus ``now``; a date in the past
    means "now" and gives ``0.0``.

    Leniencies: a decimal fraction (``1.5``) is accepted as delay-seconds; so is a list the sender or a proxy
    folded into one line (``120, 120``), of which the first member counts.  Returns ``None``, and never raises,
    for anything else: empty, negative, a number too large to be a float, not a date.
    """
    if not isinstance(value, str):
        return None
    text = value.strip()
    if _DELAY_SECONDS.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    stamp = parse_http_date(text, now)
    if stamp is None:
        first = text.split(",", 1)[0].strip()
        return parse_retry_after(first, now) if first != text and _DELAY_SECONDS.fullmatch(first) else None
    delay = stamp - now
    if not math.isfinite(delay):
        return None
    return delay if delay > 0 else 0.0
