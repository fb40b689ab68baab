"""The :class:`Response` type: crawler's own, whichever transport fetched it."""

from __future__ import annotations

import codecs
import json as _json
import re
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin as _urljoin

from multidict import CIMultiDict, CIMultiDictProxy

from crawler._exceptions import InvalidURL, ResponseError
from crawler._request import Request
from crawler._stats import report_invalid_url
from crawler._url import join_url

if TYPE_CHECKING:
    import parsel
    from selectolax.lexbor import LexborHTMLParser

__all__ = ["Response", "extract_links", "network_exchange"]

_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.IGNORECASE)
_SKIP_SCHEMES = ("mailto:", "javascript:", "tel:", "data:", "ftp:", "about:", "file:", "#")


def _charset_of(content_type: str) -> str | None:
    for part in content_type.split(";")[1:]:
        name, _, value = part.strip().partition("=")
        if name.strip().lower() == "charset" and value:
            candidate = value.strip().strip("\"'")
            try:
                return codecs.lookup(candidate).name
            except LookupError:
                return None
    return None


def extract_links(tree: LexborHTMLParser) -> list[str]:
    """Return the raw ``href`` values of ``<a>`` and ``<area>`` elements of a parsed HTML document, in order;
    a ``<base href>`` comes first, marked with a ``"\0base:"`` prefix.  The values are not resolved."""
    base = tree.css_first("base[href]")
    links = [node.attributes.get("href") for node in tree.css("a[href], area[href]")]
    out = [href.strip() for href in links if href]
    if base is not None and (base_href := base.attributes.get("href")):
        out.insert(0, f"\0base:{base_href.strip()}")
    return out


_EXCHANGE = "_crawler_network_exchange"  # where a cached Response keeps the exchange behind it (see network_exchange)


def network_exchange(response: Response) -> Response | None:
    """The response that crossed the network for ``response``: ``response`` itself, unless the HTTP cache answered:
    then the ``304 Not Modified`` that revalidated it, or None when it was fresh and no request was made."""
    exchange: Response | None = vars(response).get(_EXCHANGE, response)
    return exchange


class Response:
    """A complete HTTP response, as the spider's callbacks see it.

    ``url`` is the final URL (after redirects); ``status`` the status code; ``headers`` a case-insensitive
    multi-dict (``headers.getall("link")`` for repeated fields); ``body`` the decoded bytes (content-encoding
    removed); ``request`` the :class:`Request` that produced it; ``elapsed`` seconds from sending to the last body
    byte; ``meta`` is ``request.meta``.
    """

    __slots__ = ("__dict__", "body", "elapsed", "headers", "request", "status", "url")

    def __init__(
        self,
        *,
        url: str,
        status: int,
        headers: CIMultiDictProxy[str] | CIMultiDict[str] | Iterable[tuple[str, str]] | None = None,
        body: bytes = b"",
        request: Request,
        elapsed: float = 0.0,
    ) -> None:
        self.url = url
        self.status = status
        if isinstance(headers, CIMultiDictProxy):
            self.headers = headers
        else:
            self.headers = CIMultiDictProxy(CIMultiDict(headers or ()))
        self.body = body
        self.request = request
        self.elapsed = elapsed

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.url}>"

    @property
    def meta(self) -> Any:
        """The request's ``meta`` mapping."""
        return self.request.meta

    @property
    def content_type(self) -> str:
        """The media type without parameters, lower-cased (``text/html``), or ``""`` when absent."""
        return self.headers.get("content-type", "").split(";", 1)[0].strip().lower()

    @property
    def ok(self) -> bool:
        """True for status 200-299."""
        return 200 <= self.status < 300

    @cached_property
    def encoding(self) -> str:
        """The body's character encoding: the Content-Type charset, else an HTML ``<meta charset>`` in the first
        2 KiB, else UTF-8."""
        declared = _charset_of(self.headers.get("content-type", ""))
        if declared:
            return declared
        match = _CHARSET.search(self.body[:2048])
        if match:
            try:
                return codecs.lookup(match.group(1).decode("ascii")).name
            except LookupError:
                pass
        return "utf-8"

    @cached_property
    def text(self) -> str:
        """The body decoded with :attr:`encoding`; undecodable bytes become U+FFFD."""
        return self.body.decode(self.encoding, errors="replace")

    def json(self) -> Any:
        """Parse the body as JSON (RFC 8259).

        Raises :class:`crawler.ResponseError` naming the URL, status and position when the body is not JSON.
        """
        try:
            return _json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ResponseError(f"response from {self.url} (status {self.status}) is not valid JSON: {exc}") from None

    @cached_property
    def selector(self) -> parsel.Selector:
        """A ``parsel.Selector`` over the body, built on first use (lxml underneath; CSS and XPath)."""
        import parsel

        kind = "json" if "json" in self.content_type else ("xml" if "xml" in self.content_type else "html")
        if kind == "json":
            return parsel.Selector(text=self.text, type="json")
        return parsel.Selector(text=self.text, type=kind, base_url=self.url)

    def css(self, query: str) -> parsel.SelectorList[parsel.Selector]:
        """Select with a CSS selector (parsel syntax, including ``::text`` and ``::attr(name)``)."""
        return self.selector.css(query)

    def xpath(self, query: str, **variables: Any) -> parsel.SelectorList[parsel.Selector]:
        """Select with an XPath 1.0 expression; keyword arguments become XPath variables."""
        return self.selector.xpath(query, **variables)

    @cached_property
    def base_url(self) -> str:
        """The URL relative links resolve against: the document's ``<base href>`` if any, else :attr:`url`."""
        if "html" in self.content_type:
            for href in self._raw_links[:1]:
                if href.startswith("\0base:"):
                    return _urljoin(self.url, href[6:])
        return self.url

    def urljoin(self, url: str) -> str:
        """Resolve ``url`` against :attr:`base_url` (RFC 3986 §5).  Raises :class:`crawler.InvalidURL` when
        ``url`` cannot be parsed (``http://[bad``)."""
        try:
            return join_url(self.base_url, url)
        except ValueError as exc:
            raise InvalidURL(url, f"{exc} (linked from {self.url})") from None

    @cached_property
    def html_tree(self) -> LexborHTMLParser:
        """The body parsed by selectolax's lexbor engine, built on first use: the fast parser behind
        :meth:`iter_links` and :attr:`title`.  On the Python documentation it extracts links in 1.3 ms a page
        against 4.0 ms for parsel's CSS selectors; use :meth:`css` and :meth:`xpath` for XPath and the
        Scrapy-style selector API."""
        from selectolax.lexbor import LexborHTMLParser

        return LexborHTMLParser(self.body if self.encoding == "utf-8" else self.text)

    @cached_property
    def title(self) -> str:
        """The text of the HTML ``<title>``, whitespace-trimmed; ``""`` when there is none."""
        node = self.html_tree.css_first("title")
        return node.text(strip=True) if node is not None else ""

    @cached_property
    def _raw_links(self) -> list[str]:
        return extract_links(self.html_tree) if self.body else []

    def iter_links(self) -> Iterator[str]:
        """Yield the absolute URLs of the page's ``<a href>`` and ``<area href>`` links, in document order.

        Fragments are kept; non-HTTP schemes (``mailto:``, ``javascript:`` ...) are skipped.  An href that cannot be
        resolved is yielded as written, so that making a request of it raises :class:`crawler.InvalidURL` naming it.
        """
        for href in self._raw_links:
            if href.startswith("\0base:") or href.lower().startswith(_SKIP_SCHEMES):
                continue
            try:
                yield self.urljoin(href)
            except InvalidURL:
                yield href

    def follow(self, url: str | parsel.Selector, **kwargs: Any) -> Request:
        """Return a :class:`Request` for ``url`` (relative or absolute, or a selector of an ``href``/``src``
        attribute or an element that has one), one level deeper than this response.

        Keyword arguments are :class:`Request` fields.  Raises :class:`crawler.InvalidURL` for a malformed URL.
        """
        if not isinstance(url, str):
            url = _selector_url(url)
        kwargs.setdefault("depth", self.request.depth + 1)
        return Request(url=self.urljoin(url), **kwargs)

    def follow_all(
        self,
        urls: Iterable[str | parsel.Selector] | None = None,
        *,
        css: str | None = None,
        xpath: str | None = None,
        **kwargs: Any,
    ) -> Iterator[Request]:
        """Yield a :class:`Request` for each of ``urls``, or for each element matched by ``css`` or ``xpath``, or,
        with none of them, for every link of the page (:meth:`iter_links`).

        Malformed URLs are skipped, logged with the page's URL and counted in the crawl's stats as
        ``InvalidURL`` errors.
        """
        items: Iterable[str | parsel.Selector]
        if css is not None:
            items = self.css(css)
        elif xpath is not None:
            items = self.xpath(xpath)
        elif urls is not None:
            items = urls
        else:  # the page's links, already resolved: no second urljoin
            kwargs.setdefault("depth", self.request.depth + 1)
            for link in self.iter_links():
                try:
                    yield Request(url=link, **kwargs)
                except InvalidURL as exc:
                    report_invalid_url(exc, self.url)
            return
        for url in items:
            try:
                yield self.follow(url, **kwargs)
            except InvalidURL as exc:
                report_invalid_url(exc, self.url)


def _selector_url(sel: parsel.Selector) -> str:
    root = sel.root
    if isinstance(root, str):
        return root
    for attribute in ("href", "src"):
        value = sel.attrib.get(attribute)
        if value:
            return str(value)
    raise InvalidURL(str(sel), "selector has no href or src attribute")
