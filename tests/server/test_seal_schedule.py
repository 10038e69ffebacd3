"""`guard serve` seals the ledger on a schedule, and once more when it stops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from server_support import Service

from guard.ledger import Ledger
from guard.ledger.seals import Signer, generate_key
from guard.server.sealing import SealSchedule


@pytest.fixture
def signer(tmp_path: Path) -> Signer:
    key = tmp_path / "seal.pem"
    generate_key(key)
    return Signer.load(key_file=str(key))


@pytest.fixture
def service_options(signer: Signer, tmp_path: Path) -> dict[str, Any]:
    return {"seals": SealSchedule(signer, tmp_path / "seals.jsonl", every=3600.0)}


@pytest.mark.anyio
async def test_the_service_seals_once_more_when_it_stops(service: Service, tmp_path: Path) -> None:
    async with service.app.router.lifespan_context(service.app):
        assert service.ledger.last_seal() is None  # the first pass is an hour away
    assert service.ledger.last_seal() is not None
    (line,) = (tmp_path / "seals.jsonl").read_text().splitlines()
    assert json.loads(json.loads(line)["body"])["streams"] >= 6  # the tokens the service fixture made


def test_the_schedule_seals_again_every_period(ledger: Ledger, signer: Signer, tmp_path: Path) -> None:
    ledger.open_run("r1", "ops", actor="agent")
    stop = threading.Event()
    thread = threading.Thread(target=SealSchedule(signer, tmp_path / "s.jsonl", every=0.01).run, args=(ledger, stop))
    thread.start()
    deadline = time.monotonic() + 20
    while (ledger.last_seal() or (0, 0.0))[0] < 3 and time.monotonic() < deadline:
        stop.wait(0.01)  # polling the ledger, with a deadline
    stop.set()
    thread.join()
    assert (ledger.last_seal() or (0, 0.0))[0] >= 3
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == (ledger.last_seal() or (0, 0.0))[0]
