"""``crawler bench``: the grid parsers, the recommendation and the rate limiter as pure functions, and the command
end to end against real servers on 127.0.0.1 (the built-in target, a URL target that answers 429, a spider)."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import attrs
import pytest
from click.testing import CliRunner, Result
from hypothesis import given
from hypothesis import strategies as st

from crawler._bench import Point, bench, expand_grid, parse_int_grid, parse_name_grid, recommend
from crawler._bench_target import (
    COLUMNS,
    TRANSPORTS,
    FixedWindowLimiter,
    LocalTarget,
    PointResult,
    PointSpec,
    percentile,
    point_result,
    run_point,
)
from crawler.testing import RateLimit

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def invoke(*args: str) -> Result:
    return CliRunner().invoke(bench, list(args), catch_exceptions=False)


def chart_or_skip(path: Path) -> list[str]:
    """``--chart path`` when matplotlib is installed; without it, nothing outside CI and a failure under CI."""
    if HAVE_MATPLOTLIB:
        return ["--chart", str(path)]
    if os.environ.get("CI") == "true":
        pytest.fail('matplotlib is missing: install "crawler[bench]" (CI must test the chart)')
    return []


# -- the grid -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [("8", (8,)), ("8,32,64", (8, 32, 64)), (" 8 , 32 ", (8, 32)), ("32,8,32", (32, 8)), ("512,1", (512, 1))],
)
def test_int_grid(text: str, expected: tuple[int, ...]) -> None:
    assert parse_int_grid(text) == expected


@pytest.mark.parametrize(("text", "bad"), [("0", "0"), ("8,-1", "-1"), ("8,", ""), ("x", "x"), ("1.5", "1.5")])
def test_int_grid_rejects(text: str, bad: str) -> None:
    with pytest.raises(ValueError, match=f"{bad!r} is not a positive whole number"):
        parse_int_grid(text)


def test_name_grid() -> None:
    assert parse_name_grid("trio, ASYNCIO,trio", ("asyncio", "trio"), "backend") == ("trio", "asyncio")
    assert parse_name_grid("httpx", TRANSPORTS, "transport") == ("httpx",)
    with pytest.raises(ValueError, match=r"'tokio' is not a backend \(known: asyncio, trio\)"):
        parse_name_grid("trio,tokio", ("asyncio", "trio"), "backend")


def test_grid_is_the_cartesian_product_concurrency_fastest() -> None:
    points = expand_grid((8, 32), (2, None), ("trio",), ("httpx",))
    assert points == [
        Point(concurrency=8, per_host=2, backend="trio", transport="httpx"),
        Point(concurrency=32, per_host=2, backend="trio", transport="httpx"),
        Point(concurrency=8, per_host=None, backend="trio", transport="httpx"),
        Point(concurrency=32, per_host=None, backend="trio", transport="httpx"),
    ]


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--concurrency", "8,x"], ["--concurrency", "'x'"]),
        (["--concurrency", "0"], ["--concurrency", "'0'"]),
        (["--per-host", "2,two"], ["--per-host", "'two'"]),
        (["--backend", "trio,tokio"], ["--backend", "'tokio'"]),
        (["--transport", "curl"], ["--transport", "'curl'", "aiohttp", "httpx"]),
        (["--backend", "trio", "--transport", "aiohttp"], ["--transport", "aiohttp", "asyncio"]),
        (["--rate-limit", "many"], ["--rate-limit", "'many'"]),
        (["--max-429-rate", "2"], ["--max-429-rate", "2"]),
        (["--chart", "out.pdf"], ["--chart", "out.pdf"]),
        (["http://127.0.0.1:9/", "--latency", "0.1"], ["--latency", "built-in target only"]),
        (["-a", "nothing"], ["-a/--arg", "'nothing'"]),
        (["no_such_spider_file.py"], ["no_such_spider_file.py"]),
    ],
)
def test_bad_options_exit_2_naming_them(args: list[str], names: list[str], tmp_path: Path) -> None:
    result = invoke(*args)
    assert result.exit_code == 2, result.output
    for name in names:
        assert name in result.output


# -- the recommendation (pure) ------------------------------------------------------------------------------------
def point(concurrency: int, pages_per_s: float, *, errors: float = 0.0, r429: float = 0.0, **kw: Any) -> PointResult:
    return PointResult(
        concurrency=concurrency,
        per_host=kw.get("per_host", concurrency),
        backend=kw.get("backend", "asyncio"),
        transport="httpx",
        pages=200,
        requests=1000,
        pages_per_s=pages_per_s,
        latency_p95_s=0.05,
        error_rate=errors,
        errors=int(errors * 1000),
        rate_429=r429,
        status_429=int(r429 * 1000),
        failure=kw.get("failure"),
    )


def test_budget_excludes_a_faster_point_with_429s() -> None:
    results = [point(8, 100), point(32, 200), point(128, 300, r429=0.05)]
    advice = recommend(results, max_error_rate=0.01, max_429_rate=0.0)
    assert advice.point is results[1]
    assert advice.within_budget
    assert advice.reason.startswith("concurrency 32: 200 pages/s")
    assert "over the budget: concurrency 128 (300 pages/s" in advice.reason
    assert "5% 429s" in advice.reason


def test_a_429_budget_admits_the_faster_point() -> None:
    results = [point(8, 100), point(32, 200), point(128, 300, r429=0.05)]
    assert recommend(results, max_error_rate=0.01, max_429_rate=0.1).point is results[2]


def test_flattened_throughput_picks_the_smaller_concurrency() -> None:
    results = [point(8, 100), point(32, 196), point(128, 200), point(512, 199)]
    advice = recommend(results, max_error_rate=0.01, max_429_rate=0.0)
    assert advice.point is results[1]
    assert "flattened" in advice.reason
    assert "200 pages/s at concurrency 128" in advice.reason


def test_nothing_within_budget_says_so_and_picks_the_fewest_errors() -> None:
    results = [point(8, 100, errors=0.03), point(32, 200, errors=0.02, r429=0.01), point(128, 300, errors=0.02)]
    advice = recommend(results, max_error_rate=0.01, max_429_rate=0.0)
    assert not advice.within_budget
    assert advice.point is results[2]  # 2% errors and no 429s: fewer than 32's 2% + 1%
    assert advice.reason.startswith("No point stayed within the budget (errors <= 1%, 429s <= 0%)")
    assert "concurrency 128" in advice.reason


def test_other_settings_name_the_point_and_failed_points_are_ignored() -> None:
    results = [
        point(8, 100, per_host=2, backend="trio"),
        point(8, 150, per_host=8, backend="asyncio"),
        point(8, 900, per_host=8, backend="trio", failure="exit status 1"),
    ]
    advice = recommend(results, max_error_rate=0.01, max_429_rate=0.0)
    assert advice.point is results[1]
    assert advice.reason.startswith("concurrency 8 (per-host 8, asyncio): 150 pages/s")
    empty = [attrs.evolve(point(8, 0, errors=1.0), pages=0), attrs.evolve(point(32, 0, errors=0.5), pages=0)]
    advice = recommend(empty, max_error_rate=0.01, max_429_rate=0.0)
    assert advice.point is empty[1] and not advice.within_budget
    assert advice.reason.startswith("No point fetched a page (concurrency 32: 0 pages/s, p95 50.0 ms, 50% errors")
    failed = [point(8, 0, failure="killed")]
    assert recommend(failed, max_error_rate=0.01, max_429_rate=0.0).point is None


# -- measurements (pure) ------------------------------------------------------------------------------------------
def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 50), percentile(values, 95), percentile(values, 99)) == (50.0, 95.0, 99.0)
    assert percentile([0.3], 99) == 0.3
    assert percentile([], 50) is None


@given(st.lists(st.floats(min_value=0, max_value=60), min_size=1))
def test_percentiles_are_ordered(values: list[float]) -> None:
    p50, p95, p99 = (percentile(values, q) for q in (50, 95, 99))
    assert p50 is not None and p95 is not None and p99 is not None
    assert min(values) <= p50 <= p95 <= p99 <= max(values)


def test_point_result_counts_errors_and_429s() -> None:
    measured = {
        "concurrency": 8,
        "per_host": 2,
        "backend": "trio",
        "transport": "httpx",
        "pages": 90,
        "elapsed_s": 3.0,
        "stop_reason": "max_pages",
        "requests": 100,
        "statuses": {"200": 90, "404": 1, "429": 4, "503": 3},
        "exceptions": {"FetchTimeout": 2},
        "latency_p50_s": 0.01,
        "latency_p95_s": 0.02,
        "latency_p99_s": 0.03,
        "cpu_s": 0.45,
    }
    result = point_result(measured, {"user_s": 0.8, "sys_s": 0.2, "maxrss": 51200})
    assert (result.errors, result.error_rate, result.status_429, result.rate_429) == (5, 0.05, 4, 0.04)
    assert (result.pages_per_s, result.cpu_s_per_1k_pages, result.process_cpu_s) == (30.0, 5.0, 1.0)
    assert result.peak_rss_mb == 50.0


def test_fixed_window_limiter() -> None:
    limiter = FixedWindowLimiter(RateLimit(quota=2, window=10, dialect="ietf"))
    admitted, headers = limiter.admit(100.0)
    assert admitted
    assert dict(headers) == {"RateLimit-Policy": '"default";q=2;w=10', "RateLimit": '"default";r=1;t=10'}
    assert limiter.admit(101.0)[0]
    admitted, headers = limiter.admit(103.5)
    assert not admitted
    assert dict(headers)["Retry-After"] == "7"
    assert dict(headers)["RateLimit"] == '"default";r=0;t=7'
    assert limiter.admit(110.0) == (
        True,
        [("RateLimit-Policy", '"default";q=2;w=10'), ("RateLimit", '"default";r=1;t=10')],
    )
    plain = FixedWindowLimiter(RateLimit(quota=1, window=1, dialect="none"))
    assert plain.admit(0.0) == (True, [])
    assert plain.admit(0.5) == (False, [("Retry-After", "1")])
    plain.reset()
    assert plain.admit(0.6) == (True, [])


# -- the command, end to end ----------------------------------------------------------------------------------------
def check_rows(rows: list[dict[str, Any]]) -> None:
    for row in rows:
        assert row["failure"] in (None, "")
        assert int(row["pages"]) > 0
        assert float(row["latency_p50_s"]) <= float(row["latency_p95_s"]) <= float(row["latency_p99_s"])
        assert float(row["cpu_s"]) > 0 and float(row["process_cpu_s"]) >= float(row["cpu_s"])
        assert float(row["peak_rss_mb"]) > 0
        assert float(row["pages_per_s"]) > 0


def test_builtin_target(tmp_path: Path) -> None:
    out_json, out_csv, chart = tmp_path / "bench.json", tmp_path / "bench.csv", tmp_path / "bench.png"
    result = invoke(
        *(
            "--concurrency",
            "2,8",
            "--site-pages",
            "60",
            "--pages",
            "60",
            "--latency",
            "0.001",
            "--rate-limit",
            "1000/1",
        ),
        *("--json", str(out_json), "--csv", str(out_csv), *chart_or_skip(chart)),
    )
    assert result.exit_code == 0, result.output
    document = json.loads(out_json.read_text())
    points = document["points"]
    assert [(p["concurrency"], p["per_host"], p["backend"], p["transport"]) for p in points] == [
        (2, 2, "asyncio", "auto"),
        (8, 8, "asyncio", "auto"),
    ]
    assert all(list(p) == list(COLUMNS) for p in points)
    check_rows(points)
    assert all(p["pages"] <= 60 and p["errors"] == 0 and p["status_429"] == 0 for p in points)
    advice = document["recommendation"]
    assert advice["point"] in points and advice["within_budget"]
    assert [p["recommended"] for p in points].count(True) == 1
    assert advice["reason"].startswith(f"concurrency {advice['point']['concurrency']}")
    with out_csv.open(newline="") as file:
        reader = csv.DictReader(file)
        rows = list(reader)
    assert reader.fieldnames == list(COLUMNS) and len(rows) == 2
    check_rows(rows)
    assert "crawler bench" in result.output and "recommended:" in result.output
    if HAVE_MATPLOTLIB:
        assert chart.read_bytes().startswith(PNG_SIGNATURE)
        assert chart.stat().st_size > 1000


def test_url_target_that_answers_429(tmp_path: Path) -> None:
    out_json, chart = tmp_path / "bench.json", tmp_path / "bench.svg"
    limit = RateLimit(quota=1, window=5, dialect="none")  # only Retry-After: a second page within 5 s gets a 429
    with LocalTarget(pages=40, rate_limit=limit) as target:
        result = invoke(
            target.start_url,
            *("--concurrency", "4", "--per-host", "4", "--backend", "trio", "--pages", "40", "--duration", "2"),
            *("--json", str(out_json), *chart_or_skip(chart)),
        )
    assert result.exit_code == 0, result.output
    document = json.loads(out_json.read_text())
    (row,) = document["points"]
    assert (row["concurrency"], row["per_host"], row["backend"]) == (4, 4, "trio")
    assert row["pages"] >= 1 and row["status_429"] > 0 and row["rate_429"] > 0
    assert row["latency_p50_s"] <= row["latency_p95_s"] <= row["latency_p99_s"]
    advice = document["recommendation"]
    assert not advice["within_budget"] and advice["point"] == row
    assert "No point stayed within the budget" in advice["reason"]
    assert document["options"]["builtin_target"] is False and document["options"]["target"] == [target.start_url]
    if HAVE_MATPLOTLIB:
        assert ET.parse(chart).getroot().tag == "{http://www.w3.org/2000/svg}svg"


SPIDER = """
from crawler import Request, Spider


class Titles(Spider):
    name = "titles"
    start_url = ""

    async def start(self):
        yield Request(url=self.start_url)

    async def parse(self, response):
        yield {"title": response.title}
        for request in response.follow_all(css="a"):
            yield request
"""


def test_spider_target(tmp_path: Path) -> None:
    spider = tmp_path / "titles.py"
    spider.write_text(SPIDER)
    out_csv = tmp_path / "bench.csv"
    with LocalTarget(pages=30) as target:
        result = invoke(
            f"{spider}:Titles",
            *("-a", f"start_url={target.start_url}", "--concurrency", "4", "--pages", "10", "--csv", str(out_csv)),
        )
    assert result.exit_code == 0, result.output
    with out_csv.open(newline="") as file:
        (row,) = list(csv.DictReader(file))
    check_rows([row])
    assert (row["concurrency"], row["per_host"], row["stop_reason"]) == ("4", "2", "max_pages")


def test_a_point_that_cannot_run_is_a_failure(tmp_path: Path) -> None:
    cli = {"crawl.concurrency": 2, "crawl.per_host": 2, "crawl.backend": "asyncio"}
    spec = PointSpec(target=(str(tmp_path / "missing_spider.py"),), cli=cli, duration=5.0)
    result = run_point(spec, tmp_path, lambda pages: None)
    assert result.failure is not None
    assert result.failure.startswith("exit status 1: ") and "missing_spider.py not found" in result.failure
    assert (result.concurrency, result.per_host, result.backend, result.pages) == (2, 2, "asyncio", 0)
