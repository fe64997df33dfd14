"""Schema and engine: migrations up and down, no drift between models and migrations,
check_schema, the database URL, SQLite pragmas, and the `rlmusic db` command."""

from __future__ import annotations

import argparse

import pytest
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import db
from db.schema import alembic_config
from rlmusic.cli.db import add_arguments as add_db_arguments
from rlmusic.cli.db import main as db_main

pytest_plugins = ["db_fixtures"]

TABLES = {
    "raters",
    "models",
    "clips",
    "ratings",
    "rating_history",
    "comparisons",
    "jobs",
    "job_points",
    "rounds",
    "studies",
    "study_pairs",
    "workers",
    "app_settings",
    "study_completions",
}


def _tables(url: str) -> set[str]:
    return set(inspect(db.get_engine(url)).get_table_names()) - {"alembic_version"}


def test_upgrade_to_head_then_downgrade_to_base(db_url):
    engine = db.get_engine(db_url)
    assert _tables(db_url) == set()
    assert db.current_revision(engine) is None

    db.upgrade(db_url)
    assert _tables(db_url) == TABLES
    assert db.current_revision(engine) == db.head_revision()

    db.downgrade(db_url, "base")
    assert _tables(db_url) == set()
    assert db.current_revision(engine) is None

    db.upgrade(db_url)  # and up again: downgrade left nothing behind that blocks it
    assert _tables(db_url) == TABLES


def test_models_and_migrations_do_not_drift(engine, db_url):
    # `alembic check`: autogenerate against the migrated database finds nothing to do.
    command.check(alembic_config(db_url))


def test_check_detects_drift(engine, db_url):
    # The check above must be able to fail: drop an index the models declare.
    with engine.begin() as connection:
        connection.execute(text("DROP INDEX ix_ratings_created_at"))
    with pytest.raises(Exception, match="ix_ratings_created_at"):
        command.check(alembic_config(db_url))


def test_check_schema_on_empty_database_says_what_to_run(db_url):
    engine = db.get_engine(db_url)
    with pytest.raises(db.SchemaOutOfDateError) as info:
        db.check_schema(engine)
    message = str(info.value)
    assert "database schema is at empty" in message
    assert f"code expects {db.head_revision()}" in message
    assert "rlmusic db upgrade" in message


def test_check_schema_passes_at_head(engine):
    db.check_schema(engine)  # no exception
    assert db.current_revision(engine) == db.head_revision()


def test_schema_constraints_hold_without_the_python_checks(engine, two_models):
    """The database itself refuses what the functions validate (CHECK/UNIQUE/FK)."""
    prior, _ = two_models
    a, b = db.enqueue_clips(engine, prior, [{"tokens": [1], "midi_path": "a"}] * 2)
    rater = db.get_or_create_rater(engine, "ann")
    bad = [
        f"INSERT INTO ratings (rater_id, clip_id, stars, tags, created_at, updated_at) "
        f"VALUES ({rater}, {a}, 6, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        f"INSERT INTO ratings (rater_id, clip_id, stars, tags, created_at, updated_at) "
        f"VALUES ({rater}, 999999, 3, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        f"INSERT INTO comparisons (rater_id, clip_a_id, clip_b_id, pair_lo, pair_hi, winner, "
        f"created_at, updated_at) VALUES ({rater}, {a}, {a}, {a}, {a}, 'a', "
        f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
        f"INSERT INTO comparisons (rater_id, clip_a_id, clip_b_id, pair_lo, pair_hi, winner, "
        f"created_at, updated_at) VALUES ({rater}, {a}, {b}, {a}, {b}, 'x', "
        f"CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
    ]
    for statement in bad:
        with pytest.raises(Exception, match="(?i)constraint|check|foreign"):
            with engine.begin() as connection:
                connection.execute(text(statement))
    db.add_rating(engine, "ann", a, 3)
    with pytest.raises(Exception, match="(?i)unique|duplicate"):
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO ratings (rater_id, clip_id, stars, tags, created_at, updated_at)"
                    f" VALUES ({rater}, {a}, 4, '[]', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                )
            )


def test_sqlite_engine_uses_wal_busy_timeout_and_foreign_keys(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'x.db'}"  # the folder is created
    engine = db.get_engine(url)
    try:
        assert db.get_engine(url) is engine  # cached per URL
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        db.upgrade(url)  # migrations copy tables with foreign keys off; the pooled connection gets them back
        with engine.connect() as connection:
            assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        db.dispose_engine(url)


def test_database_url_from_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("RLMUSIC_DATABASE_URL", raising=False)
    monkeypatch.setenv("RLMUSIC_HOME", str(tmp_path / "home"))
    assert db.database_url() == f"sqlite:///{tmp_path / 'home' / 'rlmusic.db'}"
    monkeypatch.delenv("RLMUSIC_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert db.database_url().endswith("/user/.rlmusic/rlmusic.db")
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", "postgresql+psycopg://u@h/d")
    assert db.database_url() == "postgresql+psycopg://u@h/d"


def _run_db(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_db_arguments(parser)
    return db_main(parser.parse_args(argv))


def test_db_command_upgrade_and_current(db_url, capsys):
    assert _run_db(["current", "--url", db_url]) == 1  # empty: out of date
    assert "schema at empty (out of date" in capsys.readouterr().out
    assert _run_db(["upgrade", "--url", db_url]) == 0
    assert _run_db(["current", "--url", db_url]) == 0
    assert f"schema at {db.head_revision()} (up to date)" in capsys.readouterr().out
    assert _run_db(["downgrade", "base", "--yes", "--url", db_url]) == 0
    assert _tables(db_url) == set()


def test_db_upgrade_uses_environment_url(monkeypatch, tmp_path):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("RLMUSIC_DATABASE_URL", url)
    try:
        assert _run_db(["upgrade"]) == 0
        assert _tables(url) == TABLES
    finally:
        db.dispose_engine(url)


def test_step_by_step_upgrade_and_out_of_date_message(db_url):
    engine = db.get_engine(db_url)
    db.upgrade(db_url, "0001")
    assert db.current_revision(engine) == "0001"
    with pytest.raises(db.SchemaOutOfDateError, match=f"schema is at 0001, code expects {db.head_revision()}"):
        db.check_schema(engine)
    db.upgrade(db_url)
    db.check_schema(engine)
    db.downgrade(db_url, "-1")
    previous = ScriptDirectory.from_config(alembic_config("sqlite://")).get_revision(db.head_revision()).down_revision
    assert db.current_revision(engine) == previous
