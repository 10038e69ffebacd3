"""The seal schedule of `guard serve`: every `every` seconds, sign every stream's head (guard.ledger.seals).

A thread of the service, like the notifier. A failed pass (the ledger busy, the sink's disk full) is logged and
tried again at the next one: the seal after it covers everything the missed one would have.

Each seal may also go to a witness outside the machine (`SealWitness`: a webhook, signed like the teams'
notifications), so that someone who can rewrite both the ledger and the sink file still cannot rewrite what the
witness received. The witness gets the sink's own JSON line under `guard.seal`: a receiver that appends those
lines to a file has a seal file `guard ledger verify --seals` reads.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import structlog

from guard.ledger import Ledger, SealRecord, Signer
from guard.notify.webhook import post, target_of

__all__ = ["SealSchedule", "SealWitness"]


@dataclass(frozen=True, slots=True)
class SealWitness:
    """A webhook each seal is posted to (signed with `key`, as the teams' notifications are)."""

    url: str
    key: bytes
    attempts: int = 3
    timeout: float = 5.0

    def tell(self, made: SealRecord) -> str | None:
        """Post the seal; None when the witness took it, else why not (after the retries)."""
        message = {
            "text": f"Guard ledger sealed: seal {made.number} over {made.streams} streams and {made.events} "
            f"events, root {made.root[:16]}",
            "guard": {"event": "ledger_sealed", "seal_number": made.number, "seal": json.loads(made.line)},
        }
        delivery = post(self.url, message, self.key, attempts=self.attempts, timeout=self.timeout)
        return None if delivery.ok else f"{target_of(self.url)}: {delivery.error}"


@dataclass(frozen=True, slots=True)
class SealSchedule:
    """How `guard serve` seals: with `signer`, appending to `sink`, every `every` seconds."""

    signer: Signer
    sink: Path
    every: float
    witness: SealWitness | None = None

    def run(self, ledger: Ledger, stop: threading.Event) -> None:
        """Seal every `every` seconds until `stop` is set, and once more on the way out."""
        log = structlog.get_logger("guard.seals")
        while True:
            stopping = stop.wait(self.every)
            try:
                made = ledger.seal(self.signer, sink=self.sink)
                log.info("ledger sealed", seal=made.number, streams=made.streams, changed=made.changed)
                if self.witness is not None and (why := self.witness.tell(made)) is not None:
                    log.warning(
                        "seal not taken by the witness; the sink file and the ledger hold it",
                        seal=made.number,
                        error=why,
                    )
            except Exception as exc:  # noqa: BLE001 (the next pass seals everything this one would have)
                log.warning("seal failed; trying again next pass", error=f"{type(exc).__name__}: {exc}")
            if stopping:
                return
