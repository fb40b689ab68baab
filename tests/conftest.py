"""Shared fixtures: every async test runs on asyncio and on trio (the anyio pytest plugin), real servers on
loopback, and a quiet log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from crawler._log import configure_logging
from crawler._settings import CrawlSettings

PYDOCS = Path(os.environ.get("CRAWLER_PYDOCS", "/usr/share/doc/python3.11/html"))


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _quiet_logs() -> None:
    configure_logging("json", "error")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run the test in an empty temporary directory (default sinks write to the current directory)."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


@pytest.fixture(scope="session")
def pydocs() -> Path:
    """The Python documentation folder (Debian package python3.11-doc): skipped outside CI when missing, an
    error in CI (``CI=true``), where .ci/run installs it."""
    if not (PYDOCS / "index.html").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail(f"the Python documentation is missing at {PYDOCS}: .ci/run should install python3.11-doc")
        pytest.skip(f"the Python documentation is not installed at {PYDOCS} (apt-get install python3.11-doc)")
    return PYDOCS


def runs_on(transport: str, backend: str) -> bool:
    """Whether ``crawl.transport = transport`` is valid on ``crawl.backend = backend`` (aiohttp: asyncio only)."""
    try:
        CrawlSettings(backend=backend, transport=transport)  # type: ignore[arg-type]
    except ValueError:
        return False
    return True


#: Every network transport (``crawl.transport``) on every backend it runs on.
TRANSPORT_COMBINATIONS = [
    pytest.param(backend, transport, id=f"{backend}-{transport}")
    for backend in ("asyncio", "trio")
    for transport in ("httpx", "aiohttp")
    if runs_on(transport, backend)
]


@pytest.hookimpl(tryfirst=True)  # before the anyio_backend fixture's own parametrization
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test that takes ``transport_name`` runs on each valid (backend, transport) pair, and only those."""
    if "transport_name" in metafunc.fixturenames:
        metafunc.parametrize(("anyio_backend", "transport_name"), TRANSPORT_COMBINATIONS)
