"""The database: typed ORM models, the engine, Alembic migrations, the event writer."""
