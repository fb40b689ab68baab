"""Redis for crawler: :class:`RedisFrontier`, one frontier shared by many worker processes on many machines
(``crawler crawl ... --frontier redis://HOST:6379/0 --crawl-id NAME``), and :class:`RedisStreamSink`, items
appended to a Redis stream (``-o "redis://HOST:6379/0?stream=NAME"``).

Both are found by crawler through entry points (``crawler.frontiers`` and ``crawler.sinks``, schemes ``redis``
and ``rediss``) and run on asyncio and trio.
"""

from crawler_redis._connection import redact_uri
from crawler_redis._frontier import RedisFrontier, key_prefix
from crawler_redis._sink import RedisStreamSink

__all__ = ["RedisFrontier", "RedisStreamSink", "key_prefix", "redact_uri"]
