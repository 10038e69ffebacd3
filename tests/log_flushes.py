"""`fdatasync` calls of this process, seen at the OS call: what a SQLite ledger's durable write waits for
(`guard.ledger.log_sync`)."""

from __future__ import annotations

import os
from collections.abc import Callable, Generator
from contextlib import contextmanager
from unittest.mock import patch


@contextmanager
def spied_flushes(on_flush: Callable[[int], None] | None = None) -> Generator[list[tuple[int, int]]]:
    """Every `fdatasync` this process makes while the block runs: (st_dev, st_ino) of the file it flushed, in
    order. `on_flush`, when given, is called just before each, with the descriptor."""
    real = os.fdatasync
    files: list[tuple[int, int]] = []

    def spy(fd: int) -> None:
        if on_flush is not None:
            on_flush(fd)
        st = os.fstat(fd)
        files.append((st.st_dev, st.st_ino))
        real(fd)

    with patch.object(os, "fdatasync", spy):
        yield files


def file_of(path: str) -> tuple[int, int]:
    """(st_dev, st_ino) of the file at `path`, as `spied_flushes` lists it."""
    st = os.stat(path)
    return st.st_dev, st.st_ino
