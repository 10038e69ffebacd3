"""`RunHandle`: the scope of one run. Opens (or resumes) it in the ledger and closes it with a state."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

import structlog

from guard.crash import crash_point
from guard.errors import (
    ApprovalPending,
    ApprovalTimeout,
    CallInDoubt,
    GuardUsageError,
    RunNotRunning,
    TeamPaused,
    ToolPaused,
)
from guard.ledger import OPEN_RUN_STATES, PausedAtSource, RunClose, RunRecord, RunState, new_id
from guard.redaction import described, scrub_text
from guard.runtime.callpath import CallPath
from guard.runtime.context import RUN_VAR, RunScope

if TYPE_CHECKING:
    from contextvars import Token

    from guard.ledger import CallRecord

__all__ = ["RunHandle"]


class RunHandle:
    """`with guard.run(team) as run:` (or `async with`). On a clean exit the run is `completed`; if the block
    raises, an open run moves to `pending_review` (something changed) or `halted` (nothing did), with the
    error as its summary. `ApprovalPending` and `ApprovalTimeout` leave the run paused: its approval still
    stands, and the run resumes later with the same run id and the same call.

    Entering an existing run resumes it. A `completed` run (or one `finished_by_hand`) may be entered again
    (the same event delivered twice): every call it already made returns its recorded result, and any new call
    is refused with RunNotRunning. A run halted or pending review refuses entry until an operator acts on it.
    While the team is paused, a new run is refused with TeamPaused and nothing is recorded (a run already open
    may be entered; the brakes deny its calls). A run that declares the tools it will use (`uses=[...]`) is
    refused with ToolPaused while a pause of one of them is in force: the job would be denied at that call
    anyway, and refusing it here stops the schedule or webhook that opened it at the source. A run that declares
    nothing opens, and the brakes deny its call of a paused tool when it comes.

    With `keep_open=True` a clean exit leaves a running run `running` (a run that several sessions carry on,
    e.g. an MCP proxy's run for one event across client connections); a block that raises closes it as above.

    The close is decided inside its own write transaction: a delivery that finds the run already closed by
    another (the same event delivered twice at once) leaves it as recorded. A worker that lost a call of the
    run to another worker (`LeaseLost`: it was paused past its lease and the call was taken over) writes
    nothing to the run: the run is the new owner's to carry on.
    """

    def __init__(
        self,
        path: CallPath,
        *,
        team: str,
        run_id: str | None,
        subject: str | None,
        source_event_id: str | None,
        keep_open: bool = False,
        uses: tuple[str, ...] = (),
        before_open: Callable[[], None] = lambda: None,
    ) -> None:
        _refuse_untext(team=team, run_id=run_id, subject=subject, source_event_id=source_event_id)
        self.path = path
        self._before_open = before_open  # the Guard's recovery of what dead workers left, once per worker
        self.uses = uses
        self.keep_open = keep_open
        self.team = team
        self.run_id = run_id or (f"{team}:{source_event_id}" if source_event_id else new_id("run"))
        self.subject = subject
        self.source_event_id = source_event_id
        self._scope = RunScope(self.run_id, team, path.actor)
        self._token: Token[RunScope | None] | None = None
        self._bound: Mapping[str, Token[Any]] = {}

    def record(self) -> RunRecord:
        """The run as the ledger has it now."""
        run = self.path.ledger.get_run(self.run_id)
        assert run is not None
        return run

    def calls(self) -> list[CallRecord]:
        return self.path.ledger.calls_of(self.run_id)

    def __enter__(self) -> RunHandle:
        self._before_open()
        try:
            run = self.path.ledger.open_run(
                self.run_id,
                self.team,
                actor=self.path.actor,
                subject=self.subject,
                source_event_id=self.source_event_id,
                pauses=self.uses,
            )
        except PausedAtSource as held:
            raise self._refused(held.pause) from None
        if run.state not in OPEN_RUN_STATES and run.state not in (RunState.COMPLETED, RunState.FINISHED_BY_HAND):
            reason = (
                f"run {self.run_id} is {run.state}"
                + (f" ({run.status_label})" if run.status_label else "")
                + f": see `guard runs show {self.run_id}`"
            )
            raise RunNotRunning(reason, run_id=self.run_id, call_id=None, tool=None, state=run.state, reason=reason)
        self._token = RUN_VAR.set(self._scope)
        self._bound = structlog.contextvars.bind_contextvars(run_id=self.run_id, team=self.team)
        self.path.log.info("run open", subject=self.subject)
        return self

    def _refused(self, pause: dict[str, Any]) -> TeamPaused | ToolPaused:
        """Pause at the source: a paused team, or a paused tool the run declares, opens no new run (judged in the
        transaction that would open it). A run already in the ledger may be entered: the brakes judge its calls."""
        policy = self.path.policies.policies.get(self.team)
        tool: str | None = pause.get("tool")
        owners = [name for o in (policy.owners_of(tool) if policy is not None else ()) for name in o.names]
        what = f"team {self.team}" if tool is None else f"tool {pause['target']} (used by this run as {tool})"
        reason = (
            f"{what} is paused by {pause['paused_by']}: {pause['reason']} (pause {pause['id']}"
            f"{', owners ' + ' / '.join(owners) if owners else ''}); no new run opens until it is lifted "
            f"(`guard unpause --{pause['scope']} {pause['target']}`)"
        )
        fields = {
            "run_id": self.run_id,
            "call_id": None,
            "state": "paused",
            "team": self.team,
            "pause_id": pause["id"],
            "reason": pause["reason"],
            "paused_by": pause["paused_by"],
            "owners": owners,
        }
        if tool is None:
            return TeamPaused(reason, tool=None, **fields)
        return ToolPaused(reason, tool=tool, pattern=pause["target"], **fields)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._close(exc)
        finally:
            if self._token is not None:
                RUN_VAR.reset(self._token)
            structlog.contextvars.reset_contextvars(**self._bound)

    async def __aenter__(self) -> RunHandle:
        return self.__enter__()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def _close(self, exc: BaseException | None) -> None:
        crash_point("before_run_close")
        log = self.path.log
        elsewhere = isinstance(exc, CallInDoubt) and exc.in_flight  # another live worker carries the run on
        if self._scope.lost:
            log.warning(
                "run left to the worker that took over its calls: this worker's lease ran out",
                calls=sorted(self._scope.lost),
            )
            return
        if isinstance(exc, ApprovalPending | ApprovalTimeout) or elsewhere:
            self._left(self.record())
            return
        if exc is None:
            if self.keep_open:
                log.info("run left open (keep_open)")
                return
            run, moved = self.path.ledger.close_run(
                self.run_id, RunClose(RunState.COMPLETED), actor=self.path.actor, expect=frozenset({RunState.RUNNING})
            )
            if moved:
                log.info("run completed")
            else:
                self._left(run)
            return
        texts = tuple(sorted(self._scope.secrets, key=len, reverse=True))
        error = scrub_text(described(exc), texts)
        halted = RunClose(
            RunState.HALTED,
            status_label="agent_stopped",
            error_summary=error,
            next_safe_action="nothing changed; the run can be started again",
        )
        review = RunClose(
            RunState.PENDING_REVIEW,
            status_label="agent_stopped_after_changes",
            error_summary=error,
            requires_review=True,
            next_safe_action="review the completed calls; compensate or finish by hand",
        )
        run, moved = self.path.ledger.close_run(
            self.run_id, halted, actor=self.path.actor, expect=OPEN_RUN_STATES, after_changes=review
        )
        if moved:
            log.warning("run " + run.state, status_label=run.status_label, error=error)
        else:
            self._left(run)

    def _left(self, run: RunRecord) -> None:
        self.path.log.info("run left " + run.state, **({"status_label": run.status_label} if run.status_label else {}))


def _refuse_untext(**names: str | None) -> None:
    """GuardUsageError naming the first of `names` that no UTF-8 text can hold (a lone surrogate, as
    `surrogateescape` decoding leaves): the ledger could not record the run."""
    for name, value in names.items():
        if value is None:
            continue
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise GuardUsageError(
                f"the run's {name} is not valid Unicode text (it holds a lone surrogate): decode it strictly, or "
                "pass the original bytes as hex",
                field=name,
            ) from None
