"""The sandbox's state: Stripe objects as JSON in SQLite, one lock, one transaction per request.

Every API request runs inside :meth:`Store.transaction`, under a process-wide re-entrant lock, so
concurrent requests are serialised and a request that fails changes nothing. State lives in one
SQLite file, so it survives a restart. The sandbox clock is real time plus an offset that
``/_sandbox/clock/advance`` moves; scheduled jobs (renewals, settlements, expiries) run when the
clock passes them.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import overload

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, seq INTEGER NOT NULL, data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS objects_type_seq ON objects (type, seq);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, status INTEGER NOT NULL, body TEXT NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, due INTEGER NOT NULL, kind TEXT NOT NULL,
    ref TEXT NOT NULL, data TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL, endpoint_id TEXT NOT NULL,
    status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0, next_attempt REAL NOT NULL,
    created REAL NOT NULL, last_status INTEGER, last_error TEXT, delivered REAL,
    log TEXT NOT NULL DEFAULT '[]');
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt);
"""


class Store:
    def __init__(self, path: str | Path | None = None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._depth = 0
        self._now_override: int | None = None
        self._after_commit: list[Callable[[], None]] = []

    # --- transactions ---------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[Store]:
        with self.lock:
            outermost = self._depth == 0
            if outermost:
                self._db.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outermost:
                    self._db.execute("ROLLBACK")
                    self._after_commit.clear()
                raise
            self._depth -= 1
            if outermost:
                self._db.execute("COMMIT")
                callbacks, self._after_commit = self._after_commit, []
                for callback in callbacks:
                    callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (e.g. wake the webhook sender)."""
        self._after_commit.append(callback)

    # --- objects --------------------------------------------------------------------------
    def get(self, object_id: str) -> dict | None:
        row = self._db.execute("SELECT data FROM objects WHERE id = ?", (object_id,)).fetchone()
        return json.loads(row[0]) if row else None

    def require(self, object_id: str) -> dict:
        """An object the state itself refers to (a re-read, a parent): missing is a sandbox bug."""
        obj = self.get(object_id)
        if obj is None:
            raise LookupError(f"the sandbox state refers to {object_id}, which is not stored")
        return obj

    def put(self, obj: dict) -> dict:
        with self.transaction():
            data = json.dumps(obj, separators=(",", ":"))
            updated = self._db.execute("UPDATE objects SET data = ? WHERE id = ?", (data, obj["id"])).rowcount
            if not updated:
                seq = self._next_seq()
                self._db.execute(
                    "INSERT INTO objects (id, type, seq, data) VALUES (?, ?, ?, ?)",
                    (obj["id"], obj["object"], seq, data),
                )
        return obj

    def delete(self, object_id: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM objects WHERE id = ?", (object_id,))

    def all(self, object_type: str) -> list[dict]:
        """Every object of a type, newest first (Stripe's list order)."""
        rows = self._db.execute("SELECT data FROM objects WHERE type = ? ORDER BY seq DESC", (object_type,))
        return [json.loads(r[0]) for r in rows]

    def _next_seq(self) -> int:
        value = int(self.meta("seq", "0")) + 1
        self.set_meta("seq", str(value))
        return value

    # --- meta, clock ----------------------------------------------------------------------
    @overload
    def meta(self, key: str) -> str | None: ...
    @overload
    def meta(self, key: str, default: str) -> str: ...

    def meta(self, key: str, default: str | None = None) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def meta_json(self, key: str, default=None):
        raw = self.meta(key)
        return json.loads(raw) if raw is not None else default

    def set_meta_json(self, key: str, value) -> None:
        self.set_meta(key, json.dumps(value))

    def now(self) -> int:
        """Sandbox time: real time plus the advanced offset (or a job's due time while it runs)."""
        if self._now_override is not None:
            return self._now_override
        return int(time.time()) + int(self.meta("clock_offset", "0"))

    @contextlib.contextmanager
    def frozen_at(self, moment: int) -> Iterator[None]:
        previous, self._now_override = self._now_override, moment
        try:
            yield
        finally:
            self._now_override = previous

    # --- scheduled jobs ---------------------------------------------------------------------
    def schedule(self, due: int, kind: str, ref: str, **data) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT INTO jobs (due, kind, ref, data) VALUES (?, ?, ?, ?)", (due, kind, ref, json.dumps(data))
            )

    def cancel_jobs(self, kind: str, ref: str) -> None:
        with self.transaction():
            self._db.execute("DELETE FROM jobs WHERE kind = ? AND ref = ?", (kind, ref))

    def pop_due_job(self, until: int) -> tuple[int, str, str, dict] | None:
        with self.transaction():
            row = self._db.execute(
                "SELECT id, due, kind, ref, data FROM jobs WHERE due <= ? ORDER BY due, id LIMIT 1", (until,)
            ).fetchone()
            if row is None:
                return None
            self._db.execute("DELETE FROM jobs WHERE id = ?", (row[0],))
            return row[1], row[2], row[3], json.loads(row[4])

    # --- idempotency ------------------------------------------------------------------------
    def idempotent_result(self, key: str) -> tuple[str, int, str] | None:
        return self._db.execute("SELECT fingerprint, status, body FROM idempotency WHERE key = ?", (key,)).fetchone()

    def save_idempotent_result(self, key: str, fingerprint: str, status: int, body: str) -> None:
        with self.transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                (key, fingerprint, status, body, time.time()),
            )

    # --- raw access for the webhook sender --------------------------------------------------
    def execute(self, sql: str, args: tuple = ()) -> sqlite3.Cursor:
        return self._db.execute(sql, args)

    def reset(self) -> None:
        with self.transaction():
            for table in ("objects", "idempotency", "meta", "jobs", "deliveries"):
                self._db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names

    def close(self) -> None:
        with self.lock:
            self._db.close()
