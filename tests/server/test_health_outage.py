"""`guard serve` on PostgreSQL while its database goes down and comes back: `/health` answers 503 naming the
database, then 200 again, and the service keeps serving without a restart.

The test stops its server, so it runs `guard serve` (a real process) on a PostgreSQL cluster of its own.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from pg_cluster import PgCluster, server_bin_dir
from server_support import POLICIES, healthy

from guard.ledger import upgrade
from guard.testing import poll


@pytest.fixture
def own_cluster() -> Iterator[PgCluster]:
    bin_dir = server_bin_dir()
    assert bin_dir is not None, "no PostgreSQL server binaries: run .ci/ensure-postgres"
    cluster = PgCluster(bin_dir).start()
    try:
        yield cluster
    finally:
        cluster.remove()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(url: str) -> int:
    try:
        return httpx.get(f"{url}/health", timeout=10).status_code
    except httpx.TransportError:
        return 0


def test_health_answers_503_naming_the_database_while_it_is_down_and_200_once_it_is_back(
    own_cluster: PgCluster,
) -> None:
    db = own_cluster.create_database("health")
    upgrade(db)
    env = {**os.environ, "GUARD_POLICY_DIR": str(POLICIES)}
    created = subprocess.run(
        [sys.executable, "-m", "guard", "tokens", "create", "--reviewer", "sam", "--db", db, "--json"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    auth = {"Authorization": f"Bearer {json.loads(created.stdout)['token']}"}
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "guard", "serve", "--port", str(port), "--db", db, "--log-level", "warning"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        poll(lambda: proc.poll() is not None or healthy(base), timeout=30, what="guard serve answering /health")
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert httpx.get(f"{base}/api/approvals", headers=auth, timeout=10).status_code == 200

        own_cluster.stop(mode="immediate")
        poll(lambda: _status(base) == 503, timeout=30, what="/health answering 503")
        down = httpx.get(f"{base}/health", timeout=10)
        assert down.status_code == 503
        body = down.json()
        assert body["status"] == "unavailable" and body["database"].endswith(f"127.0.0.1:{own_cluster.port}/health")
        assert "reconnects by itself" in body["detail"]
        assert httpx.get(f"{base}/api/approvals", headers=auth, timeout=10).status_code == 503  # nothing decided

        own_cluster.start()
        poll(lambda: _status(base) == 200, timeout=30, what="/health answering 200 again")
        assert proc.poll() is None  # the same process: it kept serving through the outage
        assert httpx.get(f"{base}/api/approvals", headers=auth, timeout=10).status_code == 200
    finally:
        proc.terminate()
        proc.communicate(timeout=10)
