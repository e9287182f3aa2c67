"""deploy/default.conf in Debian's nginx, on 127.0.0.1, in front of the real app (uvicorn).

The container's configuration file is used as is; only its three deployment values (listen port, page
root, API upstream) are substituted. nginx runs in the foreground from a temporary prefix. Skipped when
/usr/sbin/nginx is absent (``apt-get install nginx``).
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import re
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.browser import CHROMIUM, CHROMIUM_ARGS, make_artifacts, running_app
from tests.fixtures.servers import REPO, free_port, wait_http
from tests.fixtures.synthetic import song_id_of

NGINX = Path(os.environ.get("MUGLE_NGINX", "/usr/sbin/nginx"))
CONF = REPO / "deploy" / "default.conf"
MIME_TYPES = Path("/etc/nginx/mime.types")


def render_conf(text: str, port: int, root: Path, upstream: str) -> str:
    """Substitute the deployment values of deploy/default.conf; fail loudly if one is not found."""
    subs = [
        (r"listen 80;", f"listen 127.0.0.1:{port};"),
        (r"root /usr/share/nginx/html;", f"root {root};"),
        (r"server api:8000;", f"server {upstream};"),
    ]
    for old, new in subs:
        text, n = re.subn(re.escape(old), new, text)
        assert n == 1, f"deploy/default.conf: expected exactly one `{old}`, found {n}"
    return text


def main_conf(prefix: Path, site: Path) -> str:
    user = "user root;\n" if os.geteuid() == 0 else ""  # workers must read the tmp prefix (mode 700)
    return f"""{user}worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 64; }}
http {{
    include {MIME_TYPES};
    default_type application/octet-stream;
    # as in Debian's /etc/nginx/nginx.conf, which the web container's stand-in image uses
    gzip on;
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include {site};
}}
"""


@contextlib.contextmanager
def running_nginx(prefix: Path, upstream: str) -> Iterator[str]:
    """Run nginx in the foreground with deploy/default.conf; yield its base URL."""
    port = free_port()
    prefix.mkdir(parents=True, exist_ok=True)
    site = prefix / "default.conf"
    site.write_text(render_conf(CONF.read_text(encoding="utf-8"), port, REPO / "app" / "static", upstream))
    conf = prefix / "nginx.conf"
    conf.write_text(main_conf(prefix, site))
    check = subprocess.run([str(NGINX), "-t", "-p", str(prefix), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, f"nginx -t rejected deploy/default.conf:\n{check.stderr}"
    proc = subprocess.Popen(
        [str(NGINX), "-p", str(prefix), "-c", str(conf), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_http(base + "/", proc, timeout=20)
        except (RuntimeError, TimeoutError) as exc:
            log = (prefix / "error.log").read_text(errors="replace") if (prefix / "error.log").exists() else ""
            raise RuntimeError(f"{exc}\n--- nginx error.log ---\n{log[-3000:]}") from exc
        yield base
    finally:
        proc.terminate()  # SIGTERM: fast shutdown
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of one request; HTTP errors are answers too."""
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=15) as res:
            return res.status, dict(res.headers), res.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def fetch_json(url: str, payload: Any = None) -> tuple[int, Any]:
    data = None if payload is None else json.dumps(payload).encode()
    status, _, body = fetch(url, data, {"Content-Type": "application/json"} if data else None)
    return status, json.loads(body)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """(nginx base URL, app base URL)."""
    if not NGINX.is_file():
        pytest.skip(f"{NGINX} not found: install Debian's nginx (apt-get install nginx)")
    if not MIME_TYPES.is_file():
        pytest.skip(f"{MIME_TYPES} not found (part of Debian's nginx-common)")
    root = tmp_path_factory.mktemp("nginx-stack")
    make_artifacts(root / "artifacts")
    with running_app(root / "artifacts", root / "app.log") as app_base:
        upstream = app_base.removeprefix("http://")
        with running_nginx(root / "nginx", upstream) as web:
            yield web, app_base


def test_page_and_static_files(stack: tuple[str, str]) -> None:
    web, _ = stack
    status, headers, body = fetch(web + "/")
    assert status == 200
    assert headers["Content-Type"].startswith("text/html")
    assert b'<script src="app.js"' in body
    assert headers.get("X-Content-Type-Options") == "nosniff"
    assert "default-src 'self'" in headers.get("Content-Security-Policy", "")
    status, headers, body = fetch(web + "/app.js", headers={"Accept-Encoding": "gzip"})
    assert status == 200 and "javascript" in headers["Content-Type"]
    assert headers.get("Content-Encoding") == "gzip"
    assert b"findApi" in gzip.decompress(body)
    assert fetch(web + "/no-such-file.txt")[0] == 404


def test_api_through_proxy(stack: tuple[str, str]) -> None:
    web, app_base = stack
    status, health = fetch_json(web + "/api/health")
    assert status == 200 and health["status"] == "ok"
    assert health == fetch_json(app_base + "/health")[1], "nginx must hand the API's answer through unchanged"

    status, found = fetch_json(web + "/api/search?" + urllib.parse.urlencode({"q": "벚꽃", "limit": 5}))
    assert status == 200
    assert found["results"][0]["title"] == "벚꽃 엔딩"

    sid = found["results"][0]["song_id"]
    assert sid == song_id_of(1)
    status, rec = fetch_json(f"{web}/api/recommend/{sid}?method=each_top3&k=6")
    assert status == 200 and rec["song"]["song_id"] == sid
    assert len(rec["recommendations"]) == 6
    assert sid not in {r["song_id"] for r in rec["recommendations"]}

    status, rec = fetch_json(web + "/api/recommend", {"song_ids": [sid, song_id_of(4)], "k": 5})
    assert status == 200 and len(rec["recommendations"]) == 5

    # errors of the API arrive as the API wrote them
    status, err = fetch_json(web + "/api/songs/999999")
    assert status == 404 and "999999" in err["detail"]
    status, err = fetch_json(web + "/api/search?q=")
    assert status == 422

    status, mapped = fetch_json(f"{web}/api/songs/{sid}/map?model=cel&k=5")
    assert status == 200 and len(mapped["points"]) == 6


def test_api_down_gives_json_error(tmp_path: Path) -> None:
    if not NGINX.is_file():
        pytest.skip(f"{NGINX} not found: install Debian's nginx (apt-get install nginx)")
    dead = f"127.0.0.1:{free_port()}"  # nothing listens there
    with running_nginx(tmp_path / "nginx", dead) as web:
        status, headers, body = fetch(web + "/api/health")
    assert status == 503
    assert "not reachable" in json.loads(body)["detail"]
    assert headers.get("X-Content-Type-Options") == "nosniff"


@pytest.mark.browser
def test_page_finds_api_behind_nginx(stack: tuple[str, str]) -> None:
    """The page served by nginx must talk to /api/..., not to the paths the app serves directly."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} not found: install Debian's chromium")
    sync_api = pytest.importorskip("playwright.sync_api")
    web, _ = stack
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            page = browser.new_page()
            page.set_default_timeout(15_000)
            requested: list[str] = []
            page.on("request", lambda r: requested.append(r.url))
            page.goto(f"{web}/?song={song_id_of(1)}")
            page.wait_for_selector("#results .card")
            assert page.locator("#song-title").inner_text() == "벚꽃 엔딩"
            page.wait_for_selector("#map-figure:not([hidden])")
        finally:
            browser.close()
    api_calls = [u for u in requested if "/recommend/" in u]
    assert api_calls and all(u.startswith(web + "/api/recommend/") for u in api_calls), api_calls
