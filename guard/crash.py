"""Named crash points on the call path, for kill tests. No-ops unless `GUARD_CRASH_AT` or `GUARD_STOP_AT` is set.

`GUARD_CRASH_AT=after_offer` kills the process (SIGKILL: no cleanup, no `finally`, like a dead machine) the
first time that point is reached; `GUARD_CRASH_AT=after_offer@3` the third time. `GUARD_STOP_AT` (same
spelling) stops it instead (SIGSTOP, like a worker paused by the OS or a debugger): the test sees it stopped
(`waitpid(WUNTRACED)`), acts, and lets it go on with SIGCONT. The variables are read once, at import, so a
normal process pays one attribute test per point.

Points on the path: before_offer, after_offer (the first commit: a call is `started`, or `awaiting_approval`),
after_approved (an approved call moved to `started`), before_tool, after_return (the tool returned; `completed`
not yet committed), after_completed, before_run_close (the agent's block ended; the run's close not yet
committed), before_compensation, after_compensation, after_recover_claim; in_migration (a SQLite ledger's migration
holds its lock, nothing of it done yet).
A tool under test may add its own, e.g. `crash_point("after_effect")` between its effect and its return.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "crash_point"]

POINTS = (
    "before_offer",
    "after_offer",
    "after_approved",
    "before_tool",
    "after_effect",
    "after_return",
    "after_completed",
    "before_run_close",
    "before_compensation",
    "after_compensation",
    "after_recover_claim",
    "in_migration",
)


def _armed() -> tuple[str, int, signal.Signals] | None:
    for variable, sig in (("GUARD_CRASH_AT", signal.SIGKILL), ("GUARD_STOP_AT", signal.SIGSTOP)):
        spec = os.environ.get(variable, "").strip()
        if spec:
            name, _, nth = spec.partition("@")
            return name, int(nth or "1"), sig
    return None


_ARMED = _armed()
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill (or stop) this process if `name` is the armed point and this is its armed hit."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _ARMED[1]:
        os.kill(os.getpid(), _ARMED[2])
