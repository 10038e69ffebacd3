"""Running the chaos agent in subprocesses: one lab (ledger file + witness store) per scenario, kills through
`GUARD_CRASH_AT`, a fresh worker that recovers and runs the event again, and the invariants over both stores.

Synchronisation is by state, never by sleeping: a test waits for a witness row, a ledger state or a process
exit, each with a bounded poll.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from guard.crash import POINTS
from guard.ledger import Ledger, upgrade
from guard.testing import poll
from tests.chaos.invariants import Check, check
from tests.chaos.witness import Witness

__all__ = [
    "EVENT",
    "KILL_POINTS",
    "NEW_LEDGER",
    "POLICIES",
    "SAGA",
    "TEAM",
    "Agent",
    "Kill",
    "Lab",
    "Result",
    "calibrate",
    "forget_template",
    "kill_and_recover",
    "poll",
    "template",
    "tool_of",
]

REPO = Path(__file__).resolve().parents[2]
POLICIES = Path(__file__).resolve().parent / "policies"
TEAM = "chaos"
EVENT = "evt-1"
# The points inside a tool's step on the forward path (the compensation points need a failing run; see `SAGA`).
KILL_POINTS = tuple(p for p in POINTS if p not in ("after_recover_claim", "before_run_close"))
SAGA: dict[str, list[object]] = {"witness.message": ["fail"]}  # the message fails: the charge is refunded
_TEMPLATE: list[Path] = []


def template(folder: Path | None = None) -> Path:
    """A migrated, empty ledger file, made once per process (in `folder`, else a temporary directory) and made
    again when the one made before is gone (its folder was removed); each lab copies it, so every scenario still
    has a real file of its own."""
    if _TEMPLATE and not _TEMPLATE[0].exists():
        forget_template()
    if not _TEMPLATE:
        path = (folder or Path(tempfile.mkdtemp(prefix="chaos-template-"))) / "template.db"
        upgrade(f"sqlite:///{path}")
        _TEMPLATE.append(path)
    return _TEMPLATE[0]


def forget_template() -> None:
    """Make the next `template()` a new file: the campaign calls it when the folder holding the last one goes."""
    _TEMPLATE.clear()


@dataclass
class Result:
    """One agent process after it ended: exit status (-9 for SIGKILL) and its JSON output (if it wrote one)."""

    code: int
    output: dict[str, Any]
    stderr: str

    @property
    def killed(self) -> bool:
        return self.code == -signal.SIGKILL


@dataclass
class Agent:
    """A running agent subprocess."""

    proc: subprocess.Popen[bytes]
    out: Path
    err: Path

    def stopped(self, timeout: float = 30.0) -> None:
        """Wait until the process stopped itself at its `stop` point (SIGSTOP); AssertionError if it ended or
        did not get there within `timeout` s."""

        def stopped_now() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the agent ended (exit {self.proc.returncode}) before its stop point")
            _, status = os.waitpid(self.proc.pid, os.WUNTRACED | os.WNOHANG)
            return os.WIFSTOPPED(status)

        poll(stopped_now, timeout=timeout, what="the agent stopped at its stop point")

    def resume(self) -> None:
        os.kill(self.proc.pid, signal.SIGCONT)

    def wait(self, timeout: float = 60.0) -> Result:
        code = self.proc.wait(timeout)
        text = self.out.read_text() if self.out.exists() else ""
        return Result(code, json.loads(text) if text else {}, self.err.read_text() if self.err.exists() else "")


# Where a new lab's ledger lives when none is given: None for a SQLite file in the lab, else a function that
# makes a new migrated ledger and returns its URL (the campaign's `--backend postgres` sets it).
NEW_LEDGER: list[Callable[[], str]] = []


@dataclass
class Lab:
    """A scenario's own ledger and witness store in `root`.

    The ledger is a SQLite file in `root` (copied from `base`), or the database at `url`. The URL is kept in
    `root/ledger.url`, so a `Lab(root)` made again later finds the same ledger.
    """

    root: Path
    script: Mapping[str, list[object]] = field(default_factory=dict[str, list[object]])
    base: Path | None = None  # a migrated empty ledger to copy (default: `template()`)
    runs: int = 0
    url: str | None = None

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.db = self.root / "guard.db"
        kept = self.root / "ledger.url"
        if self.url is None and kept.exists():
            self.url = kept.read_text()
        if self.url is None and NEW_LEDGER:
            self.url = NEW_LEDGER[0]()
        if self.url is None:
            if not self.db.exists():
                shutil.copyfile(self.base or template(), self.db)
            self.url = f"sqlite:///{self.db}"
        kept.write_text(self.url)
        self.store = self.root / "witness.db"
        self.script_file = self.root / "script.json"
        self.script_file.write_text(json.dumps(self.script))
        self.witness = Witness(self.store, script=self.script)

    def start(
        self,
        command: str = "run",
        *,
        crash: str | None = None,
        stop: str | None = None,
        worker: str = "w1",
        event: str = EVENT,
        extra: tuple[str, ...] = (),
    ) -> Agent:
        """Start `python -m tests.chaos.agent <command>` on this lab; `crash` arms GUARD_CRASH_AT, `stop`
        GUARD_STOP_AT (see `Agent.stopped`)."""
        self.runs += 1
        out = self.root / f"out-{self.runs}.json"
        err = self.root / f"err-{self.runs}.txt"
        env = {k: v for k, v in os.environ.items() if k not in ("GUARD_CRASH_AT", "GUARD_STOP_AT")}
        env["WITNESS_SCRIPT"] = str(self.script_file)
        env["PYTHONPATH"] = str(REPO)
        if crash is not None:
            env["GUARD_CRASH_AT"] = crash
        if stop is not None:
            env["GUARD_STOP_AT"] = stop
        argv = [
            sys.executable,
            "-m",
            "tests.chaos.agent",
            command,
            "--db",
            self.ledger_url,
            "--witness",
            str(self.store),
            "--event",
            event,
            "--worker",
            worker,
            "--out",
            str(out),
            *extra,
        ]
        with err.open("wb") as stderr:
            proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
        return Agent(proc, out, err)

    def run(self, command: str = "run", **kwargs: Any) -> Result:
        return self.start(command, **kwargs).wait()

    @property
    def ledger_url(self) -> str:
        assert self.url is not None  # set in __post_init__
        return self.url

    def check(self) -> Check:
        ledger = Ledger(self.ledger_url)
        try:
            return check(ledger, self.witness)
        finally:
            ledger.close()

    def ledger(self) -> Ledger:
        return Ledger(self.ledger_url)


@dataclass
class Kill:
    """One kill scenario and what came of it."""

    point: str
    nth: int
    tool: str | None
    first: Result
    resume: Result
    result: Check
    extra: Result | None = None

    def describe(self) -> str:
        return (
            f"kill at {self.point}@{self.nth} (in {self.tool or '?'}): agent exit {self.first.code}, "
            f"resume exit {self.resume.code} ({self.resume.output.get('status')}, run "
            f"{self.resume.output.get('run_state')}, {self.resume.output.get('error_type')})"
        )


def kill_and_recover(
    root: Path,
    point: str,
    nth: int,
    *,
    tool: str | None = None,
    script: Mapping[str, list[object]] | None = None,
    extra: tuple[str, ...] = (),
    kill_recoverer: bool = False,
) -> Kill:
    """Run the event with `point@nth` armed (SIGKILL), then a fresh worker recovers and runs it again.

    With `kill_recoverer`, the first recovering worker is itself killed after it claimed a call, and a
    third worker recovers after it.
    """
    lab = Lab(root, script=script or {})
    first = lab.run(crash=f"{point}@{nth}", extra=extra)
    second: Result | None = None
    if kill_recoverer:
        second = lab.run("recover", crash="after_recover_claim", worker="w2", extra=extra)
    resume = lab.run(worker="w3", extra=("--recover", *extra))
    return Kill(point, nth, tool, first, resume, lab.check(), second)


def calibrate(
    root: Path, point: str, *, script: Mapping[str, list[object]] | None = None, extra: tuple[str, ...] = ()
) -> dict[str, tuple[int, int]]:
    """How often each tool's step reaches `point`: {tool: (hits before it, hits after it)} from a clean run
    with the point armed at an unreachable hit. A kill at `point@n` lands in the tool whose window holds n."""
    lab = Lab(root, script=script or {})
    result = lab.run(crash=f"{point}@{10**9}", extra=extra)
    hits: dict[str, list[int]] = result.output.get("hits", {})
    return {tool: (pair[0], pair[1]) for tool, pair in hits.items()}


def tool_of(windows: Mapping[str, tuple[int, int]], nth: int) -> str | None:
    for tool, (before, after) in windows.items():
        if before < nth <= after:
            return tool
    return None
