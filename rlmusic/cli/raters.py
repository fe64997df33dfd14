"""``rlmusic raters invite|revoke|list``: who may rate in the listening app.

``raters invite NAME [--researcher]`` creates the rater if needed and prints, as its last
line, the link that lets a browser in: ``http://HOST:PORT/?invite=TOKEN``. The token is
printed once and never stored: the database keeps its SHA-256 only (``db/invites.py``).
Inviting again makes a new link and the old one stops working; ``--researcher`` (or its
absence) sets the role. ``raters revoke NAME`` shuts the rater out; ``raters list`` shows
every rater with their role, invite and judgements.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlencode

from rlmusic.cli.app import DEFAULT_PORT
from rlmusic.cli.db import add_url

DEFAULT_HOST = "127.0.0.1"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    invite = sub.add_parser("invite", help="invite a rater (created if new); the last line is their link")
    invite.add_argument("name", help="the rater's name (1..64 visible characters)")
    invite.add_argument("--researcher", action="store_true",
                        help="a researcher: may also open the Dashboard, Jobs and study pages")
    invite.add_argument("--host", default=DEFAULT_HOST,
                        help=f"host the app is reached at, for the link (default {DEFAULT_HOST})")
    invite.add_argument("--port", type=int, default=DEFAULT_PORT,
                        help=f"port the app serves on, for the link (default {DEFAULT_PORT})")
    add_url(invite)
    revoke = sub.add_parser("revoke", help="shut a rater out of the app (their judgements stay)")
    revoke.add_argument("name", help="the rater's name")
    add_url(revoke)
    listing = sub.add_parser("list", help="every rater: role, invite, judgements")
    add_url(listing)


def invite_link(host: str, port: int, token: str) -> str:
    """``http://HOST:PORT/?invite=TOKEN``."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port must be 1..65535, got {port}")
    if not host or any(c in host for c in "/?#@ "):
        raise ValueError(f"host {host!r} is not a host name or address")
    return f"http://{host}:{port}/?{urlencode({'invite': token})}"


def main(args: argparse.Namespace) -> int:
    import db

    engine = db.get_engine(args.url or db.database_url())
    db.check_schema(engine)
    if args.action == "invite":
        invite_link(args.host, args.port, "check")  # a bad host or port fails before anything is stored
        token = db.invite_rater(engine, args.name, researcher=args.researcher)
        role = "researcher" if args.researcher else "rater"
        print(f"raters: invited {args.name.strip()!r} as a {role}; any earlier link of theirs no longer works. "
              "Their link (shown once, not stored):")
        print(invite_link(args.host, args.port, token))
        return 0
    if args.action == "revoke":
        db.revoke_rater(engine, args.name)
        print(f"raters: revoked {args.name.strip()!r}: the app refuses them from their next action "
              "(their judgements stay; `rlmusic raters invite` lets them in again)")
        return 0
    raters = db.list_raters(engine)
    if not raters:
        print("raters: none yet (rlmusic raters invite NAME)")
        return 0
    width = max(4, *(len(r["name"]) for r in raters))
    print(f"{'name'.ljust(width)}  role        invite     ratings  comparisons")
    for r in raters:
        invite = "revoked" if r["revoked_at"] else ("active" if r["invited_at"] else "none")
        role = "researcher" if r["researcher"] else "rater"
        print(f"{r['name'].ljust(width)}  {role:<10}  {invite:<9}  {r['ratings']:>7}  {r['comparisons']:>11}")
    return 0
