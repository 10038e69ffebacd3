# pyright: strict
"""`LivePolicies`: a policy directory that a long-running process reads again when its files change.

The approval service runs for days while policy owners edit `reviewers:`. It must follow those edits
without a restart. A reviewer taken off a team loses authority at the next check. A file broken by an edit
denies its team, as at start-up. A directory that cannot be listed any more leaves no team with reviewers.
"""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

from guard.errors import PolicyError
from guard.policy._load import read_bytes
from guard.policy._set import PolicySet, policy_files

__all__ = ["LivePolicies"]


class LivePolicies:
    """The current `PolicySet` of a directory, re-read when a `*.yaml` file in it is added, removed or changed.

    Args:
        directory: the folder of `<team>.yaml` files.
        every: seconds between two looks at the files (0: on every `current()`). A look reads the files and
            hashes them; a set is built again only when the hashes differ.

    Raises:
        PolicyError: the directory cannot be listed when the object is made. Later, the same failure is not
            raised: every team is then left without policy (no reviewer may act) until the folder is back.
    """

    def __init__(self, directory: str | Path, *, every: float = 1.0) -> None:
        self.directory = Path(directory)
        self.every = every
        self._lock = threading.Lock()
        self._fingerprint = self._look()
        self._set = PolicySet.load_dir(self.directory)
        self._checked = time.monotonic()

    def current(self) -> PolicySet:
        """The policies as the files say now (at most `every` seconds old)."""
        if time.monotonic() - self._checked < self.every:
            return self._set
        with self._lock:
            now = time.monotonic()
            if now - self._checked >= self.every:
                self._checked = now
                fingerprint = self._look()
                if fingerprint != self._fingerprint:
                    self._set = self._load()
                    self._fingerprint = fingerprint
            return self._set

    def _look(self) -> tuple[tuple[str, str], ...] | None:
        """(file name, SHA-256 of its bytes) of every policy file; None when the folder cannot be listed."""
        try:
            files = policy_files(self.directory)
        except OSError:
            return None
        seen: list[tuple[str, str]] = []
        for file in files:
            try:  # the loader's own reader: a FIFO or a huge file is refused here too, never waited on
                seen.append((file.name, hashlib.sha256(read_bytes(file)).hexdigest()))
            except PolicyError as exc:  # unreadable now: the load below reports it as that team's error
                seen.append((file.name, f"unreadable: {exc.fields['reason']}"))
        return tuple(seen)

    def _load(self) -> PolicySet:
        try:
            return PolicySet.load_dir(self.directory)
        except PolicyError:
            return PolicySet({}, {}, self.directory)  # fail closed: no team, no reviewer
