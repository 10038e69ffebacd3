"""`guard serve` seals the ledger on a schedule, and once more when it stops."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from loopback import receiving
from server_support import Service

from guard.ledger import Ledger
from guard.ledger.seals import SealFile, Signer, generate_key, load_public_key
from guard.notify import verify_signature
from guard.server.sealing import SealSchedule, SealWitness


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


def test_each_seal_goes_to_the_witness_signed_and_what_it_got_verifies_as_a_seal_file(
    ledger: Ledger, signer: Signer, tmp_path: Path
) -> None:
    ledger.open_run("r1", "ops", actor="agent")
    key = b"witness-key-0123456789"
    with receiving("/seals") as witness:
        schedule = SealSchedule(signer, tmp_path / "s.jsonl", every=3600.0, witness=SealWitness(witness.url, key))
        stop = threading.Event()
        stop.set()  # one pass, then stop: the seal made on the way out
        schedule.run(ledger, stop)
        ledger.open_run("r2", "ops", actor="agent")
        schedule.run(ledger, stop)
    assert len(witness.got) == 2
    for headers, body in witness.got:
        assert verify_signature(key, headers, body, now=time.time())
    received = tmp_path / "witness.jsonl"  # what a receiver keeps: the `guard.seal` lines, as they came
    received.write_text("".join(json.dumps(b["guard"]["seal"]) + "\n" for b in witness.bodies()))
    sink = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert [json.loads(line) for line in received.read_text().splitlines()] == sink
    seals = SealFile.read(received, load_public_key(str(tmp_path / "seal.pem.pub")))
    assert seals.problems == [] and seals.checkpoints != {}
    forged = tmp_path / "forged.jsonl"  # the witness's copy is checked like the sink: a forged body is caught
    forged.write_text(received.read_text().replace('\\"events\\":', '\\"events\\":1', 1))
    assert SealFile.read(forged, load_public_key(str(tmp_path / "seal.pem.pub"))).problems != []


def test_a_dead_witness_does_not_stop_the_seals(ledger: Ledger, signer: Signer, tmp_path: Path) -> None:
    ledger.open_run("r1", "ops", actor="agent")
    stop = threading.Event()
    stop.set()
    SealSchedule(
        signer,
        tmp_path / "s.jsonl",
        every=3600.0,
        witness=SealWitness("http://127.0.0.1:9/dead", b"k" * 16, attempts=1, timeout=1),
    ).run(ledger, stop)
    assert (ledger.last_seal() or (0, 0.0))[0] == 1
    assert len((tmp_path / "s.jsonl").read_text().splitlines()) == 1
