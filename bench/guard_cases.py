# pyright: basic
# bench runs in its own venv (.venv-bench) with its peers; see the [tool.pyright] comment in pyproject.toml.
"""Guard-specific code of the benchmark (with seed.py, the only modules that import `guard`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
POLICY_DIR = BENCH_DIR / "policies"
POLICY_FILE = POLICY_DIR / "bench.yaml"


def make_guarded_noop(db_path: str, log_level: str = "warning") -> tuple[Callable[[], Any], Callable[[], None]]:
    """(call, closer): call() makes one auto-approved guarded no-op tool call inside an open run.

    The run is opened here and closed by closer(), so the timed loop measures tool calls only
    (opening/closing a run is not in the per-call figure). `bench.noop` is class `idempotent` in
    bench/policies/bench.yaml, so every call is allowed without approval and recorded in the ledger.

    Each call passes a fresh argument `i`: Guard keys a non-read call by (run, tool, args hash), so
    calling an idempotent tool twice with the same arguments in one run is deduplicated (the second
    call only looks the first one up) — without `i` this would time the dedupe path, not a call.
    """
    import itertools

    from guard import Guard

    # log_level: Guard logs one `info` line per call to stderr by default; the headline rows run at
    # `warning` (Guard's mechanism, not a log sink's); the runner adds one row at `info` into /dev/null.
    g = Guard(policies=str(POLICY_DIR), db=f"sqlite:///{db_path}", log_level=log_level)
    noop = g.tool(lambda i: None, name="bench.noop")
    run_cm = g.run(team="bench")
    run_cm.__enter__()
    counter = itertools.count()

    def call() -> Any:
        return noop(i=next(counter))

    def closer() -> None:
        try:
            run_cm.__exit__(None, None, None)
        finally:
            g.close()

    return call, closer


def make_classifier() -> Callable[[str, dict[str, Any]], Any]:
    """callable(tool, args): Guard's policy classification alone (no ledger, no run)."""
    from guard.policy import load_policy

    policy = load_policy(str(POLICY_FILE))
    # Sanity: same behaviour as the Edictum rule it is compared with (allow below, approval above 50000).
    small = str(getattr(policy.classify("billing.create_invoice", {"amount_cents": 100}), "verdict", "allow"))
    big = str(getattr(policy.classify("billing.create_invoice", {"amount_cents": 60_000}), "verdict", "approve"))
    if "allow" not in small.lower() or "approve" not in big.lower():
        raise RuntimeError(f"bench policy misbehaves: small={small} big={big}")
    return policy.classify
