"""``rlmusic raters invite|revoke|list``: who may rate in the listening app.

``raters invite NAME [--researcher]`` creates the rater if needed and prints, as its last
line, the link that lets a browser in: ``PUBLIC_URL/?invite=TOKEN``. The token is printed once
and never stored: the database keeps its SHA-256 only (``db/invites.py``). The link's address
is ``--public-url``, else ``http://--host:--port`` when either is given, else the one ``rlmusic
app`` stored when it started (``--public-url``; ``db/settings.py``), else
``http://127.0.0.1:8501``. Inviting again makes a new link and the old one stops working;
``--researcher`` (or its absence) sets the role.

``raters invite --batch N --prefix P --csv F`` invites N new raters at once, named
``P-001``, ``P-002``, ... (numbered on from the highest ``P-NNN`` already invited, so a second
batch adds raters rather than replacing the first's links), and writes their names and links to
the CSV ``F`` (readable by its owner only: the links are the raters' keys), to hand to a
recruiting platform or send by e-mail. All N or none: a refused batch stores nothing and writes
no file, and an existing ``F`` is never overwritten.

``raters revoke NAME`` shuts the rater out; ``raters list`` shows every rater with their role,
invite and judgements.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import re
import secrets
import tempfile
from pathlib import Path
from urllib.parse import urlencode

from rlmusic.cli.app import DEFAULT_HOST, DEFAULT_PORT, check_host, check_port, default_public_url
from rlmusic.cli.db import add_url

BATCH_MAX = 10_000  # raters in one --batch
PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    invite = sub.add_parser("invite", help="invite a rater (created if new), or --batch N; the last line is the link")
    invite.add_argument("name", nargs="?", help="the rater's name (1..64 visible characters); not with --batch")
    invite.add_argument("--researcher", action="store_true",
                        help="a researcher: may also open the Dashboard, Jobs and study pages")
    invite.add_argument("--public-url", default=None,
                        help="the address raters reach the app at, for the link (default: the one `rlmusic app` "
                             "stored when it started)")
    invite.add_argument("--host", default=None,
                        help=f"build the link as http://HOST:PORT instead (default host {DEFAULT_HOST})")
    invite.add_argument("--port", type=int, default=None,
                        help=f"port for an http://HOST:PORT link (default {DEFAULT_PORT})")
    invite.add_argument("--batch", type=int, default=None, metavar="N",
                        help="invite N new raters named PREFIX-001, PREFIX-002, ... (with --prefix and --csv)")
    invite.add_argument("--prefix", default=None, help="the batch's name prefix (letters, digits, _ . -)")
    invite.add_argument("--csv", default=None, metavar="FILE",
                        help="write the batch's names and links here (a new file, readable by its owner only)")
    add_url(invite)
    revoke = sub.add_parser("revoke", help="shut a rater out of the app (their judgements stay)")
    revoke.add_argument("name", help="the rater's name")
    add_url(revoke)
    listing = sub.add_parser("list", help="every rater: role, invite, judgements")
    add_url(listing)


def public_link(public_url: str, token: str) -> str:
    """``PUBLIC_URL/?invite=TOKEN`` (``public_url`` as ``db.check_public_url`` returns it)."""
    return f"{public_url}/?{urlencode({'invite': token})}"


def link_base(args: argparse.Namespace, engine) -> str:
    """The address the links are built with (see the module's doc), checked."""
    import db

    if args.public_url is not None:
        if args.host is not None or args.port is not None:
            raise ValueError("give --public-url or --host/--port, not both")
        return db.check_public_url(args.public_url)
    if args.host is not None or args.port is not None:
        port = check_port(DEFAULT_PORT if args.port is None else args.port)
        return db.check_public_url(default_public_url(check_host(args.host or DEFAULT_HOST), port))
    return db.public_url(engine) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"


def batch_names(prefix: str, n: int, existing: list[str]) -> list[str]:
    """``n`` new names ``PREFIX-NNN`` numbered on from the highest such name in ``existing``
    (three digits at least)."""
    if not PREFIX.fullmatch(prefix or ""):
        raise ValueError(f"--prefix {prefix!r} must be 1..41 letters, digits, _ . or - (starting with a letter "
                         "or digit)")
    if not 1 <= n <= BATCH_MAX:
        raise ValueError(f"--batch must be 1..{BATCH_MAX:,}, got {n}")
    pattern = re.compile(re.escape(prefix) + r"-(\d+)")
    taken = [int(m.group(1)) for name in existing if (m := pattern.fullmatch(name))]
    start = max(taken, default=0) + 1
    width = max(3, len(str(start + n - 1)))
    return [f"{prefix}-{i:0{width}d}" for i in range(start, start + n)]


def write_private_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    """Write ``name,link`` rows to a temporary file beside ``path`` (mode 0600) and return it;
    the caller renames it into place once the invites are stored."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["name", "link"])
    writer.writerows(rows)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text.getvalue())
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp)


def invite_batch(args: argparse.Namespace, engine) -> int:
    import db

    if args.name is not None:
        raise ValueError(f"give a NAME or --batch N, not both (got {args.name!r} and --batch {args.batch})")
    if args.prefix is None or args.csv is None:
        raise ValueError("--batch N needs --prefix P (the names P-001, P-002, ...) and --csv FILE (their links)")
    path = Path(args.csv)
    if path.exists():
        raise ValueError(f"--csv {str(path)!r} exists: it may hold working links; choose a new file")
    if not path.parent.is_dir():
        raise ValueError(f"--csv {str(path)!r}: no folder {str(path.parent)!r}")
    base = link_base(args, engine)
    names = batch_names(args.prefix, args.batch, [r["name"] for r in db.list_raters(engine)])
    # The tokens exist only in this process until the file holding them is in place: write it
    # first (beside its final name), store the invites, then rename it; either failing undoes both.
    staged = {name: secrets.token_urlsafe(db.invites.TOKEN_BYTES) for name in names}
    tmp = write_private_csv(path, [(n, public_link(base, t)) for n, t in staged.items()])
    try:
        db.invite_raters(engine, names, researcher=args.researcher, tokens=staged)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    role = "researchers" if args.researcher else "raters"
    print(f"raters: invited {len(names)} {role}, {names[0]} .. {names[-1]}; their links (shown nowhere else, not "
          f"stored) are in {path} (readable by its owner only)")
    return 0


def main(args: argparse.Namespace) -> int:
    import db

    engine = db.get_engine(args.url or db.database_url())
    db.check_schema(engine)
    if args.action == "invite":
        if args.batch is not None:
            return invite_batch(args, engine)
        if args.name is None:
            raise ValueError("give the rater's NAME (or --batch N --prefix P --csv FILE)")
        if args.prefix is not None or args.csv is not None:
            raise ValueError("--prefix and --csv go with --batch N")
        base = link_base(args, engine)  # a bad address fails before anything is stored
        token = db.invite_rater(engine, args.name, researcher=args.researcher)
        role = "researcher" if args.researcher else "rater"
        print(f"raters: invited {args.name.strip()!r} as a {role}; any earlier link of theirs no longer works. "
              "Their link (shown once, not stored):")
        print(public_link(base, token))
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
