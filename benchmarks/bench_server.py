"""The site and server side of ``crawl_bench.py``: write a generated site to disk and serve it from a pinned process.

nginx (one worker, keep-alive, no access log) when it is installed, else ``crawler serve`` (a Python server, which
then is likely the bottleneck of the benchmark).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from functools import partial
from pathlib import Path

from crawler.testing import Site

__all__ = ["crawler_command", "free_port", "pinned", "server_requests", "start_server", "write_site"]

#: The hrefs generate_site() always plants in some pages for a crawler to skip; see write_site(strip_malformed).
MALFORMED_HREF = b'href="http://[bad"'
NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    sendfile on;
    tcp_nopush on;
    types {{ text/html html; }}
    default_type application/octet-stream;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root};
        location = /_status {{ stub_status; }}
    }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_site(site: Site, root: Path, *, strip_malformed: bool = False) -> int:
    """Write the first host's pages under ``root``; return how many malformed hrefs were replaced by ``"#"``
    (only with ``strip_malformed``, a workaround for crawlers that fail on them)."""
    stripped = 0
    for path, page in site.routes(site.hosts[0]).items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        body = page.body
        if strip_malformed and MALFORMED_HREF in body:
            stripped += body.count(MALFORMED_HREF)
            body = body.replace(MALFORMED_HREF, b'href="#"')
        target.write_bytes(body)
    return stripped


def pinned(core: int | None) -> partial[None] | None:
    """A preexec_fn that pins the child process to ``core`` (None: no pinning)."""
    return None if core is None else partial(os.sched_setaffinity, 0, {core})


def crawler_command() -> list[str]:
    """The ``crawler`` script of this interpreter's environment."""
    script = Path(sys.executable).parent / "crawler"
    return [str(script)] if script.exists() else [sys.executable, "-m", "crawler"]


def find_nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None)


def start_server(tmp: Path, root: Path, port: int, core: int | None) -> tuple[subprocess.Popen[bytes], str]:
    """Serve ``root`` on 127.0.0.1:``port`` pinned to ``core``; return the process and a description of it."""
    nginx = find_nginx()
    log = tmp / "server.log"
    if nginx:
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, port=port, root=root))
        cmd = [nginx, "-c", str(conf), "-p", str(tmp), "-e", str(tmp / "nginx-error.log")]
        kind = "nginx"
    else:
        cmd = [*crawler_command(), "serve", str(root), "--port", str(port)]
        kind = "crawler serve (FALLBACK: nginx not found; a Python server, likely the bottleneck)"
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, preexec_fn=pinned(core))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}: {log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return proc, kind
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start listening within 15 s")


def server_requests(port: int) -> int | None:
    """nginx's total count of requests served (stub_status), or None when the server has no such page."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_status", timeout=5) as reply:
            return int(reply.read().decode().splitlines()[2].split()[2])
    except (OSError, ValueError, IndexError):
        return None
