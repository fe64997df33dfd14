"""The app's settings other commands read (``app_settings``, revision 0008).

``public_url`` is the address raters reach the listening app at (``https://ratings.example.org``
behind a TLS proxy, ``http://HOST:PORT`` on a network without one). ``rlmusic app
--public-url URL`` stores it when the app starts; ``rlmusic raters invite`` builds its links
with it, so a researcher never edits a link by hand. ``check_public_url`` is the one rule for
what such an address may be: http or https, a host, no user, query, fragment or path (the app
is served at the root of its address).
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import urlsplit

from sqlalchemy import Engine, String, Text, select
from sqlalchemy.orm import Mapped, Session, mapped_column

from db.engine import retrying, session_scope
from db.models import Base, utcnow

PUBLIC_URL = "public_url"


class AppSetting(Base):
    """A setting other commands read (revision 0008), by key: today ``public_url``."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


def check_public_url(url: str) -> str:
    """``url`` without a trailing slash, or ``ValueError`` naming what is wrong with it."""
    text = (url or "").strip()
    try:
        parts = urlsplit(text)
        port = parts.port  # raises on a port that is not a number in 0..65535
    except ValueError as exc:
        raise ValueError(f"public URL {url!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"public URL {url!r} must start with https:// (or http://)")
    if not parts.hostname:
        raise ValueError(f"public URL {url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"public URL {url!r} must not carry a user or password")
    if parts.query or parts.fragment or text.endswith(("?", "#")):
        raise ValueError(f"public URL {url!r} must not carry a query or fragment")
    if parts.path not in ("", "/"):
        raise ValueError(f"public URL {url!r} must not carry a path: the app is served at the root of its address")
    if port == 0:
        raise ValueError(f"public URL {url!r} has port 0")
    return f"{parts.scheme}://{parts.netloc.lower()}"


def set_public_url(engine: Engine, url: str) -> str:
    """Store the address raters reach the app at (checked, normalised); returns it."""
    value = check_public_url(url)

    def work(session: Session) -> None:
        row = session.get(AppSetting, PUBLIC_URL, with_for_update=True)
        if row is None:
            session.add(AppSetting(key=PUBLIC_URL, value=value, updated_at=utcnow()))
        else:
            row.value, row.updated_at = value, utcnow()

    retrying(engine, work)
    return value


def public_url(engine: Engine) -> str | None:
    """The stored address raters reach the app at, or None when the app never stored one."""
    with session_scope(engine) as session:
        return session.scalar(select(AppSetting.value).where(AppSetting.key == PUBLIC_URL))
