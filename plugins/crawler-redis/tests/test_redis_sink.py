"""The Redis stream sink against a real server: entries round-trip, ``maxlen`` trims, bad outputs fail clearly."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import redis

from crawler import ItemRecord, SinkError, open_sink
from crawler_redis import RedisStreamSink

if TYPE_CHECKING:
    from conftest import RedisServer

pytestmark = pytest.mark.anyio


@pytest.fixture
def stream() -> str:
    return f"test:items:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def record(n: int) -> ItemRecord:
    return ItemRecord(
        key=f"k{n}", item={"n": n, "title": "é", "tags": ["a"]}, spider="s", url=f"http://a.test/{n}", fetched_at=1.5
    )


async def test_items_round_trip(redis_url: str, stream: str, client: redis.Redis) -> None:
    sink = open_sink(f"{redis_url}?stream={stream}")  # found through the crawler.sinks entry point
    assert isinstance(sink, RedisStreamSink)
    await sink.open()
    try:
        await sink.write([record(0), record(1)])
        await sink.write([record(2)])
    finally:
        await sink.close()
    entries = client.xrange(stream)
    assert [fields["key"] for _, fields in entries] == ["k0", "k1", "k2"]
    _, first = entries[0]
    assert first == {
        "key": "k0",
        "spider": "s",
        "url": "http://a.test/0",
        "fetched_at": "1.5",
        "item": json.dumps({"n": 0, "title": "é", "tags": ["a"]}, ensure_ascii=False),
    }


async def test_maxlen_trims_the_stream(redis_url: str, stream: str, client: redis.Redis) -> None:
    sink = RedisStreamSink(f"{redis_url}?stream={stream}&maxlen=10")
    await sink.open()
    try:
        for start in range(0, 1000, 100):
            await sink.write([record(n) for n in range(start, start + 100)])
    finally:
        await sink.close()
    length = client.xlen(stream)
    assert 10 <= length < 300  # approximate: Redis trims whole nodes of the stream
    last = client.xrevrange(stream, count=1)[0][1]
    assert last["key"] == "k999"


async def test_the_default_stream_and_the_error_sink(redis_url: str) -> None:
    sink = RedisStreamSink(redis_url)
    assert sink.stream == "crawler:items"
    errors = RedisStreamSink(f"{redis_url}?stream=mine&maxlen=5").error_sink()
    assert (errors.stream, errors.maxlen) == ("mine:errors", 5)


async def test_an_unreachable_server_fails_open_naming_it(unused_port: int) -> None:
    sink = RedisStreamSink(f"redis://:s3cret@127.0.0.1:{unused_port}/0?stream=x", connect_timeout=0.3)
    with pytest.raises(SinkError) as info:
        await sink.open()
    assert "127.0.0.1" in str(info.value) and "***" in str(info.value) and "s3cret" not in str(info.value)


async def test_a_bad_maxlen_is_refused() -> None:
    with pytest.raises(SinkError, match="maxlen"):
        RedisStreamSink("redis://127.0.0.1:6379/0?maxlen=lots")


async def test_a_bad_uri_is_refused_on_open() -> None:
    with pytest.raises(SinkError, match=r"redis://127\.0\.0\.1:port"):
        await RedisStreamSink("redis://127.0.0.1:port/0").open()


async def test_a_refused_write_fails(redis_url: str, stream: str, client: redis.Redis) -> None:
    client.set(stream, "not a stream")  # XADD on a string key: the server refuses
    sink = RedisStreamSink(f"{redis_url}?stream={stream}")
    await sink.open()
    try:
        with pytest.raises(SinkError, match="WRONGTYPE"):
            await sink.write([record(0)])
    finally:
        await sink.close()


async def test_a_write_to_a_stopped_server_fails(own_redis: RedisServer) -> None:
    sink = RedisStreamSink(f"{own_redis.url}?stream=s")
    await sink.open()
    own_redis.stop()
    try:
        with pytest.raises(SinkError, match=f"127.0.0.1:{own_redis.port}"):
            await sink.write([record(0)])
    finally:
        await sink.close()


async def test_a_lone_surrogate_is_escaped(redis_url: str, stream: str, client: redis.Redis) -> None:
    half = json.loads('"abc\\ud83d"')  # half an emoji
    sink = RedisStreamSink(f"{redis_url}?stream={stream}")
    await sink.open()
    try:
        await sink.write([ItemRecord(key=half, item={"t": half, "ok": "é"}, spider="s", url="u", fetched_at=0.0)])
    finally:
        await sink.close()
    ((_, fields),) = client.xrange(stream)
    assert json.loads(fields["item"]) == {"t": half, "ok": "é"}
    assert fields["key"] == "abc\\ud83d"


async def test_an_item_that_is_not_json_is_a_sink_error(redis_url: str, stream: str) -> None:
    sink = RedisStreamSink(f"{redis_url}?stream={stream}")
    await sink.open()
    circular: dict[str, object] = {}
    circular["self"] = circular
    try:
        with pytest.raises(SinkError, match="not JSON"):
            await sink.write([ItemRecord(key="k", item=circular, spider="s", url="u", fetched_at=0.0)])
    finally:
        await sink.close()
