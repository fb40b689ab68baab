"""Tests for URL canonicalization (the frontier's dedup key), normalization, host keys and asset detection."""

from __future__ import annotations

import string
from urllib.parse import quote, quote_from_bytes, urljoin

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from crawler._exceptions import CrawlerError, InvalidURL
from crawler._request import fingerprint
from crawler._url import ASSET_EXTENSIONS, canonicalize_url, host_key, is_asset_url, join_url, normalize_url

UNRESERVED = string.ascii_letters + string.digits + "-._~"


# --------------------------------------------------------------------------------------------------------------
# Examples: canonicalize_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        # case: scheme and host lower-cased, path and query kept as they are
        ("HTTP://WWW.Example.COM/Path/File.HTML", "http://www.example.com/Path/File.HTML"),
        ("https://example.com/?Q=Value", "https://example.com/?Q=Value"),
        # default ports dropped, other ports kept
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:443/a", "http://example.com:443/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com:080/", "http://example.com/"),
        ("http://example.com:/", "http://example.com/"),
        # dot segments (RFC 3986 §5.2.4)
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/../../a", "http://example.com/a"),
        ("http://example.com/a/b/..", "http://example.com/a/"),
        ("http://example.com/a/b/.", "http://example.com/a/b/"),
        ("http://example.com/a/%2E%2E/b", "http://example.com/b"),
        ("http://example.com/a/%2e/b", "http://example.com/a/b"),
        ("http://example.com/a..b/c.d", "http://example.com/a..b/c.d"),
        # percent-encoding: unreserved decoded, reserved kept escaped in upper case, the rest escaped
        ("http://example.com/%7Euser", "http://example.com/~user"),
        ("http://example.com/%7euser", "http://example.com/~user"),
        ("http://example.com/%41%62%30%2D%5F", "http://example.com/Ab0-_"),
        ("http://example.com/a%2Fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%2fb", "http://example.com/a%2Fb"),
        ("http://example.com/a%3fb%23c", "http://example.com/a%3Fb%23c"),
        ("http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9"),
        ("http://example.com/café", "http://example.com/caf%C3%A9"),
        ("http://example.com/a b", "http://example.com/a%20b"),
        ("http://example.com/a+b", "http://example.com/a+b"),
        ("http://example.com/100%", "http://example.com/100%25"),
        ("http://example.com/%zz", "http://example.com/%25zz"),
        ("http://example.com/%%61b", "http://example.com/%25ab"),
        ("http://example.com/%FF", "http://example.com/%FF"),
        # fragment dropped
        ("http://example.com/a#section", "http://example.com/a"),
        ("http://example.com/a?b=1#", "http://example.com/a?b=1"),
        # query sorted by name then value, blank values kept, escapes normalized
        ("http://example.com/?b=2&a=1", "http://example.com/?a=1&b=2"),
        ("http://example.com/?a=2&a=1&a=", "http://example.com/?a=&a=1&a=2"),
        ("http://example.com/?b=&a", "http://example.com/?a=&b="),
        ("http://example.com/?q=a+b", "http://example.com/?q=a%20b"),
        ("http://example.com/?q=a%2bb", "http://example.com/?q=a%2Bb"),
        ("http://example.com/?q=%7e&r=a%2fb", "http://example.com/?q=~&r=a/b"),
        ("http://example.com/?k=a%26b%3Dc", "http://example.com/?k=a%26b%3Dc"),
        ("http://example.com/?k=%FF", "http://example.com/?k=%FF"),
        ("http://example.com/?", "http://example.com/"),
        ("http://example.com/?&&", "http://example.com/"),
        # IDNA hosts
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("http://BÜCHER.de/", "http://xn--bcher-kva.de/"),
        ("http://xn--bcher-kva.de/", "http://xn--bcher-kva.de/"),
        ("http://bücher.de./", "http://xn--bcher-kva.de/"),
        ("http://例え.テスト/", "http://xn--r8jz45g.xn--zckzah/"),
        # trailing dot of a fully qualified name dropped
        ("http://example.com./", "http://example.com/"),
        # IPv4 and IPv6 literals, with and without ports
        ("http://127.0.0.1:80/", "http://127.0.0.1/"),
        ("http://[::1]/", "http://[::1]/"),
        ("http://[::1]:80/", "http://[::1]/"),
        ("http://[::1]:8080/x", "http://[::1]:8080/x"),
        ("https://[2001:DB8::A]:443/", "https://[2001:db8::a]/"),
        ("http://[::FFFF:1.2.3.4]:8080/", "http://[::ffff:1.2.3.4]:8080/"),
        ("http://[fe80::1%25en0]/", "http://[fe80::1%25en0]/"),
        ("http://[v1.x]/", "http://[v1.x]/"),
        # userinfo is part of the URL: kept, escapes normalized
        ("http://User:P%40ss@Example.com/", "http://User:P%40ss@example.com/"),
        # trailing slash kept as given; empty path becomes "/"
        ("http://example.com/a/", "http://example.com/a/"),
        ("http://example.com/a", "http://example.com/a"),
        ("http://example.com", "http://example.com/"),
        ("http://example.com?a=1", "http://example.com/?a=1"),
        ("http://example.com#top", "http://example.com/"),
        # surrounding whitespace ignored
        ("  http://example.com/a \n", "http://example.com/a"),
    ],
)
def test_canonicalize_url_examples(url: str, expected: str) -> None:
    assert canonicalize_url(url) == expected
    assert canonicalize_url(expected) == expected


def test_canonicalize_url_different_query_spellings_of_one_url() -> None:
    spellings = [
        "http://example.com/p?a=1&b=2",
        "HTTP://EXAMPLE.COM:80/p?b=2&a=1#frag",
        "http://example.com/./x/../p?%61=%31&b=2",
        "http://Example.com/%70?b=2&a=1",
    ]
    assert {canonicalize_url(u) for u in spellings} == {"http://example.com/p?a=1&b=2"}


@pytest.mark.parametrize(
    "url",
    [
        "http://[bad",
        "http://[::1/",
        "http://]x/",
        "http://host:99999/",
        "http://host:65536/",
        "http://host:-1/",
        "http://host:abc/",
        "http://host:8080:80/",
        "ftp://x",
        "ftp://example.com/file.txt",
        "file:///etc/passwd",
        "mailto:a@b",
        "javascript:void(0)",
        "data:text/plain,hi",
        "",
        "   ",
        "http://",
        "https://",
        "http:///path",
        "http:example.com",
        "//example.com/a",
        "/relative/path",
        "example.com",
        "http://./",
        "http://../",
        "http://a b/",
        "http://exa<mple.com/",
        "http://ex\\ample.com/",
        "http://\u00fc..com/",
        "http://" + "a" * 64 + "\u00fc.com/",
        "http://example.com/\ud800",
        "http://[::1]:99999/",
        "http://[::1]x/",
        "http://[1.2.3.4]/",
        "http://[:::::]/",
        "http://[v1/",
        "http://a[::1]@[c$/",  # urlsplit checks the first bracketed text, here in the userinfo, not the host
    ],
)
def test_invalid_urls_raise_invalid_url_naming_the_url(url: str) -> None:
    for function in (canonicalize_url, normalize_url, host_key):
        with pytest.raises(InvalidURL) as info:
            function(url)
        assert info.value.url == url
        assert repr(url) in str(info.value)
        assert info.value.reason
        assert isinstance(info.value, CrawlerError)
        assert isinstance(info.value, ValueError)


def test_invalid_url_reasons_are_specific() -> None:
    with pytest.raises(InvalidURL, match="scheme"):
        canonicalize_url("ftp://x")
    with pytest.raises(InvalidURL, match="no host"):
        canonicalize_url("http://")
    with pytest.raises(InvalidURL, match=r"[Pp]ort"):
        canonicalize_url("http://host:99999/")


# --------------------------------------------------------------------------------------------------------------
# Examples: normalize_url, host_key, is_asset_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://Example.COM:80/a/./b/../c?b=2&a=1#f", "http://example.com/a/c?b=2&a=1"),
        ("https://example.com:443", "https://example.com/"),
        ("http://example.com/%7e?x=%7e&y=%2f", "http://example.com/~?x=~&y=%2F"),
        # "+" is a space in a form-encoded query: it must reach the server as "+", not as "%2B"
        ("http://example.com/search?q=red+shoes", "http://example.com/search?q=red+shoes"),
        ("http://example.com/?q=a%2Bb", "http://example.com/?q=a%2Bb"),
        ("http://example.com/?q=a b", "http://example.com/?q=a%20b"),
        ("http://example.com/?q=é", "http://example.com/?q=%C3%A9"),
        ("http://example.com/?b&a=", "http://example.com/?b&a="),
        ("http://example.com/?q=100%", "http://example.com/?q=100%25"),
        ("http://user:pw@example.com/", "http://user:pw@example.com/"),
        ("http://bücher.de/x", "http://xn--bcher-kva.de/x"),
        ("http://[::1]:8080", "http://[::1]:8080/"),
    ],
)
def test_normalize_url_examples(url: str, expected: str) -> None:
    assert normalize_url(url) == expected
    assert normalize_url(expected) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Example.COM/a", "example.com"),
        ("http://example.com:80/a", "example.com"),
        ("https://example.com:443/a", "example.com"),
        ("http://example.com:443/a", "example.com:443"),
        ("https://example.com:8443/", "example.com:8443"),
        ("http://user:pw@example.com/", "example.com"),
        ("http://bücher.de/", "xn--bcher-kva.de"),
        ("http://example.com./", "example.com"),
        ("http://[::1]/", "[::1]"),
        ("http://[::1]:8080/", "[::1]:8080"),
        ("https://[2001:DB8::1]:443/", "[2001:db8::1]"),
    ],
)
def test_host_key_examples(url: str, expected: str) -> None:
    assert host_key(url) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://example.com/logo.PNG", True),
        ("http://example.com/a/report.pdf?download=1", True),
        ("http://example.com/app.js#x", True),
        ("http://example.com/archive.tar.gz", True),
        ("http://example.com/page.html", False),
        ("http://example.com/page", False),
        ("http://example.com/", False),
        ("http://example.com/v1.2/items", False),
        ("http://example.com/a.pdf/", False),
        ("http://example.com/search?file=a.pdf", False),
        ("http://[bad", False),
        ("", False),
    ],
)
def test_is_asset_url_examples(url: str, expected: bool) -> None:
    assert is_asset_url(url) is expected


def test_asset_extensions_are_lower_case_without_dots() -> None:
    assert all(ext == ext.lower() and "." not in ext and ext for ext in ASSET_EXTENSIONS)
    assert {"png", "pdf", "css", "js", "zip"} <= ASSET_EXTENSIONS
    assert "html" not in ASSET_EXTENSIONS


# --------------------------------------------------------------------------------------------------------------
# Strategies

_label = st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=10)
_ascii_host = st.lists(_label, min_size=1, max_size=4).map(".".join)
_idna_host = st.sampled_from(["bücher.de", "例え.テスト", "münchen.example", "ελληνικά.gr", "xn--bcher-kva.de"])
_ipv4_host = st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t)))
_ipv6_host = st.sampled_from(["[::1]", "[2001:db8::a]", "[fe80::1:2:3:4]", "[::ffff:1.2.3.4]"])
hosts = st.one_of(_ascii_host, _idna_host, _ipv4_host, _ipv6_host)

_segment_chars = st.one_of(
    st.sampled_from(list(UNRESERVED + "!$&'()*+,;=:@ %é€\\[]{}|^`\"<>")),
    st.characters(exclude_categories=("Cs",), exclude_characters="/?#"),
)
_tricky_segments = st.sampled_from(
    [".", "..", "", "%2E", "%2e%2E", "%2F", "%2f", "%7e", "%41", "%%", "%zz", "%", "%%61b", "a+b", "%FF", "%25"]
)
segments = st.one_of(_tricky_segments, st.text(_segment_chars, max_size=6))
paths = st.lists(segments, max_size=5).map(lambda s: "/" + "/".join(s) if s else "")

_query_text = st.one_of(
    st.sampled_from(["", "a", "a+b", "%20", "%2B", "%26", "%3D", "%7E", "%FF", "%", "=", "é"]),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="#&="), max_size=6),
)
queries = st.lists(st.tuples(_query_text, _query_text), max_size=5)


def _join_query(pairs: list[tuple[str, str]]) -> str:
    return "&".join(f"{k}={v}" for k, v in pairs)


@st.composite
def urls(draw: st.DrawFn) -> str:
    """Well-formed-ish http(s) URLs with every kind of trouble in the path and query."""
    scheme = draw(st.sampled_from(["http", "https", "HTTP", "Https"]))
    host = draw(hosts)
    port = draw(st.sampled_from(["", ":80", ":443", ":8080", ":"]))
    userinfo = draw(st.sampled_from(["", "user@", "u:p@", "U%3a:p%40@"]))
    query = draw(queries)
    fragment = draw(st.sampled_from(["", "#", "#frag", "#a?b"]))
    qs = ("?" + _join_query(query)) if query or draw(st.booleans()) else ""
    return f"{scheme}://{userinfo}{host}{port}{draw(paths)}{qs}{fragment}"


_urlish = st.lists(
    st.sampled_from(
        [
            *"aZ09.-_~%/?#[]:@!$&'()*+,;= \t\\<>\"éü\u3002\u00ad",
            *["%2e", "%2F", "%7e", "%ff", "%%", "..", "[::1]", ":80", "xn--"],
        ]
    ),
    max_size=14,
).map("".join)
arbitrary_text = st.one_of(
    st.text(),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(["http://", "HTTPS://", "http://ü"]), _urlish),
    st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(["http://", "https://", "HTTP://["]), st.text()),
    st.builds(lambda host, rest: f"http://{host}{rest}", hosts, st.text(st.characters(codec="utf-8"), max_size=20)),
)


# --------------------------------------------------------------------------------------------------------------
# Properties


@given(urls())
@example("http://example.com/a/%2E%2E/b")
@example("http://example.com/%%61b")
@example("http://bücher.de./")
@example("http://example.com/?q=a+b")
def test_canonicalize_url_is_idempotent(url: str) -> None:
    canonical = canonicalize_url(url)
    assert canonicalize_url(canonical) == canonical


@given(urls())
def test_normalize_url_is_idempotent(url: str) -> None:
    normalized = normalize_url(url)
    assert normalize_url(normalized) == normalized


@given(urls())
@example("http://example.com/?q=a+b")
@example("http://example.com/?q=%FF")
def test_canonicalize_after_normalize_is_canonicalize(url: str) -> None:
    assert canonicalize_url(normalize_url(url)) == canonicalize_url(url)
    assert normalize_url(canonicalize_url(url)) == canonicalize_url(url)


@given(urls())
def test_canonical_url_has_no_fragment_and_a_path(url: str) -> None:
    canonical = canonicalize_url(url)
    assert "#" not in canonical
    scheme, _, rest = canonical.partition("://")
    assert scheme in ("http", "https")
    assert "/" in rest
    assert canonical.isascii()
    assert not any(ch in canonical for ch in ' \t\n"<>\\^`{|}')


@given(urls())
def test_host_key_is_stable_under_canonicalization(url: str) -> None:
    key = host_key(url)
    assert host_key(canonicalize_url(url)) == key
    assert host_key(normalize_url(url)) == key
    assert key == key.lower()
    assert "@" not in key


@given(urls(), st.text(st.characters(codec="utf-8")))
def test_adding_a_fragment_changes_nothing(url: str, fragment: str) -> None:
    base = url.split("#", 1)[0].rstrip()  # surrounding whitespace of the whole text is ignored
    assert canonicalize_url(base + "#" + fragment) == canonicalize_url(base)


@st.composite
def equivalent_spellings(draw: st.DrawFn) -> tuple[str, str]:
    """Two spellings of one URL: scheme and host case, explicit default port, query order, escaped unreserved
    characters and a fragment are all that differ."""
    scheme = draw(st.sampled_from(["http", "https"]))
    host = draw(st.one_of(_ascii_host, _ipv4_host, _ipv6_host))
    port = draw(st.sampled_from(["", ":8080", ":1"]))
    path_segments = draw(st.lists(st.text(UNRESERVED, max_size=6), max_size=4))
    keys = st.text(UNRESERVED, max_size=4)
    pairs = draw(st.lists(st.tuples(keys, keys), max_size=5))

    def escape(text: str) -> str:
        return "".join(
            (draw(st.sampled_from(["%{:02X}", "%{:02x}"])).format(ord(ch)) if draw(st.booleans()) else ch)
            for ch in text
        )

    plain = f"{scheme}://{host}{port}/{'/'.join(path_segments)}?{_join_query(pairs)}"
    other_scheme = draw(st.sampled_from([scheme, scheme.upper(), scheme.capitalize()]))
    other_host = draw(st.sampled_from([host, host.upper(), host.title()]))
    other_port = port or draw(st.sampled_from(["", ":", ":80" if scheme == "http" else ":443"]))
    other_path = "/".join(escape(s) for s in path_segments)
    other_pairs = draw(st.permutations(pairs))
    other_query = "&".join(f"{escape(k)}={escape(v)}" for k, v in other_pairs)
    fragment = draw(st.sampled_from(["", "#", "#section-2", "#/route?x=1"]))
    other = f"{other_scheme}://{other_host}{other_port}/{other_path}?{other_query}{fragment}"
    return plain, other


@given(equivalent_spellings(), st.sampled_from(["GET", "get", "POST"]), st.one_of(st.none(), st.binary()))
def test_equivalent_spellings_share_canonical_url_and_fingerprint(
    pair: tuple[str, str], method: str, body: bytes | None
) -> None:
    plain, other = pair
    assert canonicalize_url(plain) == canonicalize_url(other)
    assert host_key(plain) == host_key(other)
    assert fingerprint(method, plain, body) == fingerprint(method.upper(), other, body)


_decoded_segments = st.lists(
    st.text(st.characters(codec="utf-8"), min_size=1, max_size=6).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=4,
)


@given(_decoded_segments, _decoded_segments, st.booleans())
def test_different_paths_give_different_fingerprints(a: list[str], b: list[str], trailing_slash: bool) -> None:
    assume(a != b)
    slash = "/" if trailing_slash else ""
    url_a = "http://example.com/" + "/".join(quote(s, safe="") for s in a) + slash
    url_b = "http://example.com/" + "/".join(quote(s, safe="") for s in b) + slash
    assert canonicalize_url(url_a) != canonicalize_url(url_b)
    assert fingerprint("GET", url_a) != fingerprint("GET", url_b)


@given(st.lists(st.text(UNRESERVED + "!$'()*+,;:@ é", min_size=1, max_size=6), min_size=1, max_size=4))
def test_trailing_slash_is_significant(segs: list[str]) -> None:
    assume(all(s not in (".", "..") for s in segs))
    url = "http://example.com/" + "/".join(segs)
    assert fingerprint("GET", url) != fingerprint("GET", url + "/")


@given(st.text(st.characters(codec="utf-8")), st.text(st.characters(codec="utf-8")))
def test_different_query_values_give_different_fingerprints(a: str, b: str) -> None:
    assume(a != b)
    url_a = "http://example.com/p?k=" + quote(a, safe="")
    url_b = "http://example.com/p?k=" + quote(b, safe="")
    assert canonicalize_url(url_a) != canonicalize_url(url_b)
    assert fingerprint("GET", url_a) != fingerprint("GET", url_b)


@given(st.binary(), st.binary())
@example(b"\xff", b"\xfe")
def test_different_byte_query_values_give_different_fingerprints(a: bytes, b: bytes) -> None:
    """Query values need not be UTF-8 (Latin-1 forms, binary tokens): distinct bytes stay distinct."""
    assume(a != b)
    url_a = "http://example.com/p?k=" + quote_from_bytes(a, safe="")
    url_b = "http://example.com/p?k=" + quote_from_bytes(b, safe="")
    assert canonicalize_url(url_a) != canonicalize_url(url_b)
    assert fingerprint("GET", url_a) != fingerprint("GET", url_b)


@given(urls(), urls())
def test_fingerprint_equal_exactly_when_canonical_urls_equal(a: str, b: str) -> None:
    assert (fingerprint("GET", a) == fingerprint("GET", b)) == (canonicalize_url(a) == canonicalize_url(b))


@settings(max_examples=300)
@given(arbitrary_text)
@example("http://[bad")
@example("http://example.com/\ud800")
@example("http://./")
@example("http://\u00fc\u3002/")
@example("http://a[::1]@[c$/")
def test_arbitrary_text_raises_only_invalid_url(text: str) -> None:
    for function in (canonicalize_url, normalize_url, host_key):
        try:
            result = function(text)
        except InvalidURL as exc:
            assert exc.url == text
            continue
        assert isinstance(result, str)
    assert isinstance(is_asset_url(text), bool)


@settings(max_examples=300)
@given(arbitrary_text)
@example("http://a[::1]@[c$/")
@example("HTTP://.")
def test_whatever_canonicalizes_is_idempotent(text: str) -> None:
    try:
        canonical = canonicalize_url(text)
        normalized = normalize_url(text)
    except InvalidURL:
        return
    assert canonicalize_url(canonical) == canonical
    assert normalize_url(normalized) == normalized
    assert canonicalize_url(normalized) == canonical
    assert host_key(canonical) == host_key(text)


# -- join_url: the fast link resolver must agree with urllib.parse.urljoin on every input ------------------------
_HREF_ALPHABET = "ab/.?#:;=&%@ \t[]\\~é"
_BASES = st.sampled_from(
    [
        "http://127.0.0.1:8765/dir/page.html",
        "http://example.com",
        "http://example.com/",
        "https://example.com/a/b/c?x=1#top",
        "http://example.com/a//b/c",
        "http://example.com/a/./b/",
        "http://example.com?q",
        "http://[::1]:8080/x/y",
        "https://user@host/p;params/q;p2?z",
    ]
)
_HREFS = st.one_of(
    st.text(alphabet=_HREF_ALPHABET, max_size=12),
    st.builds(
        "".join,
        st.lists(
            st.sampled_from(["http://", "https://", "//", "h", "/", ".", "..", "?", "#", "x=1", ":", "a"]), max_size=8
        ),
    ),
)


@given(base=_BASES, href=_HREFS)
def test_join_url_agrees_with_urljoin(base: str, href: str) -> None:
    try:
        expected = urljoin(base, href)
    except ValueError:
        with pytest.raises(ValueError):
            join_url(base, href)
        return
    assert join_url(base, href) == expected


@pytest.mark.parametrize(
    ("href", "expected"),
    [
        ("page2.html", "http://h/dir/page2.html"),
        ("/abs", "http://h/abs"),
        ("?q=2", "http://h/dir/p.html?q=2"),
        ("#f", "http://h/dir/p.html?x=1#f"),
        ("https://other/x", "https://other/x"),
        ("../up", "http://h/up"),
    ],
)
def test_join_url_common_shapes(href: str, expected: str) -> None:
    assert join_url("http://h/dir/p.html?x=1#old", href) == expected
