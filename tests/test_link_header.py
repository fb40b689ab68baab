"""Tests for crawler._link_header: the Link header field (RFC 8288 §3 and Appendix B)."""

from __future__ import annotations

import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crawler._link_header import Link, find_link, parse_link_header

BASE = "https://api.example.com/v1/items?page=2"


def test_github_style_pagination() -> None:
    # The shape GitHub's REST API sends (docs: "Using pagination in the REST API").
    value = (
        '<https://api.github.com/repositories/1300192/issues?page=2>; rel="prev", '
        '<https://api.github.com/repositories/1300192/issues?page=4>; rel="next", '
        '<https://api.github.com/repositories/1300192/issues?page=515>; rel="last", '
        '<https://api.github.com/repositories/1300192/issues?page=1>; rel="first"'
    )
    links = parse_link_header(value)
    assert [sorted(link.rels) for link in links] == [["prev"], ["next"], ["last"], ["first"]]
    next_link = find_link(links, "next")
    assert next_link is not None
    assert next_link.url == "https://api.github.com/repositories/1300192/issues?page=4"
    assert find_link(links, "NEXT") == next_link
    assert find_link(links, "up") is None


def test_several_field_lines() -> None:
    links = parse_link_header(['<https://a.example/1>; rel="next"', '<https://a.example/9>; rel="last"'])
    assert [link.url for link in links] == ["https://a.example/1", "https://a.example/9"]


def test_two_relations_in_one_rel() -> None:
    (link,) = parse_link_header('<https://a.example/last>; rel="next last"')
    assert link.rels == {"next", "last"}
    (link,) = parse_link_header('<https://a.example/x>; rel="  next\t LAST  "')
    assert link.rels == {"next", "last"}


def test_rel_is_case_insensitive_in_name_and_value() -> None:
    (link,) = parse_link_header("<https://a.example/2>; REL=Next")
    assert link.rels == {"next"}
    (link,) = parse_link_header('<https://a.example/2>; Rel="NEXT"')
    assert link.rels == {"next"}


def test_only_the_first_rel_counts() -> None:
    (link,) = parse_link_header('<https://a.example/2>; rel="next"; rel="prev"')
    assert link.rels == {"next"}
    assert "rel" not in link.params


def test_first_occurrence_of_any_parameter_counts() -> None:
    (link,) = parse_link_header('<https://a.example/2>; rel=next; title="one"; TITLE="two"')
    assert link.params == {"title": "one"}


def test_relative_targets_resolve_against_base_url() -> None:
    links = parse_link_header(
        '</v1/items?page=3>; rel="next", <?page=1>; rel="first", <../v2/x>; rel="alternate", '
        "<//cdn.example.net/a>; rel=preload",
        base_url=BASE,
    )
    assert [link.url for link in links] == [
        "https://api.example.com/v1/items?page=3",
        "https://api.example.com/v1/items?page=1",
        "https://api.example.com/v2/x",
        "https://cdn.example.net/a",
    ]


def test_relative_target_without_base_url_is_kept() -> None:
    (link,) = parse_link_header('</items?page=3>; rel="next"')
    assert link.url == "/items?page=3"


def test_commas_and_semicolons_inside_target() -> None:
    (first, second) = parse_link_header(
        '<https://a.example/items?ids=1,2,3;x=y>; rel="next", <https://a.example/a,b>; rel=last'
    )
    assert first.url == "https://a.example/items?ids=1,2,3;x=y"
    assert second.url == "https://a.example/a,b"


def test_separators_inside_quoted_values() -> None:
    value = '<https://a.example/1>; title="a, b; c=d"; rel="next", <https://a.example/2>; rel=prev'
    first, second = parse_link_header(value)
    assert first.params == {"title": "a, b; c=d"}
    assert first.rels == {"next"}
    assert second.rels == {"prev"}


def test_backslash_escapes_in_quoted_string() -> None:
    (link,) = parse_link_header(r'<https://a.example/1>; rel=next; title="say \"hi\" \\ \o/"')
    assert link.params["title"] == 'say "hi" \\ o/'


def test_token_values_and_other_parameters() -> None:
    (link,) = parse_link_header(
        "<https://a.example/feed>; rel=alternate; type=application/atom+xml; hreflang=de; "
        'anchor="#section"; media="screen, print"; crossorigin'
    )
    assert link.rels == {"alternate"}
    assert link.params == {
        "type": "application/atom+xml",
        "hreflang": "de",
        "anchor": "#section",
        "media": "screen, print",
        "crossorigin": "",
    }


def test_extension_relation_type_is_a_uri() -> None:
    (link,) = parse_link_header('<https://a.example/x>; rel="https://Example.org/rels/Thing next"')
    assert link.rels == {"https://example.org/rels/thing", "next"}


def test_rfc8187_star_parameter_replaces_plain_one() -> None:
    (link,) = parse_link_header(
        "<https://a.example/x>; rel=next; title=\"plain\"; title*=UTF-8'de'n%c3%a4chstes%20Kapitel"
    )
    assert link.params == {"title": "nächstes Kapitel"}
    (link,) = parse_link_header("<https://a.example/x>; title=\"plain\"; title*=KOI8-R''x")
    assert link.params == {"title": "plain"}  # unsupported charset: the star form is dropped


@pytest.mark.parametrize(
    "value",
    [
        '<https://a.example/1>;rel="next"',
        '<https://a.example/1> ; rel = "next" ',
        "<https://a.example/1>\t;\trel=next\t",
        " ,, <https://a.example/1>; rel=next ,",
        '< https://a.example/1 >; rel="next"',
    ],
)
def test_whitespace_and_empty_list_members(value: str) -> None:
    assert parse_link_header(value) == (Link(url="https://a.example/1", rels=frozenset({"next"})),)


@pytest.mark.parametrize(
    ("value", "urls"),
    [
        ('garbage, <https://a.example/2>; rel="next"', ["https://a.example/2"]),
        ('https://a.example/1; rel="next", <https://a.example/2>; rel=prev', ["https://a.example/2"]),
        ('<https://a.example/1>; rel="next" junk, <https://a.example/2>; rel=prev', ["https://a.example/2"]),
        ('<https://a.example/1>; rel="next', ["https://a.example/1"]),  # unterminated quote: runs to the end
        ("<https://a.example/1; rel=next", []),  # unterminated target
        ('<https://a.example/1>; "quoted"=name, <https://a.example/2>', ["https://a.example/2"]),
        ("<https://a.example/1>;; ;rel=next", ["https://a.example/1"]),
        ("", []),
        (",,,", []),
    ],
)
def test_malformed_pieces_are_skipped(value: str, urls: list[str]) -> None:
    assert [link.url for link in parse_link_header(value)] == urls


def test_unresolvable_target_drops_the_link() -> None:
    links = parse_link_header("<http://[::1>; rel=next, </ok>; rel=prev", base_url="https://a.example/")
    assert [link.url for link in links] == ["https://a.example/ok"]


def test_link_without_rel_is_kept_with_no_relations() -> None:
    (link,) = parse_link_header("<https://a.example/1>; title=x")
    assert link.rels == frozenset()
    assert find_link([link], "") is None


def test_link_is_a_frozen_hashable_value() -> None:
    (link,) = parse_link_header("<https://a.example/1>; rel=next; title=x")
    assert link == Link(url="https://a.example/1", rels=frozenset({"next"}), params={"title": "x"})
    assert hash(link) == hash(Link(url="https://a.example/1", rels=frozenset({"next"}), params={"title": "x"}))
    with pytest.raises(TypeError):
        link.params["title"] = "y"  # type: ignore[index]
    assert "Link(url='https://a.example/1'" in repr(link)


# -- properties ---------------------------------------------------------------------------------------------

TOKEN_CHARS = "!#$%&'+-.^_`|~" + string.ascii_letters + string.digits  # tchar, RFC 9110 §5.6.2, less "*"
URL_CHARS = string.ascii_letters + string.digits + "-._~:/?#[]@!$&'()*+,;=%\""

tokens = st.text(TOKEN_CHARS, min_size=1, max_size=12)
rel_types = st.text(string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=10)
urls = st.builds(lambda path: "https://example.com/" + path, st.text(URL_CHARS, max_size=40))
param_values = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20) | st.sampled_from(
    ["a,b", "x;y=z", '"', "\\", 'say "hi"', "", " spaced out "]
)
params = st.dictionaries(tokens.map(str.lower).filter(lambda name: name != "rel"), param_values, max_size=4)
links = st.builds(Link, url=urls, rels=st.frozensets(rel_types, max_size=3), params=params)


def quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def serialized(draw: st.DrawFn, link: Link) -> str:
    """Serialize with random name case, random spacing and tokens where a token is allowed."""
    space = st.sampled_from(["", " ", "  ", "\t"])
    pieces = [f"<{link.url}>"]
    items = list(link.params.items())
    if link.rels:
        items.insert(draw(st.integers(0, len(items))), ("rel", " ".join(sorted(link.rels))))
    for name, value in items:
        shown = "".join(c.upper() if draw(st.booleans()) else c for c in name)
        as_token = value and all(c in TOKEN_CHARS for c in value) and draw(st.booleans())
        text = value if as_token else quote(value)
        pieces.append(f"{draw(space)};{draw(space)}{shown}{draw(space)}={draw(space)}{text}")
    return "".join(pieces) + draw(space)


@given(st.data(), st.lists(links, max_size=5), st.integers(min_value=1, max_value=3))
def test_serialize_then_parse_round_trips(data: st.DataObject, original: list[Link], lines: int) -> None:
    texts = [data.draw(serialized(link)) for link in original]
    size = -(-len(texts) // lines) or 1
    field_lines = [", ".join(texts[i : i + size]) for i in range(0, len(texts), size)]
    assert parse_link_header(field_lines) == tuple(original)


@given(st.text() | st.lists(st.text(), max_size=3), st.none() | st.text())
def test_never_raises_on_arbitrary_text(value: str | list[str], base_url: str | None) -> None:
    result = parse_link_header(value, base_url=base_url)
    assert all(isinstance(link, Link) for link in result)


@given(st.lists(st.sampled_from(["<", ">", '"', "\\", ";", ",", "=", " ", "rel", "next", "a", "/", "*"]), max_size=30))
def test_never_raises_on_link_like_text(pieces: list[str]) -> None:
    result = parse_link_header("".join(pieces), base_url="https://a.example/b/")
    assert all(link.url.startswith("https://") for link in result)
