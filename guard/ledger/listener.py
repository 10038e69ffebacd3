"""This process's LISTEN connection to a PostgreSQL ledger: how a waiting agent hears of a decision committed in
another process within a millisecond or so.

One connection per process and database, shared by every `Ledger` of the process on that database (`acquire` /
`release` count its users), outside the pool: a pooled connection serves one transaction at a time, and a
LISTEN must stay on one session for as long as anyone waits. It is in autocommit mode and runs nothing but
`LISTEN guard_wake` and, while quiet, a `SELECT 1` every few seconds to find a server that went away.

States: connecting -> listening -> (cut off) -> connecting ... -> closed. While connecting, the thread retries
with a growing pause (50 ms doubling to 2 s); each time it listens again it wakes every waiter of the ledger,
since a notification sent while it was cut off is lost. Waiters keep polling the ledger meanwhile, so an
unreachable LISTEN connection slows a wake-up down, and never loses one.
"""

from __future__ import annotations

import os
import select
import threading
from contextlib import suppress
from typing import Any

from guard.ledger.backend_postgres import conninfo
from guard.ledger.signals import CHANNEL, wake

__all__ = ["APPLICATION_NAME", "Listener", "acquire", "release"]

APPLICATION_NAME = "guard-listen"  # how it shows in pg_stat_activity
_PING_EVERY = 5.0  # seconds of quiet before the connection is checked with a query
_RETRY_FIRST, _RETRY_CAP = 0.05, 2.0
_READY_WAIT = 2.0  # seconds the first waiter waits for the connection to listen before it relies on its poll
_CONNECT_TIMEOUT = 5  # seconds (libpq's connect_timeout): a host that does not answer is retried, not waited on

_LOCK = threading.Lock()
_LISTENERS: dict[tuple[str, str], Listener] = {}


class Listener:
    """The LISTEN connection for the ledger at `url`, opened on `listen_url` (the server itself: see
    `guard.ledger.signals` on PgBouncer), and the thread that wakes the ledger's waiters.

    `live` is True while it listens; `connects` counts the times it began listening (1 + reconnects);
    `last_error` is the driver's message for the last failure, or None.
    """

    def __init__(self, url: str, listen_url: str) -> None:
        self.url = url
        self.listen_url = listen_url
        self.users = 0
        self.pid = os.getpid()
        self.connects = 0
        self.last_error: str | None = None
        self._conninfo = conninfo(listen_url)
        self._listening = threading.Event()
        self._tried = threading.Event()  # the first attempt ended, either way
        self._stop = threading.Event()
        self._stop_r, self._stop_w = os.pipe()  # wakes the thread's select at close
        self._thread = threading.Thread(target=self._run, name="guard-listen", daemon=True)
        self._thread.start()

    @property
    def live(self) -> bool:
        return self._listening.is_set()

    def ready(self, timeout: float = _READY_WAIT) -> bool:
        """Wait until the first attempt to listen ended (up to `timeout` seconds); True when listening."""
        self._tried.wait(timeout)
        return self.live

    def close(self) -> None:
        """Stop the thread and close the connection (the thread does, on its way out)."""
        self._stop.set()
        with suppress(OSError):
            os.write(self._stop_w, b"x")
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=_CONNECT_TIMEOUT + 1)
        for fd in (self._stop_r, self._stop_w):
            with suppress(OSError):
                os.close(fd)

    # -- the thread -----------------------------------------------------------------------------------

    def _run(self) -> None:
        import psycopg

        pause = _RETRY_FIRST
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=_CONNECT_TIMEOUT, application_name=APPLICATION_NAME
                )
            except psycopg.Error as exc:
                self.last_error = str(exc).strip()
                self._tried.set()
                self._pause(pause)
                pause = min(pause * 2, _RETRY_CAP)
                continue
            try:
                conn.execute(f"LISTEN {CHANNEL}")
                self.connects += 1
                self.last_error = None
                self._listening.set()
                self._tried.set()
                pause = _RETRY_FIRST
                wake(self.url)  # whatever was decided while nobody listened: every waiter reads the ledger
                self._listen(conn)
            except psycopg.Error as exc:
                self.last_error = str(exc).strip()
            finally:
                self._listening.clear()
                with suppress(Exception):
                    conn.close()
            if not self._stop.is_set():
                wake(self.url)  # cut off: the waiters poll the ledger until it listens again
                self._pause(pause)

    def _listen(self, conn: Any) -> None:
        """Wake the ledger's waiters at every notification until the connection fails (raises) or close()."""
        fileno = conn.fileno()
        while not self._stop.is_set():
            readable, _, _ = select.select([fileno, self._stop_r], [], [], _PING_EVERY)
            if self._stop_r in readable:
                return
            if not readable:
                conn.execute("SELECT 1")  # quiet for a while: is the server still there?
                continue
            # Several notifications in one read wake the waiters once: each reads its own row again anyway.
            if any(True for _ in conn.notifies(timeout=0)):
                wake(self.url)

    def _pause(self, seconds: float) -> None:
        with suppress(OSError, ValueError):
            select.select([self._stop_r], [], [], seconds)


def acquire(url: str, listen_url: str) -> Listener:
    """This process's listener for the ledger at `url`, started on first use; give it back with `release`."""
    with _LOCK:
        found = _LISTENERS.get((url, listen_url))
        if found is None or found.pid != os.getpid():  # a forked child inherits the entry, never the thread
            found = _LISTENERS[(url, listen_url)] = Listener(url, listen_url)
        found.users += 1
        return found


def release(listener: Listener) -> None:
    """One user less; the last one closes the connection. (A listener inherited through a fork is the parent's:
    left alone.)"""
    if listener.pid != os.getpid():
        return
    with _LOCK:
        listener.users -= 1
        if listener.users > 0:
            return
        _LISTENERS.pop((listener.url, listener.listen_url), None)
    listener.close()
