"""`rlmusic app`: the Streamlit command it runs (localhost by default, headless, no usage
stats, XSRF and CORS on), the public URL it stores for invite links, its refusals (an old
schema, `--open` beyond loopback, a bad host or URL) in one line, and its routing."""

from __future__ import annotations

import argparse

import pytest
from test_app import app_database

import db
from rlmusic.cli import app as launch


def test_launch_command_serves_on_localhost_headless():
    cmd = launch.streamlit_command(8765)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and cmd[4].endswith("app/main.py")
    flags = dict(zip(cmd[5::2], cmd[6::2]))
    assert flags == {
        "--server.address": "127.0.0.1",
        "--server.port": "8765",
        "--server.enableXsrfProtection": "true",
        "--server.enableCORS": "true",
        "--browser.gatherUsageStats": "false",
        "--server.headless": "true",
        "--client.toolbarMode": "minimal",
    }
    with pytest.raises(ValueError, match="port"):
        launch.streamlit_command(0)
    wide = dict(zip(*[iter(launch.streamlit_command(8765, "0.0.0.0")[5:])] * 2))
    assert wide["--server.address"] == "0.0.0.0" and wide["--server.enableXsrfProtection"] == "true"
    with pytest.raises(ValueError, match="not an address"):
        launch.streamlit_command(8765, "http://example.org")


def test_launch_refuses_an_old_schema(tmp_path, monkeypatch, capsys):
    from rlmusic.cli.main import main

    url = f"sqlite:///{tmp_path / 'old.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("must not start streamlit"))
    assert main(["app", "--port", "8765"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic app: error: ") and "run `rlmusic db upgrade`" in err and err.count("\n") == 1
    db.dispose_engine(url)


def test_launch_starts_streamlit_when_the_schema_is_current(tmp_path, monkeypatch, capsys):
    url = app_database(tmp_path, monkeypatch, open_mode=True)
    started = []
    monkeypatch.setattr(launch.os, "execv", lambda path, argv: started.append(argv))
    launch.main(argparse.Namespace(port=8766, open=False, host="127.0.0.1", public_url=None))
    assert started == [launch.streamlit_command(8766)]
    out = capsys.readouterr().out
    assert "audio by fluidsynth" in out or "audio by tinysoundfont" in out
    assert "http://127.0.0.1:8766" in out
    assert db.public_url(db.get_engine(url)) == "http://127.0.0.1:8766"  # what invite links are built with
    launch.main(argparse.Namespace(port=8766, open=False, host="0.0.0.0",
                                   public_url="HTTPS://Ratings.Example.org/"))
    assert started[-1] == launch.streamlit_command(8766, "0.0.0.0")
    assert db.public_url(db.get_engine(url)) == "https://ratings.example.org"
    assert "raters reach it at https://ratings.example.org" in capsys.readouterr().out
    db.dispose_engine(url)


@pytest.mark.parametrize("argv, message", [
    (["--open", "--host", "0.0.0.0"], "--open lets anyone rate under any name, so it serves this machine only"),
    (["--host", "a b"], "--host 'a b' is not an address or host name"),
    (["--public-url", "ftp://example.org"], "must start with https://"),
    (["--public-url", "https://example.org/rate?x=1"], "must not carry a query"),
    (["--public-url", "https://example.org/rate"], "must not carry a path"),
    (["--public-url", "https://user@example.org"], "must not carry a user"),
])
def test_launch_refuses_bad_network_options_in_one_line(tmp_path, monkeypatch, capsys, argv, message):
    from rlmusic.cli.main import main

    url = app_database(tmp_path, monkeypatch, open_mode=True)
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("must not start streamlit"))
    assert main(["app", *argv]) == 1
    err = capsys.readouterr().err
    assert err.startswith("rlmusic app: error: ") and message in err and err.count("\n") == 1
    assert db.public_url(db.get_engine(url)) is None  # nothing stored
    db.dispose_engine(url)


def test_loopback_hosts():
    assert all(launch.is_loopback(h) for h in ("127.0.0.1", "127.0.1.1", "localhost", "::1", "[::1]"))
    assert not any(launch.is_loopback(h) for h in ("0.0.0.0", "::", "10.0.0.5", "ratings.example.org"))


def test_rlmusic_app_command_is_routed_here():
    from rlmusic.cli.main import build_parser

    parser = build_parser("app")
    assert parser.parse_args(["--port", "9000"]).port == 9000
    assert parser.parse_args([]).port == launch.DEFAULT_PORT
    assert parser.parse_args([]).host == "127.0.0.1" and parser.parse_args([]).public_url is None
