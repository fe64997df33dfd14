"""Invites: who may rate in the listening app, and who is a researcher.

``invite_rater`` makes a random token (``secrets.token_urlsafe``, 192 bits) and stores only
its SHA-256: the token is returned once, for the link ``http://HOST:PORT/?invite=TOKEN``,
and is neither stored nor logged. A token is found again by hashing what the browser
brings (``rater_by_invite``); a plain hash suffices because the token is random, not a
password a person chose. A new invite replaces the rater's old one (the old link stops
working); ``revoke_rater`` shuts the rater out until they are invited again. Judgements a
rater gave stay stored either way.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.orm import Session

from db.bulk import ensure_raters
from db.checks import check_rater_name, rater_key
from db.engine import retrying, retrying_connection, session_scope
from db.models import Rater, utcnow

TOKEN_BYTES = 24  # 192 random bits: 32 URL-safe characters


def token_sha256(token: str) -> str:
    """The SHA-256 (hex) of an invite token: what the database stores of it."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def invite_rater(engine: Engine, name: str, *, researcher: bool = False) -> str:
    """Invite ``name`` (created if new): a fresh token, returned once; its hash replaces
    any earlier invite, lifts a revocation and sets the role (``researcher`` or not) to
    what this invite says."""
    return invite_raters(engine, [name], researcher=researcher)[check_rater_name(name)]


def invite_raters(engine: Engine, names: list[str], *, researcher: bool = False,
                  tokens: dict[str, str] | None = None) -> dict[str, str]:
    """Invite every one of ``names`` as ``invite_rater`` does, in one transaction (all of them
    or, on any error, none); returns name -> token, in the order given. ``tokens``: the tokens
    to use, by name as given (made by the caller with ``secrets.token_urlsafe(TOKEN_BYTES)``,
    e.g. to write them somewhere safe before they are stored); default fresh ones.
    ``ValueError`` for a bad or repeated name, before anything is stored."""
    checked = [check_rater_name(n) for n in names]
    keys = [rater_key(n) for n in checked]
    if len(set(keys)) != len(keys):
        raise ValueError(f"a name is given twice: {sorted({k for k in keys if keys.count(k) > 1})}")
    given = tokens or {}
    tokens = {check_rater_name(n): given.get(n) or secrets.token_urlsafe(TOKEN_BYTES) for n in names}
    if any(not isinstance(t, str) or len(t) < 32 for t in tokens.values()):
        raise ValueError("an invite token must be a string of >= 32 characters (secrets.token_urlsafe(24))")

    def work(connection) -> None:
        ids = ensure_raters(connection, checked)
        now = utcnow()
        for name in checked:
            connection.execute(
                update(Rater.__table__)
                .where(Rater.__table__.c.id == ids[name])
                .values(invite_sha256=token_sha256(tokens[name]), invited_at=now, revoked_at=None,
                        researcher=bool(researcher))
            )

    retrying_connection(engine, work)
    return tokens


def revoke_rater(engine: Engine, name: str) -> None:
    """Shut ``name`` out of the app (their open sessions too, at their next action);
    ``ValueError`` when there is no such rater."""
    key = rater_key(check_rater_name(name))

    def work(session: Session) -> None:
        rater = session.scalar(select(Rater).where(Rater.name == key).with_for_update())
        if rater is None:
            raise ValueError(f"no rater called {key!r} (rlmusic raters list shows them)")
        if rater.revoked_at is None:
            rater.revoked_at = utcnow()

    retrying(engine, work)


def rater_by_invite(engine: Engine, token: Any) -> dict[str, Any] | None:
    """``{"id", "name", "researcher", "invite_sha256"}`` of the rater whose current,
    unrevoked invite is ``token``; None for anything else (no token, a wrong, replaced or
    revoked one)."""
    if not isinstance(token, str) or not 8 <= len(token) <= 200:
        return None
    digest = token_sha256(token)
    with session_scope(engine) as session:
        rater = session.scalar(select(Rater).where(Rater.invite_sha256 == digest))
        if rater is None or rater.revoked_at is not None:
            return None
        return {"id": rater.id, "name": rater.name, "researcher": rater.researcher,
                "invite_sha256": rater.invite_sha256}


def invite_still_valid(engine: Engine, rater_id: int, invite_sha256: str) -> bool:
    """Whether the invite a session was let in with is still the rater's current,
    unrevoked one (the app asks on every page run)."""
    with session_scope(engine) as session:
        row = session.execute(
            select(Rater.invite_sha256, Rater.revoked_at).where(Rater.id == rater_id)
        ).first()
    return row is not None and row.revoked_at is None and row.invite_sha256 == invite_sha256


def invited_names(engine: Engine) -> set[str]:
    """Names of raters who hold an invite (revoked or not): the app's open demo mode
    refuses them, so nobody can pass as an invited rater there."""
    with session_scope(engine) as session:
        return set(session.scalars(select(Rater.name).where(Rater.invite_sha256.is_not(None))))
