"""The database schema: Alembic from empty to head and back, on SQLite and PostgreSQL; a server
that refuses a schema it does not know, saying which command to run; the first admin."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect

from service.db.schema import SchemaError, current, downgrade, head, make_engine, prepare, upgrade
from tests.service.conftest import PASSWORD, dfstream, write_config

TABLES = {
    "users",
    "api_tokens",
    "media_files",
    "detection_results",
    "events",
    "event_snapshots",
    "event_audio",
    "alembic_version",
}


def test_upgrade_from_empty_and_downgrade_to_nothing(database_url):
    engine = make_engine(database_url)
    assert current(engine) is None
    upgrade(engine)
    assert current(engine) == head()
    assert set(inspect(engine).get_table_names()) == TABLES
    downgrade(engine, "0001")
    assert set(inspect(engine).get_table_names()) == TABLES - {"events", "event_snapshots", "event_audio"}
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    engine.dispose()


def test_an_older_schema_is_refused_with_the_command_that_fixes_it(database_url, tmp_path):
    engine = make_engine(database_url)
    upgrade(engine, "0001")
    with pytest.raises(
        SchemaError, match=r"schema 0001 is older than this dfstream's \(0005\); run `dfstream db upgrade cfg.yaml`"
    ):
        prepare(engine, "cfg.yaml")
    engine.dispose()
    config = write_config(tmp_path, [{"id": "cam", "url": "sample://astronaut"}], {"database": database_url, "port": 0})
    served = dfstream("serve", str(config), "--offline")
    assert served.returncode == 2
    assert f"run `dfstream db upgrade {config}` first" in served.stderr
    upgraded = dfstream("db", "upgrade", str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert "schema 0005 (was 0001)" in upgraded.stdout
    engine = make_engine(database_url)
    assert prepare(engine).endswith("at schema 0005")
    engine.dispose()


def test_a_schema_newer_than_this_dfstream_or_a_foreign_database_is_refused(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'db'}")
    upgrade(engine)
    with engine.begin() as connection:
        connection.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    with pytest.raises(SchemaError, match="schema 0099 is newer than this dfstream knows"):
        prepare(engine)
    other = make_engine(f"sqlite:///{tmp_path / 'other'}")
    with other.begin() as connection:
        connection.exec_driver_sql("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(SchemaError, match=r"has tables \(invoices\) but no dfstream schema"):
        prepare(other)


def test_the_first_admin_comes_from_the_environment_never_from_an_argument(tmp_path):
    config = write_config(tmp_path, [{"id": "cam", "url": "sample://astronaut"}], {"port": 0})
    no_password = dfstream("users", "add", str(config), "root", "--role", "admin", env={"DFSTREAM_ADMIN_PASSWORD": ""})
    assert no_password.returncode == 2 and "at least 8 characters" in no_password.stderr
    added = dfstream("users", "add", str(config), "root", "--role", "admin", env={"DFSTREAM_ADMIN_PASSWORD": PASSWORD})
    assert added.returncode == 0, added.stderr
    assert "user root (admin) added" in added.stdout
    again = dfstream("users", "add", str(config), "root", "--role", "viewer", env={"DFSTREAM_ADMIN_PASSWORD": PASSWORD})
    assert again.returncode == 2 and "user 'root' exists" in again.stderr
    assert (tmp_path / "data" / "dfstream.db").is_file()  # the database was created and migrated by the command
    unknown_role = dfstream(
        "users", "add", str(config), "bob", "--role", "root", env={"DFSTREAM_ADMIN_PASSWORD": PASSWORD}
    )
    assert unknown_role.returncode == 2 and "invalid choice: 'root'" in unknown_role.stderr
