"""A PostgreSQL server of one's own on this machine, for the tests, the benches and `make demo-shared`: `initdb`
into a directory, `pg_ctl` on 127.0.0.1 and a free port, removed at the end.

Not a way to run a ledger in production (that is a PostgreSQL you operate: see the README). Authentication is
`trust` on loopback only, and the server holds nothing but throwaway ledgers.

PostgreSQL refuses to run as root: as root, the cluster's directory belongs to the `postgres` user and every
server command runs through `runuser -u postgres` (CI runs as root); as anyone else, the commands run as that
user. The server binaries come from the machine's packages (`.ci/ensure-postgres` installs Debian's).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["LocalPostgres", "server_bin_dir"]

SERVER_USER = "postgres"


def server_bin_dir() -> Path | None:
    """The newest installed server's bin directory (Debian: /usr/lib/postgresql/<major>/bin), or None."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    if not found:
        on_path = shutil.which("initdb")
        return Path(on_path).parent if on_path else None
    return max(found, key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LocalPostgres:
    """One PostgreSQL server in `root` (a new temporary directory when None).

    `start()` creates and starts it (or starts it again after `stop`); `url(db)` names a database on it;
    `create_database(name, template)` makes one (a copy of `template`: a file copy inside the server, cheap);
    `stop(mode="immediate")` stops it as a crash would, keeping its files; `restart()` is both; `remove()` stops
    it and removes its directory (also done when the process exits, whatever happened before).

    Raises:
        RuntimeError: a server command failed (the message holds the command and its output).
    """

    def __init__(self, bin_dir: Path, root: Path | None = None) -> None:
        self.bin_dir = bin_dir
        self.port = 0
        if root is None:
            self.root = Path(tempfile.mkdtemp(prefix="guard-pg-"))
        else:
            root.mkdir(parents=True, exist_ok=True)
            self.root = root.resolve()
        self.data = self.root / "data"
        self.sockets = self.root / "sock"
        self.log = self.root / "server.log"
        self._as_server_user = os.geteuid() == 0

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_server_user:
            cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)  # noqa: S603  # the server binaries found by server_bin_dir, arguments built here
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        return done

    def start(self) -> LocalPostgres:
        """Start the server: the first time, create the cluster on a free port; afterwards start it again on the
        same port and files (after `stop`). Returns once it accepts connections."""
        if not self.data.exists():
            self.sockets.mkdir(exist_ok=True)
            if self._as_server_user:
                shutil.chown(self.root, SERVER_USER)
                shutil.chown(self.sockets, SERVER_USER)
            self._run(
                "initdb",
                "-D",
                str(self.data),
                "-U",
                SERVER_USER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            )
            self.port = _free_port()
            atexit.register(self.remove)  # a caller that ends with `stop()`, or fails first, leaves no server
        options = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.sockets} -c max_connections=200 "
            "-c shared_buffers=64MB"
        )
        # Up to 5 minutes: after an immediate stop the server replays its log first, and on a loaded 2-core CI
        # machine that took longer than a minute once (every later test then found it still starting).
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "300", "start")
        return self

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of `database` on this server (the ledger's `GUARD_DATABASE_URL`)."""
        return f"postgresql+psycopg://{SERVER_USER}@127.0.0.1:{self.port}/{database}"

    def sql(self, statement: str, database: str = "postgres") -> None:
        """Run one statement as the superuser (autocommit: CREATE DATABASE cannot run in a transaction)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1", port=self.port, user=SERVER_USER, dbname=database, autocommit=True
        ) as conn:
            conn.execute(statement.encode())

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` (a copy of `template` when given); returns its URL."""
        suffix = f' TEMPLATE "{template}"' if template else ""
        self.sql(f'CREATE DATABASE "{name}"{suffix}')
        return self.url(name)

    def stop(self, mode: str = "immediate") -> None:
        """Stop the server, keeping its files for `start`. `immediate` is a crash to the clients (every
        connection cut, no checkpoint); `fast` and `smart` are pg_ctl's orderly modes."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self) -> None:
        """Stop the server at once (as a crash would) and start it again on the same port."""
        self.stop("immediate")
        self.start()

    def remove(self) -> None:
        """Stop the server if it runs and remove its directory (the end of a session, even after a failure)."""
        self.clear(self.root, self.bin_dir)

    @staticmethod
    def clear(root: Path, bin_dir: Path) -> None:
        """Stop a server left running in `root` (by a process that died before its `remove`), then remove
        `root`. Nothing there is fine."""
        data = root / "data"
        with contextlib.suppress(Exception):
            if (data / "postmaster.pid").exists():
                cmd = [str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
                if os.geteuid() == 0:
                    cmd = ["runuser", "-u", SERVER_USER, "--", *cmd]
                subprocess.run(cmd, capture_output=True, check=False, timeout=60)  # noqa: S603  # pg_ctl of server_bin_dir
        shutil.rmtree(root, ignore_errors=True)
