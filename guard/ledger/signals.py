"""Wake-ups when a decision commits: one waiting API over both backends.

- In this process: a decision committed through any `Ledger` notifies a condition per database URL (`changed`),
  at once, whatever the database.
- Across processes on SQLite: the decision also appends a byte to the ledger's wake file (`<file>-wake`, cut back
  to one byte when it reaches 4 KiB). A waiting agent looks at that file's size and time every few milliseconds
  (`Watch`: one `stat`, no query) and reads the ledger only when it changed, or at its slower safety poll.
- Across processes on PostgreSQL: the deciding transaction sends `NOTIFY guard_wake` (`announce`; delivered by
  the server when, and only if, it commits). Each process that has an agent waiting holds one LISTEN
  connection per ledger (`guard.ledger.listener`), outside the pool, which notifies the same condition. After
  any reconnect of that connection it wakes every waiter, since a notification sent while it was cut off is
  lost; the waiters then read the ledger again.

Only rare transactions notify: a decision, an expiry, a withdrawal. The per-call lifecycle never does, because a
notifying transaction takes a server-wide lock at commit (lifecycle throughput fell 4-8x with it in a
measurement); a waiter of a call that another worker runs (`started`) reads the ledger at its poll instead.

Where the LISTEN connection goes: `Ledger(url, listen_url=...)`, else `GUARD_LISTEN_URL`, else the ledger's URL.
Point it at the server itself (or a session-mode pooler): PgBouncer in transaction mode cannot LISTEN, because
it hands the server connection to another client after each transaction and the notification never arrives.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from guard.ledger.listener import Listener

__all__ = [
    "CHANNEL",
    "LISTEN_URL_ENV",
    "TICK",
    "Wakes",
    "Watch",
    "announce",
    "changed",
    "condition",
    "wake",
    "wake_file",
]

TICK = 0.005  # how often a waiting agent looks at the wake file (a stat call: a few microseconds)
CHANNEL = "guard_wake"  # the PostgreSQL notification channel (LISTEN/NOTIFY are per database already)
LISTEN_URL_ENV = "GUARD_LISTEN_URL"
_CUT_AT = 4096
_LOCK = threading.Lock()


class _Channel:
    """The waiters of one database in this process: a condition, and a count of wake-ups (read without the lock
    by the async waiter, which cannot wait on a threading condition)."""

    __slots__ = ("cond", "wakes")

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.wakes = 0


_CHANNELS: dict[str, _Channel] = {}


def _channel(url: str) -> _Channel:
    with _LOCK:
        found = _CHANNELS.get(url)
        if found is None:
            found = _CHANNELS[url] = _Channel()
        return found


def condition(url: str) -> threading.Condition:
    """The condition notified when a decision on the database at `url` commits (in this process, or in another
    one through the wake file or the LISTEN connection)."""
    return _channel(url).cond


def is_postgres(url: str) -> bool:
    return url.split("+", 1)[0].split(":", 1)[0] in ("postgresql", "postgres")


def wake_file(url: str) -> Path | None:
    """The file a decision on the SQLite ledger at `url` touches, for other processes; None for other databases."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    return Path(url[len(prefix) :].split("?", 1)[0] + "-wake")


def wake(url: str) -> None:
    """Wake this process's waiters on `url`: each reads the ledger again."""
    chan = _channel(url)
    with chan.cond:
        chan.wakes += 1
        chan.cond.notify_all()


def announce(cur: Any, url: str) -> None:
    """Inside a deciding transaction: tell the other processes' waiters once it commits (PostgreSQL's NOTIFY,
    which the server delivers at commit and drops on rollback). Nothing on SQLite, whose wake file is touched
    after the commit by `changed`. Never call it from the per-call lifecycle (see the module's docstring)."""
    if is_postgres(url):
        cur.execute(f"NOTIFY {CHANNEL}")


def changed(url: str) -> None:
    """Wake the waiters on `url`: this process's at once, other processes' on SQLite through the wake file (call
    it after the commit). A wake file that cannot be written costs other processes' agents only their safety
    poll."""
    wake(url)
    path = wake_file(url)
    if path is None:
        return
    with suppress(OSError):
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size >= _CUT_AT:
                os.ftruncate(fd, 0)
            os.write(fd, b".")
        finally:
            os.close(fd)


class Wakes:
    """How the waiting agents of one `Ledger` learn that something they wait on changed.

    `watch()` gives a waiter its `Watch`. On PostgreSQL the first one opens this process's LISTEN connection for
    the ledger (shared with every other `Ledger` of the process on the same database) and waits briefly until it
    listens, so a decision committed after the waiter's first read cannot be missed; `close()` lets it go (the
    last user closes the connection). A LISTEN connection that cannot be opened is retried in the background:
    the waiters keep their poll meanwhile, and are all woken once it listens.
    """

    def __init__(self, url: str, listen_url: str | None = None) -> None:
        self.url = url
        self.listen_url = listen_url or os.environ.get(LISTEN_URL_ENV) or url
        self._listener: Listener | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def listener(self) -> Listener | None:
        """This ledger's LISTEN connection once a waiter asked for it (PostgreSQL), else None."""
        return self._listener

    def watch(self) -> Watch:
        if is_postgres(self.url) and not self._closed:
            with self._lock:
                if (self._listener is None or self._listener.pid != os.getpid()) and not self._closed:
                    from guard.ledger.listener import acquire

                    self._listener = acquire(self.url, self.listen_url)
            if self._listener is not None:
                self._listener.ready()
        return Watch(self.url, self._listener)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            listener, self._listener = self._listener, None
        if listener is not None:
            from guard.ledger.listener import release

            release(listener)


class Watch:
    """What a waiting agent knows of the other processes' decisions: `moved()` is True once a wake-up arrived
    since the last look (this process's, the wake file's, the LISTEN connection's), or the wake file cannot be
    read (then the caller reads the ledger, as it would have anyway). `listening` is True while a LISTEN
    connection stands for it: the ledger's poll is then only a slow safety net."""

    __slots__ = ("_chan", "_last", "_listener", "_path", "_wakes")

    def __init__(self, url: str, listener: Listener | None = None) -> None:
        self._path = wake_file(url)
        self._chan = _channel(url)
        self._listener = listener
        self._wakes: int = self._chan.wakes
        self._last: tuple[int, int, int] | None = self._stamp()

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._path is None:
            return None
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    @property
    def active(self) -> bool:
        """Whether other processes' decisions reach this watch between two polls of the ledger."""
        return self._path is not None or self._listener is not None

    @property
    def listening(self) -> bool:
        return self._listener is not None and self._listener.live

    def moved(self) -> bool:
        wakes = self._chan.wakes
        now = self._stamp()
        if now == self._last and wakes == self._wakes:
            return False
        self._last, self._wakes = now, wakes
        return True

    def mark(self) -> int:
        """The count of this process's wake-ups on the ledger: take it before reading the ledger, and give it to
        `wait`, so a wake-up that lands between the read and the wait is never slept through."""
        return self._chan.wakes

    def wait(self, seconds: float, since: int) -> None:
        """Wait up to `seconds`, returning early once a wake-up arrived after `since` (`mark`) or the wake file
        moved. The ledger is read outside this wait: no lock is held while a waiter queries it, so many waiters
        (and the LISTEN thread that wakes them) never queue behind each other's reads."""
        chan = self._chan
        with chan.cond:
            if chan.wakes != since:
                return
            if self._path is None:
                chan.cond.wait(seconds)
                return
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                if chan.cond.wait(min(TICK, left)) or self.moved():
                    return
