"""The ledger's ports by role: `Ledger` is the one implementation of each, method for method."""

from __future__ import annotations

import inspect

import pytest

from guard.ledger import (
    ApprovalsPort,
    CallPathLedger,
    CallsPort,
    Ledger,
    NoticesPort,
    PausesPort,
    ReadsPort,
    ReviewersPort,
)

PORTS: list[type] = [ApprovalsPort, CallPathLedger, CallsPort, NoticesPort, PausesPort, ReadsPort, ReviewersPort]


def _methods(port: type) -> list[str]:
    return sorted(n for n, v in vars(port).items() if inspect.isfunction(v) and not n.startswith("_")) + sorted(
        n
        for base in port.__mro__[1:]
        if base is not object
        for n, v in vars(base).items()
        if inspect.isfunction(v) and not n.startswith("_")
    )


@pytest.mark.parametrize("port", PORTS, ids=lambda p: p.__name__)
def test_every_method_of_a_port_is_ledgers_with_the_same_parameters(port: type) -> None:
    """A port names only what Ledger has, with the parameters Ledger takes (names, kinds and defaults)."""
    for name in _methods(port):
        ours = inspect.signature(getattr(port, name))
        theirs = inspect.signature(getattr(Ledger, name))
        shape = [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in ours.parameters.values()]
        assert shape == [(p.name, p.kind, p.default is inspect.Parameter.empty) for p in theirs.parameters.values()], (
            f"{port.__name__}.{name}"
        )


def test_every_public_method_of_the_ledger_has_a_door_but_the_seals() -> None:
    """Each public method of Ledger belongs to one of the role ports, except sealing (an operator's act on its own)."""
    roles = [CallsPort, ReadsPort, ApprovalsPort, ReviewersPort, PausesPort, NoticesPort]
    doors = {name for port in roles for name in _methods(port)} | {"close"}
    public = {n for n, _ in inspect.getmembers(Ledger, inspect.isfunction) if not n.startswith("_")}
    assert public - doors == {"seal", "last_seal"}


def test_a_ledger_is_each_port_for_the_type_checker() -> None:
    """Assigning a Ledger to each port type-checks (pyright strict runs over this file)."""
    ledger = Ledger.__new__(Ledger)  # no database needed: only its type is looked at
    ports: tuple[CallsPort, ReadsPort, ApprovalsPort, ReviewersPort, PausesPort, NoticesPort, CallPathLedger] = (
        ledger,
        ledger,
        ledger,
        ledger,
        ledger,
        ledger,
        ledger,
    )
    assert all(p is ledger for p in ports)
