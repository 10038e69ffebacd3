"""A tamper campaign: hundreds of random tamperings of a sealed ledger, each on a fresh copy, as an outsider
with write access to the file (but not the seal key) would try them. Every tampering of what the last seal covers
is detected and named by stream and row; every tampering after it is detected or listed as not yet sealed."""

from __future__ import annotations

import random
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamper_support import KINDS, Target, build_ledger

from guard.ledger.audit import AuditReport, audit
from guard.ledger.seals import SealFile, generate_key, load_public_key

TAMPERINGS = 528  # 33 of each of the 16 kinds


@pytest.fixture(scope="module")
def sealed_ledger(
    tmp_path_factory: pytest.TempPathFactory, migrated_template: Path
) -> Iterator[tuple[sqlite3.Connection, SealFile]]:
    """One ledger with every covered kind of row, sealed once, then more activity after the seal."""
    root = tmp_path_factory.mktemp("campaign")
    path = root / "guard.db"
    path.write_bytes(migrated_template.read_bytes())
    key = root / "seal.pem"
    public = generate_key(key)
    build_ledger(path, key, root / "seals.jsonl")
    seals = SealFile.read(root / "seals.jsonl", load_public_key(str(public)))
    assert seals.seals == 1 and not seals.problems
    master = sqlite3.connect(path)
    yield master, seals
    master.close()


def _copy(master: sqlite3.Connection) -> sqlite3.Connection:
    copy = sqlite3.connect(":memory:", isolation_level=None)
    master.backup(copy)
    return copy


def _names(report: AuditReport, target: Target) -> bool:
    """A finding names the tampered stream, or the tampered row (table and key)."""
    return any(
        (target.stream is not None and f.stream == target.stream)
        or (target.table is not None and f.table == target.table and f.key == target.key)
        for f in report.findings
    )


def _listed_unsealed(report: AuditReport, target: Target) -> bool:
    return any(u.stream == target.stream for u in report.unsealed) or any(
        (t, k) == (target.table, target.key) for t, k, _s in report.unsealed_rows
    )


def test_the_untouched_sealed_ledger_verifies_and_lists_only_what_came_after_the_seal(
    sealed_ledger: tuple[sqlite3.Connection, SealFile],
) -> None:
    master, seals = sealed_ledger
    report = audit(_copy(master), seals.checkpoints)
    assert report.ok, report.findings
    assert report.rows > 50 and report.streams >= 8
    assert {u.stream for u in report.unsealed} >= {"run:after-run0", "run:before-run1", "reviewer:after-reviewer"}
    assert "run:before-run2" not in {u.stream for u in report.unsealed}


def test_every_tampering_of_sealed_history_is_detected_and_named(
    sealed_ledger: tuple[sqlite3.Connection, SealFile],
) -> None:
    master, seals = sealed_ledger
    latest = seals.latest()
    rng = random.Random(12)
    tally: Counter[tuple[str, str]] = Counter()
    misses: list[str] = []
    kinds = sorted(KINDS)
    done = 0
    while done < TAMPERINGS:
        kind = kinds[done % len(kinds)]
        copy = _copy(master)
        try:
            target = KINDS[kind](copy, rng, latest)
        except sqlite3.IntegrityError:  # the change collides with a unique key: not a tampering the file takes
            target = None
        if target is None:  # nothing of that kind to change in this draw (e.g. two equal values): draw again
            copy.close()
            continue
        done += 1
        report = audit(copy, seals.checkpoints)
        copy.close()
        if target.sealed:
            if report.ok:
                outcome = "missed"
                misses.append(f"{kind} {target}")
            elif not _names(report, target):
                outcome = "unnamed"
                misses.append(f"{kind} {target}: {report.findings[:2]}")
            else:
                outcome = "detected"
        elif not report.ok:
            outcome = "detected after seal"
        elif _listed_unsealed(report, target):
            outcome = "not yet sealed"
        else:
            outcome = "after seal, invisible"
        tally[(kind, outcome)] += 1
    by_outcome = Counter[str]()
    for (_kind, outcome), n in tally.items():
        by_outcome[outcome] += n
    lines = [f"{kind}: " + ", ".join(f"{o} {n}" for (k, o), n in sorted(tally.items()) if k == kind) for kind in kinds]
    print("tamper campaign:", dict(by_outcome), *lines, sep="\n  ")
    assert sum(by_outcome.values()) == TAMPERINGS
    assert not misses, misses[:10]
    assert by_outcome["detected"] >= TAMPERINGS // 2
    # After the seal, only the removal of all that no seal covered can go unseen (README: what is not detected).
    invisible = {k for (k, o) in tally if o == "after seal, invisible"}
    assert invisible <= {"drop_stream", "truncate_tail"}, tally
