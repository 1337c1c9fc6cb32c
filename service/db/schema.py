"""The engine for a database URL, and its schema: which Alembic revision it is at, upgrading it,
and refusing to serve on one that is not this dfstream's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from core.errors import ConfigError, one_line
from core.redaction import redact

MIGRATIONS = Path(__file__).with_name("migrations")


class SchemaError(ConfigError):
    """The database is at another schema than this dfstream's."""


def make_engine(url: str) -> Engine:
    """An engine whose connections are checked before use (a restarted server is reconnected to),
    and on SQLite: foreign keys on, WAL (readers never wait on the writer), a busy timeout."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"api.database: not a database URL: {one_line(exc)}") from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    try:
        return create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=20)
    except (ImportError, ArgumentError) as exc:
        raise ConfigError(f"api.database {redact(url)}: {one_line(exc)}") from None


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def sessions(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def _alembic(connection: Any) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    assert head is not None
    return head


def current(engine: Engine) -> str | None:
    """The revision the database is at; None for a database dfstream never migrated."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    with engine.begin() as connection:
        command.upgrade(_alembic(connection), revision)


def downgrade(engine: Engine, revision: str) -> None:
    with engine.begin() as connection:
        command.downgrade(_alembic(connection), revision)


def prepare(engine: Engine, config_path: str = "CONFIG") -> str:
    """Ready to serve: an empty database is migrated here; one at another revision is refused with
    the command that fixes it. Returns what was done, for the log."""
    where = redact(engine.url.render_as_string(hide_password=True))
    try:
        at = current(engine)
        tables = set(inspect(engine).get_table_names())
    except SQLAlchemyError as exc:
        raise ConfigError(f"api.database {where}: cannot connect: {one_line(exc)}") from None
    wanted = head()
    if at == wanted:
        return f"database {where} at schema {wanted}"
    if at is None and not tables:
        upgrade(engine)
        return f"database {where} created at schema {wanted}"
    known = {script.revision for script in ScriptDirectory(str(MIGRATIONS)).walk_revisions()}
    if at is None:
        raise SchemaError(
            f"api.database {where}: has tables ({', '.join(sorted(tables)[:5])}) but no dfstream schema; "
            "give dfstream a database of its own"
        )
    if at not in known:
        raise SchemaError(
            f"api.database {where}: schema {at} is newer than this dfstream knows (its newest is {wanted}); "
            "upgrade dfstream"
        )
    raise SchemaError(
        f"api.database {where}: schema {at} is older than this dfstream's ({wanted}); "
        f"run `dfstream db upgrade {config_path}` first"
    )
