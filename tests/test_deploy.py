"""`rlmusic deploy nginx`: the site file it renders from the shipped template (checked by nginx
itself in tests/test_deploy_proxy.py) and its refusals, each one line with nothing written."""

from __future__ import annotations

import pytest

from rlmusic.cli.main import main
from rlmusic.deploy import nginx_site


@pytest.fixture
def pem(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("cert"), key.write_text("key")
    return cert, key


def test_the_site_file_proxies_the_app_behind_tls(pem):
    cert, key = pem
    text = nginx_site("https://Ratings.Example.org", cert, key, app_port=8600)
    assert "listen 443 ssl;" in text and "listen 80;" in text
    assert "server_name ratings.example.org;" in text
    assert "return 301 https://ratings.example.org$request_uri;" in text
    assert "proxy_pass http://127.0.0.1:8600;" in text and "proxy_set_header Upgrade $http_upgrade;" in text
    assert f"ssl_certificate     {cert};" in text and f"ssl_certificate_key {key};" in text
    assert "$request_uri" not in text.split("log_format", 1)[1].split(";", 1)[0]  # the log has no query
    assert "proxy_cookie_flags ~ secure;" in text
    own = nginx_site("https://ratings.example.org:8443", cert, key, http_port=8080, listen="10.0.0.5")
    assert "listen 10.0.0.5:8443 ssl;" in own and "listen 10.0.0.5:8080;" in own


@pytest.mark.parametrize("argv, message", [
    (["--public-url", "http://ratings.example.org"], "must be https:// behind the TLS proxy"),
    (["--public-url", "https://ratings.example.org/app"], "must not carry a path"),
    (["--public-url", "https://r.org", "--app-port", "443"], "--app-port 443 is also a port the proxy listens on"),
    (["--public-url", "https://r.org", "--http-port", "443"], "the https and http ports are both 443"),
    (["--public-url", "https://r.org", "--app-port", "0"], "--app-port must be 1..65535"),
    (["--public-url", "https://r.org", "--listen", "a b"], "--listen 'a b' is not an address"),
    (["--public-url", "https://r.org", "--access-log", "/var/log/a b.log"], "a path nginx cannot take"),
])
def test_bad_options_are_one_line_and_write_nothing(pem, tmp_path, capsys, argv, message):
    cert, key = pem
    out = tmp_path / "site.conf"
    assert main(["deploy", "nginx", "--cert", str(cert), "--key", str(key), "--out", str(out), *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic deploy: error: ") and message in err and err.count("\n") == 1, err
    assert not out.exists()


def test_a_missing_certificate_is_named(tmp_path, capsys):
    assert main(["deploy", "nginx", "--public-url", "https://r.org", "--cert", str(tmp_path / "no.pem"),
                 "--key", str(tmp_path / "no.key")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic deploy: error: --cert ") and err.rstrip().endswith("no such file")
