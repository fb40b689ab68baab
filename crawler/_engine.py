"""The engine: one task group that owns the dispatcher, the workers, the sink writer and the reporter.

::

    Spider.start() ──► Frontier ──► dispatcher ──► channel ──► workers (N) ──► Transport
                          ▲         (claims only when a        │  host policy fed every outcome
                          │          worker is free and the    ▼
                          └── new Requests ◄── callback(response) ── items ──► channel ──► sinks

The crawl ends when the frontier is empty and no request is being processed.  :meth:`Engine.stop` stops
dispatching; in-flight requests then have ``shutdown_timeout`` seconds to finish before they are cancelled and put
back in the frontier; the sinks are flushed either way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler._exceptions import (
    CloseSpider,
    CrawlerError,
    IgnoreRequest,
    InvalidURL,
    SinkError,
    TransportError,
)
from crawler._frontier import Frontier, MemoryFrontier
from crawler._items import ItemRecord, to_plain
from crawler._log import get_logger
from crawler._politeness import Outcome, Politeness
from crawler._request import Request
from crawler._response import Response
from crawler._robots import RobotsCache, RobotsUnavailable
from crawler._settings import Settings
from crawler._spider import Failure, Spider, iterate_output
from crawler._stats import Stats, current_stats
from crawler._transport import HttpxTransport, Transport, TransportOptions
from crawler.sinks import Sink, open_sink

__all__ = ["Engine", "crawl"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
Clock = Callable[[], float]


def _domain_allowed(host: str, allowed: Sequence[str]) -> bool:
    if not allowed:
        return True
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    for entry in allowed:
        entry = entry.lower()
        if ":" in entry and not entry.endswith("]"):
            if host == entry:
                return True
        elif name == entry or name.endswith("." + entry):
            return True
    return False


class Engine:
    """Runs one spider to the end.  Build it, then ``await engine.run()``; it returns the :class:`Stats`.

    ``transport``, ``frontier``, ``politeness`` and ``sinks`` replace the defaults built from ``settings`` (the
    httpx transport, the in-memory frontier, the per-host politeness registry, and the sinks of
    ``settings.output.uris``).  ``clock`` gives seconds since the epoch (``time.time`` by default; tests inject one).
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        frontier: Frontier | None = None,
        politeness: Politeness | None = None,
        sinks: Sequence[Sink] | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.spider = spider
        self.settings = settings = settings or Settings()
        crawl = settings.crawl
        self.clock = clock
        self.politeness = politeness or Politeness(per_host=crawl.per_host, delay=crawl.delay, jitter=crawl.jitter)
        self.frontier: Frontier = frontier or MemoryFrontier(self.politeness)
        headers = {"User-Agent": crawl.user_agent, **crawl.headers}
        self.transport: Transport = transport or HttpxTransport(
            TransportOptions(
                timeout=crawl.timeout,
                max_body_size=crawl.max_body_size,
                pool_size=crawl.per_host,
                headers=headers,
                verify=crawl.verify,
            )
        )
        uris = settings.output.uris or (f"sqlite:///{spider.name}.db",)
        self.sinks: list[Sink] = list(sinks) if sinks is not None else [open_sink(uri) for uri in uris]
        self.stats = Stats()
        self.log = get_logger(spider=spider.name)
        robots_agent = crawl.user_agent.split("/", 1)[0].split(" ", 1)[0] or crawl.user_agent
        self.robots = RobotsCache(self.transport.fetch, robots_agent) if crawl.obey_robots else None
        self._slots = anyio.Semaphore(crawl.concurrency)
        self._active = 0  # claimed and not fully processed (fetch, callback, outputs added)
        self._starting = True
        self._stopping = False
        self._stop_reason = "finished"
        self._changed = anyio.Event()
        self._items_send: MemoryObjectSendStream[ItemRecord] | None = None
        self._workers: TaskGroup | None = None
        self._items_written = 0
        spider.stats = self.stats  # type: ignore[attr-defined]
        spider.logger = self.log  # type: ignore[attr-defined]
        spider.settings = settings  # type: ignore[attr-defined]

    @property
    def in_flight(self) -> int:
        """Requests claimed from the frontier and not yet fully processed."""
        return self._active

    # -- control ---------------------------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()

    def stop(self, reason: str, *, deadline: float | None = None) -> None:
        """Stop dispatching new requests.  In-flight requests may run ``deadline`` more seconds (None: until they
        finish), then they are cancelled and returned to the frontier."""
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
            self.log.info("stopping", reason=reason)
        if deadline is not None and self._workers is not None:
            scope = self._workers.cancel_scope
            scope.deadline = min(scope.deadline, anyio.current_time() + deadline)
        self._notify()

    def _limit_reached(self) -> bool:
        crawl = self.settings.crawl
        if crawl.max_pages is not None and self.stats.counts["pages"] >= crawl.max_pages:
            self.stop("max_pages")
            return True
        if crawl.max_items is not None and self.stats.counts["items"] >= crawl.max_items:
            self.stop("max_items")
            return True
        return False

    # -- the run ---------------------------------------------------------------------------------------------
    async def run(self) -> Stats:
        """Crawl until done or stopped; return the stats.  Raises :class:`crawler.SinkError` when a sink cannot
        be opened."""
        for sink in self.sinks:
            await sink.open()
        items_send, items_receive = anyio.create_memory_object_stream[ItemRecord](self.settings.output.batch_size)
        self._items_send = items_send
        requests_send, requests_receive = anyio.create_memory_object_stream[Request](self.settings.crawl.concurrency)
        self.log.info(
            "crawl started", concurrency=self.settings.crawl.concurrency, per_host=self.settings.crawl.per_host
        )
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_items, items_receive)
                async with items_send, anyio.create_task_group() as workers:
                    self._workers = workers
                    workers.start_soon(self._feed_start)
                    workers.start_soon(self._dispatch, requests_send)
                    for _ in range(self.settings.crawl.concurrency):
                        workers.start_soon(self._worker, requests_receive.clone())
                    requests_receive.close()
        finally:
            with anyio.CancelScope(shield=True):
                for sink in self.sinks:
                    try:
                        await sink.close()
                    except SinkError as exc:
                        self.log.error("sink close failed", error=str(exc))
                await self.frontier.close()
                await self.transport.aclose()
        self.stats.finish(self._stop_reason)
        return self.stats

    async def _feed_start(self) -> None:
        current_stats.set(self.stats)
        try:
            async for value in iterate_output(self.spider.start()):
                await self._handle_output(value, None, 0)
        except CloseSpider as exc:
            self.stop(exc.reason)
        except Exception as exc:  # a broken start() must not kill the crawl of what it already yielded
            self.stats.error(type(exc).__name__)
            self.log.error("start() failed", error=f"{type(exc).__name__}: {exc}")
        finally:
            self._starting = False
            self._notify()

    async def _dispatch(self, send: MemoryObjectSendStream[Request]) -> None:
        max_pages = self.settings.crawl.max_pages
        async with send:
            while True:
                await self._slots.acquire()
                request = await self._next_request(max_pages)
                if request is None:
                    self._slots.release()
                    return
                await send.send(request)

    async def _next_request(self, max_pages: int | None) -> Request | None:
        while not self._stopping:
            if self._limit_reached():
                return None
            changed = self._changed
            now = self.clock()
            if max_pages is None or self.stats.counts["pages"] + self._active < max_pages:
                request = await self.frontier.claim(now)
                if request is not None:
                    self._active += 1
                    return request
            if not self._starting and self._active == 0 and self.frontier.statistics().queued == 0:
                return None
            wake = await self.frontier.next_wakeup(now)
            timeout = math.inf if wake is None else max(wake - now, 0.0)
            with anyio.move_on_after(timeout):
                await changed.wait()
        return None

    async def _worker(self, receive: MemoryObjectReceiveStream[Request]) -> None:
        current_stats.set(self.stats)
        async with receive:
            async for request in receive:
                try:
                    if self._stopping:
                        await self.frontier.complete(request, self.clock())
                        await self.frontier.requeue(request)
                    else:
                        await self._process(request)
                except anyio.get_cancelled_exc_class():
                    with anyio.CancelScope(shield=True):
                        await self.frontier.requeue(request.replace(not_before=None))
                    raise
                finally:
                    self._active -= 1
                    self._slots.release()
                    self._notify()

    # -- one request -----------------------------------------------------------------------------------------
    async def _process(self, request: Request) -> None:
        structlog.contextvars.bind_contextvars(url=request.url)
        host = request.host
        completed = False
        try:
            if self.robots is not None and not await self._robots_allow(request):
                return
            started = self.clock()
            try:
                response = await self.transport.fetch(request)
            except (TransportError, InvalidURL) as exc:
                now = self.clock()
                self.politeness.observe(host, Outcome(error=type(exc).__name__, latency=now - started), now)
                await self.frontier.complete(request, now)
                completed = True
                await self._fail(request, exc, None)
                return
            now = self.clock()
            self.politeness.observe(
                host, Outcome(status=response.status, headers=response.headers, latency=response.elapsed), now
            )
            await self.frontier.complete(request, now)
            completed = True
            self.stats.response(response.status, len(response.body), host)
            await self._handle_response(request, response)
        finally:
            if not completed:
                await self.frontier.complete(request, self.clock())
            structlog.contextvars.unbind_contextvars("url")

    async def _robots_allow(self, request: Request) -> bool:
        assert self.robots is not None
        try:
            allowed = await self.robots.allowed(request)
        except RobotsUnavailable as exc:
            await self._fail(request, exc, None)
            return False
        self.politeness.get(request.host).crawl_delay = self.robots.crawl_delay(request.host)
        if not allowed:
            self.stats.inc("robots_disallowed")
            self.log.debug("disallowed by robots.txt")
        return allowed

    async def _handle_response(self, request: Request, response: Response) -> None:
        location = response.headers.get("location")
        if response.status in REDIRECT_STATUSES and location:
            await self._redirect(request, response, location)
            return
        if not (200 <= response.status < 300) and not self._handles_status(request, response.status):
            self.log.warning("http error", status=response.status)
            await self._fail(request, None, response)
            return
        self.stats.inc("pages")
        callback = getattr(self.spider, request.callback or "parse")
        await self._run_callback(request, response, callback, (response,))

    def _handles_status(self, request: Request, status: int) -> bool:
        allowed = request.meta.get("handle_httpstatus_list", getattr(self.spider, "handle_httpstatus_list", ()))
        return bool(request.meta.get("handle_httpstatus_all")) or status in allowed

    async def _redirect(self, request: Request, response: Response, location: str) -> None:
        chain = [*request.meta.get("redirect_urls", ()), request.url]
        if len(chain) > self.settings.crawl.max_redirects:
            await self._fail(
                request, CrawlerError(f"more than {self.settings.crawl.max_redirects} redirects"), response
            )
            return
        try:
            target = response.urljoin(location)
            # RFC 9110 §15.4: 303 always, and 301/302 after POST in practice, continue with GET and no body.
            as_get = response.status == 303 or (response.status in (301, 302) and request.method == "POST")
            changes: dict[str, Any] = {"url": target, "meta": {**request.meta, "redirect_urls": chain}}
            if as_get:
                changes.update(method="GET", body=None)
            new = request.replace(**changes)
        except InvalidURL as exc:
            await self._fail(request, exc, response)
            return
        self.stats.inc("redirects")
        await self._add(new, request)

    async def _run_callback(
        self, request: Request, response: Response | None, callback: Any, args: tuple[Any, ...]
    ) -> None:
        index = 0
        try:
            async for value in iterate_output(callback(*args, **request.cb_kwargs)):
                index = await self._handle_output(value, request, index, response)
        except CloseSpider as exc:
            self.stop(exc.reason)
        except IgnoreRequest:
            self.stats.inc("ignored")
        except Exception as exc:
            self.stats.error(f"callback:{type(exc).__name__}")
            self.log.error(
                "callback failed", callback=getattr(callback, "__name__", "?"), error=f"{type(exc).__name__}: {exc}"
            )

    async def _handle_output(
        self, value: Any, parent: Request | None, index: int, response: Response | None = None
    ) -> int:
        if isinstance(value, Request):
            if parent is not None and value.depth <= parent.depth:
                value = value.replace(depth=parent.depth + 1)
            await self._add(value, parent)
            return index
        try:
            item = to_plain(value)
        except TypeError as exc:
            self.stats.error("bad_item")
            self.log.error("bad item", error=str(exc))
            return index
        await self._emit(item, parent, index, response)
        return index + 1

    async def _add(self, request: Request, parent: Request | None) -> None:
        crawl = self.settings.crawl
        if parent is not None and not _domain_allowed(request.host, self.spider.allowed_domains):
            self.stats.inc("offsite")
            return
        if crawl.max_depth is not None and request.depth > crawl.max_depth:
            self.stats.inc("depth_limit")
            return
        if await self.frontier.add((request,)):
            self.stats.inc("queued")
            self._notify()
        else:
            self.stats.inc("duplicates")

    async def _emit(self, item: dict[str, Any], parent: Request | None, index: int, response: Response | None) -> None:
        limit = self.settings.crawl.max_items
        if limit is not None and self.stats.counts["items"] >= limit:
            self.stats.inc("items_over_limit")
            return
        key_field = self.spider.item_key
        if key_field and key_field in item:
            key = str(item[key_field])
        else:
            key = f"{parent.fingerprint if parent else 'start'}:{index}"
        record = ItemRecord(
            key=key,
            item=item,
            spider=self.spider.name,
            url=response.url if response is not None else (parent.url if parent else ""),
            fetched_at=self.clock(),
        )
        self.stats.inc("items")
        assert self._items_send is not None
        await self._items_send.send(record)
        if limit is not None and self.stats.counts["items"] >= limit:
            self.stop("max_items")

    async def _fail(self, request: Request, exc: BaseException | None, response: Response | None) -> None:
        """A request gave up: count it, log it with its URL, and call its errback."""
        failure = Failure(request=request, exception=exc, response=response)
        kind = type(exc).__name__ if exc is not None else f"http_{response.status if response else '?'}"
        self.stats.error(kind)
        if exc is not None:
            self.log.warning("request failed", error=failure.reason)
        errback = getattr(self.spider, request.errback or "errback", None)
        if errback is not None:
            await self._run_callback(request.replace(cb_kwargs={}), response, errback, (failure,))

    # -- sinks -----------------------------------------------------------------------------------------------
    async def _write_items(self, receive: MemoryObjectReceiveStream[ItemRecord]) -> None:
        size = self.settings.output.batch_size
        async with receive:
            batch: list[ItemRecord] = []
            async for record in receive:
                batch.append(record)
                while len(batch) < size:
                    try:
                        batch.append(receive.receive_nowait())
                    except (anyio.WouldBlock, anyio.EndOfStream):
                        break
                await self._write_batch(batch)
                batch = []

    async def _write_batch(self, batch: list[ItemRecord]) -> None:
        for sink in self.sinks:
            for attempt in range(4):
                try:
                    await sink.write(batch)
                    break
                except SinkError as exc:
                    if attempt == 3:
                        self.log.error("sink failed; items written to the log", sink=sink.uri, error=str(exc))
                        for record in batch:
                            self.log.error("unwritten item", key=record.key, item=record.item)
                        self.stop("sink failed", deadline=self.settings.crawl.shutdown_timeout)
                        return
                    self.log.warning("sink write failed, retrying", sink=sink.uri, error=str(exc), attempt=attempt + 1)
                    await anyio.sleep(0.5 * 2**attempt)
        self._items_written += len(batch)


async def crawl(spider: Spider, settings: Settings | None = None, **kwargs: Any) -> Stats:
    """Run ``spider`` with ``settings`` to the end and return the :class:`Stats`; keyword arguments go to
    :class:`Engine`."""
    return await Engine(spider, settings, **kwargs).run()
