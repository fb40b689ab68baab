"""Settings: frozen, keyword-only attrs classes grouped by concern, loaded in layers by a cattrs converter that
forbids unknown keys.

Layers, lowest first: ``defaults`` (the class defaults), the config file (``crawler.toml``, or ``[tool.crawler]``
in ``pyproject.toml``), the spider's ``custom_settings``, the environment (``CRAWLER_<GROUP>_<KEY>``, e.g.
``CRAWLER_CRAWL_CONCURRENCY=32``) and the command line (``-s crawl.concurrency=32``, or ``-s concurrency=32``
when the key names one setting).  Each layer is checked on its own, so an error names the layer it came from.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs
import cattrs
from attrs import validators as v
from cattrs.errors import ClassValidationError, ForbiddenExtraKeysError, IterableValidationError

from crawler._exceptions import SettingsError

__all__ = [
    "AuthSettings",
    "CrawlSettings",
    "HostSettings",
    "LogSettings",
    "MetricsSettings",
    "OutputSettings",
    "RetrySettings",
    "Settings",
    "load_settings",
]

VERSION = "0.1.0"
DEFAULT_USER_AGENT = f"crawler/{VERSION} (polite Python crawler; set crawl.user_agent to name yourself and a contact)"

_positive_int = [v.instance_of(int), v.ge(1)]
_optional_positive_int = v.optional([v.instance_of(int), v.ge(1)])
_non_negative = [v.instance_of(float), v.ge(0.0)]


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _transport_runs_on_backend(instance: Any, attribute: Any, value: str) -> None:
    if value == "aiohttp" and instance.backend != "asyncio":
        raise ValueError(f"the aiohttp transport runs on asyncio only, not {instance.backend} (use httpx or auto)")


def _not_recording(instance: Any, attribute: Any, value: str | None) -> None:
    if value is not None and instance.record is not None:
        raise ValueError(f"record ({instance.record!r}) and replay ({value!r}) cannot both be set: choose one")


@attrs.frozen(kw_only=True)
class CrawlSettings:
    """How the crawl runs.

    - ``concurrency``: requests in flight across all hosts (>= 1).
    - ``per_host``: requests in flight per host (>= 1); 2 by default, which most site operators accept.
    - ``delay``: seconds between request starts to one host (>= 0), jittered by ``jitter`` (a fraction: 0.5
      spreads each delay over 0.5x-1.5x).  robots.txt ``Crawl-delay`` raises it for the hosts that ask.
    - ``timeout``: seconds per request (connect, read, write, pool each).
    - ``max_pages``, ``max_items``, ``max_depth``: stop limits (None: no limit).  Depth 0 is a start URL.
    - ``max_body_size``: bytes of decoded body read at most; a larger response fails with BodyTooLarge.
    - ``max_redirects``: redirects followed from one request.
    - ``obey_robots``: fetch and obey robots.txt (RFC 9309) for every host, and its Crawl-delay.
    - ``user_agent``: the User-Agent sent, also the name matched in robots.txt.
    - ``headers``: extra headers sent with every request.
    - ``backend``: ``trio`` or ``asyncio``.
    - ``transport``: the HTTP client underneath: ``aiohttp`` (asyncio only), ``httpx``, or ``auto`` (the fastest
      on the backend: aiohttp on asyncio, httpx on trio).  Requests and responses are crawler's own either way.
    - ``shutdown_timeout``: seconds in-flight requests may take to finish after Ctrl-C.
    - ``verify``: verify TLS certificates (on by default).
    - ``state``: a directory where the crawl keeps its frontier (SQLite, ``DIR/frontier.db``), so that the same
      command run again resumes it, after Ctrl-C or a crash.
    - ``cache``: a directory for the HTTP cache (RFC 9111, ``DIR/http-cache.db``): fresh responses are served
      from it with no request, stale ones are revalidated (``If-None-Match`` / ``If-Modified-Since``), so a
      recrawl of an unchanged site transfers only 304s.  None (the default): no cache.
    - ``frontier``: the frontier's URI: ``memory`` (the default without ``state``), ``sqlite:///PATH.db``, or a
      plugin's scheme such as ``redis://127.0.0.1:6379/0`` (shared by every process given the same ``crawl_id``).
    - ``crawl_id``: names the crawl in a shared frontier (default: the spider's name).
    - ``lease``: seconds a claimed request stays leased to a process of a shared frontier without a renewal; a
      request whose process died goes back to its queue when its lease runs out.
    - ``middleware``: middleware added after the auth middleware, each an entry-point name of the
      ``crawler.middleware`` group or a ``module:attribute`` path; each is called with the settings and returns
      the middleware.
    - ``record``: a directory where every HTTP exchange of the crawl is recorded, one YAML file each, secrets
      redacted (see :class:`crawler.RecordingTransport`).
    - ``replay``: a directory recorded with ``record``: the crawl is answered from it with no network (see
      :class:`crawler.ReplayTransport`).  Not together with ``record``.
    """

    concurrency: int = attrs.field(default=16, validator=_positive_int)
    per_host: int = attrs.field(default=2, validator=_positive_int)
    delay: float = attrs.field(default=0.0, converter=_float, validator=_non_negative)
    jitter: float = attrs.field(default=0.5, converter=_float, validator=[v.ge(0.0), v.le(1.0)])
    timeout: float = attrs.field(default=30.0, converter=_float, validator=v.gt(0.0))
    max_pages: int | None = attrs.field(default=None, validator=_optional_positive_int)
    max_items: int | None = attrs.field(default=None, validator=_optional_positive_int)
    max_depth: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(0)]))
    max_body_size: int = attrs.field(default=10 * 1024 * 1024, validator=_positive_int)
    max_redirects: int = attrs.field(default=10, validator=[v.instance_of(int), v.ge(0)])
    obey_robots: bool = True
    user_agent: str = DEFAULT_USER_AGENT
    headers: dict[str, str] = attrs.field(factory=dict)
    backend: Literal["trio", "asyncio"] = "asyncio"
    transport: Literal["auto", "httpx", "aiohttp"] = attrs.field(default="auto", validator=_transport_runs_on_backend)
    shutdown_timeout: float = attrs.field(default=10.0, converter=_float, validator=_non_negative)
    verify: bool = True
    state: str | None = None
    cache: str | None = None
    frontier: str | None = None
    crawl_id: str | None = None
    lease: float = attrs.field(default=60.0, converter=_float, validator=v.gt(0.0))
    middleware: tuple[str, ...] = ()
    record: str | None = None
    replay: str | None = attrs.field(default=None, validator=_not_recording)


@attrs.frozen(kw_only=True)
class RetrySettings:
    """Retries (see :class:`crawler.RetryPolicy`).

    - ``max_attempts``: attempts in all, the first included (1 disables retries).
    - ``statuses``: HTTP statuses retried (RFC 9110 §15: 408, 425, 429, 500, 502, 503, 504 by default).
    - ``backoff_base``, ``backoff_cap``: seconds; the wait before attempt n+1 is drawn uniformly from
      [0, min(cap, base * 2**n)] ("full jitter"), and never shorter than Retry-After.
    """

    max_attempts: int = attrs.field(default=4, validator=_positive_int)
    statuses: tuple[int, ...] = (408, 425, 429, 500, 502, 503, 504)
    backoff_base: float = attrs.field(default=0.5, converter=_float, validator=_non_negative)
    backoff_cap: float = attrs.field(default=60.0, converter=_float, validator=_non_negative)


@attrs.frozen(kw_only=True)
class HostSettings:
    """A per-host override, matched by ``pattern`` (fnmatch on ``host`` or ``host:port``: ``"*.example.com"``):
    ``per_host`` concurrency, ``delay`` seconds, ``rate`` as ``"REQUESTS/SECONDS"`` (``"10/60"``)."""

    pattern: str
    per_host: int | None = attrs.field(default=None, validator=_optional_positive_int)
    delay: float | None = attrs.field(default=None, converter=attrs.converters.optional(_float))
    rate: str | None = attrs.field(default=None)

    @rate.validator
    def _check_rate(self, _: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None:
            from crawler._adaptive import parse_rate

            parse_rate(value)


@attrs.frozen(kw_only=True)
class AuthSettings:
    """Credentials, sent only to hosts matching ``hosts`` (fnmatch patterns; empty: the start URLs' hosts).

    - ``kind``: ``none``, ``api_key``, ``bearer``, ``basic`` or ``oauth2`` (client credentials).
    - ``secret``: ``env:NAME`` or ``file:PATH``: the API key, token, password or client secret.  A secret in clear
      is refused.
    - ``header`` / ``query_param``: where an API key goes (``X-API-Key`` header by default).
    - ``username``: for ``basic``.  ``token_url``, ``client_id``, ``scope``: for ``oauth2``.
    """

    kind: Literal["none", "api_key", "bearer", "basic", "oauth2"] = "none"
    secret: str | None = None
    header: str = "X-API-Key"
    query_param: str | None = None
    username: str | None = None
    token_url: str | None = None
    client_id: str | None = None
    scope: str | None = None
    hosts: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class OutputSettings:
    """Where results go.

    - ``uris``: sink URIs (``items.jsonl``, ``items.csv``, ``sqlite:///items.db``, ``-``); empty means the
      embedded default ``sqlite:///<spider name>.db``.
    - ``batch_size``: items per sink write.
    - ``stats_file``: path of the JSON stats written at the end (None: not written).
    - ``errors``: sink URIs for error records (requests that gave up); by default the ``errors`` table of the
      SQLite output when there is one (or of any sink that offers one).
    - ``sink_retry_for``: seconds a failing sink write is retried, with backoff, while the crawl waits; after that
      the crawl stops, with the requests whose items were not written kept in the frontier.
    """

    uris: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    batch_size: int = attrs.field(default=100, validator=_positive_int)
    stats_file: str | None = None
    sink_retry_for: float = attrs.field(default=60.0, converter=_float, validator=_non_negative)


@attrs.frozen(kw_only=True)
class LogSettings:
    """Logging and progress: ``format`` is ``auto`` (console on a terminal, JSON otherwise), ``console`` or
    ``json``; ``level`` a logging level name; ``progress`` shows the live display on a terminal;
    ``summary_interval`` seconds between one-line summaries when there is no terminal."""

    format: Literal["auto", "console", "json"] = "auto"
    level: Literal["debug", "info", "warning", "error"] = "info"
    progress: bool = True
    summary_interval: float = attrs.field(default=10.0, converter=_float, validator=v.gt(0.0))


@attrs.frozen(kw_only=True)
class MetricsSettings:
    """Observability, off by default (see the README's "Observability").

    - ``otel``: OpenTelemetry spans (one per request, one per callback) and metrics, sent to the global tracer
      and meter providers (the command line sets them up from ``OTEL_*``); needs ``crawler[otel]``.
    - ``port``: serve Prometheus metrics on ``http://HOST:PORT/metrics`` while the crawl runs (0: any free port;
      None: no endpoint); needs ``crawler[prometheus]``.
    - ``host``: the address the endpoint binds (loopback by default; ``0.0.0.0`` exposes it to the network).
    - ``max_hosts``: hosts reported by the per-host metrics (delay, limit), the slowest first.
    """

    otel: bool = False
    port: int | None = attrs.field(default=None, validator=v.optional([v.instance_of(int), v.ge(0), v.le(65535)]))
    host: str = attrs.field(default="127.0.0.1", validator=v.min_len(1))
    max_hosts: int = attrs.field(default=50, validator=[v.instance_of(int), v.ge(0)])


@attrs.frozen(kw_only=True)
class Settings:
    """All settings, by group: ``crawl``, ``retry``, ``auth``, ``output``, ``log``, ``metrics``, and ``hosts`` (a
    list of per-host overrides, ``[[hosts]]`` tables in TOML)."""

    crawl: CrawlSettings = attrs.field(factory=CrawlSettings)
    retry: RetrySettings = attrs.field(factory=RetrySettings)
    auth: AuthSettings = attrs.field(factory=AuthSettings)
    output: OutputSettings = attrs.field(factory=OutputSettings)
    log: LogSettings = attrs.field(factory=LogSettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    hosts: tuple[HostSettings, ...] = ()


_converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)


def _strict_int(value: Any, _: type) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected a whole number, got {value!r}")
    return value


def _strict_float(value: Any, _: type) -> float:
    return _float(value)


def _strict_bool(value: Any, _: type) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _strict_str(value: Any, _: type) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _one_or_many(value: Any, cls: Any) -> tuple[Any, ...]:
    """A tuple setting given one value (``uris = "items.jsonl"``) means a tuple of that one value."""
    (inner,) = {getattr(cls, "__args__", (Any,))[0]}
    if isinstance(value, str | int | float) or not isinstance(value, list | tuple):
        value = [value]
    return tuple(_converter.structure(v, inner) for v in value)


_converter.register_structure_hook_func(
    lambda cls: (
        getattr(cls, "__origin__", None) is tuple
        and len(getattr(cls, "__args__", ())) == 2
        and cls.__args__[1] is Ellipsis
        and cls.__args__[0] in (str, int)
    ),
    _one_or_many,
)
_converter.register_structure_hook(int, _strict_int)
_converter.register_structure_hook(float, _strict_float)
_converter.register_structure_hook(bool, _strict_bool)
_converter.register_structure_hook(str, _strict_str)
_GROUPS: dict[str, type[Any]] = {
    "crawl": CrawlSettings,
    "retry": RetrySettings,
    "auth": AuthSettings,
    "output": OutputSettings,
    "log": LogSettings,
    "metrics": MetricsSettings,
}
_KEYS: dict[str, str] = {}  # bare key -> "group.key", for keys that name one setting
for _group, _cls in _GROUPS.items():
    for _field in attrs.fields(_cls):
        _KEYS[_field.name] = "" if _field.name in _KEYS else f"{_group}.{_field.name}"


def _describe(exc: BaseException, path: str = "") -> list[str]:
    """Flatten a cattrs validation error into 'key: problem' lines."""
    lines: list[str] = []
    if isinstance(exc, ForbiddenExtraKeysError):
        for key in sorted(exc.extra_fields):
            where = f"{path}.{key}" if path else key
            lines.append(f"unknown key {where!r}" + _suggest(key))
        return lines
    if isinstance(exc, ClassValidationError | IterableValidationError):
        for sub in exc.exceptions:
            note = next((n for n in getattr(sub, "__notes__", []) if isinstance(n, str)), "")
            name = getattr(note, "name", None) or _note_name(note)
            lines.extend(_describe(sub, f"{path}.{name}" if path and name else (name or path)))
        return lines
    message = str(exc)
    if isinstance(exc, KeyError):
        return [f"{path or 'settings'}: required, missing"]
    if " not in literal " in message:  # cattrs' Literal error
        message = f"expected one of {message.split('Literal', 1)[1]}, got {message.split(' not in ', 1)[0]!r}"
    lines.append(f"{path or 'settings'}: {message}")
    return lines


def _note_name(note: str) -> str:
    # cattrs notes read "Structuring class X @ attribute name" or "... @ index 0"
    return note.rsplit(" ", 1)[-1] if " @ attribute " in note else ""


def _suggest(key: str) -> str:
    import difflib

    close = difflib.get_close_matches(key, list(_KEYS) + list(_GROUPS), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _check(layer: str, data: Mapping[str, Any]) -> None:
    try:
        _converter.structure(dict(data), Settings)
    except (ClassValidationError, ForbiddenExtraKeysError) as exc:
        problems = "; ".join(_describe(exc))
        raise SettingsError(f"invalid settings from {layer}: {problems}") from None
    except (TypeError, ValueError) as exc:
        raise SettingsError(f"invalid settings from {layer}: {exc}") from None


def _parse_value(text: str) -> Any:
    """A string from the environment or the command line, read as a TOML value when it is one
    (``32``, ``1.5``, ``true``, ``["a", "b"]``), else kept as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(tree: dict[str, Any], dotted: str, value: Any, layer: str) -> None:
    if dotted == "hosts":  # the top-level list of per-host overrides
        tree["hosts"] = value
        return
    if "." not in dotted:
        full = _KEYS.get(dotted)
        if not full:
            reason = "names settings in several groups" if full == "" else "is not a setting"
            raise SettingsError(f"invalid settings from {layer}: {dotted!r} {reason}{_suggest(dotted)}")
        dotted = full
    group, _, key = dotted.partition(".")
    tree.setdefault(group, {})[key] = value


def _merge(base: dict[str, Any], layer: Mapping[str, Any]) -> None:
    """Merge ``layer`` into ``base`` in place, recursively; ``layer`` is copied, never shared or changed."""
    for key, value in layer.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = copy.deepcopy(dict(value) if isinstance(value, Mapping) else value)


def read_config_file(directory: Path) -> tuple[str, dict[str, Any]] | None:
    """Find the config file in ``directory``: ``crawler.toml``, else ``[tool.crawler]`` of ``pyproject.toml``.

    Returns (its name, its table) or None.  Raises :class:`crawler.SettingsError` for invalid TOML.
    """
    for name, table in (("crawler.toml", None), ("pyproject.toml", ("tool", "crawler"))):
        path = directory / name
        if not path.is_file():
            continue
        try:
            data: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SettingsError(f"invalid settings from {path}: not valid TOML: {exc}") from None
        if table is not None:
            data = data.get(table[0], {}).get(table[1])
            if data is None:
                continue
        return str(path), data
    return None


def load_settings(
    *,
    config_dir: Path | Literal[False] | None = None,
    spider: tuple[str, Mapping[str, Any]] | None = None,
    environ: Mapping[str, str] | None = None,
    cli: Mapping[str, Any] | None = None,
    cli_pairs: list[str] | None = None,
    extra: Sequence[tuple[str, Mapping[str, Any]]] = (),
) -> Settings:
    """Build the settings from every layer (see the module docstring).

    ``config_dir``: where to look for the config file (the current directory by default; False: read none);
    ``spider``: (label, custom_settings); ``environ``: the environment (``os.environ`` by default); ``cli``: dotted
    keys from the command line's options (``{"crawl.concurrency": 8}``); ``cli_pairs``: ``-s KEY=VALUE`` strings;
    ``extra``: layers above the command line, each (label, dotted keys), e.g. from :func:`crawler.testing.run_spider`.

    Raises :class:`crawler.SettingsError` naming the key, the layer and what was expected.
    """
    layers: list[tuple[str, dict[str, Any]]] = []
    found = None if config_dir is False else read_config_file(config_dir or Path.cwd())
    if found:
        layers.append(found)
    if spider:
        layers.append((f"spider {spider[0]}", dict(spider[1])))
    env: dict[str, Any] = {}
    for name, raw in (os.environ if environ is None else environ).items():
        if not name.startswith("CRAWLER_"):
            continue
        rest = name[len("CRAWLER_") :].lower()
        group, _, key = rest.partition("_")
        if group in _GROUPS:
            _set(env, f"{group}.{key}", _parse_value(raw), f"environment variable {name}")
    if env:
        layers.append(("the environment (CRAWLER_*)", env))
    command: dict[str, Any] = {}
    for pair in cli_pairs or ():
        key, sep, raw = pair.partition("=")
        if not sep:
            raise SettingsError(f"invalid settings from the command line: -s {pair!r} is not KEY=VALUE")
        _set(command, key.strip(), _parse_value(raw.strip()), "the command line")
    for key, value in (cli or {}).items():
        if value is not None:
            _set(command, key, value, "the command line")
    if command:
        layers.append(("the command line", command))
    for label, values in extra:
        layer: dict[str, Any] = {}
        for key, value in values.items():
            _set(layer, key, value, label)
        layers.append((label, layer))
    merged: dict[str, Any] = {}
    for label, data in layers:
        _check(label, data)
        _merge(merged, data)
    _check("the layers together", merged)  # settings that conflict only across layers (record, replay)
    return _converter.structure(merged, Settings)
