"""Seals: signed checkpoints of every stream's head, kept outside the ledger, checked with the public key alone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from ledger_support import AGENT, TEAM, request
from typer.testing import CliRunner

from guard.cli.app import app
from guard.errors import GuardUsageError
from guard.ledger import HEAD_REVISION, Ledger, upgrade
from guard.ledger.seals import SealFile, Signer, generate_key, load_public_key, merkle_root

runner = CliRunner()


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, Path]:
    private = tmp_path / "keys" / "seal.pem"
    private.parent.mkdir()
    return private, generate_key(private)


def _calls(ledger: Ledger, run_id: str, n: int = 2) -> None:
    ledger.open_run(run_id, TEAM, actor=AGENT)
    for _ in range(n):
        done = ledger.offer(request(run_id))
        ledger.complete(
            run_id, done.call_id, token=done.lease_token, result_json="{}", external_ids={}, attempts=1, actor=AGENT
        )


def test_guard_ledger_seal_appends_a_signed_line_and_verify_lists_later_events_as_not_yet_sealed(
    ledger: Ledger, db_path: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    _calls(ledger, "r1")
    sink = tmp_path / "seals.jsonl"
    sealed = runner.invoke(
        app, ["ledger", "seal", "--db", str(db_path), "--key-file", str(key[0]), "--sink", str(sink)]
    )
    assert sealed.exit_code == 0, sealed.output
    assert "seal 1: 1 streams" in sealed.output
    _calls(ledger, "r2", 1)
    result = runner.invoke(
        app, ["ledger", "verify", "--db", str(db_path), "--seals", str(sink), "--public-key", str(key[1]), "--json"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] and data["seals"] == 1
    assert data["not_yet_sealed"]["list"] == [{"stream": "run:r2", "first": 1, "last": 3}]
    assert ["calls", ledger.calls_of("r2")[0].call_id, "run:r2"] in data["not_yet_sealed"]["row_list"]
    with sqlite3.connect(db_path) as raw:
        assert raw.execute("SELECT count(*) FROM seals").fetchone()[0] == 1
    assert key[0].read_bytes() not in db_path.read_bytes()  # the private key is never in the ledger


def test_a_tail_cut_with_its_head_moved_back_passes_without_seals_and_is_named_with_them(
    ledger: Ledger, db_path: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    _calls(ledger, "r1")
    sink = tmp_path / "seals.jsonl"
    ledger.seal(Signer.load(key_file=str(key[0])), sink=sink)
    with sqlite3.connect(db_path) as raw:
        raw.execute("DELETE FROM events WHERE stream = 'run:r1' AND seq > 3")  # the second call's events
        (head,) = raw.execute("SELECT hash FROM events WHERE stream = 'run:r1' AND seq = 3").fetchone()
        raw.execute("UPDATE stream_heads SET length = 3, head = ? WHERE stream = 'run:r1'", (head,))
        raw.execute("DELETE FROM calls WHERE seq = 2")  # and the call they recorded
    assert ledger.verify_chain().ok  # the ledger alone agrees with itself: that is what the seal is for
    report = ledger.verify_chain(SealFile.read(sink, load_public_key(str(key[1]))).checkpoints)
    truncated = [f for f in report.findings if f.kind == "stream_truncated"]
    assert truncated and truncated[0].stream == "run:r1" and "sealed with 5 events" in truncated[0].problem


def test_a_seal_line_removed_or_altered_is_named_by_the_file_check(
    ledger: Ledger, key: tuple[Path, Path], tmp_path: Path
) -> None:
    signer = Signer.load(key_file=str(key[0]))
    sink = tmp_path / "seals.jsonl"
    for run in ("r1", "r2", "r3"):
        _calls(ledger, run, 1)
        ledger.seal(signer, sink=sink)
    public = load_public_key(str(key[1]))
    whole = SealFile.read(sink, public)
    assert whole.seals == 3 and not whole.problems
    assert set(whole.latest()) == {"run:r1", "run:r2", "run:r3"}
    lines = sink.read_text().splitlines()
    cut = tmp_path / "cut.jsonl"
    cut.write_text("\n".join([lines[0], lines[2]]) + "\n")
    problems = SealFile.read(cut, public).problems
    assert any("a seal is missing" in p for p in problems) and any("root" in p for p in problems)
    entry = json.loads(lines[1])
    entry["body"] = entry["body"].replace('"seal":2', '"seal":7')
    forged = tmp_path / "forged.jsonl"
    forged.write_text("\n".join([lines[0], json.dumps(entry), lines[2]]) + "\n")
    assert any("forged or altered" in p for p in SealFile.read(forged, public).problems)


def test_a_later_seal_signs_only_the_streams_that_changed_and_the_root_of_all(
    ledger: Ledger, key: tuple[Path, Path], tmp_path: Path
) -> None:
    signer = Signer.load(key_file=str(key[0]))
    _calls(ledger, "r1", 1)
    _calls(ledger, "r2", 1)
    first = ledger.seal(signer)
    _calls(ledger, "r2", 1)
    second = ledger.seal(signer)
    body = json.loads(json.loads(second.line)["body"])
    assert first.changed == 2 and second.changed == 1 and list(body["heads"]) == ["run:r2"]
    with ledger.conns.read() as cur:  # every stream's head: its last event (SQLite keeps no row for a run's)
        cur.execute("SELECT stream, seq, hash FROM events ORDER BY id")
        heads = {stream: (stream, seq, head) for stream, seq, head in cur.fetchall()}
        assert body["root"] == merkle_root(heads.values())


def test_the_seal_key_comes_from_a_named_environment_variable_and_a_missing_key_is_a_clear_error(
    key: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SEAL_PEM", key[0].read_text())
    assert Signer.load(key_env="SEAL_PEM").key_id == Signer.load(key_file=str(key[0])).key_id
    with pytest.raises(GuardUsageError, match="--key-file FILE or --key-env VAR"):
        Signer.load()
    with pytest.raises(GuardUsageError, match="is empty"):
        Signer.load(key_env="NO_SUCH_VARIABLE_SET")
    with pytest.raises(GuardUsageError, match="never overwritten"):
        generate_key(key[0])


def test_verify_without_a_public_key_for_the_seals_refuses(db_path: Path, ledger: Ledger, tmp_path: Path) -> None:
    result = runner.invoke(app, ["ledger", "verify", "--db", str(db_path), "--seals", str(tmp_path / "s.jsonl")])
    assert result.exit_code == 1 and "--seals and --public-key go together" in result.output


@pytest.mark.tampers
def test_a_ledger_sealed_with_run_head_rows_upgrades_to_none_and_its_next_seal_covers_the_runs_moved_since(
    db_path: Path, key: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before 0014 a SQLite ledger kept a head row per run; the upgrade deletes them (a run's head is its last
    event) and neither verify nor the next seal misses one: the moved run is in the seal, the others unchanged."""
    url = f"sqlite:///{db_path}"
    signer = Signer.load(key_file=str(key[0]))
    sink = tmp_path / "seals.jsonl"
    ledger = Ledger(url)
    try:
        _calls(ledger, "r1", 1)
        _calls(ledger, "r2", 1)
        ledger.seal(signer, sink=sink)
    finally:
        ledger.close()
    with sqlite3.connect(db_path) as raw:  # as 0013 left it: each run's head as a row, the revision before 0014
        raw.execute(
            "INSERT INTO stream_heads (stream, length, head) SELECT stream, max(seq), hash FROM events "
            "WHERE stream LIKE 'run:%' GROUP BY stream"
        )
        raw.execute("UPDATE alembic_version SET version_num = '0013_drills'")
    assert upgrade(url) == HEAD_REVISION  # `guard db upgrade`
    ledger = Ledger(url)
    try:
        with sqlite3.connect(db_path) as raw:
            assert raw.execute("SELECT count(*) FROM stream_heads WHERE stream LIKE 'run:%'").fetchone()[0] == 0
        _calls(ledger, "r2", 1)
        second = ledger.seal(signer, sink=sink)
        body = json.loads(json.loads(second.line)["body"])
        assert list(body["heads"]) == ["run:r2"] and body["heads"]["run:r2"][0] == 5
        assert body["streams"] == 2 and body["upto"] > 0
        report = ledger.verify_chain(SealFile.read(sink, load_public_key(str(key[1]))).checkpoints)
        assert report.ok and report.unsealed_events == 0, report.findings
        with sqlite3.connect(db_path) as raw:  # the run's last two events cut: named against the seal
            raw.execute("DELETE FROM events WHERE stream = 'run:r2' AND seq > 3")
        cut = ledger.verify_chain(SealFile.read(sink, load_public_key(str(key[1]))).checkpoints)
        assert [(f.kind, f.stream) for f in cut.findings if f.kind == "stream_truncated"] == [
            ("stream_truncated", "run:r2")
        ]
    finally:
        ledger.close()
