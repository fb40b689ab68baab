"""One Redis connection for either event loop, and the patience that rides out a Redis outage.

redis-py's asyncio client (:mod:`redis.asyncio`) only runs on asyncio.  :class:`RedisConnection` uses it there,
and on trio runs the synchronous client in worker threads (:func:`anyio.to_thread.run_sync`, at most
``threads`` at a time), so the frontier and the sink are written once: an operation is a function of the client
(``lambda client: client.ping()``) whose result is awaited when the client is the asyncio one.

Errors (redis-py's names): :class:`redis.ConnectionError` (its subclass :class:`redis.BusyLoadingError` while a
restarted server loads its data), :class:`redis.TimeoutError`, and :class:`redis.ResponseError` replies such as
``OOM``, ``READONLY`` or ``MISCONF`` that say the server cannot take writes for now are *transient*:
:meth:`RedisConnection.call` retries them with capped exponential backoff, logging one warning per outage.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import anyio.to_thread
import redis
import redis.asyncio
import sniffio
from redis.backoff import NoBackoff

__all__ = ["RedisConnection", "is_transient", "redact_uri"]

#: Seconds a socket waits for a reply (and for a connection) before redis-py raises TimeoutError.
SOCKET_TIMEOUT = 10.0
CONNECT_TIMEOUT = 2.0
#: Reply prefixes of errors that pass: the server is out of memory, a replica, failing to persist, resharding.
_TRANSIENT_REPLIES = ("OOM", "READONLY", "MISCONF", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "LOADING")


def redact_uri(uri: str) -> str:
    """``uri`` with the password (``redis://user:PASSWORD@host``) replaced by ``***``, fit for messages."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return "<unparsable URI>"
    if parts.password is None:
        return uri
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def is_transient(exc: BaseException) -> bool:
    """True for an error that a later attempt may not meet: the server is down, restarting, or refusing writes
    for a while."""
    if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
        return True
    return isinstance(exc, redis.ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


class RedisConnection:
    """A Redis client for the running event loop, made by :meth:`connect` from ``uri`` (``redis://``,
    ``rediss://`` or ``unix://``, as :meth:`redis.Redis.from_url` reads it; ``options`` go to it too).

    ``min_backoff`` and ``max_backoff`` (seconds) bound the waits of :meth:`call` between attempts; warnings
    go to ``log`` naming ``what`` and the URI (password redacted).
    """

    def __init__(
        self,
        uri: str,
        *,
        what: str,
        log: Any,
        threads: int = 4,
        min_backoff: float = 0.1,
        max_backoff: float = 5.0,
        options: dict[str, Any] | None = None,
    ) -> None:
        self.uri = uri
        self.display = redact_uri(uri)
        self.what = what
        self.log = log
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._threads = threads
        self._options = options or {}
        self._client: Any = None
        self._threaded = False
        self._limiter: anyio.CapacityLimiter | None = None
        self._scripts: dict[str, Any] = {}

    @property
    def connected(self) -> bool:
        return self._client is not None

    def connect(self, scripts: dict[str, str] | None = None) -> None:
        """Make the client for the running async library and register ``scripts`` (name -> Lua source), which
        :meth:`script` runs by EVALSHA, loading them again after a server restart.  Sends nothing yet.

        Raises ValueError (from redis-py) for a URI it cannot read."""
        options: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": SOCKET_TIMEOUT,
            "socket_connect_timeout": CONNECT_TIMEOUT,
            **self._options,
        }
        if sniffio.current_async_library() == "asyncio":
            from redis.asyncio.retry import Retry as AsyncRetry

            options.setdefault("retry", AsyncRetry(NoBackoff(), 1))  # one quick retry: a stale pooled connection
            self._client = redis.asyncio.Redis.from_url(self.uri, **options)
            self._threaded = False
        else:
            from redis.retry import Retry

            options.setdefault("retry", Retry(NoBackoff(), 1))
            self._client = redis.Redis.from_url(self.uri, **options)
            self._threaded = True
            self._limiter = anyio.CapacityLimiter(self._threads)
        self._scripts = {name: self._client.register_script(source) for name, source in (scripts or {}).items()}

    async def run(self, operation: Callable[[Any], Any]) -> Any:
        """One attempt of ``operation(client)``, shielded from cancellation (the socket timeout bounds it), so
        that a script that ran is never taken for one that did not; redis-py's errors propagate."""
        if self._client is None:
            raise RuntimeError(f"{self.what} {self.display} is not connected")
        if self._threaded:  # a thread is not cancelled: the attempt runs to its end, as below
            return await anyio.to_thread.run_sync(operation, self._client, limiter=self._limiter)
        with anyio.CancelScope(shield=True):  # a reply is never lost to a cancellation (sockets time out)
            result = operation(self._client)
            if inspect.isawaitable(result):
                result = await result
        return result

    async def call(self, operation: Callable[[Any], Any], *, give_up_after: float | None = None) -> Any:
        """Run ``operation(client)`` until it succeeds, waiting out transient errors (see :func:`is_transient`)
        with exponential backoff from ``min_backoff`` to ``max_backoff`` seconds.  One warning is logged when an
        outage starts, one line when it ends.  Other errors propagate; so does the last transient one when
        ``give_up_after`` seconds have passed."""
        wait = self.min_backoff
        started: float | None = None
        while True:
            try:
                result = await self.run(operation)
            except redis.RedisError as exc:
                if not is_transient(exc):
                    raise
                now = time.monotonic()
                if started is None:
                    started = now
                    self.log.warning(
                        "redis unavailable, retrying", target=self.what, uri=self.display, error=_describe(exc)
                    )
                if give_up_after is not None and now - started >= give_up_after:
                    raise
                await anyio.sleep(wait)
                wait = min(wait * 2, self.max_backoff)
                continue
            if started is not None:
                self.log.info(
                    "redis available again",
                    target=self.what,
                    uri=self.display,
                    down=round(time.monotonic() - started, 3),
                )
            return result

    async def script(
        self, name: str, keys: list[str], args: list[Any], *, give_up_after: float | None = None
    ) -> list[Any]:
        """Run a registered script through :meth:`call`; returns its reply (a list)."""
        script = self._scripts[name]
        reply = await self.call(lambda _client: script(keys=keys, args=args), give_up_after=give_up_after)
        return list(reply)

    async def close(self) -> None:
        """Close the client and its connection pool.  Idempotent."""
        client, self._client = self._client, None
        if client is None:
            return
        with anyio.CancelScope(shield=True):
            if self._threaded:
                await anyio.to_thread.run_sync(client.close, limiter=self._limiter)
            else:
                close = getattr(client, "aclose", None) or client.close
                await close()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
