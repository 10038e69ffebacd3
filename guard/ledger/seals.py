"""Seals: signed checkpoints of every stream's head, kept in the ledger and outside it.

A seal is a JSON body signed with Ed25519 by a key the ledger never holds (a PEM file, or a PEM in an
environment variable, named by the operator). The body has the seal's number, time, the SHA-256 of the previous
seal's body (`prev`), the Merkle root over (stream, length, head) of every stream, and the heads of the streams
that changed since the previous seal (`heads`). Every seal is written to the `seals` table and appended as one
JSON line to a sink file the operator ships elsewhere (`guard ledger seal`, and `guard serve` on a schedule).

`SealFile.read` checks a sink file with the public key alone: every signature, the `prev` chain (a seal cut out
of the file is found), and the last seal's root against the heads accumulated from every line (a lost line of
heads is found). What it yields, every stream's sealed checkpoints, is what `guard.ledger.audit` compares the
ledger against.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from guard.errors import GuardUsageError
from guard.ledger.backend import Connections
from guard.ledger.moves import heads_in_events

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = ["LedgerSeals", "SealFile", "Signer", "generate_key", "load_public_key", "merkle_root"]

# Every stream's head row and its head as last sealed (or none), in one statement: one snapshot, so the changed
# heads are exactly those of the cut the root signs, while writers go on extending streams (READ COMMITTED).
_HEADS = (
    "SELECT s.stream, s.length, s.head FROM stream_heads s LEFT JOIN sealed_heads p ON p.stream = s.stream "
    "WHERE p.stream IS NULL OR p.length != s.length OR p.head != s.head"
)
_SEALED = "SELECT stream, length, head FROM sealed_heads"
# SQLite keeps no head row for a run's stream (guard.ledger.moves.heads_kept): the runs' heads that moved since the
# last seal are the last events of their streams among the events after it. SQLite commits its writers one at a
# time, in id order, so every event up to the previous seal's `upto` was in that seal's cut.
_RUN_EVENTS_AFTER = (
    "SELECT stream, seq, hash FROM events WHERE id > ? AND id <= ? AND stream >= 'run:' AND stream < 'run;' ORDER BY id"
)


def merkle_root(leaves: Iterable[tuple[str, int, str]]) -> str:
    """SHA-256 Merkle root over (stream, length, head), sorted by stream; leaves and nodes are domain-separated."""
    level = [hashlib.sha256(b"\x00" + f"{s}\x1f{n}\x1f{h}".encode()).digest() for s, n, h in sorted(leaves)]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        nxt = [hashlib.sha256(b"\x01" + level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0].hex()


def _key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


class Signer:
    """An Ed25519 private key that signs seals. Never stored in the ledger."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.key_id = _key_id(key.public_key())

    @classmethod
    def from_pem(cls, pem: bytes, where: str) -> Signer:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise GuardUsageError(f"{where}: not an unencrypted PEM private key ({exc})") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise GuardUsageError(f"{where}: the seal key must be Ed25519 (make one with `guard ledger keygen`)")
        return cls(key)

    @classmethod
    def load(cls, *, key_file: str | None = None, key_env: str | None = None) -> Signer:
        """The key from a PEM file, or from the environment variable named `key_env` holding the PEM."""
        if key_file:
            try:
                return cls.from_pem(Path(key_file).read_bytes(), key_file)
            except OSError as exc:
                raise GuardUsageError(f"{key_file}: cannot read the seal key ({exc.strerror})") from exc
        if key_env:
            pem = os.environ.get(key_env)
            if not pem:
                raise GuardUsageError(f"${key_env} is empty: it must hold the seal key's PEM")
            return cls.from_pem(pem.encode(), f"${key_env}")
        raise GuardUsageError("name the seal key: --key-file FILE or --key-env VAR (the ledger never holds it)")

    def sign(self, body: bytes) -> str:
        return base64.b64encode(self._key.sign(body)).decode()


def generate_key(path: Path) -> Path:
    """Write a new Ed25519 private key (PEM, mode 0600) to `path` and its public key to `path.pub`; returns
    the public key's path. Refuses to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    pub_path = path.with_name(path.name + ".pub")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise GuardUsageError(f"{path} exists: a seal key is never overwritten") from exc
    with os.fdopen(fd, "wb") as out:
        out.write(private)
    pub_path.write_bytes(public)
    return pub_path


def load_public_key(text_or_path: str) -> Ed25519PublicKey:
    """A public key from a PEM file, or base64 of its 32 raw bytes."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    path = Path(text_or_path)
    try:
        if path.is_file():
            key = serialization.load_pem_public_key(path.read_bytes())
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(text_or_path, validate=True))
    except (ValueError, TypeError) as exc:
        raise GuardUsageError(f"{text_or_path}: not an Ed25519 public key (PEM file or base64) ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise GuardUsageError(f"{text_or_path}: not an Ed25519 public key")
    return key


@dataclass(frozen=True, slots=True)
class SealRecord:
    """One seal as made: its number, time, root, how many streams and events it covers, and its JSON line."""

    number: int
    at: float
    root: str
    streams: int
    events: int
    changed: int  # streams whose head changed since the previous seal
    line: str  # the JSON line written to the sink: {"body": ..., "signature": ..., "key_id": ...}


class LedgerSeals:
    conns: Connections

    def seal(self, signer: Signer, *, sink: Path | None = None) -> SealRecord:
        """Sign every stream's head now; write the seal to the ledger, then append it to `sink` (fsynced).

        One write transaction reads the heads, so the seal is a consistent cut. When the sink cannot be written
        the seal stays in the ledger and the error says so: the next seal's `prev` then names it, and a
        verifier of the sink sees that one seal is missing from it.
        """
        with self.conns.write(lock="seal") as cur:  # one sealer at a time: each seal names the one before
            now = self.conns.backend.clock(cur)
            cur.execute("SELECT id, body FROM seals ORDER BY id DESC LIMIT 1")
            last = cur.fetchone()
            number = int(last[0]) + 1 if last else 1
            prev = hashlib.sha256(str(last[1]).encode()).hexdigest() if last else ""
            heads, changed, upto = _cut(cur, json.loads(str(last[1])).get("upto", 0) if last else 0)
            leaves = [(s, n, h) for s, (n, h) in heads.items()]
            events = sum(n for n, _h in heads.values())
            root = merkle_root(leaves)
            fields: dict[str, Any] = {
                "v": 1,
                "seal": number,
                "at": now,
                "prev": prev,
                "root": root,
                "streams": len(leaves),
                "events": events,
                "key_id": signer.key_id,
                "heads": {s: list(changed[s]) for s in sorted(changed)},
            }
            if upto is not None:
                fields["upto"] = upto
            body = json.dumps(fields, separators=(",", ":"), sort_keys=True)
            signature = signer.sign(body.encode())
            cur.execute(
                "INSERT INTO seals (id, at, root, streams, events, key_id, body, signature) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (number, now, root, len(leaves), events, signer.key_id, body, signature),
            )
            cur.executemany(
                "INSERT INTO sealed_heads (stream, length, head) VALUES (?, ?, ?) ON CONFLICT (stream) "
                "DO UPDATE SET length = excluded.length, head = excluded.head",
                [(s, n, h) for s, (n, h) in sorted(changed.items())],
            )
        line = json.dumps({"body": body, "signature": signature, "key_id": signer.key_id}, separators=(",", ":"))
        if sink is not None:
            try:
                with sink.open("a", encoding="utf-8") as out:
                    out.write(line + "\n")
                    out.flush()
                    os.fsync(out.fileno())
            except OSError as exc:
                raise GuardUsageError(
                    f"seal {number} is in the ledger but could not be appended to {sink} "
                    f"({exc.strerror}); copy it from the ledger's seals table"
                ) from exc
        return SealRecord(number, now, root, len(leaves), events, len(changed), line)

    def last_seal(self) -> tuple[int, float] | None:
        """The number and time of the newest seal in the ledger, or None."""
        with self.conns.read() as cur:
            cur.execute("SELECT id, at FROM seals ORDER BY id DESC LIMIT 1")
            row = cur.fetchone()
        return None if row is None else (int(row[0]), float(row[1]))


def _cut(cur: Any, after: int) -> tuple[dict[str, tuple[int, str]], dict[str, tuple[int, str]], int | None]:
    """Inside the seal's write transaction: every stream's head (the sealed ones, with those that moved since),
    the heads that moved, and on SQLite the last event id of the cut (`upto`, where the next seal's search of the
    runs' events starts; None on PostgreSQL, which keeps every head as a row)."""
    cur.execute(_SEALED)
    heads = {str(s): (int(n), str(h)) for s, n, h in cur.fetchall()}
    cur.execute(_HEADS)
    changed = {str(s): (int(n), str(h)) for s, n, h in cur.fetchall()}
    upto = None
    if heads_in_events(cur):
        upto = int(cur.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])
        cur.execute(_RUN_EVENTS_AFTER, (int(after), upto))
        while batch := cur.fetchmany(2000):
            for s, n, h in batch:
                changed[str(s)] = (int(n), str(h))
        changed = {s: head for s, head in changed.items() if heads.get(s) != head}
    heads.update(changed)
    return heads, changed, upto


@dataclass(slots=True)
class SealFile:
    """A sink file of seals, checked with the public key: every stream's sealed checkpoints, and what is wrong
    with the file itself (`problems`: a bad signature, a seal missing from the chain, a root that does not
    match the heads)."""

    checkpoints: dict[str, list[tuple[int, str]]] = field(default_factory=dict[str, list[tuple[int, str]]])
    seals: int = 0
    last_at: float | None = None
    problems: list[str] = field(default_factory=list[str])

    def latest(self) -> dict[str, tuple[int, str]]:
        return {s: points[-1] for s, points in self.checkpoints.items()}

    @classmethod
    def read(cls, path: Path, public_key: Ed25519PublicKey) -> SealFile:
        from cryptography.exceptions import InvalidSignature

        found = cls()
        prev = ""
        root = None
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise GuardUsageError(f"{path}: cannot read the seals ({exc.strerror})") from exc
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                entry: dict[str, Any] = json.loads(line)
                body_text = str(entry["body"])
                public_key.verify(base64.b64decode(str(entry["signature"])), body_text.encode())
                body: dict[str, Any] = json.loads(body_text)
            except InvalidSignature:
                found.problems.append(
                    f"{path}:{n}: the signature does not match the public key: a forged or altered seal"
                )
                continue
            except (ValueError, KeyError, TypeError) as exc:
                found.problems.append(f"{path}:{n}: not a seal ({exc})")
                continue
            if body.get("prev", "") != prev:
                found.problems.append(
                    f"{path}:{n}: seal {body.get('seal')} does not follow the seal before it in "
                    "this file: a seal is missing between them"
                )
            prev = hashlib.sha256(body_text.encode()).hexdigest()
            heads: dict[str, list[Any]] = body.get("heads", {})
            for stream, (length, head) in heads.items():
                points = found.checkpoints.setdefault(stream, [])
                points.append((int(length), str(head)))
            found.seals += 1
            found.last_at = float(body["at"])
            root = str(body["root"])
        if root is not None:
            leaves = [(s, n, h) for s, (n, h) in found.latest().items()]
            if merkle_root(leaves) != root:
                found.problems.append(
                    f"{path}: the last seal's root does not match the heads of every seal in the "
                    "file: a seal's line was lost or altered"
                )
        return found
