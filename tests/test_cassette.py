"""Record and replay (crawl.record, crawl.replay): crawls recorded from real servers on 127.0.0.1, then replayed
with the servers stopped."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from crawler import (
    CassetteError,
    ConnectError,
    Engine,
    HttpxTransport,
    NoRecording,
    RecordingTransport,
    ReplayTransport,
    Request,
    Response,
    Settings,
    SettingsError,
    Spider,
    load_settings,
)
from crawler._aiohttp_transport import AiohttpTransport
from crawler._cassette import (
    MARKER,
    LibyamlDumper,
    PythonDumper,
    decode_body,
    dump_exchange,
    encode_body,
    redact_header,
)
from crawler._transport import Transport
from crawler.testing import LocalServer, RequestInfo, generate_site, serve_many

pytestmark = pytest.mark.anyio

HOSTS = ("127.0.0.1", "127.0.0.2")
BINARY = bytes(range(256)) * 4
#: Characters that YAML treats specially: line breaks of its own (NEL, LS, PS), quotes, indicators, BOM.
YAML_HARD = st.sampled_from("a \n\r\t\x85\u2028\u2029\x00\ufeff#:-'\"|>!&*%@`é")
NETWORKS: dict[str, Callable[[], Transport]] = {"httpx": HttpxTransport, "aiohttp": AiohttpTransport}


def settings(**crawl: Any) -> Settings:
    return load_settings(environ={}, cli={f"crawl.{k}": v for k, v in crawl.items()}, config_dir=False)


def files(directory: Path) -> dict[str, str]:
    """Every file under ``directory`` by relative path, with its text."""
    return {
        str(path.relative_to(directory)): path.read_text(encoding="utf-8")
        for path in sorted(directory.rglob("*"))
        if path.is_file()
    }


class Collect:
    """A sink that keeps items (or error records) in memory."""

    uri = "memory:"

    def __init__(self) -> None:
        self.items: list[dict[str, Any]] = []

    async def open(self) -> None:
        return None

    async def write(self, batch: Any) -> None:
        self.items.extend(record.item for record in batch)

    async def close(self) -> None:
        return None


class Fetch(Spider):
    """Requests ``requests`` (not deduplicated); one item per response with what the spider saw of it."""

    name = "fetch"
    handle_httpstatus_all = True

    def __init__(self, *requests: Request) -> None:
        super().__init__()
        self.requests = requests

    async def start(self) -> AsyncIterator[Request]:
        for request in self.requests:
            yield request.replace(dont_filter=True)

    async def parse(self, response: Response) -> AsyncIterator[dict[str, Any]]:
        yield {
            "url": response.url,
            "status": response.status,
            "headers": [[k.lower(), v] for k, v in response.headers.items() if k.lower() != "date"],
            "sha256": hashlib.sha256(response.body).hexdigest(),
        }


async def run(spider: Spider, crawl_settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run ``spider`` to the end: its items and error records."""
    items, errors = Collect(), Collect()
    await Engine(spider, crawl_settings, sinks=[items], error_sinks=[errors]).run()
    return items.items, errors.items


def network(anyio_backend: str) -> str:
    """A network transport per backend, so both are covered: aiohttp on asyncio, httpx on trio."""
    return "aiohttp" if anyio_backend == "asyncio" else "httpx"


# -- the command line, end to end --------------------------------------------------------------------------------


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRAWLER_")}
    return subprocess.run(
        [sys.executable, "-m", "crawler", *args, "--no-progress", "--log-level", "error"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def without_failed_at(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(({k: v for k, v in r.items() if k != "failed_at"} for r in records), key=json.dumps)


def comparable(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items sorted by URL without ``elapsed``, which is not recorded (replayed as 0.0), and ``depth``, which
    depends on which page's link was followed first, so differs between any two runs of a concurrent crawl."""
    return sorted(
        ({k: v for k, v in i.items() if k not in ("elapsed", "depth")} for i in items), key=lambda i: i["url"]
    )


@pytest.mark.parametrize(("backend", "transport"), [("asyncio", "aiohttp"), ("asyncio", "httpx"), ("trio", "httpx")])
def test_cli_records_a_crawl_and_replays_it_with_the_servers_stopped(
    tmp_path: Path, backend: str, transport: str
) -> None:
    site = generate_site(pages=40, links_per_page=6, hosts=HOSTS, seed=5, disallow=["/s1/3"])
    common = ["--backend", backend, "-s", f"crawl.transport={transport}"]
    with serve_many(site, error_rate=0.1, error_status=404) as servers:
        start = [servers.url("/index.html", host) for host in HOSTS]
        recorded = run_cli(
            "crawl",
            *start,
            *common,
            "--record",
            "cassette",
            "-o",
            "recorded.jsonl",
            "--errors",
            "e1.jsonl",
            cwd=tmp_path,
        )
        assert recorded.returncode == 0, recorded.stderr
        served = servers.stats().requests
    cassette = files(tmp_path / "cassette")
    assert len(cassette) == served  # every exchange, robots.txt included, one file each
    assert sorted(name for name in cassette if "robots.txt--GET-" in name) == [
        f"{host}_{servers.port}/robots.txt--GET-{name.split('-')[-2]}-1.yaml"
        for host, name in zip(HOSTS, sorted(n for n in cassette if "robots.txt" in n), strict=True)
    ]
    assert all(name.endswith(".yaml") for name in cassette)
    assert all(text.startswith(MARKER + "\n") for text in cassette.values())

    replayed = run_cli(
        "crawl",
        *start,
        *common,
        "--replay",
        "cassette",
        "-o",
        "replayed.jsonl",
        "--errors",
        "e2.jsonl",
        cwd=tmp_path,
    )
    assert replayed.returncode == 0, replayed.stderr
    items = read_jsonl(tmp_path / "recorded.jsonl")
    assert len(items) > 20
    assert comparable(read_jsonl(tmp_path / "replayed.jsonl")) == comparable(items)
    errors = [without_failed_at(read_jsonl(tmp_path / name)) for name in ("e1.jsonl", "e2.jsonl")]
    assert errors[0] == errors[1]  # the same failures, and no NoRecording or ConnectError
    assert errors[0] and all(e["status"] == 404 for e in errors[0])
    assert not any(url.endswith("/s1/3.html") for url in (item["url"] for item in items))  # robots.txt obeyed


def test_cli_refuses_record_and_replay_together_and_a_missing_cassette(tmp_path: Path) -> None:
    both = run_cli("crawl", "http://127.0.0.1:9/", "--record", "a", "--replay", "b", cwd=tmp_path)
    assert both.returncode == 2
    assert "crawl: record ('a') and replay ('b') cannot both be set" in " ".join(both.stderr.split())

    missing = run_cli("crawl", "http://127.0.0.1:9/", "--replay", "no-such-dir", cwd=tmp_path)
    assert missing.returncode == 2
    assert "no-such-dir" in missing.stderr and "no such directory" in missing.stderr


# -- replaying crawls --------------------------------------------------------------------------------------------


async def test_a_request_without_recording_fails_naming_it_and_the_nearest_recording(
    tmp_path: Path, anyio_backend: str
) -> None:
    routes = {"/items/1.json": b'{"id": 1}', "/items/2.json": b'{"id": 2}', "/about.html": b"<p>about</p>"}
    with LocalServer(routes) as server:
        recorded, _ = await run(
            Fetch(*(Request(url=server.url(path)) for path in routes)),
            settings(record=str(tmp_path), obey_robots=False, transport=network(anyio_backend)),
        )
    assert len(recorded) == 3

    spider = Fetch(Request(url=server.url("/items/1.json")), Request(url=server.url("/items/3.json")))
    items, errors = await run(spider, settings(replay=str(tmp_path), obey_robots=False))

    assert [item["url"] for item in items] == [server.url("/items/1.json")]
    assert len(errors) == 1
    assert errors[0]["url"] == server.url("/items/3.json")
    assert errors[0]["error"] == (
        f"NoRecording: no recording of GET {server.url('/items/3.json')} in {tmp_path}; "
        f"the nearest recorded request is GET {server.url('/items/2.json')}"
    )


async def test_an_empty_cassette_says_so(tmp_path: Path) -> None:
    with pytest.raises(NoRecording, match="holds no recorded exchanges"):
        await ReplayTransport(tmp_path).fetch(Request(url="http://127.0.0.1:9/x"))


async def test_retries_replay_in_order_then_the_last_recording_repeats(tmp_path: Path, anyio_backend: str) -> None:
    hits: list[int] = []

    def flaky(request: RequestInfo) -> tuple[int, dict[str, str], bytes]:
        hits.append(1)
        if len(hits) == 1:
            return 503, {"Retry-After": "0"}, b"busy"
        return 200, {"Content-Type": "text/plain"}, f"hit {len(hits)}".encode()

    with LocalServer({"/flaky": flaky}) as server:
        url = server.url("/flaky")
        crawl_settings = load_settings(
            environ={},
            config_dir=False,
            cli={
                "crawl.record": str(tmp_path / "crawl"),
                "crawl.obey_robots": False,
                "crawl.transport": network(anyio_backend),
                "retry.backoff_base": 0.0,
            },
        )
        items, _ = await run(Fetch(Request(url=url)), crawl_settings)
        assert len(hits) == 2  # a 503, then the retry's 200
        transport = RecordingTransport(NETWORKS[network(anyio_backend)](), tmp_path / "direct")
        try:
            for _ in range(2):
                await transport.fetch(Request(url=url))
        finally:
            await transport.aclose()
    names = sorted(files(tmp_path / "direct"))
    assert [name.rsplit("-", 1) for name in names] == [[names[0][:-7], "1.yaml"], [names[0][:-7], "2.yaml"]]
    assert names[0].startswith(f"127.0.0.1_{server.port}/flaky--GET-")

    replay = ReplayTransport(tmp_path / "direct")
    bodies = [(await replay.fetch(Request(url=url))).body for _ in range(4)]
    assert bodies == [b"hit 3", b"hit 4", b"hit 4", b"hit 4"]

    crawl_settings = load_settings(
        environ={},
        config_dir=False,
        cli={"crawl.replay": str(tmp_path / "crawl"), "crawl.obey_robots": False, "retry.backoff_base": 0.0},
    )
    items_sink = Collect()
    stats = await Engine(Fetch(Request(url=url)), crawl_settings, sinks=[items_sink]).run()
    assert items_sink.items == items
    assert items[0]["status"] == 200
    assert stats.counts["retries"] == 1  # the recorded 503 came first


async def test_a_recorded_transport_error_is_replayed_as_the_same_error(tmp_path: Path) -> None:
    with LocalServer({}) as server:
        url = server.url("/gone")
    transport = RecordingTransport(HttpxTransport(), tmp_path)
    with pytest.raises(ConnectError):
        await transport.fetch(Request(url=url))
    await transport.aclose()
    [text] = files(tmp_path).values()
    assert "type: ConnectError" in text

    with pytest.raises(ConnectError, match="replayed from"):
        await ReplayTransport(tmp_path).fetch(Request(url=url))


# -- what the files hold ------------------------------------------------------------------------------------------


def echo_secrets(request: RequestInfo) -> tuple[int, list[tuple[str, str]], bytes]:
    body = json.dumps({"access_token": "tok-SECRET-3", "token_type": "Bearer", "expires_in": 60}).encode()
    return (
        200,
        [
            ("Content-Type", "application/json"),
            ("Set-Cookie", "sid=cookie-SECRET-4; Path=/; HttpOnly"),
            ("Set-Cookie", "theme=dark; Path=/"),
        ],
        body,
    )


async def test_secrets_are_redacted_in_the_files_and_do_not_take_part_in_matching(
    tmp_path: Path, anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CASSETTE_TEST_KEY", "key-SECRET-1")
    auth = {
        "auth.kind": "api_key",
        "auth.secret": "env:CASSETTE_TEST_KEY",
        "auth.query_param": "k",
        "auth.hosts": ("127.0.0.1",),
    }
    with LocalServer({"/token": echo_secrets}) as server:
        request = Request(
            url=server.url("/token?page=2&signature=sig-SECRET-5"),
            method="POST",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Authorization": "Bearer bearer-SECRET-2",
                "Cookie": "sid=cookie-SECRET-6; theme=dark",
            },
            body=b"grant_type=client_credentials&client_secret=form-SECRET-7",
        )
        cli = {"crawl.obey_robots": False, "crawl.transport": network(anyio_backend), **auth}
        recording = load_settings(environ={}, config_dir=False, cli={"crawl.record": str(tmp_path), **cli})
        items, errors = await run(Fetch(request), recording)
        assert errors == [] and len(items) == 1
        sent = server.stats().log[0]
        assert "k=key-SECRET-1" in sent.target  # the auth middleware added the key: the cassette must hide it

    [(name, text)] = files(tmp_path).items()
    assert "SECRET" not in name + text
    exchange = yaml.safe_load(text)
    assert exchange["request"]["url"] == server.url("/token?page=2&signature=***&k=***")
    assert {"Authorization": "Bearer ***"} in exchange["request"]["headers"]
    assert {"Cookie": "sid=***; theme=***"} in exchange["request"]["headers"]
    assert exchange["request"]["body"] == "grant_type=client_credentials&client_secret=***"
    response = exchange["response"]
    cookies = [
        value for header in response["headers"] for name, value in header.items() if name.lower() == "set-cookie"
    ]
    assert cookies == ["sid=***; Path=/; HttpOnly", "theme=***; Path=/"]  # every value hidden, whatever its name
    assert json.loads(response["body"]) == {"access_token": "***", "token_type": "Bearer", "expires_in": 60}

    monkeypatch.setenv("CASSETTE_TEST_KEY", "another-key")  # replays without the recorded credentials
    replaying = load_settings(environ={}, config_dir=False, cli={"crawl.replay": str(tmp_path), **cli})
    replayed, errors = await run(Fetch(request.replace(url=server.url("/token?page=2&signature=other"))), replaying)
    assert errors == []
    assert [item["status"] for item in replayed] == [200]


def test_header_redaction_keeps_schemes_and_cookie_names() -> None:
    assert redact_header("authorization", "Basic dXNlcjpwYXNz") == "Basic ***"
    assert redact_header("Proxy-Authorization", "opaque") == "***"
    assert redact_header("Cookie", "a=1; b=2") == "a=***; b=***"
    assert redact_header("X-API-Key", "k") == "***"
    assert redact_header("X-Custom", "k", frozenset({"x-custom"})) == "***"
    assert redact_header("Accept", "text/html") == "text/html"


async def test_bodies_and_repeated_headers_round_trip_byte_for_byte(tmp_path: Path, anyio_backend: str) -> None:
    text = "line one\r\nline two\n\ttabbed é ✓\n"
    routes = {
        "/binary.bin": (200, [("Content-Type", "application/octet-stream")], BINARY),
        "/page.html": (
            200,
            [("Content-Type", "text/html; charset=utf-8"), ("Link", '</a>; rel="next"'), ("Link", '</b>; rel="last"')],
            b"<html>\n  <body>caf\xc3\xa9</body>\n</html>\n",
        ),
        "/crlf.txt": (200, [("Content-Type", "text/plain")], text.encode()),
        "/empty": (204, [("X-Note", "a"), ("x-note", "b")], b""),
        "/upload": lambda request: (201, {"Content-Type": "application/octet-stream"}, request.body[::-1]),
    }
    with LocalServer(routes) as server:
        requests = [Request(url=server.url(path)) for path in routes if path != "/upload"]
        requests.append(Request(url=server.url("/upload"), method="POST", body=BINARY[:300]))
        recorder = RecordingTransport(NETWORKS[network(anyio_backend)](), tmp_path)
        try:
            live = [await recorder.fetch(request) for request in requests]
        finally:
            await recorder.aclose()

    replay = ReplayTransport(tmp_path)
    assert replay.recordings == len(requests)
    for request, original in zip(requests, live, strict=True):
        again = await replay.fetch(request)
        assert again.status == original.status
        assert list(again.headers.items()) == list(original.headers.items())
        assert again.body == original.body
    assert live[0].body == BINARY
    assert live[1].headers.getall("link") == ['</a>; rel="next"', '</b>; rel="last"']
    assert live[4].body == BINARY[:300][::-1]

    stored = files(tmp_path)
    page = next(text for name, text in stored.items() if "page.html" in name)
    assert "  body: |\n    <html>\n      <body>café</body>\n    </html>\n" in page  # text stays readable
    binary = next(text for name, text in stored.items() if "binary.bin" in name)
    assert "body: !!binary |" in binary


async def test_rerecording_the_same_crawl_writes_the_same_files_and_drops_stale_ones(
    tmp_path: Path, anyio_backend: str
) -> None:
    site = generate_site(pages=30, links_per_page=6, hosts=HOSTS, seed=2)
    first, second = tmp_path / "first", tmp_path / "second"
    with serve_many(site) as servers:
        start = servers.url("/index.html")

        class Site(Spider):
            name = "site"
            start_urls = [start]
            allowed_domains = HOSTS

            async def parse(self, response: Response) -> AsyncIterator[Any]:
                yield {"url": response.url}
                for request in response.follow_all():
                    if not request.url.endswith((".png", ".css", ".pdf", ".jpg", ".js")):
                        yield request

        await run(Site(), settings(record=str(first), concurrency=8, transport=network(anyio_backend)))
        second.mkdir()
        (second / "notes.txt").write_text("kept\n")
        (second / "own.yaml").write_text("not: ours\n")
        (second / "127.0.0.3_1").mkdir()
        (second / "127.0.0.3_1" / "stale--GET-00000000-1.yaml").write_text(f"{MARKER}\nrequest: {{}}\n")
        await run(Site(), settings(record=str(second), concurrency=3, transport=network(anyio_backend)))

    recorded = files(first)
    again = files(second)
    assert again.pop("notes.txt") == "kept\n"
    assert again.pop("own.yaml") == "not: ours\n"
    assert not (second / "127.0.0.3_1").exists()
    assert len(recorded) > 30
    assert list(again) == list(recorded)
    assert again == recorded


def test_replay_refuses_a_yaml_file_that_is_not_an_exchange(tmp_path: Path) -> None:
    (tmp_path / "stray.yaml").write_text("hello: world\n")
    with pytest.raises(CassetteError, match=r"stray\.yaml is not a recorded exchange"):
        ReplayTransport(tmp_path)
    (tmp_path / "stray.yaml").write_text(f"{MARKER}\nrequest: {{url: 'http://[bad'}}\nresponse: {{status: 200}}\n")
    with pytest.raises(CassetteError, match=r"stray\.yaml: invalid URL 'http://\[bad'"):
        ReplayTransport(tmp_path)
    with pytest.raises(CassetteError, match="no such directory"):
        ReplayTransport(tmp_path / "missing")


@pytest.mark.parametrize("dumper", [LibyamlDumper, PythonDumper])
@example(body="\x85".encode())  # NEL: a line break to YAML, folded into a space by a plain scalar
@example(body=b"one\r\ntwo\n")
@given(
    body=st.binary(max_size=300)
    | st.text(YAML_HARD | st.characters(exclude_categories=["Cs"]), max_size=60).map(str.encode)
)
def test_any_body_survives_the_file_format(dumper: type[yaml.SafeDumper], body: bytes) -> None:
    stored = dump_exchange({"response": {"body": encode_body(body)}}, dumper=dumper)
    loaded = yaml.safe_load(stored)["response"]["body"]
    assert decode_body(loaded, "test") == body


# -- settings --------------------------------------------------------------------------------------------------


def test_record_and_replay_together_is_a_settings_error_even_across_layers() -> None:
    with pytest.raises(SettingsError, match=r"crawl: record \('a'\) and replay \('b'\) cannot both be set"):
        load_settings(environ={}, config_dir=False, cli={"crawl.record": "a", "crawl.replay": "b"})
    with pytest.raises(SettingsError, match=r"from the layers together: crawl: record"):
        load_settings(environ={"CRAWLER_CRAWL_RECORD": "a"}, config_dir=False, cli={"crawl.replay": "b"})
    assert settings(record="a").crawl.record == "a"
    assert settings().crawl.replay is None
