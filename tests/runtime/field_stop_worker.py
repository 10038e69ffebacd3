"""A worker process for the cross-run stop rules: opens a run of its own, says `ready`, waits for a line on stdin
(the gate all workers start at) and makes the calls it is told in it, then prints how each ended as one JSON line.

Usage: python field_stop_worker.py POLICY_DIR DB_URL WORKER TOOL ARGS_JSON...
"""

from __future__ import annotations

import json
import sys

from guard import CallDenied, Guard


def main(argv: list[str]) -> int:
    policies, url, worker, tool_name, *calls = argv
    guard = Guard(
        policies=policies, db=url, log_level="error", secret_key="test-deployment-key-0123456789", worker_id=worker
    )
    try:

        def body(**kwargs: object) -> dict[str, str]:
            return {"sent": worker}

        tool = guard.tool(body, name=tool_name)
        ended: list[str] = []
        with guard.run("brakes", run_id=f"run-{worker}"):
            print("ready", flush=True)
            sys.stdin.readline()  # the gate: every worker has its run open, and starts its calls at once
            for args in calls:
                try:
                    tool(**json.loads(args))
                    ended.append("ran")
                except CallDenied:
                    ended.append("denied")
        print(json.dumps(ended))
    finally:
        guard.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
