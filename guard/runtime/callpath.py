"""`CallPath`: what every step of a guarded call needs, in one frozen object (never the whole `Guard`).

A `Guard` builds one when it is made; the steps (`driver.py`, `failure.py`, `saga.py`, `recovery.py`, the tools
and runs) take it as their first argument. None of them imports `Guard`: the runtime's modules form layers
(the `guard.runtime` contract in pyproject.toml), and `Guard` is the facade on top that wires them.

`tools` is the registry of the Guard's tools by policy name (the Guard adds to it as tools are wrapped): recovery
and sagas find a tool's function and its hooks there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from guard.ledger import CallPathLedger
from guard.policy import PolicySet
from guard.runtime.arguments import ArgumentRules
from guard.runtime.hooks import ToolHooks, ToolSpec
from guard.runtime.leases import Heartbeat
from guard.runtime.tracing import Tracing
from guard.runtime.waiting import Waiter

__all__ = ["CallPath", "Durability", "WaitMode"]

WaitMode = Literal["block", "defer"]
Durability = Literal["by_class", "always"]


@dataclass(frozen=True, slots=True)
class CallPath:
    """The ledger, the policies and the settings one guarded call runs with (see `Guard` for each setting)."""

    ledger: CallPathLedger  # the ledger's doors a call uses (guard.ledger.ports)
    policies: PolicySet
    arguments: ArgumentRules
    log: Any  # structlog BoundLogger
    actor: str
    worker_id: str
    lease_ttl: float
    approval: WaitMode
    approval_timeout: float
    durability: Durability
    heartbeat: Heartbeat
    waiter: Waiter
    tracing: Tracing | None
    tools: Mapping[str, ToolSpec]  # the Guard's tools by name (filled in as tools are wrapped)
    pool: Callable[[], ThreadPoolExecutor]  # worker threads for sync tools with a per-attempt timeout

    def hooks_of(self, name: str) -> ToolHooks | None:
        spec = self.tools.get(name)
        return spec.hooks if spec is not None else None

    def label_of(self, name: str) -> str | None:
        spec = self.tools.get(name)
        return spec.hooks.label if spec is not None else None
