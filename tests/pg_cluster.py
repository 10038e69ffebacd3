"""The tests' throwaway PostgreSQL cluster: `guard.local_postgres.LocalPostgres` (also behind `make demo-shared` and
the benches), under the name the tests, the chaos campaign and `bench.postgres` import it by.

initdb into a temporary directory, pg_ctl on 127.0.0.1 and a free port, removed at the end; as root, the cluster
belongs to the `postgres` user and every server command runs through `runuser -u postgres`.
"""

from __future__ import annotations

from guard.local_postgres import LocalPostgres, server_bin_dir

__all__ = ["PgCluster", "server_bin_dir"]

PgCluster = LocalPostgres
