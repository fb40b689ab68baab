"""The engine: one task group that owns the dispatcher, the workers, the output writers and the reporter.

::

    Spider.start() ──► Frontier ──► dispatcher ──► channel ──► workers (N) ──► middleware ──► Transport
                          ▲         (claims only when a        │  host policy fed every outcome; retries
                          │          worker is free and the    │  wait in the frontier (not_before)
                          │          host has capacity)        ▼
                          └── new Requests, next pages ◄── callback(response) ── items ──► Outputs ──► sinks

The crawl ends when the frontier is empty and no request is being processed.  :meth:`Engine.stop` stops
dispatching; in-flight requests then have ``shutdown_timeout`` seconds to finish before they are cancelled and
put back in the frontier; the sinks are flushed either way.
"""

from __future__ import annotations

import functools
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import anyio
import structlog
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from crawler._adaptive import AdaptivePoliteness, HostOverride
from crawler._auth import AuthError
from crawler._exceptions import CloseSpider, CrawlerError, FrontierError, IgnoreRequest, InvalidURL, TransportError
from crawler._frontier import Frontier, open_frontier
from crawler._items import ItemRecord, to_plain
from crawler._log import get_logger, redact
from crawler._middleware import Middleware
from crawler._observe import NO_SPAN, build_observer
from crawler._outputs import Outputs, default_error_sinks
from crawler._pagination import Paginator, from_spec
from crawler._politeness import Outcome, Politeness
from crawler._request import Request
from crawler._response import Response, network_exchange
from crawler._retry import RetryPolicy
from crawler._retry_after import parse_retry_after
from crawler._robots import RobotsCache, RobotsUnavailable
from crawler._settings import Settings
from crawler._setup import build_middleware
from crawler._spider import Failure, Spider, iterate_output
from crawler._stats import Stats, current_stats
from crawler._transport import AutoTransport, Transport, TransportOptions
from crawler.sinks import Sink, open_sink

__all__ = ["Engine", "crawl", "default_transport"]

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


def default_transport(settings: Settings) -> Transport:
    """The transport a crawl uses unless given one, configured from ``settings.crawl`` (timeout, body cap,
    headers, TLS verification) with per-host pools sized to the largest per-host limit.

    Layers, innermost first: the network transport named by ``crawl.transport``; then the wrappers that the
    settings switch on."""
    crawl = settings.crawl
    options = TransportOptions(
        timeout=crawl.timeout,
        max_body_size=crawl.max_body_size,
        pool_size=max([crawl.per_host, *(h.per_host or 0 for h in settings.hosts)]),
        headers={"User-Agent": crawl.user_agent, **crawl.headers},
        verify=crawl.verify,
    )
    auth = settings.auth
    secrets = {
        "secret_headers": [auth.header] if auth.kind == "api_key" else [],
        "secret_params": [auth.query_param] if auth.query_param else [],
    }
    transport: Transport
    # the wrappers' modules (YAML, hishel) are imported only when a crawl uses them
    if crawl.replay:  # replaces the network and the cache
        from crawler._cassette import ReplayTransport

        transport = ReplayTransport(crawl.replay, **secrets)
    elif crawl.transport == "aiohttp":
        from crawler._aiohttp_transport import AiohttpTransport

        transport = AiohttpTransport(options)
    elif crawl.transport == "httpx":
        from crawler._httpx_transport import HttpxTransport

        transport = HttpxTransport(options)
    else:
        transport = AutoTransport(options)
    if crawl.cache and not crawl.replay:
        from crawler._cache import CacheTransport

        transport = CacheTransport(transport, crawl.cache, **secrets)
    if crawl.record:
        from crawler._cassette import RecordingTransport

        transport = RecordingTransport(transport, crawl.record, **secrets)
    return transport


class Engine:
    """Runs one spider to the end.  Build it, then ``await engine.run()``; it returns the :class:`Stats`.

    ``transport``, ``frontier``, ``politeness``, ``middleware``, ``sinks`` and ``error_sinks`` replace the defaults
    built from ``settings`` (the httpx transport, the in-memory frontier, the adaptive per-host politeness, the
    auth middleware of ``settings.auth`` plus the spider's ``middleware``, and the sinks of
    ``settings.output``; error records go to ``settings.output.errors``, else to the ``errors`` table of each
    SQLite item sink).  A ``frontier`` given here must use the same ``politeness`` object as the engine (pass
    both), or it reads host policies the engine never feeds; one built from ``crawl.frontier`` or ``crawl.state``
    is wired for you.  ``clock`` gives seconds since the epoch (``time.time``; tests inject one) and ``rng``
    draws the retry jitter.
    """

    def __init__(
        self,
        spider: Spider,
        settings: Settings | None = None,
        *,
        transport: Transport | None = None,
        frontier: Frontier | None = None,
        politeness: Politeness | None = None,
        middleware: Sequence[Middleware] | None = None,
        sinks: Sequence[Sink] | None = None,
        error_sinks: Sequence[Sink] | None = None,
        clock: Clock = time.time,
        rng: random.Random | None = None,
    ) -> None:
        self.spider = spider
        self.settings = settings = settings or Settings()
        crawl = settings.crawl
        self.clock = clock
        self.rng = rng or random.Random()
        self.politeness = politeness or AdaptivePoliteness(
            per_host=crawl.per_host,
            delay=crawl.delay,
            jitter=crawl.jitter,
            overrides=[
                HostOverride(pattern=h.pattern, per_host=h.per_host, delay=h.delay, rate=h.rate) for h in settings.hosts
            ],
        )
        if frontier is None:
            uri = crawl.frontier
            if uri is None and crawl.state is not None:
                uri = f"sqlite:///{os.path.abspath(os.path.join(crawl.state, 'frontier.db'))}"
            frontier = open_frontier(
                uri, politeness=self.politeness, crawl_id=crawl.crawl_id or spider.name, settings=settings
            )
        self.frontier: Frontier = frontier
        self.transport: Transport = transport or default_transport(settings)
        self.middleware: list[Middleware] = (
            list(middleware) if middleware is not None else build_middleware(spider, settings)
        )
        self.retry = RetryPolicy(
            max_attempts=settings.retry.max_attempts,
            statuses=frozenset(settings.retry.statuses),
            backoff_base=settings.retry.backoff_base,
            backoff_cap=settings.retry.backoff_cap,
        )
        uris = settings.output.uris or (f"sqlite:///{spider.name}.db",)
        item_sinks = list(sinks) if sinks is not None else [open_sink(uri) for uri in uris]
        if error_sinks is None:
            errors = settings.output.errors
            error_sinks = [open_sink(uri) for uri in errors] if errors else default_error_sinks(item_sinks)
        self.stats = Stats()
        self.log = get_logger(spider=spider.name)
        self.outputs = Outputs(
            item_sinks,
            list(error_sinks),
            batch_size=settings.output.batch_size,
            log=self.log,
            on_failure=lambda reason: self.stop(reason, deadline=self.settings.crawl.shutdown_timeout),
            retry_for=settings.output.sink_retry_for,
        )
        robots_agent = crawl.user_agent.split("/", 1)[0].split(" ", 1)[0] or crawl.user_agent
        self.robots = RobotsCache(self.transport.fetch, robots_agent) if crawl.obey_robots else None
        self._paginators: dict[str, Paginator] = {}
        self._slots = anyio.Semaphore(crawl.concurrency)
        self._active = 0  # claimed and not fully processed (fetch, callback, outputs added)
        self._starting = True
        self._stopping = False
        self._stop_reason = "finished"
        self._changed: anyio.Event | None = None  # set on any change; made only when the dispatcher waits
        self._changes = 0  # counts changes, so that the dispatcher sees one that came before it waited
        self._workers: TaskGroup | None = None
        self._requeued: set[int] = set()  # id() of claimed requests whose lease already ended with a retry
        self._completed: set[int] = set()  # id() of claimed requests whose host slot was already given back
        spider.stats = self.stats  # type: ignore[attr-defined]
        spider.logger = self.log  # type: ignore[attr-defined]
        spider.settings = settings  # type: ignore[attr-defined]
        self._observer = build_observer(self)  # None unless settings.metrics turns observability on

    @property
    def in_flight(self) -> int:
        """Requests claimed from the frontier and not yet fully processed."""
        return self._active

    # -- control ---------------------------------------------------------------------------------------------
    def _notify(self) -> None:
        self._changes += 1
        changed, self._changed = self._changed, None
        if changed is not None:
            changed.set()

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
        be opened, :class:`crawler.FrontierError` when the frontier cannot, and :class:`crawler.AuthError` when
        credentials cannot be set up."""
        try:
            await self.frontier.open()
            await self.outputs.open()
            for middleware in self.middleware:
                await middleware.open(self.transport.fetch)
            if self._observer is not None:
                await self._observer.start()
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.outputs.close_sinks()
                await self.frontier.close()
                await self.transport.aclose()
                if self._observer is not None:
                    await self._observer.aclose()
            raise
        self.stats.start()  # the crawl starts now, not when the engine was built
        concurrency = self.settings.crawl.concurrency
        requests_send, requests_receive = anyio.create_memory_object_stream[Request](concurrency)
        self.log.info("crawl started", concurrency=concurrency, per_host=self.settings.crawl.per_host)
        try:
            async with anyio.create_task_group() as tg:
                self.outputs.start(tg)
                upkeep = anyio.CancelScope()
                tg.start_soon(self._maintain, upkeep)
                try:
                    async with anyio.create_task_group() as workers:
                        self._workers = workers
                        workers.start_soon(self._feed_start)
                        workers.start_soon(self._dispatch, requests_send)
                        for _ in range(concurrency):
                            workers.start_soon(self._worker, requests_receive.clone())
                        requests_receive.close()
                finally:
                    await self.outputs.close()
                    upkeep.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.outputs.close_sinks()
                await self.frontier.close()
                await self.transport.aclose()
                if self._observer is not None:
                    await self._observer.aclose()
        self.stats.finish(self._stop_reason)
        return self.stats

    async def _maintain(self, scope: anyio.CancelScope) -> None:
        with scope:
            await self.frontier.maintain()

    async def _finish(self, request: Request) -> None:
        """End a processed request's lease (the outputs writer calls it once the request's items are written)."""
        await self.frontier.finish(request)
        self._notify()

    async def _requeue(self, request: Request, retry: Request) -> None:
        """End a claimed request's lease with ``retry`` queued in its place (or without it, logged, when the
        frontier cannot store it)."""
        self._requeued.add(id(request))
        try:
            await self.frontier.finish(request, retry)
        except FrontierError as exc:
            self.stats.error("frontier_refused")
            self.log.error("retry not queued", request=redact(retry.url), error=str(exc))
            await self.frontier.finish(request)
        self._notify()

    async def _complete(self, request: Request, now: float) -> None:
        """Give a claimed request's host slot back, once."""
        if id(request) not in self._completed:
            self._completed.add(id(request))
            await self.frontier.complete(request, now)

    async def _feed_start(self) -> None:
        current_stats.set(self.stats)
        index = 0
        try:
            async for value in iterate_output(self.spider.start()):
                index = await self._handle_output(value, None, index)
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
            seen = self._changes
            now = self.clock()
            if max_pages is None or self.stats.counts["pages"] + self._active < max_pages:
                request = await self.frontier.claim(now)
                if request is not None:
                    self._active += 1
                    return request
            if not self._starting and self._active == 0 and await self.frontier.exhausted():
                return None
            wake = await self.frontier.next_wakeup(now)
            if self._changes != seen:  # something changed while we looked: look again
                continue
            changed = self._changed
            if changed is None:
                changed = self._changed = anyio.Event()
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
                        await self._complete(request, self.clock())
                        await self._requeue(request, request)
                    else:
                        await self._process(request)
                        if id(request) not in self._requeued:
                            await self.outputs.checkpoint(functools.partial(self._finish, request))
                except anyio.get_cancelled_exc_class():
                    with anyio.CancelScope(shield=True):
                        if id(request) not in self._requeued:
                            await self._requeue(request, request.replace(not_before=None))
                    raise
                finally:
                    self._requeued.discard(id(request))
                    self._completed.discard(id(request))
                    self._active -= 1
                    self._slots.release()
                    self._notify()

    # -- one request -----------------------------------------------------------------------------------------
    async def _process(self, request: Request) -> None:
        structlog.contextvars.bind_contextvars(url=request.url)  # redacted by the log processor, if logged
        try:
            if self.robots is not None and not await self._robots_allow(request):
                return
            response = await self._fetch(request)
            if response is not None:
                await self._handle_response(request, response)
        finally:
            if id(request) not in self._completed:
                with anyio.CancelScope(shield=True):
                    await self._complete(request, self.clock())
            structlog.contextvars.unbind_contextvars("url")

    async def _fetch(self, request: Request) -> Response | None:
        """Send ``request`` through the middleware and the transport, feed the host policy, give the request back
        to the frontier.  Returns None when the request was retried, re-queued or failed."""
        host = request.host
        started = self.clock()
        try:
            with NO_SPAN if self._observer is None else self._observer.request(request) as span:
                sent = request
                for middleware in self.middleware:
                    sent = await middleware.process_request(sent)
                response = await self.transport.fetch(sent)
                span.record(response)
        except (TransportError, InvalidURL, AuthError) as exc:
            if sent.url != request.url:  # never let a credential added to the URL reach a log or a record
                exc.args = tuple(str(a).replace(sent.url, request.url) for a in exc.args)
                if isinstance(exc, TransportError):
                    exc.url = request.url
            now = self.clock()
            self.politeness.observe(host, Outcome(error=type(exc).__name__, latency=now - started), now)
            await self._complete(request, now)
            await self._retry_or_fail(request, exc, None)
            return None
        except Exception as exc:  # a middleware's own bug: this request fails, the crawl goes on
            await self._complete(request, self.clock())
            self.log.error("middleware failed", error=f"{type(exc).__name__}: {exc}")
            await self._give_up(request, exc, None)
            return None
        response.request = request  # callbacks see the spider's request and URL, never the credentials
        response.url = request.url
        now = self.clock()
        exchange = network_exchange(response)  # what crossed the network: None when the HTTP cache answered alone
        if exchange is not None:
            self.politeness.observe(
                host, Outcome(status=exchange.status, headers=exchange.headers, latency=exchange.elapsed), now
            )
        await self._complete(request, now)
        self.stats.response(response.status, len(response.body), host)
        for middleware in reversed(self.middleware):
            result = await middleware.process_response(sent, response)
            if isinstance(result, Request):
                self.stats.inc("requeued_by_middleware")
                await self._requeue(request, result)
                return None
            response = result
        return response

    async def _robots_allow(self, request: Request) -> bool:
        assert self.robots is not None
        try:
            allowed = await self.robots.allowed(request)
        except RobotsUnavailable as exc:
            await self._give_up(request, exc, None)
            return False
        delay = self.robots.crawl_delay(request.host)
        policy = self.politeness.get(request.host)
        if delay != policy.crawl_delay:  # first seen: the request about to start counts for the delay too
            policy.crawl_delay = delay
            policy.pause_until = max(policy.pause_until, self.clock() + delay)
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
            await self._retry_or_fail(request, None, response)
            return
        self.stats.inc("pages")
        callback = self._method(request.callback or "parse")
        if callback is None:
            await self._give_up(request, CrawlerError(f"the spider has no callback {request.callback!r}"), response)
        elif await self._run_callback(request, response, callback, (response,)):
            await self._paginate(request, response)

    def _method(self, name: str) -> Any:
        method = getattr(self.spider, name, None)
        return method if callable(method) else None

    def _handles_status(self, request: Request, status: int) -> bool:
        allowed = request.meta.get("handle_httpstatus_list", getattr(self.spider, "handle_httpstatus_list", ()))
        return bool(request.meta.get("handle_httpstatus_all")) or status in allowed

    async def _retry_or_fail(self, request: Request, exc: BaseException | None, response: Response | None) -> None:
        """Queue the next attempt (it waits in the frontier until its backoff is over) or give up."""
        retry_after = None
        if response is not None and (value := response.headers.get("retry-after")):
            retry_after = parse_retry_after(value, self.clock())
        not_before = self.retry.decide(
            attempt=request.attempt,
            idempotent=request.idempotent,
            status=response.status if response is not None else None,
            error=type(exc).__name__ if exc is not None else None,
            retry_after=retry_after,
            now=self.clock(),
            rng=self.rng,
        )
        if not_before is None:
            await self._give_up(request, exc, response)
            return
        self.stats.inc("retries")
        self.log.info(
            "retrying",
            attempt=request.attempt + 2,
            wait=round(not_before - self.clock(), 3),
            reason=f"HTTP {response.status}" if response is not None else f"{type(exc).__name__}: {exc}",
        )
        await self._requeue(request, request.replace(attempt=request.attempt + 1, not_before=not_before))

    async def _redirect(self, request: Request, response: Response, location: str) -> None:
        chain = [*request.meta.get("redirect_urls", ()), request.url]
        limit = self.settings.crawl.max_redirects
        if len(chain) > limit:
            await self._give_up(request, CrawlerError(f"more than {limit} redirects"), response)
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
            await self._give_up(request, exc, response)
            return
        self.stats.inc("redirects")
        await self._add(new, request)

    async def _run_callback(
        self, request: Request, response: Response | None, callback: Any, args: tuple[Any, ...]
    ) -> bool:
        """Run a callback or errback and handle its output; False when it raised."""
        index = 0
        try:
            with NO_SPAN if self._observer is None else self._observer.callback(callback, request, response) as span:
                async for value in iterate_output(callback(*args, **request.cb_kwargs)):
                    index = span.items = await self._handle_output(value, request, index, response)
        except CloseSpider as exc:
            self.stop(exc.reason)
        except IgnoreRequest:
            self.stats.inc("ignored")
        except Exception as exc:
            name = getattr(callback, "__name__", "?")
            self.stats.error(f"callback:{type(exc).__name__}")
            self.log.error("callback failed", callback=name, error=f"{type(exc).__name__}: {exc}")
            await self.outputs.error(self._error_record(request, exc, response, callback=name))
            return False
        return True

    # -- pagination ------------------------------------------------------------------------------------------
    def _paginator(self, request: Request) -> Paginator | None:
        spec = request.meta.get("paginate") or getattr(self.spider, "paginate", {}).get(request.callback or "parse")
        if spec is None or not isinstance(spec, str):
            return spec  # None, or a Paginator object
        paginator = self._paginators.get(spec)
        if paginator is None:
            paginator = self._paginators[spec] = from_spec(spec)
        return paginator

    async def _paginate(self, request: Request, response: Response) -> None:
        paginator = self._paginator(request)
        if paginator is None:
            return
        following = paginator.next_request(response)
        if following is None:
            return
        added = await self._frontier_add(following)
        if added is None:
            return
        if added:
            self.stats.inc("next_pages")
            self._notify()
        else:  # the next page is one we already have: a cursor seen twice
            self.stats.inc("pagination_loops")
            self.log.warning("pagination loop: next page already seen, chain stopped", next=following.url)

    # -- outputs ---------------------------------------------------------------------------------------------
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
        added = await self._frontier_add(request)
        if added is None:
            return
        if added:
            self.stats.inc("queued")
            self._notify()
        else:
            self.stats.inc("duplicates")

    async def _frontier_add(self, request: Request) -> bool | None:
        """Queue one request: True if queued, False if a duplicate, None if the frontier refused it (logged)."""
        try:
            return bool(await self.frontier.add((request,)))
        except FrontierError as exc:
            self.stats.error("frontier_refused")
            self.log.error("request not queued", request=redact(request.url), error=str(exc))
            return None

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
        url = response.url if response is not None else (parent.url if parent else "")
        self.stats.inc("items")
        await self.outputs.item(
            ItemRecord(key=key, item=item, spider=self.spider.name, url=url, fetched_at=self.clock())
        )
        if limit is not None and self.stats.counts["items"] >= limit:
            self.stop("max_items")

    def _error_record(
        self, request: Request, exc: BaseException | None, response: Response | None, *, callback: str | None = None
    ) -> ItemRecord:
        url = redact(request.url)
        error = f"{type(exc).__name__}: {redact(str(exc))}" if exc is not None else None
        return ItemRecord(
            key=f"{request.fingerprint}:{'callback' if callback else 'fetch'}",
            item={
                "url": url,
                "method": request.method,
                "attempts": request.attempt + 1,
                "status": response.status if response is not None else None,
                "error": error,
                "callback": callback or request.callback or "parse",
                "failed_at": self.clock(),
            },
            spider=self.spider.name,
            url=url,
            fetched_at=self.clock(),
        )

    async def _give_up(self, request: Request, exc: BaseException | None, response: Response | None) -> None:
        """A request gave up: count it, log it with its URL, write its error record and call its errback."""
        failure = Failure(request=request, exception=exc, response=response)
        kind = type(exc).__name__ if exc is not None else f"http_{response.status if response else '?'}"
        self.stats.error(kind)
        self.log.warning("request failed", reason=failure.reason, attempts=request.attempt + 1)
        await self.outputs.error(self._error_record(request, exc, response))
        errback = self._method(request.errback or "errback")
        if errback is None:
            self.stats.error("missing_errback")
            self.log.error("the spider has no errback", errback=request.errback)
        else:
            await self._run_callback(request.replace(cb_kwargs={}), response, errback, (failure,))


async def crawl(spider: Spider, settings: Settings | None = None, **kwargs: Any) -> Stats:
    """Run ``spider`` with ``settings`` to the end and return the :class:`Stats`; keyword arguments go to
    :class:`Engine`."""
    return await Engine(spider, settings, **kwargs).run()
