"""The app served to raters elsewhere, the field's way (docs/deploy.md): `rlmusic app` on
127.0.0.1 behind nginx terminating TLS, configured by the site file `rlmusic deploy nginx`
writes (the shipped template), with a self-signed certificate on 127.0.0.1. Through the
proxy, in Debian's Chromium (certificate errors ignored in this test only): an invite link
lets a rater in and their rating is stored under their name; a visit without an invite gets
the page that lets in to nothing; plain http is redirected to https; no log holds a token,
and the app's log names the rater; the app's cookies are Secure.

nginx comes from the repo's own setup (scripts/setup.sh, Debian's package), as Chromium does.
"""

from __future__ import annotations

import http.client
import re
import shutil
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from processes import stop, wait_served
from test_app_browser import (  # noqa: F401 - the fixtures: the app as a subprocess, Chromium
    ACTION_MS,
    browser,
    free_port,
    rate,
    refused,
    server,
    wait_idle,
)

import db
from rlmusic.cli.main import main as cli

pytestmark = pytest.mark.browser

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
STARTUP_S = 30

MAIN_CONF = """\
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/nginx-main.log warn;
events {{ worker_connections 256; }}
http {{
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    include {site};
}}
"""


@dataclass
class Proxy:
    https: str  # https://127.0.0.1:PORT, the public URL
    http_port: int
    https_port: int
    access_log: Path
    error_log: Path


def self_signed(root: Path) -> tuple[Path, Path]:
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return cert, key


@pytest.fixture(scope="module")
def proxy(server, tmp_path_factory):  # noqa: F811 - the app fixture imported above
    assert Path(NGINX).is_file(), f"{NGINX} missing: run scripts/setup.sh (Debian nginx)"
    root = tmp_path_factory.mktemp("proxy")
    (root / "tmp").mkdir()
    root.chmod(0o777)  # nginx's workers (nobody, when the master is root) write its temp files
    (root / "tmp").chmod(0o777)
    cert, key = self_signed(root)
    https_port, http_port = free_port(), free_port()
    app_port = int(server.base.rsplit(":", 1)[1])
    public = f"https://127.0.0.1:{https_port}"
    site = root / "rlmusic.conf"
    assert cli(["deploy", "nginx", "--public-url", public, "--cert", str(cert), "--key", str(key),
                "--app-port", str(app_port), "--http-port", str(http_port), "--listen", "127.0.0.1",
                "--access-log", str(root / "access.log"), "--error-log", str(root / "error.log"),
                "--out", str(site)]) == 0
    conf = root / "nginx.conf"
    conf.write_text(MAIN_CONF.format(root=root, site=site))
    checked = subprocess.run([NGINX, "-t", "-p", str(root), "-c", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    out = root / "nginx.out"
    with open(out, "wb") as sink:
        proc = subprocess.Popen([NGINX, "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                                stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_served(proc, lambda: get(https_port, "/_stcore/health", tls=True).status == 200, STARTUP_S,
                    "nginx", lambda: "".join(f.read_text() for f in (out, root / "nginx-main.log") if f.exists()))
        yield Proxy(public, http_port, https_port, root / "access.log", root / "error.log")
    finally:
        stop(proc, 10)


def get(port: int, path: str, tls: bool) -> http.client.HTTPResponse:
    """One GET, redirects not followed (the self-signed certificate not checked)."""
    if tls:
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=5, context=context)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_plain_http_is_redirected_to_https(proxy):
    response = get(proxy.http_port, "/?invite=not-a-real-token-at-all-xxxxxxxx", tls=False)
    assert response.status == 301
    assert response.getheader("Location") == f"{proxy.https}/?invite=not-a-real-token-at-all-xxxxxxxx"
    served = get(proxy.https_port, "/", tls=True)
    assert served.status == 200 and "max-age=" in (served.getheader("Strict-Transport-Security") or "")
    assert served.getheader("Referrer-Policy") == "no-referrer"  # the token in the address goes nowhere


def test_an_invite_link_through_the_proxy_rates_as_its_rater(browser, server, proxy):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900}, ignore_https_errors=True)
    page = context.new_page()
    page.set_default_timeout(ACTION_MS)
    page.goto(f"{proxy.https}/")  # no invite: let in to nothing
    refused(page, "This listening app is by invitation.")
    page.goto(f"{proxy.https}/?invite={server.invites['carol']}")
    page.get_by_role("button", name="Submit rating").wait_for()  # Streamlit's websocket runs through the proxy
    wait_idle(page)
    page.get_by_text("Signed in as carol").wait_for()
    clip_id = rate(page, 5)
    rows = [(r["rater"], r["clip_id"], r["stars"]) for r in db.star_rows(server.engine) if r["rater"] == "carol"]
    assert (("carol", clip_id, 5)) in rows
    cookies = context.cookies()
    assert cookies and all(c["secure"] for c in cookies), cookies  # over https only
    context.close()
    token = server.invites["carol"]
    access = proxy.access_log.read_text()
    assert re.search(r'"GET / HTTP/1\.1" 200', access)  # the visits are logged ...
    assert token not in access and "invite=" not in access  # ... without their query
    assert token not in (proxy.error_log.read_text() if proxy.error_log.exists() else "")
    app_log = server.log.read_text()
    assert "invite accepted: rater 'carol' came in" in app_log and token not in app_log
