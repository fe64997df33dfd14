"""``rlmusic app [--host ADDR] [--port P] [--public-url URL] [--open]``: check the database
schema, then serve the Streamlit app.

Streamlit listens on ``--host`` (default 127.0.0.1: this machine only), headless, without
usage statistics, with its XSRF protection and CORS checks on. The schema is checked first
so a database that needs ``rlmusic db upgrade`` fails here with that message, not in every
page. The address raters reach the app at (``--public-url``, e.g. the https address of a TLS
proxy in front of it, docs/deploy.md; else ``http://HOST:PORT``) is stored in the database, and
``rlmusic raters invite`` builds its links with it.

By default the app lets a browser in only through an invite link (``rlmusic raters
invite``). ``--open`` is the local demo mode: anyone types a name and rates under it, and
every page says so (``RLMUSIC_APP_OPEN=1`` in the app's environment).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

import app

MAIN = Path(app.__file__).resolve().parent / "main.py"
DEFAULT_PORT = 8501


DEFAULT_HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every "
                             "interface; behind a TLS proxy on this machine keep the default, docs/deploy.md)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port (default {DEFAULT_PORT})")
    parser.add_argument("--public-url", default=None,
                        help="the address raters reach the app at, for invite links (e.g. https://ratings.example.org, "
                             "a TLS proxy's); stored in the database for `rlmusic raters invite` "
                             "(default http://HOST:PORT)")
    parser.add_argument("--open", action="store_true",
                        help="local demo: anyone rates under any name typed, no invite (every page says so); "
                             "loopback --host only")


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (localhost, 127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str) -> str:
    """``host`` as given, or ``ValueError`` naming it when it is not an address or host name."""
    text = (host or "").strip()
    if not text or any(c in text for c in "/?#@ ") or text.startswith("-"):
        raise ValueError(f"--host {host!r} is not an address or host name")
    return text


def check_port(port: int) -> int:
    """``port``, or ``ValueError`` naming it when it is not 1..65535."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return port


def default_public_url(host: str, port: int) -> str:
    """``http://HOST:PORT``; for a wildcard host (0.0.0.0, ::) this machine's name instead."""
    if host in ("0.0.0.0", "::", "[::]"):
        host = socket.getfqdn() or socket.gethostname()
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{port}"


def streamlit_command(port: int, host: str = DEFAULT_HOST) -> list[str]:
    """The command line that serves the app on ``host:port``."""
    check_port(port)
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN),
        "--server.address", check_host(host),
        "--server.port", str(port),
        "--server.enableXsrfProtection", "true",  # the defaults, said out loud: raters come from other machines
        "--server.enableCORS", "true",
        "--browser.gatherUsageStats", "false",
        "--server.headless", "true",
        "--client.toolbarMode", "minimal",  # raters need no Deploy/settings menu
    ]


def main(args: argparse.Namespace) -> int:
    import db
    from app.common import OPEN_ENV
    from rlmusic.audio.synth import AudioError, synth_route

    host = check_host(args.host)
    if args.open and not is_loopback(host):
        raise ValueError(f"--open lets anyone rate under any name, so it serves this machine only: "
                         f"drop --open or use --host 127.0.0.1 (got --host {host})")
    command = streamlit_command(args.port, host)
    public = db.check_public_url(args.public_url or default_public_url(host, args.port))
    url = db.database_url()
    engine = db.get_engine(url)
    db.check_schema(engine)  # a schema behind: one line from rlmusic.cli.main
    try:
        route = synth_route()
    except AudioError as exc:
        print(f"rlmusic app: warning: {exc}", file=sys.stderr)
    else:
        print(f"rlmusic app: audio by {route}")
    print(f"rlmusic app: database {db.redacted(url)}")
    if args.open:
        os.environ[OPEN_ENV] = "1"
        print("rlmusic app: OPEN demo mode: anyone may rate under any name (no invites); not for a study")
    else:
        os.environ.pop(OPEN_ENV, None)
        print("rlmusic app: invited raters only (rlmusic raters invite NAME [--researcher] prints a link)")
    if not args.open:
        db.set_public_url(engine, public)  # raters invite builds its links with it
        print(f"rlmusic app: raters reach it at {public} (invite links use it)")
    where = "this machine only" if is_loopback(host) else "other machines too"
    print(f"rlmusic app: serving on {default_public_url(host, args.port)} ({where})", flush=True)
    # Replace this process so signals (Ctrl-C, a test's terminate) reach Streamlit itself.
    os.execv(command[0], command)
    return 0  # pragma: no cover - execv does not return
