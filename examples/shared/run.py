"""`make demo-shared`: the onboarding story on a shared PostgreSQL ledger, every part a process of its own.

1. A local PostgreSQL of the demo's own starts under examples/shared/state/pg (as root, as the `postgres` user
   through `runuser`; PostgreSQL refuses root), and `guard db upgrade` creates the ledger in it.
2. The approval service (`guard serve`) starts against it; a reviewer token is made for sam.
3. Two agent worker processes (examples/shared/worker.py) each handle a sign-up event and block on the welcome
   email, which the policy holds for `support`.
4. sam approves both through the service's REST API: each worker, in its own process, wakes and sends its email.
5. The first event is delivered again, to the other worker: every call returns its recorded result, and no
   system gets a second row.
6. Everything is stopped at the end, also when a step fails: the workers, the service, the database server.

Needs the PostgreSQL server binaries (`.ci/ensure-postgres` installs Debian's) and the `postgres` extra.
Exits non-zero when a promise of the story does not hold.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # run as a script: make `examples` importable
    sys.path.insert(0, str(REPO))

import httpx  # noqa: E402

from examples.onboarding import systems  # noqa: E402
from guard.local_postgres import LocalPostgres, server_bin_dir  # noqa: E402

STATE = REPO / "examples" / "shared" / "state"
DEADLINE_S = 120.0
EVENTS = ("evt_signup_2001", "evt_signup_2002")


class DemoFailed(Exception):
    """Something the story promises did not happen."""


def say(text: str = "") -> None:
    print(text, flush=True)


def expect(ok: bool, what: str) -> None:
    if not ok:
        raise DemoFailed(what)
    say(f"  ok: {what}")


def until(check: Any, what: str, procs: Sequence[subprocess.Popen[bytes]] = ()) -> Any:
    """Poll `check()` until it returns something truthy (bounded; never a fixed wait)."""
    deadline = time.monotonic() + DEADLINE_S
    delay = 0.02
    while True:
        found = check()
        if found:
            return found
        dead = [p.args for p in procs if p.poll() is not None and p.returncode != 0]
        if dead:
            raise DemoFailed(f"a process ended while waiting for {what}: {dead}")
        if time.monotonic() > deadline:
            raise DemoFailed(f"no {what} within {DEADLINE_S:g}s")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)


def guard_cli(env: dict[str, str], *args: str) -> str:
    say("$ guard " + " ".join(a if "://" not in a else "$GUARD_DATABASE_URL" for a in args))
    done = subprocess.run(
        [sys.executable, "-m", "guard", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=DEADLINE_S,
        check=False,
    )
    if done.returncode != 0:
        raise DemoFailed(f"guard {' '.join(args)} exited {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


def start_worker(env: dict[str, str], name: str, *events: str) -> subprocess.Popen[bytes]:
    say(f"  {name}: python -m examples.shared.worker --worker {name} {' '.join(events)}")
    return subprocess.Popen(
        [sys.executable, "-m", "examples.shared.worker", "--state", str(STATE / "systems"), "--worker", name, *events],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=(STATE / f"{name}.log").open("ab"),
    )


def finished(proc: subprocess.Popen[bytes]) -> list[dict[str, Any]]:
    out, _ = proc.communicate(timeout=DEADLINE_S)
    if proc.returncode != 0:
        raise DemoFailed(f"{proc.args} exited {proc.returncode}; see {STATE}/*.log")
    return [json.loads(line) for line in out.decode().splitlines() if line.strip()]


def story(stack: ExitStack) -> None:
    bin_dir = server_bin_dir()
    if bin_dir is None:
        raise DemoFailed("no PostgreSQL server binaries: run .ci/ensure-postgres (installs Debian's postgresql)")
    say("=== 1. A PostgreSQL of the demo's own, and the ledger in it")
    LocalPostgres.clear(STATE / "pg", bin_dir)  # a server a killed earlier run left behind, and its files
    shutil.rmtree(STATE, ignore_errors=True)
    (STATE / "systems").mkdir(parents=True)
    for cls in systems.SYSTEMS:
        cls(STATE / "systems")
    cluster = LocalPostgres(bin_dir, STATE / "pg")
    stack.callback(cluster.remove)
    cluster.start()
    url = cluster.create_database("guard")
    say(
        f"  server: {cluster.data} on 127.0.0.1:{cluster.port}"
        + (" (as the postgres user)" if os.geteuid() == 0 else "")
    )
    env = {
        **os.environ,
        "GUARD_DATABASE_URL": url,
        "GUARD_POLICY_DIR": str(REPO / "policies"),
        "GUARD_SECRET_KEY": "demo-shared-deployment-key-0123456789",
        "PYTHONPATH": str(REPO),
    }
    say(guard_cli(env, "db", "upgrade").rstrip())

    say("\n=== 2. The approval service, against the same database")
    created = json.loads(guard_cli(env, "tokens", "create", "--reviewer", "sam", "--json"))
    port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", str(port), "--log-level", "warning"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(STATE / "serve.log").open("ab"),
    )
    stack.callback(stop, service)
    base = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    until(healthy, "answer from guard serve's /health", [service])
    say(f"  guard serve on {base}/ (pid {service.pid})")

    say("\n=== 3. Two agent workers, each a process, each with a sign-up event")
    workers = [start_worker(env, "worker-1", EVENTS[0]), start_worker(env, "worker-2", EVENTS[1])]
    for w in workers:
        stack.callback(stop, w)
    sam = {"Authorization": f"Bearer {created['token']}"}
    with httpx.Client(base_url=base, headers=sam, timeout=30) as http:

        def both_waiting() -> list[dict[str, Any]]:
            listed: list[dict[str, Any]] = http.get("/api/approvals").json()
            mine = [a for a in listed if a["tool"] == "email.send_welcome"]
            return mine if len(mine) == 2 else []

        waiting = until(both_waiting, "two welcome emails waiting for a reviewer", [*workers, service])
        for a in waiting:
            say(f"  waiting: {a['approval_id']} {a['tool']} in {a['run_id']}")

        say("\n=== 4. sam approves both through the service's REST API")
        for a in waiting:
            shown = http.get(f"/api/approvals/{a['approval_id']}").json()
            done = http.post(
                f"/api/approvals/{a['approval_id']}/decision",
                json={"decision": "approve", "reason": "looks right", "args_hash": shown["args_hash"]},
            )
            expect(done.status_code == 200, f"{a['approval_id']} approved ({done.status_code})")
    results = [r for w in workers for r in finished(w)]
    for r in results:
        say(f"  {r['worker']}: {r['run_id']} sent {r['message_id']}")
    expect(sorted(r["event"] for r in results) == sorted(EVENTS), "each worker finished its own run")
    before = systems.counts(STATE / "systems")
    expect(
        before["email"] == 2 and before["billing"] == 2 and before["crm"] == 2,
        f"two customers, one row each per system: {before}",
    )

    say("\n=== 5. The first event, delivered again to the other worker")
    again = finished(start_worker(env, "worker-2", EVENTS[0]))
    first = next(r for r in results if r["event"] == EVENTS[0])
    expect(again[0]["message_id"] == first["message_id"], "the recorded result came back, nothing ran again")
    expect(systems.counts(STATE / "systems") == before, "no system got a second row")
    say(guard_cli(env, "ledger", "verify").rstrip())


def main() -> int:
    say("Guard on a shared PostgreSQL ledger: the approval service and two agent workers as separate processes.")
    try:
        with ExitStack() as stack:  # stops the workers, the service and the database server, whatever happened
            story(stack)
    except DemoFailed as err:
        say(f"\ndemo-shared FAILED: {err}")
        return 1
    say("\nshared ledger: done. Every process is stopped and the database server is removed.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
