"""The plugin's public names, and the entry points through which crawler finds them."""

from __future__ import annotations

from importlib.metadata import entry_points

import crawler_redis
from crawler_redis import RedisFrontier, RedisStreamSink, redact_uri


def test_exports() -> None:
    assert sorted(crawler_redis.__all__) == ["RedisFrontier", "RedisStreamSink", "key_prefix", "redact_uri"]
    for name in crawler_redis.__all__:
        assert getattr(crawler_redis, name).__module__.startswith("crawler_redis._")


def test_entry_points() -> None:
    frontiers = {ep.name: ep.load() for ep in entry_points(group="crawler.frontiers")}
    sinks = {ep.name: ep.load() for ep in entry_points(group="crawler.sinks")}
    assert frontiers["redis"] is frontiers["rediss"] is RedisFrontier
    assert sinks["redis"] is sinks["rediss"] is RedisStreamSink


def test_redact_uri() -> None:
    assert redact_uri("redis://:pw@h:6379/0") == "redis://:***@h:6379/0"
    assert redact_uri("rediss://user:pw@h/1?stream=s") == "rediss://user:***@h/1?stream=s"
    assert redact_uri("redis://h:6379/0") == "redis://h:6379/0"
