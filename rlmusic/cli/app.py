"""``rlmusic app [--port P] [--open]``: check the database schema, then serve the Streamlit app.

Streamlit listens on 127.0.0.1 only, headless, without usage statistics. The schema is
checked first so a database that needs ``rlmusic db upgrade`` fails here with that
message, not in every page.

By default the app lets a browser in only through an invite link (``rlmusic raters
invite``). ``--open`` is the local demo mode: anyone types a name and rates under it, and
every page says so (``RLMUSIC_APP_OPEN=1`` in the app's environment).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import app

MAIN = Path(app.__file__).resolve().parent / "main.py"
DEFAULT_PORT = 8501


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"TCP port on 127.0.0.1 (default {DEFAULT_PORT})")
    parser.add_argument("--open", action="store_true",
                        help="local demo: anyone rates under any name typed, no invite (every page says so)")


def streamlit_command(port: int) -> list[str]:
    """The command line that serves the app on ``127.0.0.1:port``."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    return [
        sys.executable, "-m", "streamlit", "run", str(MAIN),
        "--server.address", "127.0.0.1",
        "--server.port", str(port),
        "--browser.gatherUsageStats", "false",
        "--server.headless", "true",
        "--client.toolbarMode", "minimal",  # raters need no Deploy/settings menu
    ]


def main(args: argparse.Namespace) -> int:
    import db
    from app.common import OPEN_ENV
    from rlmusic.audio.synth import AudioError, synth_route

    command = streamlit_command(args.port)
    url = db.database_url()
    db.check_schema(db.get_engine(url))  # a schema behind: one line from rlmusic.cli.main
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
    print(f"rlmusic app: serving on http://127.0.0.1:{args.port}", flush=True)
    # Replace this process so signals (Ctrl-C, a test's terminate) reach Streamlit itself.
    os.execv(command[0], command)
    return 0  # pragma: no cover - execv does not return
