"""`rlmusic app`: the Streamlit command it runs (localhost, headless, no usage stats), its
refusal of an old schema in one line, and its routing."""

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
        "--browser.gatherUsageStats": "false",
        "--server.headless": "true",
        "--client.toolbarMode": "minimal",
    }
    with pytest.raises(ValueError, match="port"):
        launch.streamlit_command(0)


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
    launch.main(argparse.Namespace(port=8766, open=False))
    assert started == [launch.streamlit_command(8766)]
    out = capsys.readouterr().out
    assert "audio by fluidsynth" in out or "audio by tinysoundfont" in out
    assert "http://127.0.0.1:8766" in out
    db.dispose_engine(url)


def test_rlmusic_app_command_is_routed_here():
    from rlmusic.cli.main import build_parser

    parser = build_parser("app")
    assert parser.parse_args(["--port", "9000"]).port == 9000
    assert parser.parse_args([]).port == launch.DEFAULT_PORT
