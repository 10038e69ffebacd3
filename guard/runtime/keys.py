"""The per-deployment key of the keyed argument hash (see `guard.canonical.bound_hash`). Never in the ledger.

Where it comes from, first found wins:
1. `Guard(secret_key=...)`;
2. `GUARD_SECRET_KEY` (at least 16 characters; the same value on every worker of one ledger);
3. `GUARD_SECRET_KEY_FILE` (a file holding it);
4. a SQLite ledger file `dir/name.db`: the file `dir/.name.db.key` beside it, made once with 32 random bytes
   and mode 0600 the first time a call needs it (every process on that file then reads the same key).
Otherwise (a PostgreSQL ledger with no key set) a call whose arguments hold secrets fails closed with
`SecretKeyMissing`, before anything is recorded. Calls without secrets never need the key.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from pathlib import Path

from guard.errors import SecretKeyMissing
from guard.ledger import sqlite_path

__all__ = ["SecretKey", "key_file_for"]

ENV = "GUARD_SECRET_KEY"
ENV_FILE = "GUARD_SECRET_KEY_FILE"
_MIN_CHARS = 16


def key_file_for(db: Path) -> Path:
    """The key file made beside a SQLite ledger (hidden, and outside a `name.db*` glob of ledger files)."""
    return db.with_name(f".{db.name}.key")


class SecretKey:
    """Resolves the key once, on first use (`get`), and keeps it in memory."""

    def __init__(self, url: str, explicit: bytes | str | None = None) -> None:
        self._url = url
        self._key = (
            _check(explicit.encode() if isinstance(explicit, str) else explicit, "secret_key")
            if explicit is not None
            else None
        )
        self._lock = threading.Lock()

    def get(self, tool: str) -> bytes:
        """The key; raises SecretKeyMissing (naming `tool`) when none can be had."""
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = self._resolve(tool)
        return self._key

    def _resolve(self, tool: str) -> bytes:
        if value := os.environ.get(ENV):
            return _check(value.encode(), ENV)
        if path := os.environ.get(ENV_FILE):
            try:
                return _check(Path(path).read_bytes().strip(), f"{ENV_FILE} ({path})")
            except OSError as exc:
                raise SecretKeyMissing(
                    f"{ENV_FILE} names {path}, which cannot be read ({exc.strerror})", tool=tool
                ) from None
        db = sqlite_path(self._url)
        if db is None:
            raise SecretKeyMissing(
                f"{tool}: its arguments hold secrets, and their hash must be keyed so that nobody can guess a secret "
                f"from it; no key is configured for this ledger: set {ENV} (the same value on every worker, at "
                f"least {_MIN_CHARS} characters) or {ENV_FILE}, or pass Guard(secret_key=...)",
                tool=tool,
            )
        return _beside(key_file_for(db), tool)


def _check(key: bytes, source: str) -> bytes:
    if len(key) < _MIN_CHARS:
        raise SecretKeyMissing(f"{source} is shorter than {_MIN_CHARS} characters: use a long random value", tool="")
    return key


def _beside(path: Path, tool: str) -> bytes:
    """Read the key file, or make it: written to a private temporary file, then linked into place, so two
    processes racing to make it both end up with the one that won."""
    try:
        return _check(path.read_bytes().strip(), str(path))
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise SecretKeyMissing(f"{tool}: the key file {path} cannot be read ({exc.strerror})", tool=tool) from None
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(secrets.token_hex(32).encode())
        with contextlib.suppress(FileExistsError):  # another process made it first: use theirs
            os.link(tmp, path)
        return _check(path.read_bytes().strip(), str(path))
    except OSError as exc:
        raise SecretKeyMissing(
            f"{tool}: the key file {path} cannot be made ({exc.strerror}); set {ENV} instead", tool=tool
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
