"""``rlmusic deploy nginx``: the nginx site file that puts the listening app in front of raters
on other machines, behind TLS (docs/deploy.md; ``rlmusic.deploy``).

    rlmusic deploy nginx --public-url https://ratings.example.org \\
        --cert /etc/letsencrypt/live/ratings.example.org/fullchain.pem \\
        --key /etc/letsencrypt/live/ratings.example.org/privkey.pem \\
        --out /etc/nginx/sites-enabled/rlmusic.conf

prints the file, or writes it whole to ``--out``; then ``nginx -t`` and a reload, and
``rlmusic app --public-url https://ratings.example.org`` (the app stays on 127.0.0.1).
"""

from __future__ import annotations

import argparse

from rlmusic.cli.app import DEFAULT_PORT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="proxy", required=True, metavar="PROXY")
    nginx = sub.add_parser("nginx", help="nginx terminating TLS in front of the app (a site file)")
    nginx.add_argument("--public-url", required=True, help="the https address raters reach the app at")
    nginx.add_argument("--cert", required=True, help="the TLS certificate chain (PEM), e.g. Let's Encrypt's fullchain.pem")
    nginx.add_argument("--key", required=True, help="its private key (PEM)")
    nginx.add_argument("--app-port", type=int, default=DEFAULT_PORT,
                       help=f"the port `rlmusic app` serves on, on 127.0.0.1 (default {DEFAULT_PORT})")
    nginx.add_argument("--https-port", type=int, default=None,
                       help="the port nginx serves https on (default: the public URL's, else 443)")
    nginx.add_argument("--http-port", type=int, default=80,
                       help="the port of plain http, redirected to the public URL (default 80)")
    nginx.add_argument("--listen", default=None, help="the address nginx listens on (default every address)")
    nginx.add_argument("--access-log", default="/var/log/nginx/rlmusic.access.log",
                       help="access log (written without query strings: no invite token)")
    nginx.add_argument("--error-log", default="/var/log/nginx/rlmusic.error.log", help="error log (level crit)")
    nginx.add_argument("--out", default=None, help="write the site file here (default: print it)")


def main(args: argparse.Namespace) -> int:
    from rlmusic.deploy import nginx_site
    from rlmusic.fileio import write_atomic

    text = nginx_site(args.public_url, args.cert, args.key, app_port=args.app_port, https_port=args.https_port,
                      http_port=args.http_port, listen=args.listen, access_log=args.access_log,
                      error_log=args.error_log)
    if args.out is None:
        print(text, end="")
        return 0
    write_atomic(args.out, text)
    print(f"deploy: wrote {args.out}; check it with `nginx -t`, reload nginx, then serve the app with "
          f"`rlmusic app --port {args.app_port} --public-url {args.public_url}`")
    return 0
