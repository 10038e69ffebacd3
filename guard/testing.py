"""Fakes for the people who test with Guard: adapter authors and policy owners. Never a fake ledger.

- `RecordingTool`: a tool body that records every call and answers from a script (results or errors).
- `ScriptedReviewer`: a reviewer on a thread that decides pending approvals as a function says, through the
  real ledger (roles and self-approval are checked as for a person).
- `poll`: wait for a condition by re-reading real state (the ledger, a file, a health check) with a deadline.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from types import TracebackType
from typing import Any, Literal, TypeVar

from guard.errors import ApprovalDecisionError, GuardUsageError
from guard.ledger import ApprovalRecord, Ledger
from guard.policy import PolicySet
from guard.runtime.review import edit_gate, roles_in

__all__ = ["RecordingTool", "ScriptedReviewer", "poll"]

Decision = Literal["approve", "reject"]
T = TypeVar("T")


def poll(predicate: Callable[[], T], *, timeout: float = 10.0, what: str = "condition", interval: float = 0.005) -> T:
    """Re-read state until `predicate()` is truthy and return its value; AssertionError after `timeout` s.

    The sleep between reads is a poll interval, not a synchronisation: the condition itself is what is
    waited for, so the wait ends as soon as it holds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not met within {timeout:g}s")
        time.sleep(interval)


class RecordingTool:
    """Records each call's keyword arguments; returns the scripted answers in order (an exception instance is
    raised instead), then `default` (or the arguments themselves) once the script is used up."""

    def __init__(self, script: Iterable[Any] = (), default: Any = None) -> None:
        self.calls: list[dict[str, Any]] = []
        self._script = list(script)
        self._default = default
        self._lock = threading.Lock()

    def __call__(self, **kwargs: Any) -> Any:
        with self._lock:
            self.calls.append(kwargs)
            answer = (
                self._script.pop(0)
                if self._script
                else (self._default if self._default is not None else {"echo": kwargs})
            )
        if isinstance(answer, BaseException):
            raise answer
        return answer


class ScriptedReviewer:
    """`with ScriptedReviewer(ledger, lambda a: "approve", roles={"finance"}):` decides every pending approval
    it may decide; `decide` returning None leaves one pending. Decisions it was refused are kept in `refused`
    (code, approval id) rather than raised: a test asserts on them."""

    def __init__(
        self,
        ledger: Ledger,
        decide: Callable[[ApprovalRecord], Decision | None],
        *,
        reviewer: str = "scripted-reviewer",
        roles: Iterable[str] = (),
        reason: str = "scripted decision",
        edit: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
        policies: PolicySet | None = None,
        poll_interval: float = 0.005,
    ) -> None:
        """`edit`: approve the arguments this function makes of the ones shown, instead of those; an edit is a
        new proposal the team's policy judges, so it needs `policies` (e.g. `guard.policies`). With
        `policies`, other reviewers' votes count only while they hold one of the approval's roles there."""
        if edit is not None and policies is None:
            raise GuardUsageError(
                "ScriptedReviewer(edit=...) needs policies=... (e.g. guard.policies): an edit is "
                "judged by the team's policy before it is put to reviewers"
            )
        self.policies = policies
        self.ledger = ledger
        self.decide = decide
        self.edit = edit
        self.reviewer = reviewer
        self.roles = frozenset(roles)
        self.reason = reason
        self.decided: list[tuple[str, Decision]] = []
        self.refused: list[tuple[str, str]] = []
        self._interval = poll_interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scripted-reviewer", daemon=True)
        self._seen: set[str] = set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            for approval in self.ledger.list_approvals():
                if approval.approval_id in self._seen:
                    continue
                choice = self.decide(approval)
                if choice is None:
                    continue
                self._seen.add(approval.approval_id)
                try:
                    edited = (
                        self.edit(json.loads(approval.args_json))
                        if self.edit is not None and choice == "approve"
                        else None
                    )
                    self.ledger.decide(
                        approval.approval_id,
                        reviewer=self.reviewer,
                        decision=choice,
                        reviewer_roles=self.roles,
                        reason=self.reason,
                        edited_args=edited,
                        edit_gate=(
                            edit_gate(self.policies, approval.team, approval.tool, edited)
                            if edited is not None and self.policies is not None
                            else None
                        ),
                        roles_now=self._roles_now(approval.team),
                    )
                    self.decided.append((approval.approval_id, choice))
                except ApprovalDecisionError as exc:
                    self.refused.append((exc.code, approval.approval_id))

    def _roles_now(self, team: str) -> Callable[[str], frozenset[str]] | None:
        """Its own roles as given; every other voter's from `policies` (None without: every vote stands)."""
        if self.policies is None:
            return None
        others = roles_in(self.policies, team)
        return lambda name: self.roles if name == self.reviewer else others(name)

    def __enter__(self) -> ScriptedReviewer:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stop.set()
        self._thread.join(5)
