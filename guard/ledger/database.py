"""Where the ledger lives: the database URL, the schema revision, and `guard db upgrade`.

The URL comes from `--db`, else `GUARD_DATABASE_URL`, else `sqlite:///guard.db` in the working directory.
A plain file path is taken as a SQLite file. A new SQLite file is created and migrated on first use (no
set-up); any other database at another revision is refused until `guard db upgrade` runs.

Migrations are serialised across processes by a lock the database gives (`_serialise_migrations`), so any number
of workers can start together on a new ledger: the first migrates it, the others wait for it and find it done.
On SQLite a migration first takes its place in the writers' queue (`guard.ledger.write_queue`): the processes that
wait for it block in the kernel and wake the moment it commits, read the revision (no lock) and go on, without
taking SQLite's write lock in turn (eight processes each holding it to find the work done kept the first one's
writes out for longer than their busy timeout on a loaded machine). The wait is bounded by `GUARD_MIGRATION_WAIT`
seconds (60 by default); past it, opening fails with `LedgerUnavailable` saying another process is migrating.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Generator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.crash import crash_point
from guard.errors import LedgerNotReady, LedgerUnavailable

if TYPE_CHECKING:
    import sqlalchemy as sa

# SQLAlchemy and alembic are imported only to migrate or to reach a non-SQLite database: an agent
# process on an existing SQLite ledger (and every CLI command) starts without them.

__all__ = ["DEFAULT_URL", "HEAD_REVISION", "current_revision", "resolve_url", "shown_url", "sqlite_path", "upgrade"]

DEFAULT_URL = "sqlite:///guard.db"
# PostgreSQL's advisory lock id for migrations (the bytes of "guardm"; the write lock's is "guard").
_MIGRATION_LOCK = 0x67756172646D
# The revision this code reads and writes. tests/ledger pins it to the newest file in migrations/versions.
HEAD_REVISION = "0014_run_heads"
_MIGRATIONS = Path(__file__).with_name("migrations")
_MIGRATION_WAIT = 60.0  # seconds a process waits for another one's migration (GUARD_MIGRATION_WAIT)


def resolve_url(db: str | None = None) -> str:
    """The ledger URL: the argument, else GUARD_DATABASE_URL, else a SQLite file in the working directory."""
    url = db or os.environ.get("GUARD_DATABASE_URL") or DEFAULT_URL
    if "://" not in url:
        url = f"sqlite:///{url}"
    return url


def shown_url(url: str) -> str:
    """`url` fit for messages and logs: a password in it is replaced by `***`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    auth, at, place = rest.rpartition("@")
    if not at or ":" not in auth:
        return url
    return f"{scheme}://{auth.split(':', 1)[0]}:***@{place}"


def sqlite_path(url: str) -> Path | None:
    """The file of a `sqlite:///` URL, or None for other databases."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    path = url[len(prefix) :].split("?", 1)[0]
    if path in ("", ":memory:"):
        raise LedgerNotReady(f"{url}: the ledger must be a file, not an in-memory database", url=url)
    return Path(path)


def _engine(url: str, **kwargs: Any) -> sa.Engine:
    import sqlalchemy as sa
    from sqlalchemy import exc as sa_exc

    try:
        return sa.create_engine(url, **kwargs)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise LedgerNotReady(f"{shown_url(url)}: not a usable database URL ({exc})", url=shown_url(url)) from exc


def _serialise_migrations(engine: sa.Engine, wait: float) -> None:
    """Make every transaction on `engine` first take a lock that every other migrating process waits for.

    SQLite: the transaction begins EXCLUSIVE (the driver's own deferred BEGIN is turned off, so the lock is
    taken before alembic reads the revision). PostgreSQL: a transaction-scoped advisory lock, released at
    commit, waited for at most `wait` seconds (`lock_timeout`, then back to the session's own for the migration's
    statements). Inside the lock alembic reads the revision again, so a process that waited finds the work done.
    """
    from sqlalchemy import event

    def exclusive(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN EXCLUSIVE")

    def advisory(conn: sa.Connection) -> None:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{max(1, round(wait * 1000))}ms'")
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
        conn.exec_driver_sql("SET LOCAL lock_timeout TO DEFAULT")

    def autocommit(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None

    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", autocommit)
        event.listen(engine, "begin", exclusive)
    elif engine.dialect.name == "postgresql":
        event.listen(engine, "begin", advisory)


def current_revision(url: str) -> str | None:
    """The schema revision the database is at, or None when it has none (new or unmigrated)."""
    path = sqlite_path(url)
    if path is not None:
        return _sqlite_revision(url, path)
    from alembic.runtime.migration import MigrationContext
    from sqlalchemy import exc as sa_exc

    engine = _engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa_exc.OperationalError as exc:
        shown = shown_url(url)
        raise LedgerUnavailable(
            f"{shown}: cannot reach the database ({str(exc.orig).strip()}). Check that the "
            "database server is up and reachable from this host, then start again",
            url=shown,
            database=shown,
        ) from exc
    finally:
        engine.dispose()


def _sqlite_revision(url: str, path: Path) -> str | None:
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise LedgerUnavailable(f"{url}: cannot read the database ({exc})", url=url) from exc
    except sqlite3.DatabaseError as exc:
        raise LedgerNotReady(f"{url}: not a SQLite database ({exc})", url=url) from exc
    return None if row is None else str(row[0])


def _set_wal(url: str, path: Path) -> None:
    """Put the SQLite file in WAL mode (persistent): done once, before any agent or reviewer connects."""
    try:
        conn = sqlite3.connect(path, timeout=5.0)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise LedgerUnavailable(f"{url}: cannot open the database ({exc})", url=url) from exc


def migration_wait(url: str) -> float:
    """How long opening the ledger at `url` waits for another process's migration: GUARD_MIGRATION_WAIT seconds,
    else 60; LedgerNotReady when the variable is not a number of seconds above 0."""
    raw = os.environ.get("GUARD_MIGRATION_WAIT", "").strip()
    if not raw:
        return _MIGRATION_WAIT
    try:
        wait = float(raw)
    except ValueError:
        wait = -1.0
    if not wait > 0:
        shown = shown_url(url)
        raise LedgerNotReady(f"{shown}: GUARD_MIGRATION_WAIT={raw!r}: give a number of seconds above 0", url=shown)
    return wait


@contextmanager
def _sqlite_migration(url: str, path: Path) -> Generator[None]:
    """Hold the writers' queue of the file for a migration, waiting behind another process's migration at most
    `migration_wait(url)` seconds; LedgerUnavailable past it."""
    from guard.ledger.write_queue import QueueHandle, WriteQueue

    writers, place, wait = WriteQueue(path), QueueHandle(), migration_wait(url)
    try:
        writers.take(place, wait)
    except sqlite3.OperationalError as exc:
        writers.stop()
        shown = shown_url(url)
        raise LedgerUnavailable(
            f"{shown}: another process is migrating this ledger and still held its lock after {wait:g}s, so this "
            "one did not open it. It opens once that migration commits: start again then, or give it longer with "
            f"GUARD_MIGRATION_WAIT (seconds). If no `guard db upgrade` or starting worker is running, a stopped "
            f"process holds {path}-writers (`fuser {path}-writers` names it)",
            url=shown,
            database=shown,
        ) from exc
    try:
        yield
    finally:
        writers.release(place)
        place.close()
        writers.stop()


def upgrade(url: str, revision: str = "head") -> str | None:
    """Run the migrations up to `revision`; returns the revision the database is at afterwards.

    SQLite: one process at a time, in the writers' queue (`_sqlite_migration`); a process that waited finds the
    file at `revision` and returns without taking the database's write lock."""
    path = sqlite_path(url)
    if path is None:
        return _migrate(url, None, revision)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _sqlite_migration(url, path):
        if revision == "head" and path.exists() and _sqlite_revision(url, path) == HEAD_REVISION:
            return HEAD_REVISION  # another process migrated it while this one waited
        crash_point("in_migration")
        _set_wal(url, path)
        return _migrate(url, path, revision)


def _migrate(url: str, path: Path | None, revision: str) -> str | None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import exc as sa_exc

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    # Every queued writer waits in the queue; SQLite's own wait covers one that does not queue (another program).
    wait = migration_wait(url)
    engine = _engine(url, connect_args={"timeout": wait}) if path is not None else _engine(url)
    _serialise_migrations(engine, wait)
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
    except sa_exc.OperationalError as exc:
        shown = shown_url(url)
        if getattr(exc.orig, "sqlstate", None) == "55P03":  # lock_not_available: the advisory lock's wait ran out
            raise LedgerUnavailable(
                f"{shown}: another process is migrating this ledger and still held its lock after {wait:g}s, so "
                "this one did not migrate it. Start again once that migration commits, or give it longer with "
                "GUARD_MIGRATION_WAIT (seconds); `SELECT pid, state, query FROM pg_stat_activity` names the holder",
                url=shown,
                database=shown,
            ) from exc
        raise LedgerUnavailable(f"{shown}: migration failed ({exc.orig})", url=shown) from exc
    finally:
        engine.dispose()
    return current_revision(url)


def _sqlite_new(url: str, path: Path) -> bool:
    """The file is missing, empty, or holds no table yet (another process may be creating it right now)."""
    if not path.exists() or path.stat().st_size == 0:
        return True
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=_MIGRATION_WAIT)
        try:
            return conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0] == 0
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise LedgerNotReady(f"{url}: not a SQLite database ({exc})", url=url) from exc


def ensure_ready(url: str) -> None:
    """Create and migrate a new SQLite file; refuse a database at another revision with what to run."""
    path = sqlite_path(url)
    if path is not None and _sqlite_new(url, path):
        upgrade(url)  # serialised: a process that finds another migrating waits, then finds it done
        return
    rev = current_revision(url)
    if rev != HEAD_REVISION:
        found = rev or "no Guard schema"
        raise LedgerNotReady(
            f"{shown_url(url)}: the ledger is at {found}, this Guard needs {HEAD_REVISION}. "
            f"Run `guard db upgrade --db {shown_url(url)}` first.",
            url=url,
            revision=rev,
            needed=HEAD_REVISION,
        )
