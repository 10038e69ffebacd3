"""The approval service: a REST API and a reviewer web page over the ledger (`guard serve`).

Build it with `create_app(db_url, policies_dir)` and serve it with any ASGI server (uvicorn).
"""

from guard.server.app import create_app
from guard.server.desk import Desk, DeskError, Reviewer

__all__ = ["Desk", "DeskError", "Reviewer", "create_app"]
