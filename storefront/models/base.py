from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime, FromClause
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, scoped_session
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    """Callable default: evaluated per row, always timezone-aware UTC."""
    return datetime.now(UTC)


def new_public_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """Stores UTC; always hands back aware datetimes (SQLite forgets the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def insert_or_ignore(
    session: Session | scoped_session[Any], table: FromClause, values: dict[str, Any], conflict_column: str
) -> bool:
    """``INSERT … ON CONFLICT (conflict_column) DO NOTHING`` in one statement, on PostgreSQL
    and SQLite alike. True if this call inserted the row (False: it already existed, perhaps
    inserted a moment ago by a concurrent transaction)."""
    dialect = session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = (
        module.insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[conflict_column])
        .returning(table.c[conflict_column])
    )
    # RETURNING, not rowcount: psycopg reports -1 for INSERT … ON CONFLICT DO NOTHING
    return session.execute(statement).first() is not None
