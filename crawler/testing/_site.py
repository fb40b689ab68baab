"""Generated web sites for tests and benchmarks: pure values, no I/O.

:func:`generate_site` builds a deterministic (by ``seed``) site of HTML pages, assets and an optional
``/robots.txt``, served identically on one or more hosts.  Layout of every host::

    /index.html            page 0, the root of a spanning tree that reaches every page
    /s{k}/{i}.html         page i (1 <= i < pages) in section k = i % sections
    /assets/{j}.{png,css,pdf}
    /robots.txt            only when ``robots_txt`` or ``disallow`` is given

Every page has exactly ``links_per_page`` hrefs into the site (pages or assets, on its own host or another;
relative, absolute-path or absolute-URL; some with ``#fragments``, some ``./x/../y``, a few duplicates), plus
a few hrefs a crawler must skip: ``mailto:``, ``javascript:`` and the malformed ``http://[bad``.
:meth:`Site.reachable_urls` computes from those hrefs what a correct crawl fetches.
"""

from __future__ import annotations

import posixpath
import random
from collections.abc import Iterable, Mapping, Sequence
from types import MappingProxyType
from urllib.parse import urldefrag, urljoin, urlsplit

import attrs
from protego import Protego

__all__ = ["Page", "Site", "SiteSpec", "generate_site", "resolve_href", "split_authority"]

HTML_TYPE = "text/html; charset=utf-8"
_ASSET_KINDS: tuple[tuple[str, str, bytes], ...] = (
    # extension, content type, body: a 1x1 PNG, a style sheet and a minimal PDF.
    (
        "png",
        "image/png",
        bytes.fromhex(
            "89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489"
            "0000000d49444154789c6360606060000000050001a5f645400000000049454e44ae426082"
        ),
    ),
    ("css", "text/css; charset=utf-8", b"body { font-family: sans-serif; }\nh1 { color: #333; }\n"),
    ("pdf", "application/pdf", b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"),
)
_JUNK_MAILTO = "mailto:webmaster@example.invalid"
_JUNK_JAVASCRIPT = "javascript:void(0)"
_JUNK_MALFORMED = "http://[bad"
_WORDS = (
    "crawler",
    "frontier",
    "politeness",
    "fingerprint",
    "latency",
    "queue",
    "worker",
    "sink",
    "spider",
    "robots",
    "retry",
    "cursor",
)


@attrs.frozen(kw_only=True)
class Page:
    """One resource of a site: the body as served, its Content-Type and the hrefs written in it, in order."""

    body: bytes
    content_type: str
    links: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class SiteSpec:
    """The parameters a :class:`Site` was generated from (see :func:`generate_site`), minus the hosts."""

    pages: int
    links_per_page: int
    page_bytes: int
    asset_ratio: float
    cross_host_ratio: float
    seed: int
    robots_txt: str | None
    disallow: tuple[str, ...]


def split_authority(authority: str) -> tuple[str, int | None]:
    """Split ``"host:port"``, ``"host"`` or ``"[v6]:port"`` into the host name and the port (None if absent)."""
    host, sep, port = authority.rpartition(":")
    if not sep or "]" in port:  # "host" or "[::1]"
        return authority.strip("[]"), None
    return host.strip("[]"), int(port)


@attrs.frozen(kw_only=True)
class Site:
    """A generated site: for each host (an authority, ``"127.0.0.2:8080"`` or ``"127.0.0.2"``), path -> Page.

    ``pages[host]`` maps URL paths (``"/index.html"``, ``"/s3/13.html"``, ``"/assets/0.png"``, ``"/robots.txt"``)
    to :class:`Page` values.  Absolute URLs in bodies use the hosts exactly as written here, so a site must carry
    the port it is served on: generate it with ``port=`` or bind it with :meth:`with_port` (the servers in
    :mod:`crawler.testing` do that for you and expose the bound site).
    """

    hosts: tuple[str, ...]
    pages: Mapping[str, Mapping[str, Page]] = attrs.field(hash=False)
    spec: SiteSpec

    def with_port(self, port: int) -> Site:
        """The same site (same seed, same link graph) with every host served on ``port``."""
        hosts = [f"{_host_literal(split_authority(h)[0])}:{port}" for h in self.hosts]
        return _generate(self.spec, hosts)

    @property
    def is_bound(self) -> bool:
        """True when every host carries a port."""
        return all(split_authority(h)[1] is not None for h in self.hosts)

    def routes(self, host: str) -> Mapping[str, Page]:
        """Path -> Page for ``host``: an authority of :attr:`hosts`, or its bare host name.

        Raises KeyError naming the known hosts when ``host`` is not one of them.
        """
        return self.pages[_resolve_host(self, host)]

    def url(self, path: str = "/index.html", host: str | None = None) -> str:
        """The absolute URL of ``path`` on ``host`` (default: the first host), e.g. ``http://127.0.0.1:8080/``."""
        authority = self.hosts[0] if host is None else _resolve_host(self, host)
        return f"http://{authority}{path}"

    def html_urls(self) -> set[str]:
        """The absolute URLs of every HTML page on every host."""
        return {
            self.url(path, host)
            for host in self.hosts
            for path, page in self.pages[host].items()
            if page.content_type == HTML_TYPE
        }

    def reachable_urls(
        self,
        start: str | Iterable[str] | None = None,
        *,
        hosts: Iterable[str] | None = None,
        respect_robots: bool = False,
        include_assets: bool = False,
    ) -> set[str]:
        """The URLs a correct crawl fetches, found by a graph search over the hrefs written in the pages.

        ``start`` is one URL or several (default: ``/index.html`` of the first host).  URLs are resolved
        against their page (RFC 3986 §5.2), fragments dropped; ``mailto:``, ``javascript:`` and malformed hrefs
        are skipped.  ``hosts`` limits the crawl to those authorities (default: all of the site's hosts).
        With ``respect_robots`` a URL disallowed by its host's ``/robots.txt`` for user agent ``*`` is neither
        fetched nor followed.  Assets are leaves, included only with ``include_assets``; the start URLs are
        included when they are served.  Returns absolute URLs like ``http://127.0.0.1:8080/s1/1.html``.
        """
        allowed = set(self.hosts) if hosts is None else {_resolve_host(self, h) for h in hosts}
        if start is None:
            start = [self.url()]
        elif isinstance(start, str):
            start = [start]
        robots = {h: _robots(self.pages[h]) for h in self.hosts} if respect_robots else {}
        seen: set[str] = set()
        result: set[str] = set()
        queue = [urldefrag(u).url for u in start]
        while queue:
            url = queue.pop()
            if url in seen:
                continue
            seen.add(url)
            parts = urlsplit(url)
            page = self.pages.get(parts.netloc, {}).get(parts.path) if parts.netloc in allowed else None
            if page is None or (respect_robots and not _can_fetch(robots[parts.netloc], url)):
                continue
            if page.content_type != HTML_TYPE:
                if include_assets:
                    result.add(url)
                continue
            result.add(url)
            queue.extend(target for href in page.links if (target := resolve_href(url, href)) is not None)
        return result

    def reachable_paths(self, host: str | None = None, *, respect_robots: bool = False) -> set[str]:
        """URL paths of the HTML pages reachable from ``/index.html`` of ``host`` following same-host links."""
        authority = self.hosts[0] if host is None else _resolve_host(self, host)
        start = self.url("/index.html", authority)
        urls = self.reachable_urls(start, hosts=[authority], respect_robots=respect_robots)
        return {urlsplit(u).path for u in urls}


def resolve_href(base: str, href: str) -> str | None:
    """The absolute http(s) URL without fragment that ``href`` on page ``base`` points to, or None to skip it."""
    try:
        url = urldefrag(urljoin(base, href.strip())).url
        parts = urlsplit(url)
        _ = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return url


def generate_site(
    *,
    pages: int = 100,
    links_per_page: int = 10,
    hosts: Sequence[str] = ("127.0.0.1",),
    port: int | None = None,
    page_bytes: int = 7680,
    asset_ratio: float = 0.1,
    cross_host_ratio: float = 0.1,
    seed: int = 0,
    robots_txt: str | None = None,
    disallow: Sequence[str] = (),
) -> Site:
    """Generate a deterministic site of ``pages`` HTML pages served on each of ``hosts``.

    ``hosts`` are authorities (``"127.0.0.2:8080"``) or host names (``"127.0.0.2"``); ``port``, when given,
    is added to those without one.  Each HTML page is ``page_bytes`` bytes long (longer only if its markup
    does not fit) and holds exactly ``links_per_page`` (>= 1) hrefs into the site: about ``asset_ratio`` of
    them to assets (the site serves ``ceil(pages * asset_ratio)`` of them), about ``cross_host_ratio`` to pages
    of other hosts, the rest to pages of its own host.  ``/robots.txt`` serves ``robots_txt`` verbatim, or
    ``User-agent: *`` with one ``Disallow:`` line per ``disallow`` prefix (e.g. ``"/s1/"``).  The link graph of
    a host depends on ``seed`` and the host's position in ``hosts``, never on its name or port.

    Raises ValueError on a non-positive ``pages`` or ``links_per_page``, a ratio outside [0, 1], duplicate
    hosts, or both ``robots_txt`` and ``disallow``.
    """
    if pages < 1 or links_per_page < 1:
        raise ValueError(f"pages ({pages}) and links_per_page ({links_per_page}) must be at least 1")
    if not (0.0 <= asset_ratio <= 1.0 and 0.0 <= cross_host_ratio <= 1.0):
        raise ValueError(f"asset_ratio ({asset_ratio}) and cross_host_ratio ({cross_host_ratio}) must be in [0, 1]")
    if robots_txt is not None and disallow:
        raise ValueError("give robots_txt or disallow, not both")
    if not hosts:
        raise ValueError("hosts must not be empty")
    bound = [
        h if port is None or split_authority(h)[1] is not None else f"{_host_literal(split_authority(h)[0])}:{port}"
        for h in hosts
    ]
    if len(set(bound)) != len(bound):
        raise ValueError(f"duplicate hosts: {bound}")
    spec = SiteSpec(
        pages=pages,
        links_per_page=links_per_page,
        page_bytes=page_bytes,
        asset_ratio=asset_ratio,
        cross_host_ratio=cross_host_ratio,
        seed=seed,
        robots_txt=robots_txt,
        disallow=tuple(disallow),
    )
    return _generate(spec, bound)


def _generate(spec: SiteSpec, hosts: Sequence[str]) -> Site:
    n_assets = -int(-spec.pages * spec.asset_ratio // 1)  # ceil
    assets = [f"/assets/{j}.{_ASSET_KINDS[j % len(_ASSET_KINDS)][0]}" for j in range(n_assets)]
    sections = max(1, min(5, spec.pages // 10))
    paths = ["/index.html"] + [f"/s{i % sections}/{i}.html" for i in range(1, spec.pages)]
    filler = _filler(random.Random(spec.seed))
    robots = spec.robots_txt
    if robots is None and spec.disallow:
        robots = "User-agent: *\n" + "".join(f"Disallow: {d}\n" for d in spec.disallow)
    site: dict[str, Mapping[str, Page]] = {}
    for index, host in enumerate(hosts):
        rng = random.Random(spec.seed * 1_000_003 + index)
        others = [h for h in hosts if h != host]
        routes: dict[str, Page] = {}
        for i, hrefs in enumerate(_link_graph(spec, rng, paths, assets, host, others)):
            routes[paths[i]] = _html_page(i, paths[i], hrefs, spec.page_bytes, filler, rng)
        for j, path in enumerate(assets):
            _, content_type, body = _ASSET_KINDS[j % len(_ASSET_KINDS)]
            routes[path] = Page(body=body, content_type=content_type)
        if robots is not None:
            routes["/robots.txt"] = Page(body=robots.encode(), content_type="text/plain; charset=utf-8")
        site[host] = MappingProxyType(routes)
    return Site(hosts=tuple(hosts), pages=MappingProxyType(site), spec=spec)


def _link_graph(
    spec: SiteSpec, rng: random.Random, paths: list[str], assets: list[str], host: str, others: list[str]
) -> list[list[str]]:
    """Per page, its hrefs in document order: a bounded-degree spanning tree first, then random links."""
    n, budget = len(paths), spec.links_per_page
    cap = max(1, budget // 2)
    children: list[list[int]] = [[] for _ in range(n)]
    open_nodes = [0]
    for i in range(1, n):
        slot = rng.randrange(len(open_nodes))
        parent = open_nodes[slot]
        children[parent].append(i)
        if len(children[parent]) >= cap:
            open_nodes[slot] = open_nodes[-1]
            open_nodes.pop()
        open_nodes.append(i)
    graph: list[list[str]] = []
    for i, path in enumerate(paths):
        hrefs = [_page_href(rng, path, paths[c], host) for c in children[i]]
        while len(hrefs) < budget:
            roll = rng.random()
            if assets and roll < spec.asset_ratio:
                hrefs.append(_page_href(rng, path, rng.choice(assets), host))
            elif others and roll < spec.asset_ratio + spec.cross_host_ratio:
                hrefs.append(f"http://{rng.choice(others)}{rng.choice(paths)}")
            elif hrefs and roll > 0.93:
                hrefs.append(rng.choice(hrefs))  # a duplicate
            else:
                hrefs.append(_page_href(rng, path, rng.choice(paths), host))
        rng.shuffle(hrefs)
        if i == 0 or i % 10 == 3:
            hrefs.insert(rng.randrange(len(hrefs) + 1), _JUNK_MAILTO)
        if i == 0 or i % 10 == 7:
            hrefs.insert(rng.randrange(len(hrefs) + 1), _JUNK_JAVASCRIPT)
        if i == 0 or i % 25 == 11:
            hrefs.insert(rng.randrange(len(hrefs) + 1), _JUNK_MALFORMED)
        graph.append(hrefs)
    return graph


def _page_href(rng: random.Random, source: str, target: str, host: str) -> str:
    """An href on page ``source`` to ``target`` on the same host, in a random but equivalent spelling."""
    relative = _relative(source, target)
    roll = rng.random()
    if roll < 0.3:
        href = target
    elif roll < 0.6:
        href = relative
    elif roll < 0.7:
        href = "./" + relative
    elif roll < 0.8:
        head, tail = posixpath.split(relative)
        href = f"./{head + '/' if head else ''}x/../{tail}"
    else:
        href = f"http://{host}{target}"
    if rng.random() < 0.15:
        href += f"#part-{rng.randrange(5)}"
    return href


def _relative(source: str, target: str) -> str:
    """Path ``target`` relative to the directory of ``source``: ``/s1/2.html``, ``/s2/4.html`` -> ``../s2/4.html``."""
    base, parts = source.split("/")[1:-1], target.split("/")[1:]
    common = 0
    while common < min(len(base), len(parts) - 1) and base[common] == parts[common]:
        common += 1
    return "/".join([".."] * (len(base) - common) + parts[common:])


def _html_page(i: int, path: str, hrefs: list[str], size: int, filler: str, rng: random.Random) -> Page:
    items = "".join(f'<li><a href="{href}">link {k}</a></li>\n' for k, href in enumerate(hrefs))
    head = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>Page {i}: {path}</title></head>\n'
        f"<body>\n<h1>Page {i}</h1>\n<ul>\n{items}</ul>\n<p>"
    )
    tail = "</p>\n</body></html>\n"
    pad = max(0, size - len(head) - len(tail))
    start = rng.randrange(len(filler) - pad) if pad < len(filler) else 0
    text = (filler * (pad // len(filler) + 1))[start : start + pad]
    return Page(body=(head + text + tail).encode("ascii"), content_type=HTML_TYPE, links=tuple(hrefs))


def _filler(rng: random.Random) -> str:
    """About 64 KiB of ASCII words, sliced into pages as padding."""
    return " ".join(rng.choice(_WORDS) for _ in range(8192))


def _robots(routes: Mapping[str, Page]) -> Protego | None:
    page = routes.get("/robots.txt")
    return None if page is None else Protego.parse(page.body.decode("utf-8", "replace"))


def _can_fetch(robots: Protego | None, url: str) -> bool:
    return robots is None or bool(robots.can_fetch(url, "*"))


def _host_literal(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _resolve_host(site: Site, host: str) -> str:
    if host in site.pages:
        return host
    matches = [h for h in site.hosts if split_authority(h)[0] == split_authority(host)[0]]
    if len(matches) != 1:
        raise KeyError(f"host {host!r} is not one of this site's hosts {list(site.hosts)}")
    return matches[0]
