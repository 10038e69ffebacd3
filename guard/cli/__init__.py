"""The `guard` command line."""

from guard.cli.app import app, main

__all__ = ["app", "main"]
