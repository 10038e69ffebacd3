"""The seal schedule of `guard serve`: every `every` seconds, sign every stream's head (guard.ledger.seals).

A thread of the service, like the notifier. A failed pass (the ledger busy, the sink's disk full) is logged and
tried again at the next one: the seal after it covers everything the missed one would have.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from guard.ledger import Ledger
from guard.ledger.seals import Signer

__all__ = ["SealSchedule"]


@dataclass(frozen=True, slots=True)
class SealSchedule:
    """How `guard serve` seals: with `signer`, appending to `sink`, every `every` seconds."""

    signer: Signer
    sink: Path
    every: float

    def run(self, ledger: Ledger, stop: threading.Event) -> None:
        """Seal every `every` seconds until `stop` is set, and once more on the way out."""
        log = structlog.get_logger("guard.seals")
        while True:
            stopping = stop.wait(self.every)
            try:
                made = ledger.seal(self.signer, sink=self.sink)
                log.info("ledger sealed", seal=made.number, streams=made.streams, changed=made.changed)
            except Exception as exc:  # the next pass seals everything this one would have
                log.warning("seal failed; trying again next pass", error=f"{type(exc).__name__}: {exc}")
            if stopping:
                return
