"""Wake-ups when a decision commits: at once for the agents of this process, within a few milliseconds for the
agents of other processes on the same SQLite file.

- In this process: a decision committed through any `Ledger` notifies a condition per database URL.
- Across processes (SQLite): the decision also appends a byte to the ledger's wake file (`<file>-wake`, cut back
  to one byte when it reaches 4 KiB). A waiting agent looks at that file's size and time every few milliseconds
  (`Watch`: one `stat`, no query) and reads the ledger only when it changed, or at its slower safety poll.

This is the SQLite half of the seam a PostgreSQL backend fills with LISTEN/NOTIFY.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import suppress
from pathlib import Path

__all__ = ["TICK", "Watch", "changed", "condition", "wake_file"]

TICK = 0.005  # how often a waiting agent looks at the wake file (a stat call: a few microseconds)
_CUT_AT = 4096
_LOCK = threading.Lock()
_CONDITIONS: dict[str, threading.Condition] = {}


def condition(url: str) -> threading.Condition:
    """The condition notified when a decision on the database at `url` commits in this process."""
    with _LOCK:
        found = _CONDITIONS.get(url)
        if found is None:
            found = _CONDITIONS[url] = threading.Condition()
        return found


def wake_file(url: str) -> Path | None:
    """The file a decision on the SQLite ledger at `url` touches, for other processes; None for other databases."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        return None
    return Path(url[len(prefix):].split("?", 1)[0] + "-wake")


def changed(url: str) -> None:
    """Wake the waiters on `url`: this process's at once, other processes' through the wake file (call it after
    the commit). A wake file that cannot be written costs other processes' agents only their safety poll."""
    cond = condition(url)
    with cond:
        cond.notify_all()
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


class Watch:
    """What a waiting agent knows of the wake file: `moved()` is True once a decision was made anywhere since the
    last look (or the file cannot be read: then the caller reads the ledger, as it would have anyway)."""

    __slots__ = ("_last", "_path")

    def __init__(self, url: str) -> None:
        self._path = wake_file(url)
        self._last = self._stamp()

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
        return self._path is not None

    def moved(self) -> bool:
        now = self._stamp()
        if now == self._last:
            return False
        self._last = now
        return True

    def wait(self, cond: threading.Condition, seconds: float) -> None:
        """Wait on `cond` (held by the caller) up to `seconds`, returning early when it is notified or the wake
        file moved; without a wake file (another database), one plain wait."""
        if self._path is None:
            cond.wait(seconds)
            return
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            if cond.wait(min(TICK, left)) or self.moved():
                return
