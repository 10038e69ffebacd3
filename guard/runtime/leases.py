"""Keeping this worker's leases alive while its tools run, so no other worker takes a live call over.

A daemon thread, started with the first call, extends the lease of every call this worker holds every
third of the lease's lifetime. A heartbeat the ledger refuses drops the call from the set, saying why: another
worker took the call over ("lease lost": the tool's own final write will be refused too), the lease ran out by the
database clock before it was renewed, or (said nothing of) this worker ended the call itself meanwhile.

`close()` stops the thread and waits for it: a heartbeat is never half-way through a write when the ledger's
connections close behind it (`Guard.close`).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import TYPE_CHECKING

from structlog.typing import FilteringBoundLogger

from guard.errors import CallInDoubt
from guard.ledger import Beat

if TYPE_CHECKING:
    from guard.ledger import CallsPort

__all__ = ["Heartbeat", "gone_process", "name_dead_holder"]


def gone_process(worker: str | None) -> int | None:
    """The process id of `worker` when it is a default worker id (`host:pid:nonce`) of this host and no process
    with that id runs here any more: that worker is dead. None when it may be alive, ran elsewhere, or is named
    otherwise (nothing can be told from here)."""
    if not worker or os.name != "posix":  # os.kill(pid, 0) is only a probe on POSIX
        return None
    host, _, rest = worker.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) in (0, os.getpid()):
        return None
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return int(pid_text)
    except OSError:  # it exists under another user, or cannot be asked: not known dead
        return None
    return None


def name_dead_holder(exc: CallInDoubt) -> CallInDoubt:
    """The same doubt, saying so when the worker holding the call is known dead (it ran on this host and its
    process is gone), with the command that takes the call over now; `exc` itself otherwise."""
    pid = gone_process(exc.held_by) if exc.in_flight else None
    if pid is None:
        return exc
    return CallInDoubt(
        f"{exc.message} Worker {exc.held_by} ran on this host as process {pid}, which is not "
        f"running any more: it is dead. `guard recover --app MODULE:GUARD --dead-worker {exc.held_by}` "
        "takes its calls over now.",
        **exc.fields,
    )


class Heartbeat:
    def __init__(self, ledger: CallsPort, ttl: float, log: FilteringBoundLogger) -> None:
        self._ledger = ledger
        self._ttl = ttl
        self._log = log
        self._held: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def hold(self, call_id: str, token: int) -> None:
        self._held[call_id] = token
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="guard-heartbeat", daemon=True)
                    self._thread.start()

    def holds(self, call_id: str) -> bool:
        return call_id in self._held

    def release(self, call_id: str) -> None:
        self._held.pop(call_id, None)

    def _loop(self) -> None:
        while not self._stop.wait(self._ttl / 3):
            self.beat()

    def beat(self) -> None:
        """One pass: renew the lease of every call held now. A call the ledger no longer lets this worker renew is
        dropped; only one another worker took over is logged as a lost lease (a call this worker ended after the
        pass read its calls is not: it completed, failed or went in doubt here). Stops at shutdown (`close`)."""
        for call_id, token in list(self._held.items()):
            if self._stop.is_set():
                return
            try:
                found = self._ledger.heartbeat(call_id, token, self._ttl)
            except Exception as exc:  # noqa: BLE001 (logged; the next beat tries again)
                self._log.warning("lease heartbeat failed", call_id=call_id, error=str(exc))
                continue
            if found.beat is Beat.HELD or self._held.get(call_id) != token:
                continue  # renewed; or let go (and perhaps held again under a new token) since the pass began
            self._held.pop(call_id, None)
            if found.beat is Beat.TAKEN_OVER:
                self._log.error(
                    "lease lost: another worker took this call over", call_id=call_id, taken_by=found.holder
                )
            elif found.beat is Beat.RAN_OUT:
                self._log.error(
                    "lease ran out before its heartbeat renewed it: its writes are refused from now on", call_id=call_id
                )

    def close(self) -> None:
        """Stop the heartbeat and wait for a write it is making to end (at most the ledger's lock timeout)."""
        self._stop.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()
