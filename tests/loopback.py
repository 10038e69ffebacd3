"""A webhook endpoint on loopback for tests: a real HTTP server that keeps what it got and answers as told."""

from __future__ import annotations

import json
import threading
from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Receiver:
    """What the endpoint got (headers, body) in order; it answers `statuses` in turn, then 200."""

    statuses: list[int] = field(default_factory=list[int])
    got: list[tuple[dict[str, str], bytes]] = field(default_factory=list[tuple[dict[str, str], bytes]])
    url: str = ""

    @property
    def raw(self) -> list[bytes]:
        return [body for _, body in self.got]

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(body) for body in self.raw]


@contextmanager
def receiving(path: str = "/hooks") -> Generator[Receiver]:
    """A `Receiver` listening on 127.0.0.1 (a free port) at `path`, until the block ends."""
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.got.append((dict(self.headers.items()), body))
            self.send_response(state.statuses.pop(0) if state.statuses else 200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}{path}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
