"""Named crash points on the call path, for kill tests. No-ops unless `GUARD_CRASH_AT` is set.

`GUARD_CRASH_AT=after_offer` kills the process (SIGKILL: no cleanup, no `finally`, like a dead machine) the
first time that point is reached; `GUARD_CRASH_AT=after_offer@3` the third time. The variable is read once,
at import, so a normal process pays one attribute test per point.

Points on the path: before_offer, after_offer (the first commit: a call is `started`, or `awaiting_approval`),
after_approved (an approved call moved to `started`), before_tool, after_return (the tool returned; `completed`
not yet committed), after_completed, before_compensation, after_compensation, after_recover_claim.
A tool under test may add its own, e.g. `crash_point("after_effect")` between its effect and its return.
"""

from __future__ import annotations

import os
import signal

__all__ = ["POINTS", "crash_point"]

POINTS = (
    "before_offer", "after_offer", "after_approved", "before_tool", "after_effect", "after_return",
    "after_completed", "before_compensation", "after_compensation", "after_recover_claim",
)


def _armed() -> tuple[str, int] | None:
    spec = os.environ.get("GUARD_CRASH_AT", "").strip()
    if not spec:
        return None
    name, _, nth = spec.partition("@")
    return name, int(nth or "1")


_ARMED = _armed()
_hits: dict[str, int] = {}


def crash_point(name: str) -> None:
    """Kill this process with SIGKILL if `name` is the armed point and this is its armed hit."""
    if _ARMED is None or _ARMED[0] != name:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _ARMED[1]:
        os.kill(os.getpid(), signal.SIGKILL)
