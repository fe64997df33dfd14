"""Serving the listening app to raters on other machines (docs/deploy.md).

``nginx_site(...)`` renders the shipped nginx site file (``nginx-site.conf.template`` here):
nginx terminates TLS at the public https address and proxies HTTP and Streamlit's websocket
to the app on 127.0.0.1; plain http is redirected to https; the access log leaves query
strings (invite tokens) out; the app's cookies are marked Secure. ``rlmusic deploy nginx``
writes it. Every value is checked before anything is written, each refusal one line.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from urllib.parse import urlsplit

TEMPLATE = "nginx-site.conf.template"
_PATH = re.compile(r"/[^\s;{}'\"$#]*")  # an absolute path nginx can take unquoted


def _listen(address: str | None, port: int, what: str) -> str:
    if not 1 <= int(port) <= 65535:
        raise ValueError(f"{what} must be 1..65535, got {port}")
    if address is None or address in ("", "*"):
        return str(int(port))
    if not re.fullmatch(r"[0-9A-Za-z.:\[\]-]+", address):
        raise ValueError(f"--listen {address!r} is not an address")
    if ":" in address and not address.startswith("["):
        address = f"[{address}]"
    return f"{address}:{int(port)}"


def _path(value: str | Path, what: str, must_exist: bool) -> str:
    text = str(Path(value).expanduser().resolve())
    if not _PATH.fullmatch(text):
        raise ValueError(f"{what} {str(value)!r}: a path nginx cannot take (spaces, quotes, ; {{ }} $ #)")
    if must_exist and not Path(text).is_file():
        raise ValueError(f"{what} {str(value)!r}: no such file")
    return text


def nginx_site(public_url: str, cert: str | Path, key: str | Path, *, app_port: int = 8501,
               https_port: int | None = None, http_port: int = 80, listen: str | None = None,
               access_log: str | Path = "/var/log/nginx/rlmusic.access.log",
               error_log: str | Path = "/var/log/nginx/rlmusic.error.log") -> str:
    """The nginx site file for raters at ``public_url`` (``https://HOST[:PORT]``): TLS with
    ``cert`` (the certificate chain, PEM) and ``key``; the app on ``127.0.0.1:app_port``;
    https on ``https_port`` (default: the public URL's port, else 443), plain http (redirected)
    on ``http_port``; ``listen``: the address both listen on (default every address)."""
    from db.settings import check_public_url

    public = check_public_url(public_url)
    parts = urlsplit(public)
    if parts.scheme != "https":
        raise ValueError(f"public URL {public_url!r} must be https:// behind the TLS proxy")
    if https_port is None:
        https_port = parts.port or 443
    if not 1 <= app_port <= 65535:
        raise ValueError(f"--app-port must be 1..65535, got {app_port}")
    if app_port in (https_port, http_port) and listen in (None, "", "*", "127.0.0.1"):
        raise ValueError(f"--app-port {app_port} is also a port the proxy listens on")
    if https_port == http_port:
        raise ValueError(f"the https and http ports are both {https_port}")
    text = resources.files(__package__).joinpath(TEMPLATE).read_text(encoding="utf-8")
    return text.format(
        public_url=public, server_name=parts.hostname, app_port=int(app_port),
        https_listen=_listen(listen, https_port, "--https-port"), http_listen=_listen(listen, http_port, "--http-port"),
        cert=_path(cert, "--cert", True), key=_path(key, "--key", True),
        access_log=_path(access_log, "--access-log", False), error_log=_path(error_log, "--error-log", False),
    )
